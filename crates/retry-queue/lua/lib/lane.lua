-- Helper piece (inside `group_helpers()`): the names of a group's lanes (lib/queue.lua).

-- gstate's name without its suffix, then `gl`.
local LANE_PFX = string.sub(K_GSTATE, 1, #K_GSTATE - 6) .. 'gl'
-- Each priority's part of the name, 0 to MAXP, written out: Lua turns a number into text with
-- printf's %.14g, the slow path.
local LEVEL = { [0] = '0:', '1:', '2:', '3:', '4:', '5:', '6:', '7:', '8:', '9:' }

-- The key of `group`'s lane of priority p.
function G.lane(group, p)
  return LANE_PFX .. LEVEL[p] .. group
end
