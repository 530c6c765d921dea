-- errors task: a task's details record (its latest error), unless older than the task TTL.
--
-- KEYS[1] data (hash), as in record.lua
-- ARGV[1] now_ms: "" for the server clock, or a manual time
-- ARGV[2] task ttl ms
-- ARGV[3] task id
-- ARGV[4], ARGV[5] the task's two slots
-- Returns {ms, record JSON} or nil.
-- Errors: WRONGTYPE when the data hash holds another type; CORRUPT <data> when the slot owned
-- by the task has a time that is no whole number in 0..2^53, or no details record. An owner
-- that names another task (or none) is not this task's: it is left to record.lua, which takes
-- such a slot over first.
local data, task = KEYS[1], ARGV[3]
local now = ck_now(ARGV[1])
local got = redis.call('HMGET', data, '~to ' .. ARGV[4], '~to ' .. ARGV[5])
local mark = task .. '\t'
for i = 1, 2 do
  local owner = got[i]
  if owner and string.sub(owner, 1, #mark) == mark then
    local field = '~to ' .. ARGV[3 + i]
    local ts = ck_int(string.sub(owner, #mark + 1), data, field .. ' time', 9007199254740992)
    if ts <= now - tonumber(ARGV[2]) then
      return false
    end
    local details = redis.call('HGET', data, '~t ' .. ARGV[3 + i])
    if not details then
      ck_corrupt(data, field .. ' names task ' .. task .. ' but ~t ' .. ARGV[3 + i]
        .. ' holds no details record')
    end
    return { ts, details }
  end
end
return false
