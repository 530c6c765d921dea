-- outcome: where a task stands for a waiter (TaskHandle::wait): its result, its dead letter,
-- still to run, or gone. Reads only, so the result and the task's state are read at one
-- instant. Runs after lib/queue.lua; calls no helper piece.
--
-- KEYS: all of lib/queue.lua's (reads tasks, dlq, dead, errors), then KEYS[QKEYS + 1] the task's
--   result key (written by settle.lua's ack: struct '<I8' expires at (ms), then the bytes).
-- ARGV[3] id
-- -> { OUTCOME_DONE, result } | { OUTCOME_DEAD, reason, record, errors } | { OUTCOME_PENDING }
--    | { OUTCOME_GONE } (no task and no live result: acknowledged without one, its result
--    expired, or purged). A result key of another type fails with WRONGTYPE, one too short or
--    with an expiry out of bounds with CORRUPT <key>.
-- Codes: OUTCOME_* (the same in src/code.rs).

local OUTCOME_PENDING, OUTCOME_DONE, OUTCOME_DEAD, OUTCOME_GONE = 0, 1, 2, 3

local id, k_result = ARGV[3], KEYS[QKEYS + 1]
local res = redis.call('GET', k_result)
if res then
  if #res < 8 then ck_corrupt(k_result, 'holds ' .. #res .. ' bytes, shorter than its expiry') end
  local exp = struct.unpack('<I8', res)
  if exp >= EXACT then ck_corrupt(k_result, 'expiry out of bounds') end
  -- Expired on this clock (Redis's PX, on its own, removes it a little later or sooner).
  if exp > now then return { OUTCOME_DONE, string.sub(res, 9) } end
end
local rec = redis.call('HGET', K_TASKS, id)
if not rec then return { OUTCOME_GONE } end
if redis.call('ZSCORE', K_DLQ, id) then
  return { OUTCOME_DEAD, redis.call('HGET', K_DEAD, id) or '', rec,
           redis.call('HGET', K_ERR, id) or '' }
end
return { OUTCOME_PENDING }
