-- Helper piece (inside `rare()`): whether no task is ready, in either lane: the list `ready` (priority 0)
-- and the zset `urgent` (priorities above 0).

-- Whether no task is ready (validation: reads both lanes).
function H.none_ready()
  return redis.call('LLEN', K_READY) == 0 and redis.call('ZCARD', K_URGENT) == 0
end
