-- Helper piece (inside `rare()`): whether no task is ready, in either lane: the list `ready` (priority 0)
-- and the zset `urgent` (priorities above 0).

-- Whether no task is ready (validation: reads both lanes, always both: a read checks the type
-- of a lane written later).
function H.none_ready()
  local listed = redis.call('LLEN', K_READY)
  local ranked = redis.call('ZCARD', K_URGENT)
  return listed + ranked == 0
end
