-- context write: a partial update, field deletions, or the deletion of the whole entity, with a
-- new version, stamps, a history entry and a change event, all at once.
--
-- KEYS[1] the entity's data hash (user fields + __version, __updated_ms, __updated_by,
--         __expires_ms)
-- KEYS[2] the entity's history sorted set (score = version, member = JSON change)
-- ARGV[1] now_ms: "" for the server clock, or a manual time
-- ARGV[2] six big-endian doubles (struct '>dddddd'): expected version (-1: none; otherwise the
--         write fails unless it is the current version), mode (0 update, 1 delete the entity),
--         idle ttl ms (0: no expiry), history length, tombstone ttl ms (how long a deleted
--         entity's history is kept), n = the number of fields to set
-- ARGV[3] actor
-- ARGV[4] event channel
-- ARGV[5] the history entry, JSON without its version and time: '{"by":…,"set":…,"del":…,
--         "gone":…' (the script appends ',"v":<version>,"ts":<now>}')
-- ARGV[6] the event envelope up to its time: '{"kind":"changed",…,"ts_ms":'
-- ARGV[7] the envelope from its time to its version: ',"payload":{…,"version":' (the script
--         writes <now> before it and <version>}} after it)
-- ARGV[8 .. 7+2n] field, value pairs to set
-- ARGV[8+2n ..]   fields to delete
-- Returns: the new version.
-- Errors: CONFLICT <current version> when the expected version is not the current one;
--         Redis's WRONGTYPE, before any write, when a key holds another type.
-- The JSON parts come encoded from the caller: building strings in Lua is what costs a script
-- most of its time.
local now = ck_now(ARGV[1])
local expected, mode, ttl, history_len, tombstone_ms, n_set =
  struct.unpack('>dddddd', ARGV[2])

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
if expected >= 0 and expected ~= current then
  return ck_fail('CONFLICT', string.format('%d', current))
end

local version = current + 1
local first_del = 8 + 2 * n_set
local gone = mode == 1
if gone then
  redis.call('DEL', KEYS[1])
else
  if #ARGV >= first_del then
    redis.call('HDEL', KEYS[1], unpack(ARGV, first_del, #ARGV))
  end
  local hset = { '__version', version, '__updated_ms', now, '__updated_by', ARGV[3] }
  for i = 8, first_del - 1 do hset[#hset + 1] = ARGV[i] end
  if ttl > 0 then
    hset[#hset + 1] = '__expires_ms'
    hset[#hset + 1] = now + ttl
  elseif expires > 0 then
    redis.call('HDEL', KEYS[1], '__expires_ms')
  end
  redis.call('HSET', KEYS[1], unpack(hset))
end

redis.call('ZADD', KEYS[2], version, ARGV[5] .. ',"v":' .. version .. ',"ts":' .. now .. '}')
if kept + 1 > history_len then
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(history_len + 1))
end

if gone then
  redis.call('PEXPIRE', KEYS[2], tombstone_ms)
elseif ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
elseif expires > 0 or tombstone then
  -- It had an expiry (an idle TTL, or a deleted entity's tombstone) and has none now.
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[2])
end

redis.call('PUBLISH', ARGV[4], ARGV[6] .. now .. ARGV[7] .. version .. '}}')
return version
