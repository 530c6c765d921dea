-- Helper piece (inside `group_helpers()`): the tasks a call pushes to their groups' lanes
-- (lib/push_groups.lua).

-- Adds task `id` of priority p to group g's in `pushes` (group -> { [priority] = { id, ... } },
-- each in order; nil for a first one). -> pushes
function G.to_lane(pushes, g, p, id)
  pushes = pushes or {}
  local levels = pushes[g]
  if not levels then
    levels = {}
    pushes[g] = levels
  end
  local ids = levels[p]
  if ids then
    ids[#ids + 1] = id
  else
    levels[p] = { id }
  end
  return pushes
end
