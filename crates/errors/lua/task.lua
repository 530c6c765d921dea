-- errors task: a task's details record (its latest error), unless older than the task TTL.
--
-- KEYS[1] data (hash), as in record.lua
-- ARGV[1] now_ms: "" for the server clock, or a manual time
-- ARGV[2] task ttl ms
-- ARGV[3] task id
-- ARGV[4], ARGV[5] the task's two slots
-- Returns {ms, record JSON} or nil.
local now = ck_now(ARGV[1])
local got = redis.call('HMGET', KEYS[1], '~to ' .. ARGV[4], '~to ' .. ARGV[5])
for i, owner in ipairs({ got[1], got[2] }) do
  if owner then
    local task, ts = string.match(owner, '^(.-)\t(%d+)$')
    if task == ARGV[3] then
      if tonumber(ts) <= now - tonumber(ARGV[2]) then
        return false
      end
      return { tonumber(ts), redis.call('HGET', KEYS[1], '~t ' .. ARGV[3 + i]) }
    end
  end
end
return false
