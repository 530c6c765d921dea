-- schedule_due: the schedules of the queue whose next tick is due (read only). Runs after
-- lib/queue.lua.
--
-- KEYS: all of lib/queue.lua's, then KEYS[QKEYS + 1] schedules, KEYS[QKEYS + 2] sched_due (lib/schedule.lua).
-- ARGV[3] limit (1..1000)
-- -> { now, next, (name, record or '', tick) per due schedule }: at most `limit` schedules
--   whose tick is at or before now, earliest first (a tick that is not a whole number of ms in
--   bounds counts as due, with tick NONE, so that firing parks it); `next` is the earliest tick
--   of the others (NONE: none; `now` when more than `limit` are due).

local K_SCHED, K_SDUE = KEYS[QKEYS + 1], KEYS[QKEYS + 2]
local limit = tonumber(ARGV[3])
local got = redis.call('ZRANGE', K_SDUE, 0, limit, 'WITHSCORES')
local out, names = { now, NONE }, {}
for i = 1, #got, 2 do
  local t = tonumber(got[i + 1])
  local whole = t and t == math.floor(t) and t >= 0 and t < EXACT
  if whole and t > now then
    out[2] = t
    break
  end
  if #names == limit then
    out[2] = now
    break
  end
  names[#names + 1] = got[i]
  out[#out + 1] = got[i]
  out[#out + 1] = ''
  out[#out + 1] = whole and t or NONE
end
if #names > 0 then
  local recs = redis.call('HMGET', K_SCHED, unpack(names))
  for i = 1, #names do out[3 * i + 1] = recs[i] or '' end
end
return out
