-- coordkit retry queue: every state change of one queue, one script per call.
--
-- KEYS (all of one queue, one hash tag; built in Rust):
--   KEYS[1]  tasks     HASH  id -> meta "attempts|stalls|token|prev_delay|since|enqueued|max|lease|policy|component"
--   KEYS[2]  payloads  HASH  id -> payload bytes
--   KEYS[3]  ready     LIST  ids; LPUSH at the back, RPOP from the front
--   KEYS[4]  delayed   ZSET  id -> due time (ms)
--   KEYS[5]  leased    ZSET  id -> lease deadline (ms)
--   KEYS[6]  dlq       ZSET  id -> dead-lettered at (ms)
--   KEYS[7]  errors    HASH  id -> JSON array of {attempt, at, error} (last ARGV[11])
--   KEYS[8]  dead      HASH  id -> dead-letter reason
--   KEYS[9]  idem      HASH  idempotency key -> "id|expires_at"
--   KEYS[10] idem_exp  ZSET  idempotency key -> expires_at
--   KEYS[11] info      HASH  seq (ids), token (fencing), completed, dead (counters)
--
-- A task is in exactly one state: the one structure (ready, delayed, leased, dlq) holding its id.
-- Its token field is non-zero only while it is leased; `since` is when it became (or becomes)
-- ready, or when it was dead-lettered.
--
-- ARGV (every call):
--   ARGV[1]  op: enqueue | claim | settle | extend | stats | dlq_list | inspect | requeue | purge
--   ARGV[2]  now_ms ("" = server TIME)
--   ARGV[3]  queue name (event entity)
--   ARGV[4]  event channel prefix ("<ns>:events:queue:"; the kind is appended)
--   ARGV[5]  wake channel
--   ARGV[6]  wake message (a prebuilt envelope)
--   ARGV[7]  "1" to emit `succeeded` events, else "0"
--   ARGV[8]  max stalls (a task that stalls more often is dead-lettered)
--   ARGV[9]  DLQ count cap (0 = none)
--   ARGV[10] DLQ age cap in ms (0 = none)
--   ARGV[11] errors kept per task
--   ARGV[12..] per op:
--   enqueue  n, then n groups of 8: payload, delay_ms, max_attempts, lease_ms, policy, component,
--            idempotency key ("" = none), idempotency ttl_ms
--            -> { {id, duplicate 0|1}, ... }
--   claim    n, promote limit, reclaim limit
--            -> { now, next_due|-1, next_deadline|-1, {id, token, deadline, attempt, stalls,
--                 component, payload, enqueued}, ... }
--   settle   n, then n groups of 5: op (a ack | f fail | d defer | x dead-letter), id, token, x, y
--            (fail: x = jitter draw 0..65535, y = error; defer: x = delay_ms;
--             dead-letter: x = reason, y = error)
--            -> { {status, attempts, due}, ... } status 0 lease lost, 1 acked, 2 retry scheduled,
--               3 dead-lettered, 4 deferred
--   extend   id, token, lease_ms -> deadline, or -1 when the lease is lost
--   stats    -> { ready, delayed, leased, dead, completed, dead_total, oldest_ready_since|-1, now,
--                 next_due|-1 }
--   dlq_list offset, limit -> { {id, dead_at, reason, meta}, ... }
--   inspect  id -> {} or { state, score|-1, meta, payload, errors, reason }
--   requeue  reset 0|1, limit, ids... (none = the oldest `limit`) -> requeued ids
--   purge    limit, ids... (none = the oldest `limit`) -> purged count

local K_TASKS, K_PAY, K_READY, K_DELAYED, K_LEASED = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local K_DLQ, K_ERR, K_DEAD, K_IDEM, K_IDEMX, K_INFO = KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]

local op = ARGV[1]
local now = ck_now(ARGV[2])
local QNAME, CH, WAKE_CH, WAKE_MSG = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local EMIT_OK = ARGV[7] == '1'
local MAX_STALLS, DLQ_MAX, DLQ_AGE = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local MAX_ERRORS = tonumber(ARGV[11])

local function parse(m)
  if not m then return nil end
  local a, s, tok, prev, since, rest = string.match(m, '^(%d+)|(%d+)|(%d+)|(%d+)|(%d+)|(.*)$')
  if not a then return nil end
  local enq, mx, lease, pol, comp = string.match(rest, '^(%d+)|(%d+)|(%d+)|([^|]*)|(.*)$')
  if not enq then return nil end
  return { a = tonumber(a), s = tonumber(s), tok = tonumber(tok), prev = tonumber(prev),
           since = tonumber(since), rest = rest, enq = tonumber(enq), max = tonumber(mx),
           lease = tonumber(lease), pol = pol, comp = comp }
