-- agents set: an agent's status, current task and capabilities, with its heartbeat deadline,
-- and the indexes that answer "who is idle" and "who can do X" in one call.
--
-- KEYS[1] alive: sorted set, agent -> heartbeat deadline (ms)
-- KEYS[2] records: hash, agent -> JSON {status, task, caps, updated_ms, expires_ms}
-- KEYS[3] by_status: sorted set (all scores 0), members "<status>\0<agent>"
-- KEYS[4] by_cap: sorted set (all scores 0), members "<capability>\0<agent>"
-- ARGV[1] now_ms: "" for the server clock, or a manual time
-- ARGV[2] agent
-- ARGV[3] status
-- ARGV[4] current task ("" for none)
-- ARGV[5] capabilities, a JSON array of strings, or "" to keep those of the stored record (none
--         when there is none)
-- ARGV[6] heartbeat ttl in ms
-- ARGV[7] event channel
-- ARGV[8] the registry's name (in the event's payload: every registry of a namespace publishes
--         on one channel)
-- Returns: the agent's previous status, or false when it had none (or had expired).
-- Errors: WRONGTYPE naming a key of another type; CORRUPT naming the records hash when the
--         agent's record does not decode (its index entries are unknown, so nothing is written;
--         delete or repair the record).
-- decode_record(raw): agent_record.lua, put in front of this script.

local now = ck_now(ARGV[1])
local agent = ARGV[2]
-- validate: the agent's old record (HGET fails on a records key of another type), decoded
-- whole; the alive set and the indexes, written without a read, by their types.
local old = redis.call('HGET', KEYS[2], agent)
local record
if old then
  local why
  record, why = decode_record(old)
  if not record then ck_corrupt(KEYS[2], 'agent ' .. string.format('%q', agent) .. ': ' .. why) end
end
ck_expect_type(KEYS[1], 'zset')
ck_expect_type(KEYS[3], 'zset')
ck_expect_type(KEYS[4], 'zset')
-- writes:
local previous = false
if record then
  if record.expires_ms > now then previous = record.status end
  redis.call('ZREM', KEYS[3], record.status .. '\0' .. agent)
  for _, cap in ipairs(record.caps) do
    redis.call('ZREM', KEYS[4], cap .. '\0' .. agent)
  end
end
local caps
if ARGV[5] == '' then
  caps = record and record.caps or {}
else
  caps = cjson.decode(ARGV[5])
end
local expires = now + tonumber(ARGV[6])
local new = { status = ARGV[3], task = ARGV[4], caps = caps, updated_ms = now,
  expires_ms = expires }
redis.call('HSET', KEYS[2], agent, cjson.encode(new))
redis.call('ZADD', KEYS[1], expires, agent)
redis.call('ZADD', KEYS[3], 0, ARGV[3] .. '\0' .. agent)
for _, cap in ipairs(caps) do
  redis.call('ZADD', KEYS[4], 0, cap .. '\0' .. agent)
end
if previous ~= ARGV[3] then
  ck_emit(ARGV[7], 'agent_status', 'context', agent, now, { from = previous or '', to = ARGV[3],
    task = ARGV[4], registry = ARGV[8] })
end
return previous
