-- schedule_set: creates or updates one schedule of the queue. A schedule whose ticks are
-- unchanged (the same interval or cron expression) keeps its next tick and its counters, so
-- every process may declare its schedules when it starts; one whose ticks changed is armed
-- again from its first tick after now. Runs after lib/queue.lua and, in `rare()`, the helper
-- pieces src/scripts.rs lists for it.
--
-- KEYS: all of lib/queue.lua's, then KEYS[QKEYS + 1] schedules (HASH), KEYS[QKEYS + 2] sched_due (ZSET), as
--   lib/schedule.lua describes them; writes schedules and sched_due.
-- ARGV[3] name, ARGV[4] the record (counters zero), ARGV[5] the first tick after now as the
--   caller computed it (ms; 0 when it does not know now yet)
-- -> { SET_*, next tick, now }. SET_STALE (nothing written): the ticks are new or changed and
--   the first tick given is not after now: compute it from the `now` answered and call again.
-- Events: scheduled {schedule, next_ms} (schedulers sleeping past it wake up).

local SET_STALE, SET_CREATED, SET_RESCHEDULED, SET_UPDATED = 0, 1, 2, 3

local K_SCHED, K_SDUE = KEYS[QKEYS + 1], KEYS[QKEYS + 2]
local name, rec, first = ARGV[3], ARGV[4], tonumber(ARGV[5])
local h = rare()
-- validate: both keys are read (their types); the old record and its tick decoded (one that
-- does not is replaced, counters zero); the new record decodes, so nothing undecodable is
-- stored.
local old = redis.call('HGET', K_SCHED, name)
local tick = tonumber(redis.call('ZSCORE', K_SDUE, name))
local catch_up, _, _, _, _, spec = h.sched(rec)
if catch_up == nil then return ck_fail('BADRECORD', 'the schedule record does not decode') end
local o_catch_up, last, fired, missed, _, o_spec = h.sched(old)
local code, next = SET_CREATED, nil
if old then code = SET_RESCHEDULED end
if o_catch_up ~= nil and o_spec == spec and tick and tick == math.floor(tick) and tick >= 0
  and tick < EXACT then
  code, next = SET_UPDATED, tick
end
if not next then
  if not first or first <= now or first >= EXACT then return { SET_STALE, 0, now } end
  next = first
end
-- writes:
if o_catch_up ~= nil then rec = h.sched_counted(rec, last, fired, missed) end
redis.call('HSET', K_SCHED, name, rec)
redis.call('ZADD', K_SDUE, next, name)
h.emit('scheduled', string.format('"schedule":%s,"next_ms":%d', cjson.encode(name), next))
return { code, next, now }
