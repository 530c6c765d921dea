-- Helper piece (inside `group_helpers()`, after lib/gkey.lua): ready tasks into their groups'
-- lanes.

-- validate: the lanes of the groups in `set` (group -> true), gready and gstate read.
function G.check_groups(set)
  ck_expect_type(K_GREADY, 'zset')
  ck_expect_type(K_GSTATE, 'hash')
  for g in pairs(set) do ck_expect_type(G.gkey('gl', g), 'zset') end
end

-- writes: `ranked[g]` = { rank, id, rank, id, ... } into each group's lane; each group ready
-- now unless it waits already (for its rate limit: the wait stays), its state made when new.
function G.push_groups(ranked)
  for g, list in pairs(ranked) do
    redis.call('ZADD', G.gkey('gl', g), unpack(list))
    redis.call('ZADD', K_GREADY, 'NX', now, g)
    redis.call('HSETNX', K_GSTATE, g, '\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0')
  end
  redis.call('HSET', K_INFO, 'grouped', 1)
end
