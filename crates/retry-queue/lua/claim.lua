-- claim: leases up to n ready tasks, after reclaiming expired leases (a stall: back to ready,
-- or dead-lettered as `stalled` past the max stalls) and promoting due delayed tasks; applies
-- the dead-letter queue's age cap. Runs after lib/queue.lua and, in `rare()`, the helper pieces
-- src/scripts.rs lists for it, made on first use: the hot path (no lease expired, no delayed
-- task due, nothing dead-lettered) makes none.
--
-- KEYS: all of lib/queue.lua's; writes leased, leases, ready, delayed, tasks, info (token,
--   dead), and dlq, dead, errors when dead-lettering.
-- ARGV[3] n (at most MAX_BATCH, 500; none taken while the queue is paused), ARGV[4] promote
-- limit, ARGV[5] reclaim limit
-- -> { now, next_due|NONE, next_deadline|NONE, first token, next_start|NONE, id, record, id,
--      record, ... }: the k-th task (from 0) got token first + k, deadline now + its lease;
--    next_start: when the rate limit lets the next task start (NONE: not limited now)
-- Codes: NONE. Events: stalled, dead_lettered, wake.

local n, plimit, rlimit = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
-- The pause flag, the token counter and the limits, in one read. A paused queue
-- (lua/pause.lua) takes no task: the claim still reclaims and promotes.
local info = redis.call('HMGET', K_INFO, 'paused', 'token', 'max_leased', 'rate_max', 'rate_ms')
local paused = ck_int(info[1], K_INFO, 'field paused', 1) == 1
local max_leased = ck_int(info[3], K_INFO, 'field max_leased', MAXL) or 0
local rate_max = ck_int(info[4], K_INFO, 'field rate_max', MAXR) or 0
local rate_ms = ck_int(info[5], K_INFO, 'field rate_ms', MAXD) or 0
if paused then n = 0 end
-- validate: leased, delayed, ready, tasks and dlq are read before any write; the token
-- counter is decoded; each record claimed must be whole with a lease in bounds, each one
-- reclaimed whole and in bounds (else it is dead-lettered as malformed, alone); leases and
-- the dead-letter keys are type-checked when written. The hot path (no lease expired, no
-- delayed task due) makes no table it does not answer with.
local first_lease = redis.call('ZRANGE', K_LEASED, 0, 0, 'WITHSCORES')
local next_deadline = tonumber(first_lease[2] or NONE)
local expired, exp_recs = nil, nil
if first_lease[2] and next_deadline <= now then
  expired = redis.call('ZRANGEBYSCORE', K_LEASED, '-inf', now, 'LIMIT', 0, rlimit)
elseif first_lease[2] and next_deadline > now + MAXD then
  -- A deadline no lease can have (a lease is at most MAXD long), written by something else:
  -- reclaimed now rather than never. The first is the earliest, so all are beyond.
  expired = redis.call('ZRANGE', K_LEASED, 0, rlimit - 1)
end
if expired then
  exp_recs = redis.call('HMGET', K_TASKS, unpack(expired))
  ck_expect_type(K_LEASES, 'hash')
end
local first_due = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
local next_due = tonumber(first_due[2] or NONE)
local due = nil
if first_due[2] and next_due <= now then
  due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', now, 'LIMIT', 0, plimit)
elseif first_due[2] and next_due > now + MAXD then
  -- A due time no delay can give (at most MAXD ahead): due now rather than never.
  due = redis.call('ZRANGE', K_DELAYED, 0, plimit - 1)
