-- Helper piece (inside `group_helpers()`, after lib/gkey.lua and lib/lane.lua): how many ready
-- tasks a group's lanes hold. Reads only.

-- The ready tasks in group g's lanes marked in `lanes` (its state's bits), and the bits of
-- those that hold any; with `firsts`, the first of each such lane is added to it.
function G.lanes_len(g, lanes, firsts)
  local count, held = 0, 0
  if lanes >= LANE_ZSET then
    local lane = G.gkey('gl', g)
    local k = ck_read('zset', 'ZCARD', lane)
    if k > 0 then
      count, held = count + k, held + LANE_ZSET
      if firsts then firsts[#firsts + 1] = redis.call('ZRANGE', lane, '0', '0')[1] end
    end
  end
  for p = 0, MAXP do
    local bit_p = bit.lshift(1, p)
    if bit.band(lanes, bit_p) ~= 0 then
      local lane = G.lane(g, p)
      local k = ck_read('list', 'LLEN', lane)
      if k > 0 then
        count, held = count + k, held + bit_p
        if firsts then firsts[#firsts + 1] = redis.call('LINDEX', lane, '-1') end
      end
    end
  end
  return count, held
end
