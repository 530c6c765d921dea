-- agents heartbeat: pushes an agent's deadline forward.
--
-- KEYS[1] alive: sorted set, agent -> heartbeat deadline (ms)
-- KEYS[2] records: hash, agent -> JSON record
-- ARGV[1] now_ms: "" for the server clock, or a manual time
-- ARGV[2] agent
-- ARGV[3] heartbeat ttl in ms
-- Returns: 1 when the agent was alive and is extended; 0 when it is unknown or already expired
--          (it must set its status again to come back).
-- Errors: WRONGTYPE naming a key of another type; CORRUPT naming the records hash when a live
--         agent's record is missing or does not decode (nothing is written).
-- A stored record, decoded and checked whole: the record, or nil and why not.
local function decode_record(raw)
  local ok, record = pcall(cjson.decode, raw)
  if not ok or type(record) ~= 'table' then return nil, 'the record is not a JSON object' end
  if type(record.status) ~= 'string' or record.status == '' then
    return nil, 'status is not a name'
  end
  if type(record.task) ~= 'string' then return nil, 'task is not a string' end
  local caps = record.caps
  if type(caps) ~= 'table' or (#caps == 0 and next(caps) ~= nil) then
    return nil, 'caps is not a list'
  end
  for _, cap in ipairs(caps) do
    if type(cap) ~= 'string' then return nil, 'caps holds a value that is not a string' end
  end
  for _, what in ipairs({ 'updated_ms', 'expires_ms' }) do
    local n = record[what]
    if type(n) ~= 'number' or not (n >= 0 and n <= 9007199254740991 and n % 1 == 0) then
      -- Printable ASCII only: an error reply that is not valid UTF-8 cannot be decoded.
      local shown = string.gsub(string.sub(tostring(n), 1, 40), '[^ -~]', '?')
      return nil, what .. ' is ' .. string.format('%q', shown)
        .. ', not a whole number in 0..9007199254740991'
    end
  end
  return record
end

local now = ck_now(ARGV[1])
local agent = ARGV[2]
-- validate: the deadline and the record (both reads fail on keys of another type); the
-- record, rewritten whole, decodes whole.
local deadline = tonumber(redis.call('ZSCORE', KEYS[1], agent) or '0')
if deadline <= now then return 0 end
local raw = redis.call('HGET', KEYS[2], agent)
local shown = 'agent ' .. string.format('%q', agent) .. ': '
if not raw then ck_corrupt(KEYS[2], shown .. 'alive, but it has no record') end
local record, why = decode_record(raw)
if not record then ck_corrupt(KEYS[2], shown .. why) end
-- writes:
record.expires_ms = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[2], agent, cjson.encode(record))
redis.call('ZADD', KEYS[1], record.expires_ms, agent)
return 1
