-- coordkit mesh forget: removes replies that reached their asker by push, without counting
-- them late; one call for a batch (lua/inbox.lua holds the inbox's layout).
--
-- KEYS (of the asker's inbox): KEYS[1] replies (HASH), KEYS[2] reply_exp (ZSET)
-- ARGV: the correlation ids -> how many were stored

-- validate: the first write (ZREM) fails alone on a key of the wrong type; the second's key is
-- checked before it.
redis.call('HLEN', KEYS[1])
if #ARGV == 0 then return 0 end
-- writes:
redis.call('ZREM', KEYS[2], unpack(ARGV))
return redis.call('HDEL', KEYS[1], unpack(ARGV))
