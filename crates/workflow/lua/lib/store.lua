-- coordkit-workflow: what every script of a store shares (lua/lib/store.lua), put in front of
-- each operation's file by src/scripts.rs.
--
-- One store is one hash tag: its records and every index live in these keys, so a script keeps
-- them all consistent in one step.
--
-- KEYS[1]  records   hash: <id> -> header (HEAD below); '<id> i' -> input; '<id> o' -> result
--                    or error; '<id> t' -> type; '<id> c<n>' -> the n-th checkpoint (4-byte LE
--                    step, then the output), n = 1..checkpoints
-- KEYS[2]  active    zset: pending and running ids by created ms (restore pages it)
-- KEYS[3]  pending   zset: pending ids by created ms (claims take the oldest first)
-- KEYS[4]  leases    zset: running ids by lease deadline ms (may lag behind the header, which
--                    wins: a live lease met there is re-scored)
-- KEYS[5]  completed zset: ids by finish ms, at most KEEP
-- KEYS[6]  failed    zset: the same
-- KEYS[7]  cancelled zset: the same
-- KEYS[8]  types     zset: '<type> <id>', score 0 (lexicographic pages by type)
-- KEYS[9]  expiry    zset: ids by the deadline of their TTL (may lag behind the header's, which
--                    wins: an entry met early is re-scored)
-- ARGV[1]  now_ms ('' = server time)
-- (A script that reads only the records, `step`, is given KEYS[1] alone.)
-- ARGV[2]  settings: active TTL ms, finished TTL ms, KEEP, SWEEP (<I8I8I8I4), then the store's
--          name and the channel prefix (each <I2 length + bytes)
local K_RECORDS, K_ACTIVE, K_PENDING, K_LEASES = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_TYPES, K_EXPIRY = KEYS[8], KEYS[9]
local K_DONE = { [3] = KEYS[5], [4] = KEYS[6], [5] = KEYS[7] }
-- The time as text too (TIME's fields put together): scripts write it into scores and
-- events as it is, turning no number into text.
local NOW_S = ck_now_text(ARGV[1])
local NOW = tonumber(NOW_S)
local ACTIVE_TTL, FINISHED_TTL, KEEP, SWEEP, NAME, CHANNELS =
  struct.unpack('<I8I8I8I4I2c0I2c0', ARGV[2])

local PENDING, RUNNING, COMPLETED, FAILED, CANCELLED = 1, 2, 3, 4, 5
local OK, LEASE_LOST, STEP_DONE, FINISHED, NOT_FOUND, BUSY, EXISTS, SKIPPED, FULL =
  1, 2, 3, 4, 5, 6, 7, 8, 9
local SOURCE = 'workflow'
local MAX = 9007199254740991
local MAX_CHECKPOINTS = 100000
local STATUS_NAMES = { 'pending', 'running', 'completed', 'failed', 'cancelled' }

-- The header: status, step, checkpoints, token, lease deadline, created, started, updated,
-- finished, expires, claims, type, owner.
local HEAD = '<BI4I4I8I8I8I8I8I8I8I4I2c0I2c0'

-- Whether `s` is UTF-8 (as Rust reads a header's type and owner): ASCII at once, else each
-- sequence checked (no overlong forms, no surrogates, nothing past U+10FFFF).
local function utf8_ok(s)
  if not string.find(s, '[\128-\255]') then return true end
  local i, n = 1, #s
  while i <= n do
    local c = string.byte(s, i)
    local len, lo, hi = 1, 0x80, 0xBF
    if c >= 0xC2 and c <= 0xDF then len = 2
    elseif c >= 0xE0 and c <= 0xEF then
      len = 3
      if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F end
    elseif c >= 0xF0 and c <= 0xF4 then
      len = 4
      if c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
    elseif c >= 0x80 then return false end
    for k = 1, len - 1 do
      local b = string.byte(s, i + k)
      if not b or b < (k == 1 and lo or 0x80) or b > (k == 1 and hi or 0xBF) then
        return false
      end
    end
    i = i + len
  end
  return true
end

-- The record `h` of `id` as a table, or nil when it is not a header this version wrote.
local function decode(h)
  local ok, st, step, ncp, token, lease, created, started, updated, finished, expires, claims,
    typ, owner, pos = pcall(struct.unpack, HEAD, h)
  if not ok or pos ~= #h + 1 or st < 1 or st > 5 or token > MAX or lease > MAX
    or created > MAX or started > MAX or updated > MAX or finished > MAX or expires > MAX
    or ncp > step or ncp > MAX_CHECKPOINTS or #typ == 0 or not utf8_ok(typ)
    or not utf8_ok(owner) then
    return nil
  end
  return { st = st, step = step, ncp = ncp, token = token, lease = lease, created = created,
    started = started, updated = updated, finished = finished, expires = expires,
    claims = claims, typ = typ, owner = owner }
end

local function encode(r)
  return struct.pack(HEAD, r.st, r.step, r.ncp, r.token, r.lease, r.created, r.started,
    r.updated, r.finished, r.expires, r.claims, #r.typ, r.typ, #r.owner, r.owner)
end

-- The header of `id`: nil when absent, the record, or the CORRUPT failure naming the key.
local function load(id)
  local h = redis.call('HGET', K_RECORDS, id)
  if not h then return nil end
  local r = decode(h)
  if not r then ck_corrupt(K_RECORDS, 'the header of workflow ' .. id .. ' does not decode') end
  return r
end

-- The event of `r`; `step` and `token` are r.step and r.token as text when the caller has
-- them so (an argument), else they are turned into text here.
local function emit(kind, id, r, step, token)
  redis.call('PUBLISH', CHANNELS .. kind, ck_envelope(kind, SOURCE, NAME, NOW_S,
    '{"id":"' .. id .. '","type":"' .. r.typ .. '","status":"' .. STATUS_NAMES[r.st]
    .. '","step":' .. (step or string.format('%d', r.step)) .. ',"token":'
    .. (token or string.format('%d', r.token)) .. ',"owner":"' .. r.owner .. '"}'))
end

-- Type checks of keys a path writes without reading first (before its first write); a key
-- is checked once a call, and a path marks the keys it read (a read of a key of another type
-- fails already).
local CHECKED = {}
local function expect_zsets(...)
  for _, k in ipairs({ ... }) do
    if not CHECKED[k] then
      ck_expect_type(k, 'zset')
      CHECKED[k] = true
    end
  end
end

-- The indexes a record of status `st` is in (every one when its status is unknown).
local function indexes_of(st)
  if st == PENDING then return { K_ACTIVE, K_PENDING, K_EXPIRY } end
  if st == RUNNING then return { K_ACTIVE, K_LEASES, K_EXPIRY } end
  if st then return { K_DONE[st], K_EXPIRY } end
  return { K_ACTIVE, K_PENDING, K_LEASES, K_DONE[3], K_DONE[4], K_DONE[5], K_EXPIRY }
end

-- Deleting records: plan (reads, before any write), then apply (writes). `plan` is a list
-- with a `seen` set (each record is planned once) and `keys`, the set of indexes the deletions
-- write. A plan entry is { id, type (or false), checkpoints, indexes }. `r` is the record's
-- header, or nil when it has none (a record whose header does not decode is never deleted:
-- callers skip and name it); without one, its leftover fields and every index are cleaned,
-- the checkpoint fields found by probing, PROBES at most a call.
-- `met` is the index the id was met in (cleaned even when the header says another status).
local PROBES = 1000
local function plan_delete(plan, id, r, met)
  if plan.seen[id] then return end
  plan.seen[id] = true
  local typ, n, st = false, 0, nil
  if r then
    typ, n, st = r.typ, r.ncp, r.st
  else
    typ = redis.call('HGET', K_RECORDS, id .. ' t')
    while PROBES > 0 and redis.call('HEXISTS', K_RECORDS, id .. ' c' .. (n + 1)) == 1 do
      PROBES = PROBES - 1
      n = n + 1
    end
  end
  local indexes = indexes_of(st)
  local has_met = not met
  for _, k in ipairs(indexes) do
    plan.keys[k] = true
    if k == met then has_met = true end
  end
  if not has_met then
    indexes[#indexes + 1] = met
    plan.keys[met] = true
  end
  if typ then plan.keys[K_TYPES] = true end
  plan[#plan + 1] = { id, typ, n, indexes }
end

local function apply_delete(plan)
  for _, p in ipairs(plan) do
    local id, typ, n = p[1], p[2], p[3]
    -- The record's fields, the checkpoints a thousand a call (unpack takes a few thousand).
    local fields = { id, id .. ' i', id .. ' o', id .. ' t' }
    for i = 1, n do
      fields[#fields + 1] = id .. ' c' .. i
      if #fields == 1000 then
        redis.call('HDEL', K_RECORDS, unpack(fields))
        fields = {}
      end
    end
    if #fields > 0 then redis.call('HDEL', K_RECORDS, unpack(fields)) end
    for _, k in ipairs(p[4]) do redis.call('ZREM', k, id) end
    if typ then redis.call('ZREM', K_TYPES, typ .. ' ' .. id) end
  end
end

-- ZADD of `pairs` (score, member, ...) to `key`, a thousand values a call (unpack takes a few
-- thousand at most).
local function zadd_pairs(key, pairs)
  for from = 1, #pairs, 1000 do
    redis.call('ZADD', key, unpack(pairs, from, math.min(#pairs, from + 999)))
  end
end

-- The sweep: up to `limit` entries of `expiry` whose deadline passed. Plans the deletion of
-- the records whose header agrees, and the re-scoring of those whose header says later. A
-- record whose header does not decode is left as it is and named in `skipped`; its entry is
-- re-scored an active TTL on, so the sweep meets it again only then.
local function plan_sweep(plan, rescore, limit, skipped)
  local ids = redis.call('ZRANGEBYSCORE', K_EXPIRY, '-inf', NOW, 'LIMIT', 0, limit)
  CHECKED[K_EXPIRY] = true
  for _, id in ipairs(ids) do
    local h = redis.call('HGET', K_RECORDS, id)
    local r = h and decode(h)
    if h and not r then
      skipped[#skipped + 1] = id
      rescore[#rescore + 1] = NOW + ACTIVE_TTL
      rescore[#rescore + 1] = id
    elseif r and r.expires > NOW then
      rescore[#rescore + 1] = r.expires
      rescore[#rescore + 1] = id
    else
      plan_delete(plan, id, r, K_EXPIRY)
    end
  end
end

-- The type checks of a path: the indexes it names, and those its deletions write.
local function expect_writes(plan, ...)
  expect_zsets(...)
  for k in pairs(plan.keys) do expect_zsets(k) end
end
