-- Helper piece (inside `rare()`): a record's component (the layout in lib/queue.lua).

-- The component a record names, or nil (none, or a record too short to say).
function H.component_of(rec)
  if not rec or #rec < HDR then return nil end
  local plen, clen = struct.unpack('<I2I2', rec, 45)
  if clen == 0 or #rec < HDR + plen + clen then return nil end
  return string.sub(rec, HDR + plen + 1, HDR + plen + clen)
end
