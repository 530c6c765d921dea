-- Helper piece (inside `rare()`): the record given to a task whose own is missing.

-- A stand-in record (the layout in lib/queue.lua): fixed backoff 0 without jitter, 1 attempt,
-- 1 ms lease, no component, no payload.
function H.stand_in()
  return struct.pack('<I4I4I8I8I8I2BBI8I2I2BBI8', 0, 0, 0, now, now, 1, 0, 0, 1, 10, 0, POLICY_FIXED,
    JITTER_NONE, 0)
end