end
-- The limits (lua/limits.lua): at most max_leased tasks leased at once (the leases this claim
-- reclaims no longer count), at most rate_max starts in any rate_ms (a sliding log of the
-- starts: exact). A claim over the rate answers when the next start is allowed.
local next_start = NONE
if n > 0 and max_leased > 0 then
  local held = redis.call('ZCARD', K_LEASED) - (expired and #expired or 0)
  n = math.max(0, math.min(n, max_leased - held))
end
if n > 0 and rate_max > 0 and rate_ms > 0 then
  local since = '(' .. string.format('%d', now - rate_ms)
  local recent = redis.call('ZCOUNT', K_STARTS, since, '+inf')
  if recent >= rate_max then
    -- The start whose leaving the window lets the next one in.
    local s = redis.call('ZRANGEBYSCORE', K_STARTS, since, '+inf', 'WITHSCORES', 'LIMIT',
      recent - rate_max, 1)
    next_start = tonumber(s[2]) + rate_ms
    n = 0
  else
    n = math.min(n, rate_max - recent)
  end
end
-- The ids this claim takes, in the order they reach the front of the ready list (its RPOP
-- end): those there now, then the reclaimed, then the promoted.
local take, was_empty = {}, nil
if n > 0 then
  local tail = redis.call('LRANGE', K_READY, -n, -1)
  local len = #tail
  for i = 1, len do take[i] = tail[len + 1 - i] end
  was_empty = len == 0
elseif expired or due then
  was_empty = redis.call('LLEN', K_READY) == 0
end
local from_front = #take
-- Reclaimed leases: back to ready (a stall) or, after too many stalls or with a record that
-- cannot be used, to the DLQ. `back` maps a reclaimed id to its rewritten record.
local sets, back, stalled, stalls, bad = nil, nil, nil, nil, nil
local pushed, from_pushed = nil, 0
if expired or due then
  sets, back, stalled, stalls, bad, pushed = {}, {}, {}, {}, {}, {}
  local h = rare()
  for i, id in ipairs(expired or {}) do
    local rec = exp_recs[i]
    local a, s, prev = h.head(rec)
    if not a then
      bad[#bad + 1] = id
      bad[id] = rec or false
    else
      s = s + 1
      stalls[#stalls + 1] = { id, s }
      if s > h.max_stalls then
        stalled[#stalled + 1] = { id, rec, a, s, prev }
      else
        local r = h.rewrite(rec, a, s, prev, now)
        sets[#sets + 1] = id
        sets[#sets + 1] = r
        pushed[#pushed + 1] = id
        back[id] = r
      end
    end
  end
  for _, id in ipairs(due or {}) do pushed[#pushed + 1] = id end
  from_pushed = math.min(n - from_front, #pushed)
  for i = 1, from_pushed do take[#take + 1] = pushed[i] end
end
-- The records of the ids taken (the reclaimed ones are rewritten above).
local recs = take
if #take > 0 then
  if back and next(back) then
    local want = {}
    for _, id in ipairs(take) do
      if not back[id] then want[#want + 1] = id end
    end
    local got, r = {}, {}
    if #want > 0 then r = redis.call('HMGET', K_TASKS, unpack(want)) end
    for i, id in ipairs(want) do got[id] = r[i] or false end
    recs = {}
    for i, id in ipairs(take) do recs[i] = back[id] or got[id] end
  else
    recs = redis.call('HMGET', K_TASKS, unpack(take))
  end
end
local tok = 0
if #take > 0 then
  tok = ck_int(info[2], K_INFO, 'field token', EXACT - 1 - n) or 0
end
local out = { now, next_due, next_deadline, tok + 1, next_start }
local leases, tokens, starts = {}, {}, {}
local earliest = nil
for i, id in ipairs(take) do
  local rec = recs[i]
  local lease = nil
  -- Whether the record is whole with a lease in bounds (else dead-lettered as malformed).
  if rec and #rec >= HDR then
    local l, plen, clen = struct.unpack('<I8I2I2', rec, 37)
    if #rec >= HDR + plen + clen and l >= 1 and l <= MAXD then lease = l end
  end
  if lease == nil then
    bad = bad or {}
    if bad[id] == nil then
      bad[#bad + 1] = id
      bad[id] = rec or false
    end
  else
    local deadline = now + lease
    if earliest == nil or deadline < earliest then earliest = deadline end
    tok = tok + 1
    leases[#leases + 1] = deadline
    leases[#leases + 1] = id
    tokens[#tokens + 1] = id
    tokens[#tokens + 1] = tok
    starts[#starts + 1] = now
    starts[#starts + 1] = tok
    out[#out + 1] = id
    out[#out + 1] = rec
  end
end
local burying = (bad and #bad > 0) or (stalled and #stalled > 0)
local aged
if H or burying then
  local h = rare()
  if burying then h.check_bury() end
  aged = h.aged()
  if #aged > 0 then h.check_bury() end
else
  -- The age cap holds even while nothing new is dead-lettered: every claim applies it.
  local dlq_age = struct.unpack('<I8', CFG, 14)
  if dlq_age > 0 then
    aged = redis.call('ZRANGEBYSCORE', K_DLQ, '-inf', now - dlq_age, 'LIMIT', 0, 100)
    if #aged > 0 then rare().check_bury() end
  end
end
-- writes: (without reclaimed leases, the first write, the tokens' HSET, is what checks the
-- type of `leases` on the hot path)
if expired then
  redis.call('ZREM', K_LEASED, unpack(expired))
  redis.call('HDEL', K_LEASES, unpack(expired))
end
if earliest then
  redis.call('HSET', K_LEASES, unpack(tokens))
  redis.call('HINCRBY', K_INFO, 'token', #tokens / 2)
  if rate_max > 0 and rate_ms > 0 then
    -- (`starts` was read by the rate check above: its type is known.)
    redis.call('ZADD', K_STARTS, unpack(starts))
    redis.call('ZREMRANGEBYSCORE', K_STARTS, '-inf', string.format('%d', now - rate_ms))
  end
end
if expired then
  for _, e in ipairs(stalls) do
    H.emit('stalled', string.format('"task":%s,"stalls":%d', H.jid(e[1]), e[2]))
  end
  if #sets > 0 then redis.call('HSET', K_TASKS, unpack(sets)) end
  for _, t in ipairs(stalled) do H.bury(t[1], t[2], t[3], t[4], t[5], 'stalled') end
  local l = redis.call('ZRANGE', K_LEASED, 0, 0, 'WITHSCORES')
  next_deadline = tonumber(l[2] or NONE)
  out[3] = next_deadline
end
if due then redis.call('ZREM', K_DELAYED, unpack(due)) end
if from_front > 0 then redis.call('LTRIM', K_READY, 0, -from_front - 1) end
if pushed and #pushed > from_pushed then
  local rest = {}
  for i = from_pushed + 1, #pushed do rest[#rest + 1] = pushed[i] end
  redis.call('LPUSH', K_READY, unpack(rest))
  -- Others sleep only after seeing an empty list: wake them when it filled up and still has
  -- work this claim did not take (not while paused: they could take none of it).
  if was_empty and not paused then rare().wake() end
end
if bad then
  for _, id in ipairs(bad) do H.bury_malformed(id, bad[id]) end
end
if earliest then
  redis.call('ZADD', K_LEASED, unpack(leases))
  if next_deadline < 0 or earliest < next_deadline then out[3] = earliest end
end
if due then
  local d = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
  out[2] = tonumber(d[2] or NONE)
end
if H and aged and (#aged > 0 or H.buried > 0) then H.trim_dlq(aged) end
-- The next due time and deadline the caller sleeps until: within bounds, else "now" (what is
-- left beyond the limits of this call, or scores written by something else).
for _, i in ipairs({ 2, 3, 5 }) do
  if out[i] ~= NONE and (out[i] < 0 or out[i] > now + MAXD) then out[i] = now end
end
return out
