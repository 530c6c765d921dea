-- context changes: the history entries after a version, for watchers that resume.
--
-- KEYS[1] the entity's data hash
-- KEYS[2] the entity's history sorted set
-- ARGV[1] now_ms: "" for the server clock, or a manual time
-- ARGV[2] since: entries with a version above this are returned
-- ARGV[3] limit: at most this many entries
-- ARGV[4] history length: the history holds the last this many versions (the write script
--         trims the sorted set only every few versions, so it may hold a few older ones,
--         which are not shown)
-- Returns: { current version, oldest version kept (0 when none), entry JSON... }.
--          The current version is 0 for an entity that never existed or expired.
ck_expect_type(KEYS[1], 'hash')
ck_expect_type(KEYS[2], 'zset')
local now = ck_now(ARGV[1])
local expires = tonumber(redis.call('HGET', KEYS[1], '__expires_ms') or '0')
if expires > 0 and expires <= now then
  return { 0, 0 }
end
local current = tonumber(redis.call('HGET', KEYS[1], '__version') or '0')
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if last[2] and tonumber(last[2]) > current then current = tonumber(last[2]) end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local oldest = 0
local window_start = current - tonumber(ARGV[4]) + 1
if first[2] then oldest = math.max(tonumber(first[2]), window_start) end
local out = { current, oldest }
local since = math.max(tonumber(ARGV[2]), window_start - 1)
local entries = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. string.format('%d', since), '+inf',
  'LIMIT', 0, tonumber(ARGV[3]))
for i = 1, #entries do out[#out + 1] = entries[i] end
return out
