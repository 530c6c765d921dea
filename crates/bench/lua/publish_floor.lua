-- mesh-request-reply-floor: a script that only publishes. No prelude.
-- KEYS[1] a key of the channel's hash tag (routes the call on a cluster; not touched)
-- ARGV[1] the channel, ARGV[2] the message
-- Returns: how many subscribers received it.
return redis.call('PUBLISH', ARGV[1], ARGV[2])
