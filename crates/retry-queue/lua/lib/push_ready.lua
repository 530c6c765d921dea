-- Helper piece (inside `rare()`): tasks back to their ready lane (calls lib/rank.lua's helper).

-- Puts `ids` (priorities `prios`, in the same order) behind the ready tasks of their level:
-- the list's back, or `urgent` ranked by `order` (from H.order). Both lanes read first.
function H.push_ready(ids, prios, order)
  local list, ranked = {}, {}
  for i, id in ipairs(ids) do
    if prios[i] > 0 then
      ranked[#ranked + 1] = string.format('%d', H.rank(prios[i], order))
      ranked[#ranked + 1] = id
    else
      list[#list + 1] = id
    end
  end
  if #list > 0 then redis.call('LPUSH', K_READY, unpack(list)) end
  if #ranked > 0 then redis.call('ZADD', K_URGENT, unpack(ranked)) end
end
