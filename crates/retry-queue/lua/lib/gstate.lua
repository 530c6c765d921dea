-- Helper piece (inside `group_helpers()`): a group's state in gstate (the layout in lib/queue.lua).

-- A group's state: leased, max_leased, rate_max, rate_ms, lanes (LANE_ZSET for an earlier
-- build's state). A group with no state has none of its tasks leased, no limits and its lanes
-- unknown: all of their bits set, the lanes that turn out empty cleared by the claim that reads
-- them (so a state deleted by hand loses no task). A state that does not decode or is out of
-- bounds fails the call naming the key and the group.
function G.gstate(raw, g)
  if not raw then return 0, 0, 0, 0, 2 * LANE_ZSET - 1 end
  local leased, max, rmax, rms, lanes
  if #raw == 22 then
    leased, max, rmax, rms, lanes = struct.unpack('<I4I4I4I8I2', raw)
  elseif #raw == 20 then
    leased, max, rmax, rms = struct.unpack('<I4I4I4I8', raw)
    lanes = LANE_ZSET
  else
    ck_corrupt(K_GSTATE, 'group ' .. g .. ' state of ' .. #raw .. ' bytes')
  end
  if max > MAXL or rmax > MAXR or rms > MAXD or lanes >= 2 * LANE_ZSET then
    ck_corrupt(K_GSTATE, 'group ' .. g .. ' state out of bounds')
  end
  return leased, max, rmax, rms, lanes
end
