-- stats: counts per state, totals, the oldest ready task. Reads only. Runs after lib/queue.lua
-- and, in `rare()`, the helper pieces src/scripts.rs lists for it.
--
-- KEYS: all of lib/queue.lua's; reads ready, info, tasks, delayed, leased, dlq.
-- ARGV: none of its own.
-- -> { ready, delayed, leased, dead, completed, dead_total, oldest_ready_since|NONE, now,
--      next_due|NONE, paused 0|1, max_leased, rate_max, rate_ms (0: no such limit) }
-- Codes: NONE.

local h = rare()

local ready = redis.call('LLEN', K_READY)
local info = redis.call('HMGET', K_INFO, 'completed', 'dead', 'paused', 'max_leased', 'rate_max',
  'rate_ms')
local completed = ck_int(info[1], K_INFO, 'field completed', EXACT) or 0
local dead = ck_int(info[2], K_INFO, 'field dead', EXACT) or 0
local paused = ck_int(info[3], K_INFO, 'field paused', 1) or 0
local max_leased = ck_int(info[4], K_INFO, 'field max_leased', MAXL) or 0
local rate_max = ck_int(info[5], K_INFO, 'field rate_max', MAXR) or 0
local rate_ms = ck_int(info[6], K_INFO, 'field rate_ms', MAXD) or 0
local oldest = NONE
if ready > 0 then
  local rec = redis.call('HGET', K_TASKS, redis.call('LINDEX', K_READY, -1))
  if h.head(rec) then oldest = struct.unpack('<I8', rec, 17) end
end
local d = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
return { ready, redis.call('ZCARD', K_DELAYED), redis.call('ZCARD', K_LEASED),
         redis.call('ZCARD', K_DLQ), completed, dead, oldest, now,
         d[2] and tonumber(d[2]) or NONE, paused, max_leased, rate_max, rate_ms }
