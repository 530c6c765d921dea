-- Helper piece (inside `group_helpers()`, after lib/gkey.lua): ready tasks into their groups'
-- lanes.

-- validate: the lanes of the groups in `set` (group -> true) type-checked; gstate and gready
-- read for them (a read checks its key's type), which tells the groups with no state yet
-- (G.new) and those out of gready (G.out: a later ZREM in the same call adds to it).
function G.check_groups(set)
  local names = {}
  for g in pairs(set) do
    names[#names + 1] = g
    ck_expect_type(G.gkey('gl', g), 'zset')
  end
  local states = ck_read('hash', 'HMGET', K_GSTATE, unpack(names))
  local at = ck_read('zset', 'ZMSCORE', K_GREADY, unpack(names))
  G.new, G.out = {}, {}
  for i, g in ipairs(names) do
    if not states[i] then G.new[g] = true end
    if not at[i] then G.out[g] = true end
  end
end

-- writes: `ranked[g]` = { rank, id, rank, id, ... } into each group's lane; each group ready
-- now unless it waits already (for its rate limit: the wait stays), its state made when new;
-- info's `grouped` set unless `flagged` (the caller read it set).
function G.push_groups(ranked, flagged)
  for g, list in pairs(ranked) do
    redis.call('ZADD', G.gkey('gl', g), unpack(list))
    if G.out[g] then redis.call('ZADD', K_GREADY, 'NX', string.format('%d', now), g) end
    if G.new[g] then
      redis.call('HSETNX', K_GSTATE, g, '\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0')
    end
  end
  if not flagged then redis.call('HSET', K_INFO, 'grouped', '1') end
end
