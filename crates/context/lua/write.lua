-- context write: a partial update, field deletions, or the deletion of the whole entity, with a
-- new version, stamps, a history entry and a change event, all at once.
--
-- KEYS[1] the entity's data hash (user fields + __version, __updated_ms, __updated_by,
--         __expires_ms)
-- KEYS[2] the entity's history sorted set (score = version, member = JSON change)
-- ARGV[1]  now_ms: "" for the server clock, or a manual time
-- ARGV[2]  expected version: "" for none; otherwise the write fails unless it is current
-- ARGV[3]  actor
-- ARGV[4]  mode: "update" or "delete_entity"
-- ARGV[5]  idle ttl in ms ("0": no expiry)
-- ARGV[6]  history length (entries kept)
-- ARGV[7]  tombstone ttl in ms: how long the history of a deleted entity is kept
-- ARGV[8]  event channel
-- ARGV[9]  entity name for the event ("<kind>:<id>")
-- ARGV[10] n: the number of fields to set
-- ARGV[11 .. 10+2n] field, value pairs to set
-- ARGV[11+2n ..]   fields to delete
-- Returns: the new version.
-- Errors: CONFLICT <current version> when ARGV[2] is not the current version;
--         Redis's WRONGTYPE, before any write, when a key holds another type.
local now = ck_now(ARGV[1])

-- Both keys are read before any write, so Redis itself rejects a key of the wrong type
-- (WRONGTYPE) while nothing has been written yet.
local meta = redis.call('HMGET', KEYS[1], '__version', '__expires_ms')
local kept = redis.call('ZCARD', KEYS[2])

-- An entity past its idle expiry is gone, whatever the server's own expiry says yet.
local expires = tonumber(meta[2] or '0')
if expires > 0 and expires <= now then
  redis.call('DEL', KEYS[1], KEYS[2])
  meta = { false, false }
  kept = 0
  expires = 0
end

local current = tonumber(meta[1] or '0')
local tombstone = current == 0 and kept > 0
if tombstone then
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  current = tonumber(last[2])
end
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= current then
  return ck_fail('CONFLICT', tostring(current))
end

local version = current + 1
local actor = ARGV[3]
local mode = ARGV[4]
local ttl = tonumber(ARGV[5])
local n_set = tonumber(ARGV[10])
local set_values = {}
local set_names = {}
local hset = {}
for i = 0, n_set - 1 do
  local field, value = ARGV[11 + 2 * i], ARGV[12 + 2 * i]
  set_values[field] = value
  set_names[#set_names + 1] = field
  hset[#hset + 1] = field
  hset[#hset + 1] = value
end
local deleted = {}
for i = 11 + 2 * n_set, #ARGV do
  deleted[#deleted + 1] = ARGV[i]
end

local gone = mode == 'delete_entity'
if gone then
  redis.call('DEL', KEYS[1])
else
  if #deleted > 0 then
    redis.call('HDEL', KEYS[1], unpack(deleted))
  end
  hset[#hset + 1] = '__version'
  hset[#hset + 1] = version
  hset[#hset + 1] = '__updated_ms'
  hset[#hset + 1] = now
  hset[#hset + 1] = '__updated_by'
  hset[#hset + 1] = actor
  if ttl > 0 then
    hset[#hset + 1] = '__expires_ms'
    hset[#hset + 1] = now + ttl
  end
  redis.call('HSET', KEYS[1], unpack(hset))
  if ttl <= 0 and expires > 0 then
    redis.call('HDEL', KEYS[1], '__expires_ms')
  end
end

local entry = cjson.encode({ v = version, ts = now, by = actor, set = set_values,
  del = deleted, gone = gone })
redis.call('ZADD', KEYS[2], version, entry)
local history_len = tonumber(ARGV[6])
if kept + 1 > history_len then
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(history_len + 1))
end

if gone then
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[7]))
elseif ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
elseif expires > 0 or tombstone then
  -- It had an expiry (an idle TTL, or a deleted entity's tombstone) and has none now.
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[2])
end

ck_emit(ARGV[8], 'changed', 'ctx', ARGV[9], now, { version = version, changed = set_names,
  deleted = deleted, entity_deleted = gone, actor = actor })
return version
