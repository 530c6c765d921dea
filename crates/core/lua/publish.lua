-- publish: publishes one event envelope, stamped with the server's time.
-- KEYS: none.
-- ARGV[1] channel
-- ARGV[2] kind
-- ARGV[3] source
-- ARGV[4] entity
-- ARGV[5] payload, a JSON document (kept byte for byte)
-- ARGV[6] now_ms: "" for the server clock, or a manual time in ms
-- Returns: the number of subscribers that received it.
local ts = ck_now(ARGV[6])
local envelope = '{"kind":' .. cjson.encode(ARGV[2])
  .. ',"source":' .. cjson.encode(ARGV[3])
  .. ',"entity":' .. cjson.encode(ARGV[4])
  .. ',"ts_ms":' .. string.format('%d', ts)
  .. ',"payload":' .. ARGV[5] .. '}'
return redis.call('PUBLISH', ARGV[1], envelope)
