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
-- Errors: WRONGTYPE naming a key of another type; CORRUPT naming the data hash when __version
--         or __expires_ms is not a whole number in 0..2^53-1, or the history when its newest
--         entry carries no version or the list holds more entries than that version.
-- Reads only. The entries themselves are decoded (and their versions checked) by the caller.
-- The largest stored number (`MAX_STORED` in src/wire.rs).
local MAX = 9007199254740991
local now = ck_now(ARGV[1])
-- validate: the stamps, and the newest entry's version, which places every other entry.
local meta = redis.call('HMGET', KEYS[1], '__expires_ms', '__version')
local expires = ck_int(meta[1], KEYS[1], '__expires_ms', MAX) or 0
local current = ck_int(meta[2], KEYS[1], '__version', MAX) or 0
if expires > 0 and expires <= now then
  return { 0, 0 }
end
local n = redis.call('LLEN', KEYS[2])
if n == 0 then
  return { current, 0 }
end
-- Versions in the list are consecutive: the newest entry's version gives the oldest's.
local v = string.match(redis.call('LINDEX', KEYS[2], -1), '"v":(%d+),"ts":%d+}$')
if not v then
  ck_corrupt(KEYS[2], 'the newest entry does not end with ,"v":<version>,"ts":<ms>}')
end
local last = ck_int(v, KEYS[2], 'the newest entry\'s version', MAX)
if n > last then
  ck_corrupt(KEYS[2], string.format('holds %d entries, more than its newest version %d', n, last))
end
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
