-- Helper piece (inside `rare()`, after lib/priority.lua, lib/group_of.lua and lib/rank.lua):
-- which ready lane each task goes back to.

-- Splits `ids` (records `recs`, in the same order) into those of no group, with their
-- priorities (for H.push_ready), and those of a group: group -> { rank, id, ... } ranked by
-- `order` (for G.push_groups), with the set of those groups (nil, nil when none).
function H.lanes_of(ids, recs, order)
  local plain, prios, ranked, set = {}, {}, nil, nil
  for i, id in ipairs(ids) do
    local g = H.group_of(recs[i])
    if g then
      ranked, set = ranked or {}, set or {}
      local lane = ranked[g] or {}
      ranked[g], set[g] = lane, true
      lane[#lane + 1] = string.format('%d', H.rank(H.priority(recs[i]), order))
      lane[#lane + 1] = id
    else
      plain[#plain + 1] = id
      prios[#plain] = H.priority(recs[i])
    end
  end
  return plain, prios, ranked, set
end
