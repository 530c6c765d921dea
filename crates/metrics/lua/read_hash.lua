-- read_hash: reads a whole hash of a series (a histogram, rollups, a counter's meta).
-- Writes nothing.
--
-- KEYS[1] the hash
-- ARGV: none
-- Returns: HGETALL of KEYS[1] ({} when it does not exist).
-- Fails: WRONGTYPE when KEYS[1] is not a hash (HGETALL's own error; the caller names the key).
-- The fields are decoded by the caller (a field that does not decode is corrupt data naming
-- the key).

return redis.call('HGETALL', KEYS[1])
