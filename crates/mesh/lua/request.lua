-- coordkit mesh request: the send of a request to a live agent or capability member that
-- serves, delivered by the send itself. It is the hot half of every ask, so it has a script of
-- its own that reads and writes only the keys that delivery needs (lua/inbox.lua holds the
-- inbox's other operations and its layout).
--
-- KEYS (of the receiver's inbox, one hash tag):
--   KEYS[1] msgs    HASH   id -> record
--   KEYS[2] pending ZSET   id -> visibility deadline (ms): delivered, not acknowledged
--   KEYS[3] tries   HASH   id -> how many times it was delivered
--   KEYS[4] meta    HASH   the counters seq, sent, delivered; `visibility` (an agent's) or
--                          `visibility:<member>` (a capability member's): its presence's
--                          visibility timeout when it serves
--   KEYS[5] alive   STRING an agent's presence (until ms) | ZSET a capability's members
-- ARGV[1] now_ms ("" = server TIME), ARGV[2] struct '<I8I8B' expiry_ms (relative, 0 = none),
-- deadline_ms (absolute, 0 = none), require_alive (ALIVE_AGENT or ALIVE_MEMBER); ARGV[3] the
-- body; ARGV[4] the push channel (an agent's) or its prefix (a capability's: the chosen
-- member's name is appended); ARGV[5] the publish command (PUBLISH, or SPUBLISH on a cluster)
-- -> { SENT, id, 0, 0 } | { NO_RESPONDERS } | { NOT_SERVING }
--
-- A receiver that is not alive (no live member) is answered NO_RESPONDERS; one that is alive
-- and does not serve (no visibility recorded; for a capability, the member chosen round-robin
-- by the next id) is answered NOT_SERVING: nothing is written, and the caller sends the
-- request into the lane with lua/inbox.lua `send`. Otherwise the request is stored pending for
-- the visibility (tries 1, counted sent and delivered) and pushed whole (PUSH_REQUEST) on the
-- push channel: a push that reaches nobody is redelivered by a receive after its visibility.
-- A counter or a visibility that is not a whole number in bounds fails the call with CORRUPT
-- naming `meta`, nothing written.

-- Codes shared with Rust (src/agent/wire.rs `code`), as in lua/inbox.lua.
local LANE_REQUEST = 1
local SENT, NO_RESPONDERS, NOT_SERVING = 1, 2, 4
local ALIVE_AGENT = 1
local PUSH_REQUEST = 1
local MAX_TIME = 9007199254740991

local K_MSGS, K_PENDING, K_TRIES, K_META, K_ALIVE = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = ck_now(ARGV[1])
local expiry, deadline, require_alive = struct.unpack('<I8I8B', ARGV[2])
local push_channel = ARGV[4]

-- validate:
local meta, visibility
if require_alive == ALIVE_AGENT then
  local untl = ck_int(redis.call('GET', K_ALIVE), K_ALIVE, 'until', MAX_TIME) or 0
  if untl <= now then return { NO_RESPONDERS } end
  meta = redis.call('HMGET', K_META, 'seq', 'sent', 'delivered', 'visibility')
  visibility = ck_int(meta[4], K_META, 'field visibility', MAX_TIME)
else
  local members = redis.call('ZCOUNT', K_ALIVE, '(' .. now, '+inf')
  if members == 0 then return { NO_RESPONDERS } end
  meta = redis.call('HMGET', K_META, 'seq', 'sent', 'delivered')
  local seq = ck_int(meta[1], K_META, 'field seq', MAX_TIME) or 0
  local chosen = redis.call('ZRANGEBYSCORE', K_ALIVE, '(' .. now, '+inf', 'LIMIT',
    (seq + 1) % members, 1)[1]
  push_channel = push_channel .. chosen
  local field = 'visibility:' .. chosen
  visibility = ck_int(redis.call('HGET', K_META, field), K_META, 'field ' .. field, MAX_TIME)
end
if not visibility or visibility == 0 then return { NOT_SERVING } end
local seq = ck_int(meta[1], K_META, 'field seq', MAX_TIME) or 0
local sent = ck_int(meta[2], K_META, 'field sent', MAX_TIME) or 0
local delivered = ck_int(meta[3], K_META, 'field delivered', MAX_TIME) or 0
redis.call('HLEN', K_TRIES)
redis.call('ZCARD', K_PENDING)
local expires = 0
if expiry > 0 then expires = now + expiry end
if deadline > 0 and (expires == 0 or deadline < expires) then expires = deadline end
-- writes: the first (HSET of msgs) fails alone on a key of the wrong type. Numbers go to Redis
-- as text made with '%d': Lua's own conversion (%.14g) costs a call several times more.
local id = seq + 1
local f = string.format
local sid = f('%d', id)
redis.call('HSET', K_MSGS, sid, struct.pack('<I8I8B', now, expires, LANE_REQUEST) .. ARGV[3])
redis.call('HSET', K_META, 'seq', sid, 'sent', f('%d', sent + 1), 'delivered',
  f('%d', delivered + 1))
redis.call('HSET', K_TRIES, sid, '1')
redis.call('ZADD', K_PENDING, f('%d', now + visibility), sid)
redis.call(ARGV[5], push_channel, struct.pack('<BI8I8I8', PUSH_REQUEST, id, now, expires) .. ARGV[3])
return { SENT, id, 0, 0 }
