-- dlq_list: a page of the dead-letter queue, oldest first. Reads only. Runs after
-- lib/queue.lua; calls no helper piece.
--
-- KEYS: all of lib/queue.lua's; reads dlq, tasks, dead.
-- ARGV[3] offset, ARGV[4] limit
-- -> { id, dead_at, reason, record, ... }

local offset, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local page = redis.call('ZRANGE', K_DLQ, offset, offset + limit - 1, 'WITHSCORES')
if #page == 0 then return {} end
local ids = {}
for i = 1, #page, 2 do ids[#ids + 1] = page[i] end
local recs = redis.call('HMGET', K_TASKS, unpack(ids))
local reasons = redis.call('HMGET', K_DEAD, unpack(ids))
local out = {}
for i, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = tonumber(page[i * 2])
  out[#out + 1] = reasons[i] or ''
  out[#out + 1] = recs[i] or ''
end
return out
