-- coordkit mesh reply: the send of a reply into the asker's inbox, one script per reply. The
-- reply is the hot half of every ask, so it has a script of its own that reads and writes only
-- the keys a reply needs (lua/inbox.lua holds the inbox's other operations and its layout).
--
-- KEYS (of the asker's inbox, one hash tag `inbox:<agent>`):
--   KEYS[1] replies   HASH  correlation id -> record of a reply
--   KEYS[2] reply_exp ZSET  correlation id -> the reply's expiry (the ask's deadline)
--   KEYS[3] meta      HASH  the counter `late` (replies that came after their deadline)
-- ARGV[1] now_ms ("" = server TIME), ARGV[2] the deadline, ms (0 = none), ARGV[3] the
-- correlation id, ARGV[4] the body, ARGV[5] the asker's push channel, ARGV[6] the publish
-- command (PUBLISH, or SPUBLISH on a cluster: the channel shares the inbox's hash tag)
-- -> { SENT, 0, 0, 0 } | { LATE }
--
-- A reply is stored as a record (lua/inbox.lua: struct '<I8I8B' sent_ms, expires_ms, lane,
-- then the body) and pushed whole (PUSH_REPLY, then the body) on the asker's push channel. A
-- reply past its deadline is not stored: it is counted `late` (validated first: CORRUPT naming
-- the key when the counter is not a whole number in bounds) and answered LATE.

-- Codes shared with Rust (src/agent/wire.rs `code`), as in lua/inbox.lua.
local LANE_REPLY = 2
local SENT, LATE = 1, 3
local PUSH_REPLY = 2
local MAX_TIME = 9007199254740991

local now = ck_now(ARGV[1])
local deadline = tonumber(ARGV[2])
if deadline > 0 and now >= deadline then
  -- validate:
  local late = ck_int(redis.call('HGET', KEYS[3], 'late'), KEYS[3], 'field late', MAX_TIME) or 0
  -- writes:
  redis.call('HSET', KEYS[3], 'late', late + 1)
  return { LATE }
end
-- validate: the first write (HSET) fails alone on a key of the wrong type; the second's key is
-- checked before it.
if deadline > 0 then redis.call('ZCARD', KEYS[2]) end
-- writes:
redis.call('HSET', KEYS[1], ARGV[3], struct.pack('<I8I8B', now, deadline, LANE_REPLY) .. ARGV[4])
-- A reply without a deadline waits for its take, never late.
if deadline > 0 then redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3]) end
redis.call(ARGV[6], ARGV[5], string.char(PUSH_REPLY) .. ARGV[4])
return { SENT, 0, 0, 0 }
