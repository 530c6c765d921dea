-- schedule_list: every schedule of the queue and its next tick (read only). Runs after
-- lib/queue.lua.
--
-- KEYS: all of lib/queue.lua's, then KEYS[14] schedules, KEYS[15] sched_due (lib/schedule.lua).
-- -> { now, { name, record, ... }, { name, next tick, ... } }

return { now, redis.call('HGETALL', KEYS[14]), redis.call('ZRANGE', KEYS[15], 0, -1, 'WITHSCORES') }
