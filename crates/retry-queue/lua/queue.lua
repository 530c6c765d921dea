-- coordkit retry queue: every state change of one queue, one script per call.
--
-- KEYS (all of one queue, one hash tag; built in Rust):
--   KEYS[1]  tasks     HASH  id -> record (below)
--   KEYS[2]  ready     LIST  ids; LPUSH at the back, RPOP from the front
--   KEYS[3]  delayed   ZSET  id -> due time (ms)
--   KEYS[4]  leased    ZSET  id -> lease deadline (ms)
--   KEYS[5]  leases    HASH  id -> fencing token of its lease (leased tasks only)
--   KEYS[6]  dlq       ZSET  id -> dead-lettered at (ms)
--   KEYS[7]  errors    HASH  id -> error history (below; the latest `errors kept`)
--   KEYS[8]  dead      HASH  id -> dead-letter reason
--   KEYS[9]  idem      HASH  idempotency key -> struct '<I8I8' id, expires_at
--   KEYS[10] idem_exp  ZSET  idempotency key -> expires_at
--   KEYS[11] info      HASH  seq (ids), token (fencing), completed, dead (counters)
--
-- A record is little-endian binary (struct), written by Rust apart from its first 40 bytes:
--   a I4 attempts | s I4 stalls | prev I8 last backoff delay | since I8 | enq I8 enqueued at
--   | max I4 | lease I8 | plen I2 | clen I2 (48 bytes) | policy (plen) | component (clen) | payload
-- policy: B kind (0 exponential: I8 base, d factor, I8 cap | 1 fixed: I8 delay | 2 schedule:
--   I2 n, n x I8), B jitter (0 none, 1 full, 2 equal, 3 decorrelated) -- kind and jitter first.
-- An error history: B count, then per error I4 attempt, I8 at, I2 length, text.
--
-- A task is in exactly one state: the one structure (ready, delayed, leased, dlq) holding its id;
-- `leases` holds the token of exactly the leased ones. `since` is when it became (or becomes)
-- ready, or when it was dead-lettered.
--
-- ARGV (every call):
--   ARGV[1] op: enqueue | claim | settle | extend | stats | dlq_list | inspect | requeue | purge
--   ARGV[2] now_ms ("" = server TIME)
--   ARGV[3] settings: struct '<BI4I8I8B' succeeded events 0|1, max stalls, DLQ count cap (0 =
--           none), DLQ age cap ms (0 = none), errors kept; then four I2-length strings: the queue
--           name as JSON, the event channel prefix (the kind is appended), the wake channel, the
--           wake message (a prebuilt envelope)
--   ARGV[4..] per op:
--   enqueue  n, struct n x '<I8I8' (delay_ms, idempotency ttl_ms, 0 = no key), then n record
--            tails (the record from byte 41: max, lease, ..., payload), then the idempotency
--            keys of the keyed tasks, in order
--            -> { first id, (index, id of the original) for each duplicate ... }; task i's id is
--               first id + i - 1 unless it is a duplicate
--   claim    n, promote limit, reclaim limit
--            -> { now, next_due|-1, next_deadline|-1, first token, id, record, id, record, ... }:
--               the k-th task (from 0) got token first + k, deadline now + its lease
--   settle   n, struct n x '<BI8I8I8' (op 1 ack | 2 fail | 3 defer | 4 dead-letter, id, token, x:
--            the jitter draw 0..65535 of a fail, the delay of a defer), then the strings of the
--            ops in order: a fail's error; a dead-letter's reason, then its error
--            -> { status, attempts, due, ... } per op: status 0 lease lost, 1 acked,
--               2 retry scheduled, 3 dead-lettered, 4 deferred
--   extend   id, token, lease_ms ("" = the task's own) -> deadline, or -1 when the lease is lost
--   stats    -> { ready, delayed, leased, dead, completed, dead_total, oldest_ready_since|-1, now,
--                 next_due|-1 }
--   dlq_list offset, limit -> { id, dead_at, reason, record, ... }
--   inspect  id -> {} or { state, score|-1, record, errors, reason }
--   requeue  reset 0|1, limit, ids... (none = the oldest `limit`) -> requeued ids
--   purge    limit, ids... (none = the oldest `limit`) -> purged count

local K_TASKS, K_READY, K_DELAYED, K_LEASED, K_LEASES = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local K_DLQ, K_ERR, K_DEAD, K_IDEM, K_IDEMX, K_INFO = KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]

