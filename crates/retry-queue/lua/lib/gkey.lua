-- Helper piece (inside `group_helpers()`): the names of a group's own keys (lib/queue.lua) but
-- its lanes (lib/lane.lua).

-- The prefix every key of the queue shares (gstate's name without its suffix).
local GPFX = string.sub(K_GSTATE, 1, #K_GSTATE - 6)

-- The key of `group` of this kind: `gs` (its starts) or `gl` (its ranked lane of an earlier
-- build).
function G.gkey(kind, group)
  return GPFX .. kind .. ':' .. group
end
