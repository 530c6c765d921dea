-- context read: the whole entity or some of its fields, in one call.
--
-- KEYS[1] the entity's data hash
-- KEYS[2] the entity's history list (see write.lua; its expiry is refreshed with the data's)
-- ARGV[1] now_ms: "" for the server clock, or a manual time
-- ARGV[2] idle ttl in ms to refresh on this read (NO_REFRESH: do not refresh)
-- ARGV[3 ..] the fields to read; none means every field
-- Returns: a flat array: the four meta values (__version, __updated_ms, __updated_by,
--          __expires_ms; false when missing), the version a compare-and-set must name now (the
--          data's, else the last in the history, 0 after an idle expiry), then, with no fields
--          asked, every field, value pair of the hash (meta fields included, the caller skips
--          them); with fields asked, one value (or false) per asked field. An entity past its
--          idle expiry reads as empty.
-- Errors: WRONGTYPE naming a key of another type; CORRUPT naming the data hash when a stamp is
--         not a whole number in 0..2^53-1 (or __updated_ms is missing beside __version), or the
--         history when its newest entry carries no version. Nothing is refreshed then.
-- The numbers shared with the Rust, named the same in its `code` module (src/code.rs); MAX is
-- `MAX_STORED` in src/wire.rs.
local NO_REFRESH = 0
local MAX = 9007199254740991
local now = ck_now(ARGV[1])
-- validate: the data hash's type (HMGET fails on another type) and stamps; the history's type
-- and newest entry when the data has no version; the history's type before a refresh.
local meta = redis.call('HMGET', KEYS[1], '__version', '__updated_ms', '__updated_by',
  '__expires_ms')
local version = ck_int(meta[1], KEYS[1], '__version', MAX)
ck_int(meta[2], KEYS[1], '__updated_ms', MAX)
local expires = ck_int(meta[4], KEYS[1], '__expires_ms', MAX) or 0
if version and not meta[2] then ck_corrupt(KEYS[1], '__updated_ms is missing') end
if expires > 0 and expires <= now then
  return { false, false, false, false, 0 }
end
local current = version or 0
if current == 0 then
  local last = redis.call('LINDEX', KEYS[2], -1)
  if last then
    local v = string.match(last, '"v":(%d+),"ts":%d+}$')
    if not v then
      ck_corrupt(KEYS[2], 'the newest entry does not end with ,"v":<version>,"ts":<ms>}')
    end
    current = ck_int(v, KEYS[2], 'the newest entry\'s version', MAX)
  end
end
local ttl = tonumber(ARGV[2])
local refresh = ttl ~= NO_REFRESH and meta[1]
if refresh then ck_expect_type(KEYS[2], 'list') end
-- writes: the refreshed expiry.
if refresh then
  redis.call('HSET', KEYS[1], '__expires_ms', now + ttl)
  meta[4] = tostring(now + ttl)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
local out = { meta[1], meta[2], meta[3], meta[4], current }
if #ARGV <= 2 then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all do out[#out + 1] = all[i] end
else
  local fields = {}
  for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
  local values = redis.call('HMGET', KEYS[1], unpack(fields))
  for i = 1, #fields do out[#out + 1] = values[i] end
end
return out
