-- mesh-request-reply-stored-floor, the reply: the least a reply that is kept until the asker
-- takes it costs the server. It acknowledges the request (a mesh batches that in a call of its
-- own), stores the reply and publishes it. No validation, no counters, no prelude. The asker
-- never forgets the reply: this leaves out work the mesh does, as a floor should.
-- KEYS[1] messages (HASH), KEYS[2] pending (ZSET), KEYS[3] replies (HASH)
-- ARGV[1] the channel, ARGV[2] the reply, ARGV[3] the request's id
-- Returns: how many subscribers received it.
redis.call('HDEL', KEYS[1], ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[2])
return redis.call('PUBLISH', ARGV[1], ARGV[2])
