-- context changes: the history entries after a version, for watchers that resume.
--
-- KEYS[1] the entity's data hash
-- KEYS[2] the entity's history list (see write.lua: one entry per version, consecutive, oldest
--         first, each ending with ',"v":<version>,"ts":<ms>}')
-- ARGV[1] now_ms: "" for the server clock, or a manual time
-- ARGV[2] since: entries with a version above this are returned
-- ARGV[3] limit: at most this many entries
-- ARGV[4] history length: the history holds the last this many versions (the write script
--         trims the list only every few versions, so it may hold a few older ones, which are
--         not shown)
-- Returns: { current version, oldest version kept (0 when none), entry JSON... }.
--          The current version is 0 for an entity that never existed or expired.
ck_expect_type(KEYS[1], 'hash')
ck_expect_type(KEYS[2], 'list')
local now = ck_now(ARGV[1])
local meta = redis.call('HMGET', KEYS[1], '__expires_ms', '__version')
local expires = tonumber(meta[1] or '0')
if expires > 0 and expires <= now then
  return { 0, 0 }
end
local current = tonumber(meta[2] or '0')
local n = redis.call('LLEN', KEYS[2])
if n == 0 then
  return { current, 0 }
end
-- Versions in the list are consecutive: the newest entry's version gives the oldest's.
local last = tonumber(string.match(redis.call('LINDEX', KEYS[2], -1), '"v":(%d+),"ts":%d+}$')) or 0
local first = last - n + 1
if last > current then current = last end
local window_start = current - tonumber(ARGV[4]) + 1
local out = { current, math.max(first, window_start) }
local since = math.max(tonumber(ARGV[2]), window_start - 1)
local limit = tonumber(ARGV[3])
if limit < 1 then return out end
-- Version v is at index v - first (write.lua appends one entry per version and trims from
-- the head).
local from = math.max(since + 1 - first, 0)
if from < n then
  local entries = redis.call('LRANGE', KEYS[2], from, math.min(from + limit, n) - 1)
  for i = 1, #entries do out[#out + 1] = entries[i] end
end
return out
