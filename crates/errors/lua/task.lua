-- errors task: a task's details record (its latest error), unless older than the task TTL.
--
-- KEYS[1] data (hash), as in record.lua
-- ARGV[1] now_ms: "" for the server clock, or a manual time
-- ARGV[2] task ttl ms
-- ARGV[3] task id
-- ARGV[4], ARGV[5] the task's two slots
-- Returns {ms, record JSON} or nil.
-- Errors: WRONGTYPE when the data hash holds another type; CORRUPT <data> when the slot owned
-- by the task has a time that is no whole number in 0..2^53 (a slot without its details
-- record answers nil; a details record that does not decode is named by Rust). An owner
-- that names another task (or none) is not this task's: it is left to record.lua, which takes
-- such a slot over first.
-- Stored bytes as printable ASCII for an error message (Redis's error replies must be text),
-- at most 40 of them.
local function shown(v)
  return '"' .. string.gsub(string.sub(v, 1, 40), '[%c\128-\255"\\]', function(c)
    return string.format('\\x%02x', string.byte(c))
  end) .. '"'
end
local data, task = KEYS[1], ARGV[3]
local now = ck_now(ARGV[1])
local got = redis.call('HMGET', data, '~to ' .. ARGV[4], '~to ' .. ARGV[5])
local mark = task .. '\t'
for i = 1, 2 do
  local owner = got[i]
  if owner and string.sub(owner, 1, #mark) == mark then
    local field = '~to ' .. ARGV[3 + i]
    local ts = tonumber(string.sub(owner, #mark + 1))
    if not (ts and ts >= 0 and ts <= 9007199254740992 and ts % 1 == 0) then
      ck_corrupt(data, field .. ' is ' .. shown(owner) .. ': task ' .. task
        .. ' with a time that is no whole number in 0..2^53')
    end
    if ts <= now - tonumber(ARGV[2]) then
      return false
    end
    -- No details record (deleted by hand): none to show, as when evicted.
    local details = redis.call('HGET', data, '~t ' .. ARGV[3 + i])
    return details and { ts, details }
  end
end
return false
