-- mesh-request-reply-stored-floor, the request: the least a request that is kept until it is
-- answered costs the server. It reads the receiver's presence (no responders is answered by
-- this call), stores the request, marks it pending with a deadline on server time and
-- publishes it. No validation, no counters, no prelude.
-- KEYS[1] messages (HASH), KEYS[2] pending (ZSET), KEYS[3] presence (STRING)
-- ARGV[1] the channel, ARGV[2] the message, ARGV[3] its id
-- Returns: how many subscribers received it.
local t = redis.call('TIME')
redis.call('GET', KEYS[3])
redis.call('HSET', KEYS[1], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[2], t[1], ARGV[3])
return redis.call('PUBLISH', ARGV[1], ARGV[2])
