-- read_hash: reads a whole hash of a series (a histogram, rollups, a counter's meta).
-- Writes nothing.
--
-- KEYS[1] the hash
-- ARGV: none
-- Returns: HGETALL of KEYS[1] ({} when it does not exist).
-- Fails: WRONGTYPE <key> <type> when KEYS[1] is not a hash.

ck_expect_type(KEYS[1], 'hash')
return redis.call('HGETALL', KEYS[1])
