-- Helper piece (inside `rare()`): a ready task's rank in `urgent` (the layout in lib/queue.lua).

-- The rank in `urgent` of a task of priority p (1..MAXP) and order `order`.
function H.rank(p, order)
  return (MAXP - p) * PRIO_SPAN + math.min(order, PRIO_SPAN - 1)
end
