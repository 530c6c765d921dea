-- schedule_list: every schedule of the queue and its next tick (read only). Runs after
-- lib/queue.lua.
--
-- KEYS: all of lib/queue.lua's, then KEYS[13] schedules, KEYS[14] sched_due (lib/schedule.lua).
-- -> { now, { name, record, ... }, { name, next tick, ... } }

return { now, redis.call('HGETALL', KEYS[13]), redis.call('ZRANGE', KEYS[14], 0, -1, 'WITHSCORES') }
