-- coordkit retry queue: every state change of one queue, one script per call.
--
-- KEYS (all of one queue, one hash tag; built in Rust):
--   KEYS[1]  tasks     HASH  id -> record (below)
--   KEYS[2]  ready     LIST  ids; LPUSH at the back, RPOP side is the front
--   KEYS[3]  delayed   ZSET  id -> due time (ms)
--   KEYS[4]  leased    ZSET  id -> lease deadline (ms)
--   KEYS[5]  leases    HASH  id -> fencing token of its lease (leased tasks), or minus the token
--                            whose fail, defer or dead-letter settled it (until claimed again)
--   KEYS[6]  dlq       ZSET  id -> dead-lettered at (ms)
--   KEYS[7]  errors    HASH  id -> error history (below; the latest `errors kept`)
--   KEYS[8]  dead      HASH  id -> dead-letter reason
--   KEYS[9]  idem      HASH  idempotency key -> struct '<I8I8' id, expires_at
--   KEYS[10] idem_exp  ZSET  idempotency key -> expires_at
--   KEYS[11] info      HASH  seq (ids), token (fencing), completed, dead (counters)
--
-- A record is little-endian binary (struct): a head of HDR = 48 bytes, of which the script
-- writes the first 32 (bytes 1 to 32 in Lua's 1-based positions) and Rust the other 16, then the
-- variable part Rust writes:
--   a I4 attempts | s I4 stalls | prev I8 last backoff delay | since I8 | enq I8 enqueued at
--   (32 bytes, the script's) | max I4 | lease I8 | plen I2 | clen I2 (48 bytes) | policy (plen)
--   | component (clen) | payload
-- policy: B kind (POLICY_*: exponential: I8 base, d factor, I8 cap | fixed: I8 delay | schedule:
--   I2 n, n x I8), B jitter (JITTER_*) -- kind and jitter first.
-- An error history: B count, then per error I4 attempt, I8 at, I2 length, text.
--
-- A task is in exactly one state: the one structure (ready, delayed, leased, dlq) holding its id;
-- `leases` holds a positive token for exactly the leased ones. A settle whose token no longer
-- holds the lease answers "already settled" when that token settled the task (the negative
-- mark) or the task is gone (acknowledged or purged), else "lease lost". `since` is when it became (or becomes)
-- ready, or when it was dead-lettered.
--
-- Stored data is validated before the first write (CONTRIBUTING.md): each operation reads or
-- type-checks every key it may write and decodes every stored value it uses first. A record is
-- used only when it is whole and in bounds (lease 1..2^35 ms to be leased; attempts <= max <=
-- 10000, stalls < 2^31, delays <= 2^35 ms, times < 2^53, a sound policy and error history to be
-- failed, deferred or dead-lettered); a task whose record is not is dead-lettered as
-- `malformed` with its bytes kept, alone, and the rest of the batch applies. A counter in `info`
-- that is not a whole number in bounds fails the call with CORRUPT <info key> field <name>,
-- nothing written.
--
-- ARGV (every call):
--   ARGV[1] op: enqueue | claim | settle | extend | make_due | stats | dlq_list | inspect |
--           requeue | purge
--   ARGV[2] now_ms ("" = server TIME)
--   ARGV[3] settings: struct '<BI4I8I8B' succeeded events 0|1, max stalls, DLQ count cap (0 =
--           none), DLQ age cap ms (0 = none), errors kept; then three I2-length strings: the
--           queue's name, the event channel prefix (the kind is appended), the wake channel
--   ARGV[4..] per op:
--   enqueue  n, struct n x '<I8I8' (delay_ms, idempotency ttl_ms, 0 = no key), then n record
--            tails (the record from its 33rd byte: max, lease, ..., payload), then the idempotency
--            keys of the keyed tasks, in order
--            -> { first id, (index, id of the original) for each duplicate ... }; task i's id is
--               first id + i - 1 unless it is a duplicate
--   claim    n, promote limit, reclaim limit
--            -> { now, next_due|NONE, next_deadline|NONE, first token, id, record, id, record,
--               ... }:
--               the k-th task (from 0) got token first + k, deadline now + its lease
--   settle   n, struct n x '<BI8I8I8' (op, id, token, x: the jitter draw 0..65535 of a fail, the
--            delay of a defer), then the strings of the ops in order: a fail's error; a
--            dead-letter's reason, then its error
--            -> { status, attempts, due, ... } per op (status: a SETTLED_* code)
--   extend   id, token, lease_ms ("" = the task's own) -> deadline, or NONE when the lease is lost
--   make_due ids... -> the ids moved from delayed to the back of ready (those not delayed are
--            skipped)
--   stats    -> { ready, delayed, leased, dead, completed, dead_total, oldest_ready_since|NONE,
--                 now, next_due|NONE }
--   dlq_list offset, limit -> { id, dead_at, reason, record, ... }
--   inspect  id -> {} or { state, score|NONE, record, errors, reason }
--   requeue  reset 0|1, limit, ids... (none = the oldest `limit`) -> requeued ids
--   purge    limit, ids... (none = the oldest `limit`) -> purged count
--
-- Events: ck_emit_json on <prefix><kind>, source SOURCE, entity the queue's name; `wake` (no
-- payload) on the wake channel.

-- Codes shared with Rust: the same names and numbers in `code` (src/code.rs).
-- Settle ops (ARGV):
local OP_ACK, OP_FAIL, OP_DEFER, OP_DEAD_LETTER = 1, 2, 3, 4
-- Settle answers (one per op):
local SETTLED_LOST, SETTLED_ACKED, SETTLED_RETRYING = 0, 1, 2
local SETTLED_DEAD_LETTERED, SETTLED_DEFERRED, SETTLED_ALREADY = 3, 4, 5
-- A number the answer does not have (no due time, no deadline, a lost lease):
local NONE = -1
-- Backoff policy kinds and jitters, the first two bytes of a record's policy:
local POLICY_EXPONENTIAL, POLICY_FIXED, POLICY_SCHEDULE = 0, 1, 2
local JITTER_NONE, JITTER_FULL, JITTER_EQUAL, JITTER_DECORRELATED = 0, 1, 2, 3
-- The source of this script's events.
local SOURCE = 'retry-queue'

local K_TASKS, K_READY, K_DELAYED, K_LEASED, K_LEASES = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local K_DLQ, K_ERR, K_DEAD, K_IDEM, K_IDEMX, K_INFO = KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]

local op = ARGV[1]
local now = ck_now(ARGV[2])
local CFG = ARGV[3]
local HDR = 48
-- Bounds of stored numbers (MAX_DURATION_MS and EXACT in Rust): durations, times, counters.
local MAXD, EXACT, MAXS, MAXA = 34359738368, 9007199254740992, 2147483648, 10000

-- The helpers of the less travelled paths (events, dead letters, failures, stalls, the DLQ),
-- made on first use: making a closure costs time on every call that makes it, so the hot paths
-- (enqueue, claim, ack) are written inline and make none.
local H = nil
local function rare()
  if H then return H end
  H = { buried = 0 }
  local _, MAX_STALLS, DLQ_MAX, DLQ_AGE, MAX_ERRORS = struct.unpack('<BI4I8I8B', CFG)
  local QNAME, CH, WAKE_CH = struct.unpack('<I2c0I2c0I2c0', CFG, 23)
  H.max_stalls = MAX_STALLS
  H.dlq_age = DLQ_AGE

  function H.wake()
    ck_emit_json(WAKE_CH, 'wake', SOURCE, QNAME, now, '{}')
  end

  -- Publishes an event; `payload` is the JSON object's inside, already encoded.
  function H.emit(kind, payload)
    ck_emit_json(CH .. kind, kind, SOURCE, QNAME, now, '{' .. payload .. '}')
  end

  -- The id as a JSON string (ids are numbers where they come from struct, strings from Redis).
  function H.jid(id)
    if type(id) == 'number' then return string.format('"%d"', id) end
    return cjson.encode(id)
  end

  -- The head of a record that is whole and in bounds: attempts, stalls, last delay, max,
  -- lease, policy length; nil otherwise.
  function H.head(rec)
    if not rec or #rec < HDR then return nil end
    local a, s, prev, since, enq, max, lease, plen, clen =
      struct.unpack('<I4I4I8I8I8I4I8I2I2', rec)
    if #rec < HDR + plen + clen or lease < 1 or lease > MAXD or max < 1 or max > MAXA
      or a > max or s >= MAXS or prev > MAXD or since >= EXACT or enq >= EXACT then
      return nil
    end
    return a, s, prev, max, lease, plen
  end

  -- Whether the backoff policy (plen bytes after the head) is one the script can apply.
  function H.policy_ok(rec, plen)
    if plen < 2 then return false end
    local kind, jit = struct.unpack('<BB', rec, HDR + 1)
    if jit > JITTER_DECORRELATED then return false end
    if kind == POLICY_EXPONENTIAL then
      if plen ~= 26 then return false end
      local base, factor, cap = struct.unpack('<I8dI8', rec, HDR + 3)
      return cap <= MAXD and base <= cap and factor >= 1 and factor <= 100
    elseif kind == POLICY_FIXED then
      return plen == 10 and struct.unpack('<I8', rec, HDR + 3) <= MAXD
    elseif kind == POLICY_SCHEDULE then
      if plen < 12 then return false end
      local n = struct.unpack('<I2', rec, HDR + 3)
      if n < 1 or plen ~= 4 + 8 * n then return false end
      for i = 0, n - 1 do
        if struct.unpack('<I8', rec, HDR + 5 + 8 * i) > MAXD then return false end
      end
      return true
    end
    return false
  end

  -- Whether an error history (or none) decodes to its last byte.
  function H.history_ok(old)
    if not old or #old == 0 then return true end
    local pos = 2
    for _ = 1, string.byte(old, 1) do
      if pos + 13 > #old then return false end
      local _, _, len = struct.unpack('<I4I8I2', old, pos)
      pos = pos + 14 + len
    end
    return pos == #old + 1
  end

  -- The record with a new mutable head (attempts, stalls, last delay, since).
  function H.rewrite(rec, a, s, prev, since)
    return struct.pack('<I4I4I8I8c0', a, s, prev, since, string.sub(rec, 25))
  end

  -- A stand-in record for a task whose own is missing: fixed backoff 0 without jitter, 1
  -- attempt, 1 ms lease, no component, no payload.
  function H.stand_in()
    return struct.pack('<I4I4I8I8I8I4I8I2I2BBI8', 0, 0, 0, now, now, 1, 1, 10, 0, POLICY_FIXED,
      JITTER_NONE, 0)
  end

  -- The history `old` (checked by history_ok, or none) with one more error, the oldest
  -- dropped beyond the cap.
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

  -- validate: what a dead-lettering writes (dlq, dead, errors through the caps, the counter).
  function H.check_bury()
    if H.bury_checked then return end
    ck_expect_type(K_DLQ, 'zset')
    ck_expect_type(K_DEAD, 'hash')
    ck_expect_type(K_ERR, 'hash')
    ck_expect_type(K_TASKS, 'hash')
    ck_expect_type(K_LEASES, 'hash')
    ck_int(redis.call('HGET', K_INFO, 'dead'), K_INFO, 'field dead', EXACT - 1000000)
    H.bury_checked = true
  end

  -- Moves task `id` (out of its previous structure, its lease gone) to the dead-letter queue,
  -- its record rewritten (`rec` with attempts `a`, stalls `s`, last delay `prev`) or, when `a`
  -- is nil, kept as it is. Needs check_bury first.
  function H.bury(id, rec, a, s, prev, reason)
    if a then redis.call('HSET', K_TASKS, id, H.rewrite(rec, a, s, prev, now)) end
    redis.call('ZADD', K_DLQ, now, id)
    redis.call('HSET', K_DEAD, id, reason)
    redis.call('HINCRBY', K_INFO, 'dead', 1)
    H.emit('dead_lettered', string.format('"task":%s,"reason":%s,"attempts":%d,"stalls":%d',
      H.jid(id), cjson.encode(reason), a or 0, s or 0))
    H.buried = H.buried + 1
  end

  -- A task whose record cannot be used: dead-lettered as malformed, its bytes kept for an
  -- operator (a missing record gets a stand-in, so the dead letter can be listed).
  function H.bury_malformed(id, rec)
    if not rec then redis.call('HSET', K_TASKS, id, H.stand_in()) end
    H.bury(id, nil, nil, nil, nil, 'malformed')
  end

  function H.delete_dead(ids)
    if #ids == 0 then return end
    redis.call('ZREM', K_DLQ, unpack(ids))
    redis.call('HDEL', K_LEASES, unpack(ids))
    redis.call('HDEL', K_TASKS, unpack(ids))
    redis.call('HDEL', K_ERR, unpack(ids))
    redis.call('HDEL', K_DEAD, unpack(ids))
  end

  -- The dead letters past the age cap (oldest first, at most 100): read during validation,
  -- deleted by trim_dlq.
  function H.aged()
    if DLQ_AGE == 0 then return {} end
    return redis.call('ZRANGEBYSCORE', K_DLQ, '-inf', now - DLQ_AGE, 'LIMIT', 0, 100)
  end

  -- Applies the DLQ caps: deletes `aged` (from H.aged) and, after a dead-lettering, the
  -- oldest beyond the count cap (at most 100 per call).
  function H.trim_dlq(aged)
    H.delete_dead(aged)
    if H.buried > 0 and DLQ_MAX > 0 then
      local n = redis.call('ZCARD', K_DLQ)
      if n > DLQ_MAX then
        H.delete_dead(redis.call('ZRANGE', K_DLQ, 0, math.min(n - DLQ_MAX, 100) - 1))
      end
    end
  end

  -- The delay before retry number `attempt` (the attempt that just failed) of the task with
  -- record `rec` (its policy checked by policy_ok), last delay `prev`, jitter draw r in
  -- 0..65535.
  function H.backoff(rec, attempt, prev, r)
    local p = HDR + 1
    local kind, jit = struct.unpack('<BB', rec, p)
    local d, lo, cap = 0, 0, 0
    if kind == POLICY_EXPONENTIAL then
      local base, factor, c = struct.unpack('<I8dI8', rec, p + 2)
      cap = c
      d = math.min(base, cap)
      lo = d
      for _ = 2, attempt do
        if d >= cap then break end
        d = math.min(cap, math.floor(d * factor))
      end
    elseif kind == POLICY_FIXED then
      d = struct.unpack('<I8', rec, p + 2)
    else
      local n = struct.unpack('<I2', rec, p + 2)
      d = struct.unpack('<I8', rec, p + 4 + (math.min(math.max(attempt, 1), n) - 1) * 8)
    end
    if jit == JITTER_FULL then
      d = math.floor(d * r / 65536)
    elseif jit == JITTER_EQUAL then
      local h = math.floor(d / 2)
      d = h + math.floor((d - h) * r / 65536)
    elseif jit == JITTER_DECORRELATED then
      local hi = math.max(lo, prev * 3)
      d = math.min(cap, lo + math.floor((hi - lo) * r / 65536))
    end
    return d
  end

  -- The due time of the earliest delayed task, or nil (validation: reads `delayed`).
  function H.first_due()
    local first = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
    return first[2] and tonumber(first[2])
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
    tok = ck_int(redis.call('HGET', K_INFO, 'token'), K_INFO, 'field token', EXACT - 1 - n) or 0
  end
  local out = { now, next_due, next_deadline, tok + 1 }
  local leases, tokens = {}, {}
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
    -- work this claim did not take.
    if was_empty then rare().wake() end
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
  for i = 2, 3 do
    if out[i] ~= NONE and (out[i] < 0 or out[i] > now + MAXD) then out[i] = now end
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
  -- validate: leases is read; the records and histories the ops use are read and decoded (a
  -- task whose record or history cannot be used is dead-lettered as malformed, alone); then
  -- the keys the ops write are type-checked and the counters they bump decoded.
  local held = redis.call('HMGET', K_LEASES, unpack(ids))
  local emit_ok = string.byte(CFG, 1) == 1
  -- Which ops hold their lease (the first of duplicates); the records of those that are no ack
  -- (and of the acks too when `succeeded` events, which tell the attempt, are on), and of the
  -- tasks no lease is held for (gone: already settled).
  local valid, done, need, unlease, already, unheld = {}, {}, {}, {}, {}, nil
  local acks, others = 0, 0
  for i = 1, n do
    local id, h = ids[i], tonumber(held[i])
    if h == toks[i] and not done[id] then
      done[id] = true
      valid[i] = true
      unlease[#unlease + 1] = id
      if kinds[i] == OP_ACK then acks = acks + 1 else others = others + 1 end
      if kinds[i] ~= OP_ACK or emit_ok then need[#need + 1] = id end
    elseif h == toks[i] or h == -toks[i] then
      already[i] = true
    elseif not held[i] then
      unheld = unheld or {}
      unheld[#unheld + 1] = i
    end
  end
  local recs, errs = {}, {}
  local probe = need
  if unheld then
    probe = {}
    for _, id in ipairs(need) do probe[#probe + 1] = id end
    for _, i in ipairs(unheld) do probe[#probe + 1] = ids[i] end
  end
  if #probe > 0 then
    local r = redis.call('HMGET', K_TASKS, unpack(probe))
    for i, id in ipairs(probe) do recs[id] = r[i] end
    for _, i in ipairs(unheld or {}) do
      if not recs[ids[i]] then already[i] = true end
    end
  end
  if acks + others == 0 then
    local out = {}
    for i = 1, n do
      out[3 * i - 2], out[3 * i - 1], out[3 * i] = already[i] and SETTLED_ALREADY or SETTLED_LOST, 0, 0
    end
    return out
  end
  if #need > 0 then
    local e = redis.call('HMGET', K_ERR, unpack(need))
    for i, id in ipairs(need) do errs[id] = e[i] end
  else
    if #probe == 0 then ck_expect_type(K_TASKS, 'hash') end
    ck_expect_type(K_ERR, 'hash')
  end
  -- What each valid op that is no ack does: { a, s, prev } of a usable record, or false.
  local heads, burials, delays = nil, 0, 0
  if others > 0 then
    heads = {}
    local h = rare()
    for i = 1, n do
      local what, id = kinds[i], ids[i]
      if valid[i] and what ~= OP_ACK then
        local rec = recs[id]
        local a, s, prev, max, _, plen = h.head(rec)
        if a and what ~= OP_DEFER and not h.history_ok(errs[id]) then a = nil end
        if a and what == OP_FAIL and a + 1 < max and not h.policy_ok(rec, plen) then a = nil end
        if not a then
          heads[i] = false
          burials = burials + 1
        else
          heads[i] = { a, s, prev, max }
          if what == OP_DEAD_LETTER or (what == OP_FAIL and a + 1 >= max) then
            burials = burials + 1
          else
            delays = delays + 1
          end
        end
      end
    end
  end
  if acks > 0 then
    ck_int(redis.call('HGET', K_INFO, 'completed'), K_INFO, 'field completed', EXACT - n)
  end
  if burials > 0 then H.check_bury() end
  local first_due, aged = nil, nil
  if delays > 0 then first_due = H.first_due() end
  if burials > 0 then aged = H.aged() end
  -- writes: (the first one, the ZREM from `leased`, checks that key's type)
  redis.call('ZREM', K_LEASED, unpack(unlease))
  -- An ack's lease goes; any other settle leaves its token's mark.
  local gone, marks = {}, {}
  for i = 1, n do
    if valid[i] then
      if kinds[i] == OP_ACK then
        gone[#gone + 1] = ids[i]
      else
        marks[#marks + 1] = ids[i]
        marks[#marks + 1] = -toks[i]
      end
    end
  end
  if #gone > 0 then redis.call('HDEL', K_LEASES, unpack(gone)) end
  if #marks > 0 then redis.call('HSET', K_LEASES, unpack(marks)) end
  local out, acked, sets, errsets, delayed = {}, {}, {}, {}, {}
  local earliest = nil
  local spos = 6
  for i = 1, n do
    local what, id = kinds[i], ids[i]
    local text, reason = nil, nil
    if what == OP_FAIL then
      text = ARGV[spos]
      spos = spos + 1
    elseif what == OP_DEAD_LETTER then
      reason, text = ARGV[spos], ARGV[spos + 1]
      spos = spos + 2
    end
    local k = #out
    if not valid[i] then
      out[k + 1], out[k + 2], out[k + 3] = already[i] and SETTLED_ALREADY or SETTLED_LOST, 0, 0
    elseif what == OP_ACK then
      acked[#acked + 1] = id
      if emit_ok then
        local rec, a = recs[id], 0
        if rec and #rec >= 4 then a = struct.unpack('<I4', rec) end
        rare().emit('succeeded', string.format('"task":"%d","attempt":%d', id, a + 1))
      end
      out[k + 1], out[k + 2], out[k + 3] = SETTLED_ACKED, 0, 0
    else
      local h = H
      local rec, head = recs[id], heads[i]
      if not head then
        h.bury_malformed(id, rec)
        out[k + 1], out[k + 2], out[k + 3] = SETTLED_DEAD_LETTERED, 0, 0
      else
        local a, s, prev, max = head[1], head[2], head[3], head[4]
        if what == OP_DEAD_LETTER then
          errs[id] = h.with_error(errs[id], a + 1, text)
          errsets[#errsets + 1] = id
          errsets[#errsets + 1] = errs[id]
          h.bury(id, rec, a, s, prev, reason)
          out[k + 1], out[k + 2], out[k + 3] = SETTLED_DEAD_LETTERED, a, 0
        else
          local delay
          if what == OP_FAIL then
            a = a + 1
            errs[id] = h.with_error(errs[id], a, text)
            errsets[#errsets + 1] = id
            errsets[#errsets + 1] = errs[id]
            if a >= max then
              h.bury(id, rec, a, s, prev, 'exhausted')
              out[k + 1], out[k + 2], out[k + 3] = SETTLED_DEAD_LETTERED, a, 0
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
            if what == OP_FAIL then
              h.emit('retry_scheduled', string.format(
                '"task":"%d","attempt":%d,"delay_ms":%d,"due_ms":%d', id, a, delay, due))
              out[k + 1], out[k + 2], out[k + 3] = SETTLED_RETRYING, a, due
            else
              out[k + 1], out[k + 2], out[k + 3] = SETTLED_DEFERRED, a, due
            end
          end
        end
      end
    end
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
    -- Wake the sleepers when a retry is now the first task due.
    if not first_due or earliest <= first_due then H.wake() end
  end
  if aged then H.trim_dlq(aged) end
  return out
end

if op == 'enqueue' then
  local n, nums = tonumber(ARGV[4]), ARGV[5]
  local kpos = 6 + n
  -- validate: idem and idem_exp are read when keys are in use (an entry that does not decode
  -- counts as expired and is replaced), the id sequence is decoded, ready and delayed are read
  -- when written; tasks is checked by the first write.
  local old, held = nil, nil
  if #ARGV >= kpos then
    old = redis.call('ZRANGEBYSCORE', K_IDEMX, '-inf', now, 'LIMIT', 0, 100)
    local keys = {}
    for i = kpos, #ARGV do keys[#keys + 1] = ARGV[i] end
    held = redis.call('HMGET', K_IDEM, unpack(keys))
  end
  local seq = ck_int(redis.call('HGET', K_INFO, 'seq'), K_INFO, 'field seq', EXACT - 1 - n) or 0
  local out, sets, ready, delayed = { seq + 1 }, {}, {}, {}
  local earliest = nil
  local pos, delay, ttl = 1, 0, 0
  -- Keys taken by this batch (a later duplicate in it answers the first), and their entries.
  local k, mine, claims = 0, nil, nil
  for i = 1, n do
    seq = seq + 1
    delay, ttl, pos = struct.unpack('<I8I8', nums, pos)
    local dup = nil
    if ttl > 0 then
      k = k + 1
      local key = ARGV[kpos + k - 1]
      mine, claims = mine or {}, claims or {}
      dup = mine[key]
      local v = held[k]
      if not dup and v and #v == 16 then
        local vid, exp = struct.unpack('<I8I8', v)
        if exp > now and vid < EXACT then dup = vid end
      end
      if not dup then
        mine[key] = seq
        claims[#claims + 1] = { key, seq, now + ttl }
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
  local was_empty, first_due = false, nil
  if #ready > 0 then was_empty = redis.call('LLEN', K_READY) == 0 end
  if #delayed > 0 then first_due = rare().first_due() end
  -- writes: (the first one, the records' HSET, checks the type of `tasks`)
  if #sets > 0 then redis.call('HSET', K_TASKS, unpack(sets)) end
  if old and #old > 0 then
    redis.call('ZREM', K_IDEMX, unpack(old))
    redis.call('HDEL', K_IDEM, unpack(old))
  end
  for _, c in ipairs(claims or {}) do
    redis.call('HSET', K_IDEM, c[1], struct.pack('<I8I8', c[2], c[3]))
    redis.call('ZADD', K_IDEMX, c[3], c[1])
  end
  redis.call('HINCRBY', K_INFO, 'seq', n)
  if #ready > 0 then
    redis.call('LPUSH', K_READY, unpack(ready))
    if was_empty then rare().wake() end
  end
  if #delayed > 0 then
    redis.call('ZADD', K_DELAYED, unpack(delayed))
    if not first_due or earliest <= first_due then H.wake() end
  end
  return out
end

local h = rare()

if op == 'extend' then
  local id, tok = ARGV[4], tonumber(ARGV[5])
  -- validate: leases is read; the task's own lease (when used) must be in bounds; leased is
  -- checked by the only write.
  local held = redis.call('HGET', K_LEASES, id)
  if not held or tonumber(held) ~= tok then return NONE end
  local ms = tonumber(ARGV[6])
  if ms == nil then
    local a, _, _, _, lease = h.head(redis.call('HGET', K_TASKS, id))
    if not a then return NONE end
    ms = lease
  end
  -- writes:
  redis.call('ZADD', K_LEASED, 'XX', now + ms, id)
  return now + ms
end

if op == 'make_due' then
  -- validate: delayed and tasks are read, ready type-checked. A record that cannot be used
  -- moves as it is (the claim dead-letters it, its bytes kept).
  local given, seen = {}, {}
  for i = 4, #ARGV do
    if not seen[ARGV[i]] then
      seen[ARGV[i]] = true
      given[#given + 1] = ARGV[i]
    end
  end
  if #given == 0 then return {} end
  local scores = redis.call('ZMSCORE', K_DELAYED, unpack(given))
  local ids = {}
  for i, id in ipairs(given) do
    if scores[i] then ids[#ids + 1] = id end
  end
  if #ids == 0 then return {} end
  local recs = redis.call('HMGET', K_TASKS, unpack(ids))
  ck_expect_type(K_READY, 'list')
  local was_empty = redis.call('LLEN', K_READY) == 0
  local sets = {}
  for i, id in ipairs(ids) do
    local a, s, prev = h.head(recs[i])
    if a then
      sets[#sets + 1] = id
      sets[#sets + 1] = h.rewrite(recs[i], a, s, prev, now)
    end
  end
  -- writes:
  redis.call('ZREM', K_DELAYED, unpack(ids))
  if #sets > 0 then redis.call('HSET', K_TASKS, unpack(sets)) end
  redis.call('LPUSH', K_READY, unpack(ids))
  if was_empty then h.wake() end
  return ids
end

if op == 'stats' then
  local ready = redis.call('LLEN', K_READY)
  local info = redis.call('HMGET', K_INFO, 'completed', 'dead')
  local completed = ck_int(info[1], K_INFO, 'field completed', EXACT) or 0
  local dead = ck_int(info[2], K_INFO, 'field dead', EXACT) or 0
  local oldest = NONE
  if ready > 0 then
    local rec = redis.call('HGET', K_TASKS, redis.call('LINDEX', K_READY, -1))
    if h.head(rec) then oldest = struct.unpack('<I8', rec, 17) end
  end
  local d = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
  return { ready, redis.call('ZCARD', K_DELAYED), redis.call('ZCARD', K_LEASED),
           redis.call('ZCARD', K_DLQ), completed, dead, oldest, now,
           d[2] and tonumber(d[2]) or NONE }
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
  return { state, score and tonumber(score) or NONE, rec, redis.call('HGET', K_ERR, id) or '',
           redis.call('HGET', K_DEAD, id) or '' }
end

if op == 'requeue' then
  local reset = ARGV[4] == '1'
  -- validate: dlq and tasks are read, dead, errors and ready type-checked. A record that cannot
  -- be used is requeued as it is (the claim dead-letters it again, its bytes kept).
  local ids = h.dead_ids(tonumber(ARGV[5]), 6)
  if #ids == 0 then return {} end
  local recs = redis.call('HMGET', K_TASKS, unpack(ids))
  ck_expect_type(K_DEAD, 'hash')
  ck_expect_type(K_ERR, 'hash')
  ck_expect_type(K_LEASES, 'hash')
  local was_empty = redis.call('LLEN', K_READY) == 0
  local sets = {}
  for i, id in ipairs(ids) do
    local rec = recs[i]
    local a, _, prev, max = h.head(rec)
    if a then
      if reset then
        a, prev = 0, 0
      elseif a >= max then
        a = max - 1
      end
      sets[#sets + 1] = id
      sets[#sets + 1] = h.rewrite(rec, a, 0, prev, now)
    elseif not rec then
      sets[#sets + 1] = id
      sets[#sets + 1] = h.stand_in()
    end
  end
  -- writes:
  for _, id in ipairs(ids) do
    h.emit('requeued', string.format('"task":%s,"reset":%s', h.jid(id), reset and 'true' or 'false'))
  end
  redis.call('ZREM', K_DLQ, unpack(ids))
  redis.call('HDEL', K_DEAD, unpack(ids))
  redis.call('HDEL', K_LEASES, unpack(ids))
  if reset then redis.call('HDEL', K_ERR, unpack(ids)) end
  if #sets > 0 then redis.call('HSET', K_TASKS, unpack(sets)) end
  redis.call('LPUSH', K_READY, unpack(ids))
  if was_empty then h.wake() end
  return ids
end

if op == 'purge' then
  -- validate: dlq is read; tasks, leases, errors and dead type-checked.
  local ids = h.dead_ids(tonumber(ARGV[4]), 5)
  if #ids > 0 then
    ck_expect_type(K_TASKS, 'hash')
    ck_expect_type(K_LEASES, 'hash')
    ck_expect_type(K_ERR, 'hash')
    ck_expect_type(K_DEAD, 'hash')
  end
  -- writes:
  h.delete_dead(ids)
  return #ids
end

return ck_fail('BADOP', op)
