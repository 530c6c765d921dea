-- schedule_remove: deletes schedules of the queue (tasks they enqueued stay). Runs after
-- lib/queue.lua and, in `rare()`, the helper pieces src/scripts.rs lists for it.
--
-- KEYS: all of lib/queue.lua's, then KEYS[QKEYS + 1] schedules, KEYS[QKEYS + 2] sched_due (lib/schedule.lua);
--   writes both.
-- ARGV[3..] the names (distinct)
-- -> how many schedules were removed
-- Events: unscheduled {schedule} per schedule removed.

local K_SCHED, K_SDUE = KEYS[QKEYS + 1], KEYS[QKEYS + 2]
local names = {}
for i = 3, #ARGV do names[#names + 1] = ARGV[i] end
-- validate: both keys are read (their types).
local held = redis.call('HMGET', K_SCHED, unpack(names))
redis.call('ZCARD', K_SDUE)
-- writes:
local h, n = rare(), 0
for i, name in ipairs(names) do
  if held[i] then
    n = n + 1
    h.emit('unscheduled', '"schedule":' .. cjson.encode(name))
  end
end
redis.call('HDEL', K_SCHED, unpack(names))
redis.call('ZREM', K_SDUE, unpack(names))
return n
