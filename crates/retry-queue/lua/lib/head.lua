-- Helper piece (inside `rare()`): a task's record head (the layout in lib/queue.lua).

-- The head of a record that is whole and in bounds: attempts, stalls, last delay, max,
-- lease, policy length, priority; nil otherwise.
function H.head(rec)
  if not rec or #rec < HDR then return nil end
  local a, s, prev, since, enq, max, prio, glen, lease, plen, clen =
    struct.unpack('<I4I4I8I8I8I2BBI8I2I2', rec)
  if #rec < HDR + plen + clen + glen or lease < 1 or lease > MAXD or max < 1 or max > MAXA or prio > MAXP
    or a > max or s >= MAXS or prev > MAXD or since >= EXACT or enq >= EXACT then
    return nil
  end
  return a, s, prev, max, lease, plen, prio
end
