-- context read: the whole entity or some of its fields, in one call.
--
-- KEYS[1] the entity's data hash
-- KEYS[2] the entity's history list (see write.lua; its expiry is refreshed with the data's)
-- ARGV[1] now_ms: "" for the server clock, or a manual time
-- ARGV[2] idle ttl in ms to refresh on this read ("0": do not refresh)
-- ARGV[3 ..] the fields to read; none means every field
-- Returns: a flat array: the four meta values (__version, __updated_ms, __updated_by,
--          __expires_ms; false when missing), the version a compare-and-set must name now (the
--          data's, else the last in the history, 0 after an idle expiry), then, with no fields asked, every field, value
--          pair of the hash (meta fields included, the caller skips them); with fields asked,
--          one value (or false) per asked field. An entity past its idle expiry reads as empty.
ck_expect_type(KEYS[1], 'hash')
ck_expect_type(KEYS[2], 'list')
local now = ck_now(ARGV[1])
local meta = redis.call('HMGET', KEYS[1], '__version', '__updated_ms', '__updated_by',
  '__expires_ms')
local expires = tonumber(meta[4] or '0')
if expires > 0 and expires <= now then
  return { false, false, false, false, 0 }
end
local current = tonumber(meta[1] or '0')
if current == 0 then
  local last = redis.call('LINDEX', KEYS[2], -1)
  if last then current = tonumber(string.match(last, '"v":(%d+),"ts":%d+}$')) or 0 end
end
local ttl = tonumber(ARGV[2])
if ttl > 0 and meta[1] then
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
