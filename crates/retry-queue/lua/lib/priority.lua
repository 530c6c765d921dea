-- Helper piece (inside `rare()`): a record's priority (the layout in lib/queue.lua).

-- A record's priority (0 for a record too short to hold one: the claim dead-letters it).
function H.priority(rec)
  if not rec or #rec < HDR then return 0 end
  return math.min(string.byte(rec, 35), MAXP)
end
