-- errors recent: one page of the log, newest first, without entries older than the max age.
--
-- KEYS[1] log (stream), as in record.lua
-- ARGV[1] now_ms: "" for the server clock, or a manual time
-- ARGV[2] max age ms
-- ARGV[3] cursor: "" for the newest entry, else the id of the last entry of the previous page
-- ARGV[4] page size
-- Returns XREVRANGE's answer: {{id, {field, value, ...}}, ...}
local now = ck_now(ARGV[1])
local high = '+'
if ARGV[3] ~= '' then
  high = '(' .. ARGV[3]
end
return redis.call('XREVRANGE', KEYS[1], high, math.max(now - tonumber(ARGV[2]), 0), 'COUNT',
  tonumber(ARGV[4]))
