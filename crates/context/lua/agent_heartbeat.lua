-- agents heartbeat: pushes an agent's deadline forward.
--
-- KEYS[1] alive: sorted set, agent -> heartbeat deadline (ms)
-- KEYS[2] records: hash, agent -> JSON record
-- ARGV[1] now_ms: "" for the server clock, or a manual time
-- ARGV[2] agent
-- ARGV[3] heartbeat ttl in ms
-- Returns: 1 when the agent was alive and is extended; 0 when it is unknown or already expired
--          (it must set its status again to come back).
ck_expect_type(KEYS[1], 'zset')
ck_expect_type(KEYS[2], 'hash')
local now = ck_now(ARGV[1])
local deadline = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[2]) or '0')
if deadline <= now then return 0 end
local record = cjson.decode(redis.call('HGET', KEYS[2], ARGV[2]))
record.expires_ms = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], cjson.encode(record))
redis.call('ZADD', KEYS[1], record.expires_ms, ARGV[2])
return 1
