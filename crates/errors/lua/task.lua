-- errors task: a task's details record (its latest error), unless older than the task TTL.
--
-- KEYS[1] data (hash), KEYS[2] tasks (zset), as in record.lua
-- ARGV[1] now_ms: "" for the server clock, or a manual time
-- ARGV[2] task ttl ms
-- ARGV[3] task id
-- Returns the record (JSON) or nil.
local now = ck_now(ARGV[1])
local ts = redis.call('ZSCORE', KEYS[2], ARGV[3])
if not ts or tonumber(ts) <= now - tonumber(ARGV[2]) then
  return false
end
return redis.call('HGET', KEYS[1], '~t ' .. ARGV[3])
