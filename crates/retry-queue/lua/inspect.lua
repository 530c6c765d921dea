-- inspect: everything about one task. Reads only. Runs after lib/queue.lua; calls no helper
-- piece.
--
-- KEYS: all of lib/queue.lua's; reads tasks, dlq, leased, delayed, errors, dead.
-- ARGV[3] id
-- -> {} (no such task) or { state, score|NONE, record, errors, reason }
-- Codes: NONE.

local id = ARGV[3]
local rec = redis.call('HGET', K_TASKS, id)
if not rec then return {} end
local state, score = 'ready', nil
for _, s in ipairs({ { 'dead', K_DLQ }, { 'leased', K_LEASED }, { 'delayed', K_DELAYED } }) do
  score = redis.call('ZSCORE', s[2], id)
  if score then
    state = s[1]
    break
  end
end
return { state, score and tonumber(score) or NONE, rec, redis.call('HGET', K_ERR, id) or '',
         redis.call('HGET', K_DEAD, id) or '' }
