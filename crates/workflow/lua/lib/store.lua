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
-- KEYS[10] counts    hash: '<status>:<type>' -> number of records
-- ARGV[1]  now_ms ('' = server time)
-- ARGV[2]  settings: active TTL ms, finished TTL ms, KEEP, SWEEP (<I8I8I8I4), then the store's
--          name and the channel prefix (each <I2 length + bytes)
local K_RECORDS, K_ACTIVE, K_PENDING, K_LEASES = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_TYPES, K_EXPIRY, K_COUNTS = KEYS[8], KEYS[9], KEYS[10]
local K_DONE = { [3] = KEYS[5], [4] = KEYS[6], [5] = KEYS[7] }
local NOW = ck_now(ARGV[1])
local ACTIVE_TTL, FINISHED_TTL, KEEP, SWEEP, NAME, CHANNELS =
  struct.unpack('<I8I8I8I4I2c0I2c0', ARGV[2])

local PENDING, RUNNING, COMPLETED, FAILED, CANCELLED = 1, 2, 3, 4, 5
local OK, LEASE_LOST, STEP_DONE, FINISHED, NOT_FOUND, BUSY, EXISTS, SKIPPED = 1, 2, 3, 4, 5, 6, 7, 8
local SOURCE = 'workflow'
local MAX = 9007199254740991
local MAX_CHECKPOINTS = 100000
local STATUS_NAMES = { 'pending', 'running', 'completed', 'failed', 'cancelled' }

-- The header: status, step, checkpoints, token, lease deadline, created, started, updated,
-- finished, expires, claims, type, owner.
local HEAD = '<BI4I4I8I8I8I8I8I8I8I4I2c0I2c0'

-- The record `h` of `id` as a table, or nil when it is not a header this version wrote.
local function decode(h)
  local ok, st, step, ncp, token, lease, created, started, updated, finished, expires, claims,
    typ, owner, pos = pcall(struct.unpack, HEAD, h)
  if not ok or pos ~= #h + 1 or st < 1 or st > 5 or token > MAX or lease > MAX
    or created > MAX or started > MAX or updated > MAX or finished > MAX or expires > MAX
    or ncp > step or ncp > MAX_CHECKPOINTS or #typ == 0 then
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

local function emit(kind, id, r)
  redis.call('PUBLISH', CHANNELS .. kind, ck_envelope(kind, SOURCE, NAME, NOW,
    '{"id":"' .. id .. '","type":"' .. r.typ .. '","status":"' .. STATUS_NAMES[r.st]
    .. '","step":' .. r.step .. ',"token":' .. string.format('%d', r.token) .. ',"owner":"'
    .. r.owner .. '"}'))
end

-- Count changes: deltas['<status>:<type>'] = n, read (validated) by counts_read before the
-- first write and written by counts_write.
local function count(deltas, st, typ, n)
  local f = st .. ':' .. typ
  deltas[f] = (deltas[f] or 0) + n
end

local function counts_read(deltas)
  local fields = {}
  for f in pairs(deltas) do fields[#fields + 1] = f end
  if #fields == 0 then return nil end
  local values = redis.call('HMGET', K_COUNTS, unpack(fields))
  local set = {}
  for i, f in ipairs(fields) do
    local v = (ck_int(values[i], K_COUNTS, f, MAX) or 0) + deltas[f]
    if v < 0 then v = 0 end
    set[#set + 1] = f
    set[#set + 1] = v
  end
  return set
end

local function counts_write(set)
  if set then redis.call('HSET', K_COUNTS, unpack(set)) end
end

-- Type checks of keys a path writes without reading first (before its first write).
local function expect_zsets(...)
  for _, k in ipairs({ ... }) do ck_expect_type(k, 'zset') end
end

-- Deleting records: plan (reads, before any write), then apply (writes). `plan` is a list
-- with a `seen` set (each record is planned once). A plan entry is
-- { id, r } for a record that decodes, { id, nil, typ } for one that does not (its checkpoint
-- fields are found by probing), { id, false } for an index entry whose record is gone.
local function plan_delete(plan, deltas, id, r)
  if plan.seen[id] then return end
  plan.seen[id] = true
  if r then
    count(deltas, r.st, r.typ, -1)
    plan[#plan + 1] = { id, r, r.typ, r.ncp }
    return
  end
  local fields = redis.call('HMGET', K_RECORDS, id, id .. ' t')
  if not fields[1] then
    plan[#plan + 1] = { id, false, fields[2], 0 }
    return
  end
  local n = 0
  while n < MAX_CHECKPOINTS and redis.call('HEXISTS', K_RECORDS, id .. ' c' .. (n + 1)) == 1 do
    n = n + 1
  end
  plan[#plan + 1] = { id, nil, fields[2], n }
end

local function apply_delete(plan)
  for _, p in ipairs(plan) do
    local id, typ, n = p[1], p[3], p[4]
    redis.call('HDEL', K_RECORDS, id, id .. ' i', id .. ' o', id .. ' t')
    -- The checkpoints, a thousand fields a call (unpack takes a few thousand at most).
    for from = 1, n, 1000 do
      local fields = {}
      for i = from, math.min(n, from + 999) do fields[#fields + 1] = id .. ' c' .. i end
      redis.call('HDEL', K_RECORDS, unpack(fields))
    end
    for _, k in ipairs({ K_ACTIVE, K_PENDING, K_LEASES, K_DONE[3], K_DONE[4], K_DONE[5],
      K_EXPIRY }) do
      redis.call('ZREM', k, id)
    end
    if typ then redis.call('ZREM', K_TYPES, typ .. ' ' .. id) end
  end
end

-- The sweep: up to `limit` entries of `expiry` whose deadline passed. Plans the deletion of
-- the records whose header agrees, and the re-scoring of those whose header says later.
local function plan_sweep(plan, deltas, rescore, limit)
  local ids = redis.call('ZRANGEBYSCORE', K_EXPIRY, '-inf', NOW, 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do
    local h = redis.call('HGET', K_RECORDS, id)
    local r = h and decode(h)
    if r and r.expires > NOW then
      rescore[#rescore + 1] = r.expires
      rescore[#rescore + 1] = id
    else
      plan_delete(plan, deltas, id, r)
    end
  end
end

-- The type checks of a path: every index when it deletes records (`plan`), else the indexes
-- it names.
local function expect_writes(plan, ...)
  if #plan > 0 then
    expect_zsets(K_ACTIVE, K_PENDING, K_LEASES, K_DONE[3], K_DONE[4], K_DONE[5], K_TYPES,
      K_EXPIRY)
  else
    expect_zsets(...)
  end
end
