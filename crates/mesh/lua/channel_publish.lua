-- channel_publish: publishes one message of a typed channel in coordkit's event envelope
-- ({kind, source = "mesh", entity = the channel's name, ts_ms, payload}), on the server's clock.
-- KEYS[1] the channel (`<namespace>:{mesh:channels}:<name>`): passed as a key so that a cluster
--         runs the script on the shard that owns the channel, where its subscribers are.
-- ARGV[1] SHARDED: "1" on a cluster (SPUBLISH to channel subscribers, then PUBLISH to pattern
--         subscribers, which sharded pub/sub does not have), "0" on a standalone server
--         (PUBLISH reaches both).
-- ARGV[2] kind of the envelope ("message" unless the channel was built with another)
-- ARGV[3] entity: the channel's name
-- ARGV[4] payload, a JSON document (kept byte for byte)
-- ARGV[5] now_ms: "" for the server clock, or a manual time in ms
-- Returns: how many subscriptions received it (a client subscribed to the channel and to a
-- pattern matching it counts, and receives it, twice).
-- validate: nothing: no key is read or written.
-- writes: none; it publishes.
local SHARDED = '1'

local channel = KEYS[1]
local now = ck_now(ARGV[5])
-- The kind is the caller's: escaped for the envelope, which puts it in as it is.
local envelope = ck_envelope(cjson.encode(ARGV[2]):sub(2, -2), 'mesh', ARGV[3], now, ARGV[4])
if ARGV[1] == SHARDED then
  return redis.call('SPUBLISH', channel, envelope) + redis.call('PUBLISH', channel, envelope)
end
return redis.call('PUBLISH', channel, envelope)
