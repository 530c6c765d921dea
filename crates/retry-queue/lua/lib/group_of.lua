-- Helper piece (inside `rare()`): a record's group (the layout in lib/queue.lua).

-- The group a record names, or nil (none, or a record too short to say: the claim
-- dead-letters such a record).
function H.group_of(rec)
  if not rec or #rec < HDR then return nil end
  local glen = string.byte(rec, 36)
  if glen == 0 then return nil end
  local plen, clen = struct.unpack('<I2I2', rec, 45)
  local at = HDR + plen + clen
  if #rec < at + glen then return nil end
  return string.sub(rec, at + 1, at + glen)
end
