-- agents query: first drops agents whose heartbeat deadline passed (a bounded number per call,
-- with an `agent_expired` event each), then answers one question.
--
-- KEYS[1] alive: sorted set, agent -> heartbeat deadline (ms)
-- KEYS[2] records: hash, agent -> JSON record
-- KEYS[3] by_status: sorted set, "<status>\0<agent>"
-- KEYS[4] by_cap: sorted set, "<capability>\0<agent>"
-- ARGV[1] now_ms: "" for the server clock, or a manual time
-- ARGV[2] question: "status" (agents with status ARGV[3]), "cap" (agents with capability
--         ARGV[3]), "get" (the record of agent ARGV[3]), "all" (every live record),
--         "remove" (remove agent ARGV[3])
-- ARGV[3] the status, capability or agent
-- ARGV[4] purge limit: at most this many expired agents are dropped by this call
-- ARGV[5] event channel
-- ARGV[6] the registry's name (in the event's payload: every registry of a namespace publishes
--         on one channel)
-- Returns: for status/cap, the agents (sorted); for get, the record JSON or false;
--          for all, agent, record JSON pairs (false for a live agent without a record);
--          for remove, REMOVED when it was alive, else NOT_REMOVED.
-- An expired agent whose record does not decode is dropped from the alive set only: its
-- record is left for repair (its index entries are unknown) and its `agent_expired` event
-- carries {"malformed": why} besides the registry. The other expired agents are dropped whole.
-- Errors: WRONGTYPE naming a key of another type; CORRUPT naming the records hash when the
--         agent to remove has a record that does not decode (nothing is written).
-- decode_record(raw): agent_record.lua, put in front of this script.

-- The answers of "remove", named the same in the Rust's `code` module (src/code.rs).
local REMOVED = 1
local NOT_REMOVED = 0
local now = ck_now(ARGV[1])
local question, arg = ARGV[2], ARGV[3]
-- validate: the expired agents (the read fails on an alive key of another type) and their
-- records (one HMGET, which fails on a records key of another type), plus the record of the
-- agent to remove; the indexes, written without a read, by their types when one is written.
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local names = { unpack(expired) }
if question == 'remove' then names[#names + 1] = arg end
local records, reasons = {}, {}
local indexed = false
if #names > 0 then
  local raws = redis.call('HMGET', KEYS[2], unpack(names))
  for i, agent in ipairs(names) do
    if raws[i] then
      local record, why = decode_record(raws[i])
      if record then
        records[agent] = record
        indexed = true
      else
        reasons[agent] = why
      end
    end
  end
end
if question == 'remove' and reasons[arg] then
  ck_corrupt(KEYS[2], 'agent ' .. string.format('%q', arg) .. ': ' .. reasons[arg])
end
if indexed then
  ck_expect_type(KEYS[3], 'zset')
  ck_expect_type(KEYS[4], 'zset')
end

-- writes:
local function drop(agent)
  local record = records[agent]
  if record then
    records[agent] = nil
    redis.call('ZREM', KEYS[3], record.status .. '\0' .. agent)
    for _, cap in ipairs(record.caps) do
      redis.call('ZREM', KEYS[4], cap .. '\0' .. agent)
    end
    redis.call('HDEL', KEYS[2], agent)
  end
  return redis.call('ZREM', KEYS[1], agent)
end

for _, agent in ipairs(expired) do
  drop(agent)
  local payload = { registry = ARGV[6], malformed = reasons[agent] }
  ck_emit(ARGV[5], 'agent_expired', 'context', agent, now, payload)
end

local function alive(agent)
  local deadline = redis.call('ZSCORE', KEYS[1], agent)
  return deadline and tonumber(deadline) > now
end

if question == 'status' or question == 'cap' then
  local index = question == 'status' and KEYS[3] or KEYS[4]
  local members = redis.call('ZRANGEBYLEX', index, '[' .. arg .. '\0', '(' .. arg .. '\1')
  local out = {}
  for _, member in ipairs(members) do
    local agent = string.sub(member, #arg + 2)
    if alive(agent) then out[#out + 1] = agent end
  end
  return out
elseif question == 'get' then
  if not alive(arg) then return false end
  return redis.call('HGET', KEYS[2], arg)
elseif question == 'all' then
  local out = {}
  local agents = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
  table.sort(agents)
  for _, agent in ipairs(agents) do
    out[#out + 1] = agent
    out[#out + 1] = redis.call('HGET', KEYS[2], agent)
  end
  return out
elseif question == 'remove' then
  local was = alive(arg)
  drop(arg)
  if was then return REMOVED end
  return NOT_REMOVED
end
return ck_fail('BADQUESTION', question)
