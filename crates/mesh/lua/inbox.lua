-- coordkit mesh inbox: every operation on one agent's inbox, one script per call.
--
-- KEYS (all of one inbox, one hash tag `inbox:<agent>`; built in Rust, src/agent/wire.rs):
--   KEYS[1]  msgs      HASH  id -> record (below): messages and requests, waiting or pending
--   KEYS[2]  ready     LIST  message ids waiting, oldest first (RPUSH at the back, LPOP front)
--   KEYS[3]  asks      LIST  request ids waiting, oldest first
--   KEYS[4]  pending   ZSET  id -> visibility deadline (ms): delivered, not acknowledged
--   KEYS[5]  tries     HASH  id -> how many times it was delivered
--   KEYS[6]  replies   HASH  correlation id -> record of a reply to one of this agent's asks
--   KEYS[7]  reply_exp ZSET  correlation id -> the reply's expiry (the ask's deadline)
--   KEYS[8]  meta      HASH  seq (ids) and the counters sent, delivered, acked, expired,
--                            trimmed, late, dead
--   KEYS[9]  alive     STRING the agent's presence: "until" ms (script time) it counts as alive;
--                            the key itself expires (PX) after twice its TTL, to clean up.
--                      ZSET  in a capability's inbox, its members: member -> until; the key
--                            expires after twice the last heartbeat's TTL
--   KEYS[10] dead      LIST  dead letters, newest first: struct '<I2c0' reason, then the record
--
-- A record: struct '<I8I8B' sent_ms, expires_ms (0 = never), lane (LANE_*), then the body,
-- which Rust writes and reads (from, correlation id, payload). A record is used only when it is
-- at least HEADER bytes long, its times are below 2^53 and its lane is known; one that is not
-- is dead-lettered as `malformed` alone, and the rest of the call applies. A counter of `meta`
-- or the `alive` value that is not a whole number in bounds fails the call with CORRUPT naming
-- the key, nothing written (CONTRIBUTING.md: validate before the first write).
--
-- A message is "stale" at `now` when now >= sent + max_age (max_age > 0) or now >= expires
-- (expires > 0): stale messages are dropped (counted `expired`) from the front of their lane
-- by every send and by every receive of that lane, never delivered.
--
-- ARGV (every call): ARGV[1] op, ARGV[2] now_ms ("" = server TIME), then per op:
--   send     ARGV[3] struct '<BI8I8I8I8B' lane (a message or a request: requests to a
--            receiver that serves are pushed by lua/request.lua, replies sent by
--            lua/reply.lua), expiry_ms (relative, 0 = none), deadline_ms (absolute, 0 =
--            none), max_age_ms (0 = none), max waiting per lane, require_alive (ALIVE_*);
--            ARGV[4] body; ARGV[5] wake channel; ARGV[6] the publish command (PUBLISH, or
--            SPUBLISH on a cluster: the channel shares the inbox's hash tag)
--            -> { SENT, id, trimmed, expired } | { NO_RESPONDERS }
--   receive  ARGV[3] struct '<BI8I8I8B' lane, max, visibility_ms, max_age_ms, recover 0|1
--            -> { now, next deadline|NONE, expired, malformed,
--                 id, tries, sent, expires, body, ... }
--   ack      ARGV[3] n, then n ids, then for each id a reason ("" = acknowledge, else
--            dead-letter with that reason) -> { 1|0 per id: whether it was pending }
--   take     ARGV[3] correlation id -> { TAKEN, sent, body } | { ABSENT } | { MALFORMED }
--   alive    ARGV[3] ttl_ms (0 = leave: the presence is removed); ARGV[4] member ("" = the
--            agent's own presence, else a member of a capability); ARGV[5] the receiver's
--            visibility timeout, ms, when it serves (0: it does not), recorded in `meta`
--            (`visibility`, or `visibility:<member>`) for the requests pushed to it; leaving
--            or not serving removes it -> until (0 when left)
--   stats    ARGV[3] "1" for a capability's inbox
--            -> { waiting messages, waiting requests, pending, replies, oldest sent|NONE,
--                 alive until|NONE (a capability: its live members), seq, sent, delivered,
--                 acked, expired, trimmed, late, dead, dead letters, now }
--
-- The hot operations of an ask have scripts of their own, on the keys above: lua/request.lua
-- (a request pushed to a receiver that serves), lua/reply.lua (a reply, stored and pushed),
-- lua/forget.lua (replies that came by push, removed).
--
-- Events: `wake` (payload {"lane":n}) on the wake channel given by the caller, in the
-- envelope of ck_envelope, source `mesh`: the receiver's wait ends. Pushes are binary: struct
-- '<BI8I8I8' PUSH_REQUEST, id, sent, expires, then the body (lua/request.lua); or PUSH_REPLY,
-- then the body (lua/reply.lua).

-- Codes shared with Rust: the same names and numbers in src/agent/wire.rs (`code`).
local LANE_MESSAGE, LANE_REQUEST, LANE_REPLY = 0, 1, 2
local SENT, NO_RESPONDERS = 1, 2
local TAKEN, ABSENT, MALFORMED = 1, 2, 3
local ALIVE_ANY, ALIVE_AGENT, ALIVE_MEMBER = 0, 1, 2
local NONE = -1
-- Limits of one call.
local HEADER = 17
local MAX_TIME = 9007199254740991
local TRIM_LIMIT = 100
local OVER_LIMIT = 1000
local RECLAIM_LIMIT = 1000
local DEAD_KEPT = 1000
local COUNTERS = { 'seq', 'sent', 'delivered', 'acked', 'expired', 'trimmed', 'late', 'dead' }
-- The counters of `meta` a send reads.
local SEND_COUNTERS = { 'seq', 'sent', 'expired', 'trimmed', 'dead' }

local K_MSGS, K_READY, K_ASKS, K_PENDING, K_TRIES = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local K_REPLIES, K_REPLY_EXP, K_META, K_ALIVE, K_DEAD = KEYS[6], KEYS[7], KEYS[8], KEYS[9],
  KEYS[10]
local op = ARGV[1]
local now = ck_now(ARGV[2])

-- The header of a record: sent, expires, lane; or nil when it cannot be used.
local function decode(rec)
  if type(rec) ~= 'string' or #rec < HEADER then return nil end
  local sent, expires, lane = struct.unpack('<I8I8B', rec)
  if sent > MAX_TIME or expires > MAX_TIME or lane > LANE_REPLY then return nil end
  return sent, expires, lane
end

local function stale(sent, expires, max_age)
  return (max_age > 0 and now >= sent + max_age) or (expires > 0 and now >= expires)
end

-- The fields `names` of `meta` (counters, or a visibility), validated (CORRUPT naming the key
-- otherwise): a call reads only what it uses, each field costs it a conversion.
local function read_meta(names)
  local values = redis.call('HMGET', K_META, unpack(names))
  local meta = {}
  for i, name in ipairs(names) do
    meta[name] = ck_int(values[i], K_META, 'field ' .. name, MAX_TIME) or 0
  end
  return meta
end

local function lane_key(lane)
  if lane == LANE_REQUEST then return K_ASKS end
  return K_READY
end

-- Keeps a record with its reason in `dead` (bump trims it to the latest DEAD_KEPT).
local function dead_letter(reason, rec)
  redis.call('LPUSH', K_DEAD, struct.pack('<I2', #reason) .. reason .. (rec or ''))
end

-- Adds to counters of `meta` (as read_meta read them) in one HSET: { name = n, ... }; with
-- `dead` counted, trims the dead letters their calls pushed to the latest DEAD_KEPT.
local function bump(meta, adds)
  if (adds.dead or 0) > 0 then redis.call('LTRIM', K_DEAD, 0, DEAD_KEPT - 1) end
  local args = {}
  for name, n in pairs(adds) do
    if n > 0 then
      args[#args + 1] = name
      args[#args + 1] = meta[name] + n
    end
  end
  if #args > 0 then redis.call('HSET', K_META, unpack(args)) end
end

-- The alive value, validated: until ms, or 0.
local function alive_until()
  return ck_int(redis.call('GET', K_ALIVE), K_ALIVE, 'until', MAX_TIME) or 0
end

-- How many members of a capability are alive.
local function live_members()
  return redis.call('ZCOUNT', K_ALIVE, '(' .. now, '+inf')
end

-- The front of a lane: the ids to drop because they are stale (or malformed) before the first
-- live one, at most TRIM_LIMIT. Returns { {id, rec|false, malformed}, ... }.
local function stale_front(list, max_age)
  local drops = {}
  for i = 0, TRIM_LIMIT - 1 do
    local id = redis.call('LINDEX', list, i)
    if not id then break end
    local rec = redis.call('HGET', K_MSGS, id)
    local sent, expires = decode(rec)
    if sent == nil then
      drops[#drops + 1] = { id, rec, true }
    elseif stale(sent, expires, max_age) then
      drops[#drops + 1] = { id, rec, false }
    else
      break
    end
  end
  return drops
end

if op == 'send' then
  local lane, expiry, deadline, max_age, max_waiting, require_alive =
    struct.unpack('<BI8I8I8I8B', ARGV[3])
  local body, wake, publish = ARGV[4], ARGV[5], ARGV[6]
  -- validate:
  if require_alive == ALIVE_AGENT and alive_until() <= now then return { NO_RESPONDERS } end
  if require_alive == ALIVE_MEMBER and live_members() == 0 then return { NO_RESPONDERS } end
  local expires = 0
  if expiry > 0 then expires = now + expiry end
  if deadline > 0 and (expires == 0 or deadline < expires) then expires = deadline end
  local rec = struct.pack('<I8I8B', now, expires, lane) .. body
  local meta = read_meta(SEND_COUNTERS)
  local list = lane_key(lane)
  local waiting = redis.call('LLEN', list)
  local drops = stale_front(list, max_age)
  local over = waiting - #drops - max_waiting + 1
  if over < 0 then over = 0 end
  if over > OVER_LIMIT then over = OVER_LIMIT end
  local malformed = 0
  for _, d in ipairs(drops) do
    if d[3] then malformed = malformed + 1 end
  end
  if malformed > 0 then ck_expect_type(K_DEAD, 'list') end
  redis.call('HLEN', K_MSGS)
  redis.call('HLEN', K_TRIES)
  -- writes:
  local expired = 0
  for _, d in ipairs(drops) do
    redis.call('LPOP', list)
    redis.call('HDEL', K_MSGS, d[1])
    redis.call('HDEL', K_TRIES, d[1])
    if d[3] then
      dead_letter('malformed', d[2] or nil)
    else
      expired = expired + 1
    end
  end
  if over > 0 then
    local ids = redis.call('LRANGE', list, 0, over - 1)
    redis.call('LTRIM', list, over, -1)
    redis.call('HDEL', K_MSGS, unpack(ids))
    redis.call('HDEL', K_TRIES, unpack(ids))
  end
  local id = meta.seq + 1
  bump(meta, { seq = 1, sent = 1, expired = expired, trimmed = over, dead = malformed })
  redis.call('HSET', K_MSGS, id, rec)
  redis.call('RPUSH', list, id)
  redis.call(publish, wake, ck_envelope('wake', 'mesh', '', now, '{"lane":' .. lane .. '}'))
  return { SENT, id, over, expired }
end

if op == 'receive' then
  local lane, max, visibility, max_age, recover = struct.unpack('<BI8I8I8B', ARGV[3])
  -- validate:
  local meta = read_meta({ 'delivered', 'expired', 'dead' })
  local list = lane_key(lane)
  redis.call('LLEN', K_READY)
  redis.call('LLEN', K_ASKS)
  redis.call('HLEN', K_MSGS)
  redis.call('HLEN', K_TRIES)
  -- Deliveries whose visibility ran out (all of them on a restart), oldest deadline first.
  local due
  if recover == 1 then
    due = redis.call('ZRANGE', K_PENDING, 0, RECLAIM_LIMIT - 1)
  else
    due = redis.call('ZRANGEBYSCORE', K_PENDING, '-inf', now, 'LIMIT', 0, RECLAIM_LIMIT)
  end
  -- Each candidate: { id, rec, from_list, action } with action deliver | expire | malformed |
  -- back (a reclaimed one of another lane, or beyond max: back to the front of its lane).
  local cands = {}
  local back = {}
  local delivered = 0
  local function consider(id, rec, from_list)
    local sent, expires, l = decode(rec)
    if sent == nil then
      cands[#cands + 1] = { id, rec, from_list, 'malformed' }
    elseif not from_list and l ~= lane then
      back[#back + 1] = { id, l }
    elseif stale(sent, expires, max_age) then
      cands[#cands + 1] = { id, rec, from_list, 'expire' }
    elseif delivered < max then
      delivered = delivered + 1
      local tries = ck_int(redis.call('HGET', K_TRIES, id), K_TRIES, 'field ' .. id, MAX_TIME)
      cands[#cands + 1] = { id, rec, from_list, 'deliver', sent, expires, tries or 0 }
    else
      back[#back + 1] = { id, l }
    end
  end
  for _, id in ipairs(due) do
    consider(id, redis.call('HGET', K_MSGS, id), false)
  end
  local scanned = 0
  local dropped = 0
  while delivered < max and dropped < TRIM_LIMIT do
    local id = redis.call('LINDEX', list, scanned)
    if not id then break end
    scanned = scanned + 1
    local before = delivered
    consider(id, redis.call('HGET', K_MSGS, id), true)
    if delivered == before then dropped = dropped + 1 end
  end
  local malformed, expired = 0, 0
  for _, c in ipairs(cands) do
    if c[4] == 'malformed' then malformed = malformed + 1 end
    if c[4] == 'expire' then expired = expired + 1 end
  end
  if malformed > 0 then ck_expect_type(K_DEAD, 'list') end
  -- writes:
  if #due > 0 then redis.call('ZREM', K_PENDING, unpack(due)) end
  if scanned > 0 then redis.call('LTRIM', list, scanned, -1) end
  for i = #back, 1, -1 do
    redis.call('LPUSH', lane_key(back[i][2]), back[i][1])
  end
  local answer = { now, NONE, expired, malformed }
  local deadline = now + visibility
  -- One ZADD and one HSET for the deliveries, one HDEL a key for the drops.
  local leases, tries, drops = {}, {}, {}
  for _, c in ipairs(cands) do
    local id, rec, action = c[1], c[2], c[4]
    if action == 'deliver' then
      leases[#leases + 1] = deadline
      leases[#leases + 1] = id
      tries[#tries + 1] = id
      tries[#tries + 1] = c[7] + 1
      answer[#answer + 1] = id
      answer[#answer + 1] = c[7] + 1
      answer[#answer + 1] = c[5]
      answer[#answer + 1] = c[6]
      answer[#answer + 1] = string.sub(rec, HEADER + 1)
    else
      drops[#drops + 1] = id
      if action == 'malformed' then dead_letter('malformed', rec or nil) end
    end
  end
  if #leases > 0 then
    redis.call('ZADD', K_PENDING, unpack(leases))
    redis.call('HSET', K_TRIES, unpack(tries))
  end
  if #drops > 0 then
    redis.call('HDEL', K_MSGS, unpack(drops))
    redis.call('HDEL', K_TRIES, unpack(drops))
  end
  bump(meta, { delivered = delivered, expired = expired, dead = malformed })
  local next_deadline = redis.call('ZRANGE', K_PENDING, 0, 0, 'WITHSCORES')
  if next_deadline[2] then answer[2] = tonumber(next_deadline[2]) end
  return answer
end

if op == 'ack' then
  local n = tonumber(ARGV[3])
  -- validate:
  local meta = read_meta({ 'acked', 'dead' })
  local found = {}
  local seen = {}
  local acked, dead = 0, 0
  for i = 1, n do
    local id = ARGV[3 + i]
    local reason = ARGV[3 + n + i]
    -- An id named twice in one call is settled by its first mention only.
    found[i] = (not seen[id] and redis.call('ZSCORE', K_PENDING, id)) and 1 or 0
    seen[id] = true
    if found[i] == 1 then
      if reason == '' then acked = acked + 1 else dead = dead + 1 end
    end
  end
  redis.call('HLEN', K_MSGS)
  redis.call('HLEN', K_TRIES)
  if dead > 0 then ck_expect_type(K_DEAD, 'list') end
  -- writes:
  local settled = {}
  for i = 1, n do
    if found[i] == 1 then
      local id = ARGV[3 + i]
      local reason = ARGV[3 + n + i]
      if reason ~= '' then dead_letter(reason, redis.call('HGET', K_MSGS, id)) end
      settled[#settled + 1] = id
    end
  end
  if #settled > 0 then
    redis.call('ZREM', K_PENDING, unpack(settled))
    redis.call('HDEL', K_MSGS, unpack(settled))
    redis.call('HDEL', K_TRIES, unpack(settled))
  end
  bump(meta, { acked = acked, dead = dead })
  return found
end

if op == 'take' then
  local corr = ARGV[3]
  -- validate:
  local meta = read_meta({ 'late', 'dead' })
  -- Replies nobody took before their expiry: late, dropped (not the one asked for).
  local old = redis.call('ZRANGEBYSCORE', K_REPLY_EXP, '-inf', '(' .. now, 'LIMIT', 0, TRIM_LIMIT)
  local late = {}
  for _, c in ipairs(old) do
    if c ~= corr then late[#late + 1] = c end
  end
  local rec = redis.call('HGET', K_REPLIES, corr)
  local sent = nil
  if rec then
    sent = decode(rec)
    if sent == nil then ck_expect_type(K_DEAD, 'list') end
  end
  -- writes:
  if #late > 0 then
    redis.call('ZREM', K_REPLY_EXP, unpack(late))
    redis.call('HDEL', K_REPLIES, unpack(late))
  end
  bump(meta, { late = #late, dead = (rec and sent == nil) and 1 or 0 })
  if not rec then return { ABSENT } end
  redis.call('HDEL', K_REPLIES, corr)
  redis.call('ZREM', K_REPLY_EXP, corr)
  if sent == nil then
    dead_letter('malformed', rec)
    return { MALFORMED }
  end
  return { TAKEN, sent, string.sub(rec, HEADER + 1) }
end

-- A server's visibility timeout beside its presence (0: it does not serve: removed).
local function record_visibility(field, visibility)
  if visibility > 0 then
    redis.call('HSET', K_META, field, visibility)
  else
    redis.call('HDEL', K_META, field)
  end
end

if op == 'alive' then
  local ttl = tonumber(ARGV[3])
  local member = ARGV[4]
  local visibility = tonumber(ARGV[5])
  if member ~= '' then
    -- validate:
    redis.call('HLEN', K_META)
    local gone = redis.call('ZRANGEBYSCORE', K_ALIVE, '-inf', now, 'LIMIT', 0, TRIM_LIMIT)
    -- writes:
    if #gone > 0 then
      local fields = {}
      for i, m in ipairs(gone) do fields[i] = 'visibility:' .. m end
      redis.call('ZREM', K_ALIVE, unpack(gone))
      redis.call('HDEL', K_META, unpack(fields))
    end
    if ttl == 0 then
      redis.call('ZREM', K_ALIVE, member)
      redis.call('HDEL', K_META, 'visibility:' .. member)
      return 0
    end
    redis.call('ZADD', K_ALIVE, now + ttl, member)
    redis.call('PEXPIRE', K_ALIVE, 2 * ttl)
    record_visibility('visibility:' .. member, visibility)
    return now + ttl
  end
  -- validate:
  alive_until()
  redis.call('HLEN', K_META)
  -- writes:
  if ttl == 0 then
    redis.call('DEL', K_ALIVE)
    redis.call('HDEL', K_META, 'visibility')
    return 0
  end
  local untl = now + ttl
  redis.call('SET', K_ALIVE, untl, 'PX', 2 * ttl)
  record_visibility('visibility', visibility)
  return untl
end

if op == 'stats' then
  local meta = read_meta(COUNTERS)
  local oldest = NONE
  for _, list in ipairs({ K_READY, K_ASKS }) do
    local id = redis.call('LINDEX', list, 0)
    if id then
      local sent = decode(redis.call('HGET', K_MSGS, id))
      if sent and (oldest == NONE or sent < oldest) then oldest = sent end
    end
  end
  local untl
  if ARGV[3] == '1' then
    untl = live_members()
  else
    untl = alive_until()
    if untl <= now then untl = NONE end
  end
  local answer = { redis.call('LLEN', K_READY), redis.call('LLEN', K_ASKS),
    redis.call('ZCARD', K_PENDING), redis.call('HLEN', K_REPLIES), oldest, untl }
  for _, name in ipairs(COUNTERS) do answer[#answer + 1] = meta[name] end
  answer[#answer + 1] = redis.call('LLEN', K_DEAD)
  answer[#answer + 1] = now
  return answer
end

return ck_fail('UNKNOWN_OP', op)
