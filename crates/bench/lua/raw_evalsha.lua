-- raw-evalsha: the baseline every coordkit scenario is compared with. No prelude.
-- KEYS[1] a hash
-- ARGV: none
-- Returns: the hash's field `n` after incrementing it (a bulk string).
redis.call('HINCRBY', KEYS[1], 'n', 1)
return redis.call('HGET', KEYS[1], 'n')
