-- Helper piece (inside `rare()`): a task's record with a new head (the layout in
-- lib/queue.lua).

-- The record with a new mutable head (attempts, stalls, last delay, since).
function H.rewrite(rec, a, s, prev, since)
  return struct.pack('<I4I4I8I8c0', a, s, prev, since, string.sub(rec, 25))
end