local op = ARGV[1]
local now = ck_now(ARGV[2])
local CFG = ARGV[3]
local HDR = 48

-- The helpers of the less travelled paths (events, dead letters, failures, stalls, the DLQ),
-- made on first use: making a closure costs time on every call that makes it, so the hot paths
-- (enqueue, claim, ack) are written inline and make none.
local H = nil
local function rare()
  if H then return H end
  H = { buried = 0 }
  local _, MAX_STALLS, DLQ_MAX, DLQ_AGE, MAX_ERRORS = struct.unpack('<BI4I8I8B', CFG)
  local QJSON, CH, WAKE_CH, WAKE_MSG = struct.unpack('<I2c0I2c0I2c0I2c0', CFG, 23)
  H.max_stalls = MAX_STALLS

  function H.wake()
    redis.call('PUBLISH', WAKE_CH, WAKE_MSG)
  end

  -- Publishes an event envelope; `payload` is the JSON object's inside, already encoded.
  local channels = {}
  function H.emit(kind, payload)
    local channel = channels[kind]
    if not channel then
      channel = CH .. kind
      channels[kind] = channel
    end
    redis.call('PUBLISH', channel, string.format(
      '{"kind":"%s","source":"queue","entity":%s,"ts_ms":%d,"payload":{%s}}', kind, QJSON, now,
      payload))
  end

  -- The id as a JSON string (ids are numbers where they come from struct, strings from Redis).
  function H.jid(id)
    if type(id) == 'number' then return string.format('"%d"', id) end
    return cjson.encode(id)
  end

  -- Whether a record is whole: its lease when it is.
  function H.sound(rec)
    if not rec or #rec < HDR then return nil end
    local lease, plen, clen = struct.unpack('<I8I2I2', rec, 37)
    if #rec < HDR + plen + clen then return nil end
    return lease
  end

  -- The record with a new mutable head (attempts, stalls, last delay, since).
  function H.rewrite(rec, a, s, prev, since)
    return struct.pack('<I4I4I8I8c0', a, s, prev, since, string.sub(rec, 25))
  end

  -- A stand-in record for a task whose own is missing or unreadable (dead-lettered as
  -- malformed): fixed backoff 0 without jitter, 1 attempt, 1 ms lease, no component, no payload.
  function H.stand_in()
    return struct.pack('<I4I4I8I8I8I4I8I2I2BBI8', 0, 0, 0, now, now, 1, 1, 10, 0, 1, 0, 0)
  end

  -- The history `old` (or none) with one more error, the oldest dropped beyond the cap.
  function H.with_error(old, attempt, text)
    local count, rest = 0, ''
    if old and #old > 0 then
      count = string.byte(old, 1)
      local pos, drop = 2, count + 1 - MAX_ERRORS
      for _ = 1, drop do
        local _, _, len = struct.unpack('<I4I8I2', old, pos)
        pos = pos + 14 + len
      end
      if drop > 0 then count = count - drop end
      rest = string.sub(old, pos)
    end
    return struct.pack('<Bc0I4I8I2c0', count + 1, rest, attempt, now, #text, text)
  end

  -- Moves task `id` (out of its previous structure, its lease gone) with record `rec`
  -- (attempts `a`, stalls `s`, last delay `prev`) to the dead-letter queue.
  function H.bury(id, rec, a, s, prev, reason)
    redis.call('HSET', K_TASKS, id, H.rewrite(rec, a, s, prev, now))
    redis.call('ZADD', K_DLQ, now, id)
    redis.call('HSET', K_DEAD, id, reason)
    redis.call('HINCRBY', K_INFO, 'dead', 1)
    H.emit('dead_lettered', string.format('"task":%s,"reason":%s,"attempts":%d,"stalls":%d',
      H.jid(id), cjson.encode(reason), a, s))
    H.buried = H.buried + 1
  end

  function H.bury_malformed(id)
    H.bury(id, H.stand_in(), 0, 0, 0, 'malformed')
  end

  function H.delete_dead(ids)
    if #ids == 0 then return end
    redis.call('ZREM', K_DLQ, unpack(ids))
    redis.call('HDEL', K_TASKS, unpack(ids))
    redis.call('HDEL', K_ERR, unpack(ids))
    redis.call('HDEL', K_DEAD, unpack(ids))
  end

  -- Applies the DLQ caps (oldest first, at most 100 of each per call): the age cap on every
  -- claim (`claiming`) and after a dead-lettering, the count cap after a dead-lettering.
  function H.trim_dlq(claiming)
    if H.buried == 0 and not claiming then return end
    if DLQ_AGE > 0 then
      H.delete_dead(redis.call('ZRANGEBYSCORE', K_DLQ, '-inf', now - DLQ_AGE, 'LIMIT', 0, 100))
    end
    if H.buried > 0 and DLQ_MAX > 0 then
      local n = redis.call('ZCARD', K_DLQ)
      if n > DLQ_MAX then
        H.delete_dead(redis.call('ZRANGE', K_DLQ, 0, math.min(n - DLQ_MAX, 100) - 1))
      end
    end
  end

  -- The delay before retry number `attempt` (the attempt that just failed) of the task with
  -- record `rec`, last delay `prev`, jitter draw r in 0..65535.
  function H.backoff(rec, attempt, prev, r)
    local p = HDR + 1
    local kind, jit = struct.unpack('<BB', rec, p)
    local d, lo, cap = 0, 0, 0
    if kind == 0 then
      local base, factor, c = struct.unpack('<I8dI8', rec, p + 2)
      cap = c
      d = math.min(base, cap)
      lo = d
      for _ = 2, attempt do
        if d >= cap then break end
        d = math.min(cap, math.floor(d * factor))
      end
    elseif kind == 1 then
      d = struct.unpack('<I8', rec, p + 2)
    else
      local n = struct.unpack('<I2', rec, p + 2)
      d = struct.unpack('<I8', rec, p + 4 + (math.min(math.max(attempt, 1), n) - 1) * 8)
    end
    if jit == 1 then
      d = math.floor(d * r / 65536)
    elseif jit == 2 then
      local h = math.floor(d / 2)
      d = h + math.floor((d - h) * r / 65536)
    elseif jit == 3 then
      local hi = math.max(lo, prev * 3)
      d = math.min(cap, lo + math.floor((hi - lo) * r / 65536))
    end
    return d
  end

  -- Publishes a wake-up when a delayed task scheduled at `earliest` is now the first one due.
  function H.wake_if_first(earliest)
    local first = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
    if first[2] and tonumber(first[2]) >= earliest then H.wake() end
  end

  -- The ids a DLQ operation applies to: those given that are dead, or the oldest `limit`.
  function H.dead_ids(limit, first)
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

  return H
end

if op == 'claim' then
  local n, plimit, rlimit = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local start_len = nil
  -- 1. Expired leases go back to ready (a stall), or to the DLQ after too many stalls.
  local first_lease = redis.call('ZRANGE', K_LEASED, 0, 0, 'WITHSCORES')
  local next_deadline = tonumber(first_lease[2] or -1)
  if first_lease[2] and next_deadline <= now then
    local h = rare()
    local expired = redis.call('ZRANGEBYSCORE', K_LEASED, '-inf', now, 'LIMIT', 0, rlimit)
    redis.call('ZREM', K_LEASED, unpack(expired))
    redis.call('HDEL', K_LEASES, unpack(expired))
    local recs = redis.call('HMGET', K_TASKS, unpack(expired))
    local sets, back = {}, {}
    for i, id in ipairs(expired) do
      local rec = recs[i]
      if not h.sound(rec) then
        h.bury_malformed(id)
      else
        local a, s, prev = struct.unpack('<I4I4I8', rec)
        s = s + 1
        h.emit('stalled', string.format('"task":%s,"stalls":%d', h.jid(id), s))
        if s > h.max_stalls then
          h.bury(id, rec, a, s, prev, 'stalled')
        else
          sets[#sets + 1] = id
          sets[#sets + 1] = h.rewrite(rec, a, s, prev, now)
          back[#back + 1] = id
        end
      end
    end
    if #sets > 0 then redis.call('HSET', K_TASKS, unpack(sets)) end
    if #back > 0 then start_len = redis.call('LPUSH', K_READY, unpack(back)) - #back end
    local l = redis.call('ZRANGE', K_LEASED, 0, 0, 'WITHSCORES')
    next_deadline = tonumber(l[2] or -1)
  end
  -- 2. Due delayed tasks join the back of the ready list, earliest first.
  local first_due = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
  local next_due = tonumber(first_due[2] or -1)
  if first_due[2] and next_due <= now then
    local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', now, 'LIMIT', 0, plimit)
    redis.call('ZREM', K_DELAYED, unpack(due))
    local len = redis.call('LPUSH', K_READY, unpack(due)) - #due
    if start_len == nil then start_len = len end
    local d = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
    next_due = tonumber(d[2] or -1)
  end
  -- 3. Lease up to n ready tasks.
  local ids = {}
  if n > 0 then ids = redis.call('RPOP', K_READY, n) or {} end
  local out = { now, next_due, next_deadline, 0 }
  if #ids > 0 then
    local recs = redis.call('HMGET', K_TASKS, unpack(ids))
    local tok = redis.call('HINCRBY', K_INFO, 'token', #ids) - #ids
    out[4] = tok + 1
    local leases, tokens = {}, {}
    local earliest = nil
    for i, id in ipairs(ids) do
      local rec = recs[i]
      local lease = nil
      -- Whether the record is whole (else the task is dead-lettered as malformed).
      if rec and #rec >= HDR then
        local l, plen, clen = struct.unpack('<I8I2I2', rec, 37)
        if #rec >= HDR + plen + clen then lease = l end
      end
      if lease == nil then
        rare().bury_malformed(id)
      else
        tok = tok + 1
        local deadline = now + lease
        if earliest == nil or deadline < earliest then earliest = deadline end
        leases[#leases + 1] = deadline
        leases[#leases + 1] = id
        tokens[#tokens + 1] = id
        tokens[#tokens + 1] = tok
        out[#out + 1] = id
        out[#out + 1] = rec
      end
    end
    if earliest then
      redis.call('ZADD', K_LEASED, unpack(leases))
      redis.call('HSET', K_LEASES, unpack(tokens))
      if next_deadline < 0 or earliest < next_deadline then out[3] = earliest end
    end
  end
  -- Others sleep only after seeing an empty list: wake them when it filled up and still has work.
  if start_len == 0 and #ids == n and redis.call('LLEN', K_READY) > 0 then rare().wake() end
  -- The age cap holds even while nothing new is dead-lettered: every claim applies it.
  if H then
    H.trim_dlq(true)
  else
    local dlq_age = struct.unpack('<I8', CFG, 14)
    if dlq_age > 0 then
      local old = redis.call('ZRANGEBYSCORE', K_DLQ, '-inf', now - dlq_age, 'LIMIT', 0, 100)
      if #old > 0 then rare().delete_dead(old) end
    end
  end
  return out
end

if op == 'settle' then
  local n, ops = tonumber(ARGV[4]), ARGV[5]
  local kinds, ids, toks, xs = {}, {}, {}, {}
  local pos = 1
  for i = 1, n do
    kinds[i], ids[i], toks[i], xs[i], pos = struct.unpack('<BI8I8I8', ops, pos)
  end
  local held = redis.call('HMGET', K_LEASES, unpack(ids))
  local emit_ok = string.byte(CFG, 1) == 1
  -- Which ops hold their lease (the first of duplicates); the records of those that are no ack
  -- (and of the acks too when `succeeded` events, which tell the attempt, are on).
  local valid, done, need = {}, {}, {}
  for i = 1, n do
    local id = ids[i]
    if held[i] and not done[id] and tonumber(held[i]) == toks[i] then
      done[id] = true
      valid[i] = true
      if kinds[i] ~= 1 or emit_ok then need[#need + 1] = id end
    end
  end
  local recs, errs = {}, {}
  if #need > 0 then
    local r = redis.call('HMGET', K_TASKS, unpack(need))
    local e = redis.call('HMGET', K_ERR, unpack(need))
    for i, id in ipairs(need) do
      recs[id] = r[i]
      errs[id] = e[i]
    end
  end
  local out, unlease, acked, sets, errsets, delayed = {}, {}, {}, {}, {}, {}
  local earliest = nil
  local spos = 6
  for i = 1, n do
    local what, id = kinds[i], ids[i]
    local text, reason = nil, nil
    if what == 2 then
      text = ARGV[spos]
      spos = spos + 1
    elseif what == 4 then
      reason, text = ARGV[spos], ARGV[spos + 1]
      spos = spos + 2
    end
    local k = #out
    if not valid[i] then
      out[k + 1], out[k + 2], out[k + 3] = 0, 0, 0
    elseif what == 1 then
      unlease[#unlease + 1] = id
      acked[#acked + 1] = id
      if emit_ok then
        local rec, a = recs[id], 0
        if rare().sound(rec) then a = struct.unpack('<I4', rec) end
        H.emit('succeeded', string.format('"task":"%d","attempt":%d', id, a + 1))
      end
      out[k + 1], out[k + 2], out[k + 3] = 1, 0, 0
    else
      local h = rare()
      unlease[#unlease + 1] = id
      local rec = recs[id]
      if not h.sound(rec) then
        h.bury_malformed(id)
        out[k + 1], out[k + 2], out[k + 3] = 3, 0, 0
      else
        local a, s, prev = struct.unpack('<I4I4I8', rec)
        if what == 4 then
          errs[id] = h.with_error(errs[id], a + 1, text)
          errsets[#errsets + 1] = id
          errsets[#errsets + 1] = errs[id]
          h.bury(id, rec, a, s, prev, reason)
          out[k + 1], out[k + 2], out[k + 3] = 3, a, 0
        else
          local delay
          if what == 2 then
            a = a + 1
            errs[id] = h.with_error(errs[id], a, text)
            errsets[#errsets + 1] = id
            errsets[#errsets + 1] = errs[id]
            local max = struct.unpack('<I4', rec, 33)
            if a >= max then
              h.bury(id, rec, a, s, prev, 'exhausted')
              out[k + 1], out[k + 2], out[k + 3] = 3, a, 0
            else
              delay = h.backoff(rec, a, prev, xs[i])
              prev = delay
            end
          else
            delay = xs[i]
          end
          if delay then
            local due = now + delay
            sets[#sets + 1] = id
            sets[#sets + 1] = h.rewrite(rec, a, s, prev, due)
            delayed[#delayed + 1] = due
            delayed[#delayed + 1] = id
            if earliest == nil or due < earliest then earliest = due end
            if what == 2 then
              h.emit('retry_scheduled', string.format(
                '"task":"%d","attempt":%d,"delay_ms":%d,"due_ms":%d', id, a, delay, due))
              out[k + 1], out[k + 2], out[k + 3] = 2, a, due
            else
              out[k + 1], out[k + 2], out[k + 3] = 4, a, due
            end
          end
        end
      end
    end
  end
  if #unlease > 0 then
    redis.call('ZREM', K_LEASED, unpack(unlease))
    redis.call('HDEL', K_LEASES, unpack(unlease))
  end
  if #acked > 0 then
    redis.call('HDEL', K_TASKS, unpack(acked))
    redis.call('HDEL', K_ERR, unpack(acked))
    redis.call('HINCRBY', K_INFO, 'completed', #acked)
  end
  if #errsets > 0 then redis.call('HSET', K_ERR, unpack(errsets)) end
  if #sets > 0 then
    redis.call('HSET', K_TASKS, unpack(sets))
    redis.call('ZADD', K_DELAYED, unpack(delayed))
    H.wake_if_first(earliest)
  end
  if H then H.trim_dlq(false) end
  return out
end

if op == 'enqueue' then
  local n, nums = tonumber(ARGV[4]), ARGV[5]
  local kpos = 6 + n
  if #ARGV >= kpos then
    -- Expired idempotency keys go (at most 100 per call) when keys are in use.
    local old = redis.call('ZRANGEBYSCORE', K_IDEMX, '-inf', now, 'LIMIT', 0, 100)
    if #old > 0 then
      redis.call('ZREM', K_IDEMX, unpack(old))
      redis.call('HDEL', K_IDEM, unpack(old))
    end
  end
  local seq = redis.call('HINCRBY', K_INFO, 'seq', n) - n
  local out, sets, ready, delayed = { seq + 1 }, {}, {}, {}
  local earliest = nil
  local pos, delay, ttl = 1, 0, 0
  for i = 1, n do
    seq = seq + 1
    delay, ttl, pos = struct.unpack('<I8I8', nums, pos)
    local dup = nil
    if ttl > 0 then
      local key = ARGV[kpos]
      kpos = kpos + 1
      local v = redis.call('HGET', K_IDEM, key)
      if v then
        local vid, exp = struct.unpack('<I8I8', v)
        if exp > now then dup = vid end
      end
      if not dup then
        local exp = now + ttl
        redis.call('HSET', K_IDEM, key, struct.pack('<I8I8', seq, exp))
        redis.call('ZADD', K_IDEMX, exp, key)
      end
    end
    if dup then
      out[#out + 1] = i
      out[#out + 1] = dup
    else
      local due = now + delay
      sets[#sets + 1] = seq
      sets[#sets + 1] = struct.pack('<I4I4I8I8I8c0', 0, 0, 0, due, now, ARGV[5 + i])
      if delay > 0 then
        delayed[#delayed + 1] = due
        delayed[#delayed + 1] = seq
        if earliest == nil or due < earliest then earliest = due end
      else
        ready[#ready + 1] = seq
      end
    end
  end
  if #sets > 0 then redis.call('HSET', K_TASKS, unpack(sets)) end
  if #ready > 0 and redis.call('LPUSH', K_READY, unpack(ready)) == #ready then rare().wake() end
  if #delayed > 0 then
    redis.call('ZADD', K_DELAYED, unpack(delayed))
    rare().wake_if_first(earliest)
  end
  return out
end

local h = rare()

if op == 'extend' then
  local id, tok = ARGV[4], tonumber(ARGV[5])
  local held = redis.call('HGET', K_LEASES, id)
  if not held or tonumber(held) ~= tok then return -1 end
  local ms = tonumber(ARGV[6])
  if ms == nil then
    ms = h.sound(redis.call('HGET', K_TASKS, id))
    if ms == nil then return -1 end
  end
  redis.call('ZADD', K_LEASED, 'XX', now + ms, id)
  return now + ms
end

if op == 'stats' then
  local ready = redis.call('LLEN', K_READY)
  local info = redis.call('HMGET', K_INFO, 'completed', 'dead')
  local oldest = -1
  if ready > 0 then
    local rec = redis.call('HGET', K_TASKS, redis.call('LINDEX', K_READY, -1))
    if h.sound(rec) then oldest = struct.unpack('<I8', rec, 17) end
  end
  local d = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
  return { ready, redis.call('ZCARD', K_DELAYED), redis.call('ZCARD', K_LEASED),
           redis.call('ZCARD', K_DLQ), tonumber(info[1] or 0), tonumber(info[2] or 0), oldest, now,
           d[2] and tonumber(d[2]) or -1 }
end

if op == 'dlq_list' then
  local offset, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
  local page = redis.call('ZRANGE', K_DLQ, offset, offset + limit - 1, 'WITHSCORES')
  if #page == 0 then return {} end
  local ids = {}
  for i = 1, #page, 2 do ids[#ids + 1] = page[i] end
  local recs = redis.call('HMGET', K_TASKS, unpack(ids))
  local reasons = redis.call('HMGET', K_DEAD, unpack(ids))
  local out = {}
  for i, id in ipairs(ids) do
    out[#out + 1] = id
    out[#out + 1] = tonumber(page[i * 2])
    out[#out + 1] = reasons[i] or ''
    out[#out + 1] = recs[i] or ''
  end
  return out
end

if op == 'inspect' then
  local id = ARGV[4]
  local rec = redis.call('HGET', K_TASKS, id)
  if not rec then return {} end
  local state, score = 'ready', nil
  for _, s in ipairs({ { 'dead', K_DLQ }, { 'leased', K_LEASED }, { 'delayed', K_DELAYED } }) do
    score = redis.call('ZSCORE', s[2], id)
    if score then
      state = s[1]
      break
    end
  end
  return { state, score and tonumber(score) or -1, rec, redis.call('HGET', K_ERR, id) or '',
           redis.call('HGET', K_DEAD, id) or '' }
end

if op == 'requeue' then
  local reset = ARGV[4] == '1'
  local ids = h.dead_ids(tonumber(ARGV[5]), 6)
  if #ids == 0 then return {} end
  local recs = redis.call('HMGET', K_TASKS, unpack(ids))
  local sets = {}
  for i, id in ipairs(ids) do
    local rec = recs[i]
    if not h.sound(rec) then rec = h.stand_in() end
    local a, _, prev = struct.unpack('<I4I4I8', rec)
    local max = struct.unpack('<I4', rec, 33)
    if reset then
      a, prev = 0, 0
    elseif a >= max then
      a = max - 1
    end
    sets[#sets + 1] = id
    sets[#sets + 1] = h.rewrite(rec, a, 0, prev, now)
    h.emit('requeued', string.format('"task":%s,"reset":%s', h.jid(id), reset and 'true' or 'false'))
  end
  redis.call('ZREM', K_DLQ, unpack(ids))
  redis.call('HDEL', K_DEAD, unpack(ids))
  if reset then redis.call('HDEL', K_ERR, unpack(ids)) end
  redis.call('HSET', K_TASKS, unpack(sets))
  if redis.call('LPUSH', K_READY, unpack(ids)) == #ids then h.wake() end
  return ids
end

if op == 'purge' then
  local ids = h.dead_ids(tonumber(ARGV[4]), 5)
  h.delete_dead(ids)
  return #ids
end

return ck_fail('BADOP', op)
