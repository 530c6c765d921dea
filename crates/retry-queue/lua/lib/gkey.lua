-- Helper piece (inside `group_helpers()`): the names of a group's own keys (lib/queue.lua).

-- The prefix every key of the queue shares (gstate's name without its suffix).
local GPFX = string.sub(K_GSTATE, 1, #K_GSTATE - 6)

-- The key of `group` of this kind: `gl` (its ready lane) or `gs` (its starts).
function G.gkey(kind, group)
  return GPFX .. kind .. ':' .. group
end
