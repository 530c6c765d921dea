-- limits: sets the limits every worker's claims obey, stored with the queue: at most
-- max_leased tasks leased at once, at most rate_max starts in any rate_ms (0: no such limit).
-- Runs after lib/queue.lua and, in `rare()`, the helper pieces src/scripts.rs lists for it.
--
-- KEYS: all of lib/queue.lua's; writes info (max_leased, rate_max, rate_ms) and, when the rate
--   limit goes, deletes starts.
-- ARGV[3] max_leased (0 = none), ARGV[4] rate_max, ARGV[5] rate_ms (either 0 = none)
-- -> 1
-- Events: wake (idle workers claim again under the new limits).

local max_leased, rate_max, rate_ms = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
-- validate: info and starts are read (their types); the arguments are bounded by Rust.
redis.call('HLEN', K_INFO)
redis.call('ZCARD', K_STARTS)
-- writes:
if max_leased > 0 then
  redis.call('HSET', K_INFO, 'max_leased', max_leased)
else
  redis.call('HDEL', K_INFO, 'max_leased')
end
if rate_max > 0 and rate_ms > 0 then
  redis.call('HSET', K_INFO, 'rate_max', rate_max, 'rate_ms', rate_ms)
else
  redis.call('HDEL', K_INFO, 'rate_max', 'rate_ms')
  redis.call('DEL', K_STARTS)
end
rare().wake()
return 1
