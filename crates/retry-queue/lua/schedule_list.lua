-- schedule_list: every schedule of the queue and its next tick (read only). Runs after
-- lib/queue.lua.
--
-- KEYS: all of lib/queue.lua's, then KEYS[QKEYS + 1] schedules, KEYS[QKEYS + 2] sched_due (lib/schedule.lua).
-- -> { now, { name, record, ... }, { name, next tick, ... } }

return { now, redis.call('HGETALL', KEYS[QKEYS + 1]),
  redis.call('ZRANGE', KEYS[QKEYS + 2], 0, -1, 'WITHSCORES') }
