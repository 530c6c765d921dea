-- Helper piece (inside `rare()`, after lib/priority.lua and lib/group_of.lua): which ready
-- lane each task goes back to.

-- Splits `ids` (records `recs`, in the same order) into those of no group, with their
-- priorities (for H.push_ready), and those of a group (for G.push_groups, as lib/to_lane.lua
-- makes them; nil when none).
function H.lanes_of(ids, recs)
  local plain, prios, pushes = {}, {}, nil
  for i, id in ipairs(ids) do
    local g = H.group_of(recs[i])
    if g then
      pushes = group_helpers().to_lane(pushes, g, H.priority(recs[i]), id)
    else
      plain[#plain + 1] = id
      prios[#plain] = H.priority(recs[i])
    end
  end
  return plain, prios, pushes
end
