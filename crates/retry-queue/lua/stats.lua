-- stats: counts per state, totals, the oldest ready task. Reads only. Runs after lib/queue.lua
-- and, in `rare()` and `group_helpers()`, the helper pieces src/scripts.rs lists for it.
--
-- KEYS: all of lib/queue.lua's; reads ready, urgent, gstate and the groups' lanes, info, tasks,
--   delayed, leased, dlq.
-- ARGV: none of its own.
-- -> { ready, delayed, leased, dead, completed, dead_total, oldest_ready_since|NONE, now,
--      next_due|NONE, paused 0|1, max_leased, rate_max, rate_ms (0: no such limit) }
-- Codes: NONE.

local h = rare()

local listed = redis.call('LLEN', K_READY)
local ready = listed + redis.call('ZCARD', K_URGENT)
-- The groups' lanes (every group that ever had a task has a state that names them).
local firsts = {}
local states = ck_read('hash', 'HGETALL', K_GSTATE)
for i = 1, #states, 2 do
  local gh = group_helpers()
  -- (A state that does not decode, which a claim would name: every lane counted.)
  local ok, _, _, _, _, lanes = pcall(function() return gh.gstate(states[i + 1], states[i]) end)
  if not ok then lanes = 2 * LANE_ZSET - 1 end
  ready = ready + gh.lanes_len(states[i], lanes, firsts)
end
local info = redis.call('HMGET', K_INFO, 'completed', 'dead', 'paused', 'max_leased', 'rate_max',
  'rate_ms')
local completed = ck_int(info[1], K_INFO, 'field completed', EXACT) or 0
local dead = ck_int(info[2], K_INFO, 'field dead', EXACT) or 0
local paused = ck_int(info[3], K_INFO, 'field paused', 1) or 0
local max_leased = ck_int(info[4], K_INFO, 'field max_leased', MAXL) or 0
local rate_max = ck_int(info[5], K_INFO, 'field rate_max', MAXR) or 0
local rate_ms = ck_int(info[6], K_INFO, 'field rate_ms', MAXD) or 0
-- The oldest ready task: the first of the list, of a priority level of `urgent` or of a group
-- (each in first-in-first-out order).
local oldest = NONE
if listed > 0 then firsts[#firsts + 1] = redis.call('LINDEX', K_READY, -1) end
if ready > listed then
  for p = 1, MAXP do
    local lo = (MAXP - p) * PRIO_SPAN
    local f = redis.call('ZRANGEBYSCORE', K_URGENT, string.format('%d', lo),
      string.format('(%d', lo + PRIO_SPAN), 'LIMIT', 0, 1)
    if f[1] then firsts[#firsts + 1] = f[1] end
  end
end
-- (Read a thousand at a time: unpack's stack holds about 8,000.)
for at = 1, #firsts, 1000 do
  local recs = redis.call('HMGET', K_TASKS, unpack(firsts, at, math.min(at + 999, #firsts)))
  for _, rec in ipairs(recs) do
    if h.head(rec) then
      local since = struct.unpack('<I8', rec, 17)
      if oldest == NONE or since < oldest then oldest = since end
    end
  end
end
local d = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
return { ready, redis.call('ZCARD', K_DELAYED), redis.call('ZCARD', K_LEASED),
         redis.call('ZCARD', K_DLQ), completed, dead, oldest, now,
         d[2] and tonumber(d[2]) or NONE, paused, max_leased, rate_max, rate_ms }
