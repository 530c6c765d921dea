-- publish: publishes one event envelope, stamped with the server's time.
-- KEYS: none.
-- ARGV[1] channel
-- ARGV[2] kind
-- ARGV[3] source
-- ARGV[4] entity
-- ARGV[5] payload, a JSON document (kept byte for byte)
-- ARGV[6] now_ms: "" for the server clock, or a manual time in ms
-- Returns: the number of subscribers that received it.
-- Kind and source come from the caller: escaped for the envelope, which puts them in as they are.
local function text(s) return cjson.encode(s):sub(2, -2) end
return ck_emit_json(ARGV[1], text(ARGV[2]), text(ARGV[3]), ARGV[4], ck_now(ARGV[6]), ARGV[5])