end

local function pack(t)
  return string.format('%d|%d|%d|%d|%d|', t.a, t.s, t.tok, t.prev, t.since) .. t.rest
end

-- A stand-in meta for a task whose own meta is missing or unreadable (dead-lettered as malformed).
local function stand_in(id)
  return parse(string.format('0|0|0|0|%d|%d|1|1|f;n;0|', now, now))
end

local function wake()
  redis.call('PUBLISH', WAKE_CH, WAKE_MSG)
end

local buried = 0
local function push_error(id, attempt, text)
  local raw = redis.call('HGET', K_ERR, id)
  local list = raw and cjson.decode(raw) or {}
  list[#list + 1] = { attempt = attempt, at = now, error = text }
  while #list > MAX_ERRORS do table.remove(list, 1) end
  redis.call('HSET', K_ERR, id, cjson.encode(list))
end

-- Moves task `id` (already out of its previous structure) to the dead-letter queue.
local function bury(id, t, reason)
  t.tok = 0
  t.since = now
  redis.call('HSET', K_TASKS, id, pack(t))
  redis.call('ZADD', K_DLQ, now, id)
  redis.call('HSET', K_DEAD, id, reason)
  redis.call('HINCRBY', K_INFO, 'dead', 1)
  ck_emit(CH .. 'dead_lettered', 'dead_lettered', 'queue', QNAME, now,
    { task = id, reason = reason, attempts = t.a, stalls = t.s })
  buried = buried + 1
end

local function delete_dead(ids)
  if #ids == 0 then return end
  redis.call('ZREM', K_DLQ, unpack(ids))
  redis.call('HDEL', K_TASKS, unpack(ids))
  redis.call('HDEL', K_PAY, unpack(ids))
  redis.call('HDEL', K_ERR, unpack(ids))
  redis.call('HDEL', K_DEAD, unpack(ids))
end

-- Applies the DLQ caps (oldest first, at most 100 of each per call).
local function trim_dlq()
  if buried == 0 then return end
  if DLQ_AGE > 0 then
    delete_dead(redis.call('ZRANGEBYSCORE', K_DLQ, '-inf', now - DLQ_AGE, 'LIMIT', 0, 100))
  end
  if DLQ_MAX > 0 then
    local n = redis.call('ZCARD', K_DLQ)
    if n > DLQ_MAX then
      delete_dead(redis.call('ZRANGE', K_DLQ, 0, math.min(n - DLQ_MAX, 100) - 1))
    end
  end
end

-- The delay before retry number `attempt` (the attempt that just failed), jitter draw r in 0..65535.
local function backoff(pol, attempt, prev, r)
  local kind, jit, args = string.sub(pol, 1, 1), string.sub(pol, 3, 3), string.sub(pol, 5)
  local d, lo, cap = 0, 0, 0
  if kind == 'e' then
    local base, factor, c = string.match(args, '^(%d+),([^,]+),(%d+)$')
    base, factor, cap = tonumber(base), tonumber(factor), tonumber(c)
    d = math.min(base, cap)
    lo = d
    for _ = 2, attempt do
      if d >= cap then break end
      d = math.min(cap, math.floor(d * factor))
    end
  elseif kind == 'f' then
    d = tonumber(args)
  else
    local i = 0
    for v in string.gmatch(args, '%d+') do
      i = i + 1
      d = tonumber(v)
      if i >= attempt then break end
    end
  end
  if jit == 'f' then
    d = math.floor(d * r / 65536)
  elseif jit == 'q' then
    local h = math.floor(d / 2)
    d = h + math.floor((d - h) * r / 65536)
  elseif jit == 'd' then
    local hi = math.max(lo, prev * 3)
    d = math.min(cap, lo + math.floor((hi - lo) * r / 65536))
  end
  return d
end

-- Publishes a wake-up when a delayed task scheduled at `earliest` is now the first one due.
local function wake_if_first(earliest)
  local first = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
  if first[2] and tonumber(first[2]) >= earliest then wake() end
end

local function enqueue()
  local n = tonumber(ARGV[12])
  local keyed = false
  for i = 0, n - 1 do
    if ARGV[19 + i * 8] ~= '' then keyed = true end
  end
  if keyed then
    -- Expired idempotency keys go (at most 100 per call) when keys are in use.
    local old = redis.call('ZRANGEBYSCORE', K_IDEMX, '-inf', now, 'LIMIT', 0, 100)
    if #old > 0 then
      redis.call('ZREM', K_IDEMX, unpack(old))
      redis.call('HDEL', K_IDEM, unpack(old))
    end
  end
  local seq = redis.call('HINCRBY', K_INFO, 'seq', n) - n
  local out, sets, pays, ready, delayed = {}, {}, {}, {}, {}
  local earliest = nil
  for i = 0, n - 1 do
    local b = 13 + i * 8
    seq = seq + 1
    local id = string.format('%d', seq)
    local key = ARGV[b + 6]
    local dup = nil
    if key ~= '' then
      local v = redis.call('HGET', K_IDEM, key)
      if v then
        local vid, exp = string.match(v, '^(.*)|(%d+)$')
        if vid and tonumber(exp) > now then dup = vid end
      end
      if not dup then
        local exp = now + tonumber(ARGV[b + 7])
        redis.call('HSET', K_IDEM, key, id .. '|' .. exp)
        redis.call('ZADD', K_IDEMX, exp, key)
      end
    end
    if dup then
      out[#out + 1] = { dup, 1 }
    else
      local delay = tonumber(ARGV[b + 1])
      local due = now + delay
      sets[#sets + 1] = id
      sets[#sets + 1] = string.format('0|0|0|0|%d|%d|%s|%s|%s|%s', due, now, ARGV[b + 2],
        ARGV[b + 3], ARGV[b + 4], ARGV[b + 5])
      pays[#pays + 1] = id
      pays[#pays + 1] = ARGV[b]
      if delay > 0 then
        delayed[#delayed + 1] = due
        delayed[#delayed + 1] = id
        if earliest == nil or due < earliest then earliest = due end
      else
        ready[#ready + 1] = id
      end
      out[#out + 1] = { id, 0 }
    end
  end
  if #sets > 0 then
    redis.call('HSET', K_TASKS, unpack(sets))
    redis.call('HSET', K_PAY, unpack(pays))
  end
  if #ready > 0 and redis.call('LPUSH', K_READY, unpack(ready)) == #ready then wake() end
  if #delayed > 0 then
    redis.call('ZADD', K_DELAYED, unpack(delayed))
    wake_if_first(earliest)
  end
  return out
end

local function claim()
  local n, plimit, rlimit = tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14])
  local start_len = nil
  -- 1. Expired leases go back to ready (a stall), or to the DLQ after too many stalls.
  local expired = redis.call('ZRANGEBYSCORE', K_LEASED, '-inf', now, 'LIMIT', 0, rlimit)
  if #expired > 0 then
    redis.call('ZREM', K_LEASED, unpack(expired))
    local metas = redis.call('HMGET', K_TASKS, unpack(expired))
    local sets, back = {}, {}
    for i, id in ipairs(expired) do
      local t = parse(metas[i])
      if t == nil then
        bury(id, stand_in(id), 'malformed')
      else
        t.s = t.s + 1
        t.tok = 0
        ck_emit(CH .. 'stalled', 'stalled', 'queue', QNAME, now, { task = id, stalls = t.s })
        if t.s > MAX_STALLS then
          bury(id, t, 'stalled')
        else
          t.since = now
          sets[#sets + 1] = id
          sets[#sets + 1] = pack(t)
          back[#back + 1] = id
        end
      end
    end
    if #sets > 0 then redis.call('HSET', K_TASKS, unpack(sets)) end
    if #back > 0 then start_len = redis.call('LPUSH', K_READY, unpack(back)) - #back end
  end
  -- 2. Due delayed tasks join the back of the ready list, earliest first.
  local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', now, 'LIMIT', 0, plimit)
  if #due > 0 then
    redis.call('ZREM', K_DELAYED, unpack(due))
    local len = redis.call('LPUSH', K_READY, unpack(due)) - #due
    if start_len == nil then start_len = len end
  end
  -- 3. Lease up to n ready tasks.
  local ids = {}
  if n > 0 then ids = redis.call('RPOP', K_READY, n) or {} end
  local out = { now, -1, -1 }
  if #ids > 0 then
    local metas = redis.call('HMGET', K_TASKS, unpack(ids))
    local pays = redis.call('HMGET', K_PAY, unpack(ids))
    local tok = redis.call('HINCRBY', K_INFO, 'token', #ids) - #ids
    local sets, leases = {}, {}
    for i, id in ipairs(ids) do
      local t = parse(metas[i])
      if t == nil or not pays[i] then
        bury(id, t or stand_in(id), 'malformed')
      else
        tok = tok + 1
        t.tok = tok
        local deadline = now + t.lease
        sets[#sets + 1] = id
        sets[#sets + 1] = pack(t)
        leases[#leases + 1] = deadline
        leases[#leases + 1] = id
        out[#out + 1] = { id, tok, deadline, t.a + 1, t.s, t.comp, pays[i], t.enq }
      end
    end
    if #sets > 0 then
      redis.call('HSET', K_TASKS, unpack(sets))
      redis.call('ZADD', K_LEASED, unpack(leases))
    end
  end
  -- Others sleep only after seeing an empty list: wake them when it filled up and still has work.
  if start_len == 0 and #ids == n and redis.call('LLEN', K_READY) > 0 then wake() end
  local d = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
  if d[2] then out[2] = tonumber(d[2]) end
  local l = redis.call('ZRANGE', K_LEASED, 0, 0, 'WITHSCORES')
  if l[2] then out[3] = tonumber(l[2]) end
  trim_dlq()
  return out
end

local function settle()
  local n = tonumber(ARGV[12])
  local ids = {}
  for i = 0, n - 1 do ids[i + 1] = ARGV[14 + i * 5] end
  local metas = redis.call('HMGET', K_TASKS, unpack(ids))
  local out, done = {}, {}
  local acked, sets, delayed, unlease = {}, {}, {}, {}
  local earliest = nil
  for i = 0, n - 1 do
    local b = 13 + i * 5
    local what, id, tok = ARGV[b], ARGV[b + 1], tonumber(ARGV[b + 2])
    local t = parse(metas[i + 1])
    if t == nil or done[id] or t.tok ~= tok or tok == 0 then
      out[#out + 1] = { 0, 0, 0 }
    else
      done[id] = true
      unlease[#unlease + 1] = id
      if what == 'a' then
        acked[#acked + 1] = id
        if EMIT_OK then
          ck_emit(CH .. 'succeeded', 'succeeded', 'queue', QNAME, now, { task = id, attempt = t.a + 1 })
        end
        out[#out + 1] = { 1, t.a, 0 }
      elseif what == 'x' then
        push_error(id, t.a + 1, ARGV[b + 4])
        bury(id, t, ARGV[b + 3])
        out[#out + 1] = { 3, t.a, 0 }
      else
        local delay
        if what == 'f' then
          t.a = t.a + 1
          push_error(id, t.a, ARGV[b + 4])
          if t.a >= t.max then
            bury(id, t, 'exhausted')
            out[#out + 1] = { 3, t.a, 0 }
          else
            delay = backoff(t.pol, t.a, t.prev, tonumber(ARGV[b + 3]))
            t.prev = delay
          end
        else
          delay = tonumber(ARGV[b + 3])
        end
        if delay then
          local due = now + delay
          t.tok = 0
          t.since = due
          sets[#sets + 1] = id
          sets[#sets + 1] = pack(t)
          delayed[#delayed + 1] = due
          delayed[#delayed + 1] = id
          if earliest == nil or due < earliest then earliest = due end
          if what == 'f' then
            ck_emit(CH .. 'retry_scheduled', 'retry_scheduled', 'queue', QNAME, now,
              { task = id, attempt = t.a, delay_ms = delay, due_ms = due })
            out[#out + 1] = { 2, t.a, due }
          else
            out[#out + 1] = { 4, t.a, due }
          end
        end
      end
    end
  end
  if #unlease > 0 then redis.call('ZREM', K_LEASED, unpack(unlease)) end
  if #acked > 0 then
    redis.call('HDEL', K_TASKS, unpack(acked))
    redis.call('HDEL', K_PAY, unpack(acked))
    redis.call('HDEL', K_ERR, unpack(acked))
    redis.call('HINCRBY', K_INFO, 'completed', #acked)
  end
  if #sets > 0 then
    redis.call('HSET', K_TASKS, unpack(sets))
    redis.call('ZADD', K_DELAYED, unpack(delayed))
    wake_if_first(earliest)
  end
  trim_dlq()
  return out
end

local function extend()
  local id, tok = ARGV[12], tonumber(ARGV[13])
  local t = parse(redis.call('HGET', K_TASKS, id))
  if t == nil or tok == 0 or t.tok ~= tok then return -1 end
  local ms = tonumber(ARGV[14])
  if ms == nil then ms = t.lease end
  redis.call('ZADD', K_LEASED, 'XX', now + ms, id)
  return now + ms
end

local function stats()
  local ready = redis.call('LLEN', K_READY)
  local info = redis.call('HMGET', K_INFO, 'completed', 'dead')
  local oldest = -1
  if ready > 0 then
    local t = parse(redis.call('HGET', K_TASKS, redis.call('LINDEX', K_READY, -1)))
    if t then oldest = t.since end
  end
  local d = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
  return { ready, redis.call('ZCARD', K_DELAYED), redis.call('ZCARD', K_LEASED),
           redis.call('ZCARD', K_DLQ), tonumber(info[1] or 0), tonumber(info[2] or 0), oldest, now,
           d[2] and tonumber(d[2]) or -1 }
end

local function dlq_list()
  local offset, limit = tonumber(ARGV[12]), tonumber(ARGV[13])
  local page = redis.call('ZRANGE', K_DLQ, offset, offset + limit - 1, 'WITHSCORES')
  if #page == 0 then return {} end
  local ids = {}
  for i = 1, #page, 2 do ids[#ids + 1] = page[i] end
  local metas = redis.call('HMGET', K_TASKS, unpack(ids))
  local reasons = redis.call('HMGET', K_DEAD, unpack(ids))
  local out = {}
  for i, id in ipairs(ids) do
    out[i] = { id, tonumber(page[i * 2]), reasons[i] or '', metas[i] or '' }
  end
  return out
end

local function inspect()
  local id = ARGV[12]
  local meta = redis.call('HGET', K_TASKS, id)
  if not meta then return {} end
  local state, score = 'ready', nil
  for _, s in ipairs({ { 'dead', K_DLQ }, { 'leased', K_LEASED }, { 'delayed', K_DELAYED } }) do
    score = redis.call('ZSCORE', s[2], id)
    if score then
      state = s[1]
      break
    end
  end
  return { state, score and tonumber(score) or -1, meta, redis.call('HGET', K_PAY, id) or '',
           redis.call('HGET', K_ERR, id) or '[]', redis.call('HGET', K_DEAD, id) or '' }
end

-- The ids a DLQ operation applies to: those given that are dead, or the oldest `limit`.
local function dead_ids(limit, first)
  if #ARGV < first then return redis.call('ZRANGE', K_DLQ, 0, limit - 1) end
  local given = {}
  for i = first, #ARGV do given[#given + 1] = ARGV[i] end
  local scores = redis.call('ZMSCORE', K_DLQ, unpack(given))
  local ids, seen = {}, {}
  for i, id in ipairs(given) do
    if scores[i] and not seen[id] then
      seen[id] = true
      ids[#ids + 1] = id
    end
  end
  return ids
end

local function requeue()
  local reset = ARGV[12] == '1'
  local ids = dead_ids(tonumber(ARGV[13]), 14)
  if #ids == 0 then return {} end
  local metas = redis.call('HMGET', K_TASKS, unpack(ids))
  local sets = {}
  for i, id in ipairs(ids) do
    local t = parse(metas[i]) or stand_in(id)
    t.s, t.tok, t.since = 0, 0, now
    if reset then
      t.a, t.prev = 0, 0
    elseif t.a >= t.max then
      t.a = t.max - 1
    end
    sets[#sets + 1] = id
    sets[#sets + 1] = pack(t)
    ck_emit(CH .. 'requeued', 'requeued', 'queue', QNAME, now, { task = id, reset = reset })
  end
  redis.call('ZREM', K_DLQ, unpack(ids))
  redis.call('HDEL', K_DEAD, unpack(ids))
  if reset then redis.call('HDEL', K_ERR, unpack(ids)) end
  redis.call('HSET', K_TASKS, unpack(sets))
  if redis.call('LPUSH', K_READY, unpack(ids)) == #ids then wake() end
  return ids
end

local function purge()
  local ids = dead_ids(tonumber(ARGV[12]), 13)
  delete_dead(ids)
  return #ids
end

if op == 'claim' then return claim()
elseif op == 'settle' then return settle()
elseif op == 'enqueue' then return enqueue()
elseif op == 'extend' then return extend()
elseif op == 'stats' then return stats()
elseif op == 'dlq_list' then return dlq_list()
elseif op == 'inspect' then return inspect()
elseif op == 'requeue' then return requeue()
elseif op == 'purge' then return purge()
end
return ck_fail('BADOP', op)
