-- agents heartbeat: pushes an agent's deadline forward.
--
-- KEYS[1] alive: sorted set, agent -> heartbeat deadline (ms)
-- KEYS[2] records: hash, agent -> JSON record
-- ARGV[1] now_ms: "" for the server clock, or a manual time
-- ARGV[2] agent
-- ARGV[3] heartbeat ttl in ms
-- Returns: HEARTBEAT_ALIVE when the agent was alive and is extended; HEARTBEAT_GONE when it is
--          unknown or already expired (it must set its status again to come back).
-- Errors: WRONGTYPE naming a key of another type; CORRUPT naming the records hash when a live
--         agent's record is missing or does not decode (nothing is written).
-- decode_record(raw): agent_record.lua, put in front of this script.

-- The answers, named the same in the Rust's `code` module (src/code.rs).
local HEARTBEAT_ALIVE = 1
local HEARTBEAT_GONE = 0
local now = ck_now(ARGV[1])
local agent = ARGV[2]
-- validate: the deadline and the record (both reads fail on keys of another type); the
-- record, rewritten whole, decodes whole.
local deadline = tonumber(redis.call('ZSCORE', KEYS[1], agent) or '0')
if deadline <= now then return HEARTBEAT_GONE end
local raw = redis.call('HGET', KEYS[2], agent)
local shown = 'agent ' .. string.format('%q', agent) .. ': '
if not raw then ck_corrupt(KEYS[2], shown .. 'alive, but it has no record') end
local record, why = decode_record(raw)
if not record then ck_corrupt(KEYS[2], shown .. why) end
-- writes:
record.expires_ms = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[2], agent, cjson.encode(record))
redis.call('ZADD', KEYS[1], record.expires_ms, agent)
return HEARTBEAT_ALIVE
