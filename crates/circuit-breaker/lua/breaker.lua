-- circuit breaker: every operation on one breaker, atomically, on the server's clock.
--
-- KEYS[1] state hash:
--   st  state: closed | open | half_open | forced_open | disabled | metrics_only
--   ep  epoch, +1 at every transition (permits carry it; stale outcomes are ignored)
--   oa  opened at (ms)        ou  open until (ms)      rc  consecutive re-openings
--   hs  half-open since (ms)  hok half-open successes  cf  consecutive failures
--   count window: ring (one char per call: S ok, F failed, s ok but slow, f failed and slow,
--                 . empty), pos (next slot), n (calls), nf (failures), ns (slow calls)
--   time window:  b<slot> = "<bucket id>:<calls>:<failures>:<slow>"
-- KEYS[2] probes sorted set: half-open permit id -> lease deadline (ms)
--
-- ARGV[1]  operation: acquire | record | snapshot | force | clear
-- ARGV[2]  now_ms: "" for the server clock, or a manual time
-- ARGV[3]  window kind: c (last N calls) | t (last T ms in buckets)
-- ARGV[4]  window size: N calls, or the number of buckets
-- ARGV[5]  bucket length in ms (time window)
-- ARGV[6]  minimum calls before the rates count
-- ARGV[7]  failure rate threshold (0..1]
-- ARGV[8]  slow call rate threshold (0..1]
-- ARGV[9]  slow call duration in ms
-- ARGV[10] consecutive failures that trip it (0: off)
-- ARGV[11] open duration base in ms
-- ARGV[12] open duration factor per re-opening (1: fixed)
-- ARGV[13] open duration cap in ms
-- ARGV[14] half-open permits K
-- ARGV[15] half-open successes that close it
-- ARGV[16] probe permit lease in ms
-- ARGV[17] maximum stay in half-open in ms (0: none)
-- ARGV[18] idle expiry of a closed breaker in ms
-- ARGV[19] event channel prefix (the event kind is appended)
-- ARGV[20] the breaker's name (the events' entity)
-- acquire:  ARGV[21] permit id
-- record:   ARGV[21] permit id, ARGV[22] permit epoch, ARGV[23] permit kind (n | p | m | b),
--           ARGV[24] outcome (S success | F failure | I ignored), ARGV[25] duration ms
-- force:    ARGV[21] forced_open | disabled | metrics_only
--
-- Returns:
--   acquire:  { admitted 0/1, state, epoch, retry after ms, permit kind n|p|m|b|'' }
--   record:   { recorded | stale | ignored | not_counted, state, epoch }
--   snapshot: { state, epoch, calls, failures, slow, consecutive failures, opened at,
--               open until, half-open successes, probes in flight, re-openings }
--   force, clear: { state, epoch }
-- Errors: BADOP <operation>; Redis's WRONGTYPE (before any write) for a key of another type;
--         CORRUPT <field> when the state hash holds garbage.

local S, P = KEYS[1], KEYS[2]
local op = ARGV[1]
local now = ck_now(ARGV[2])
local wkind, wsize, bucket_ms = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local min_calls, frt, srt = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local slow_ms, max_cf = tonumber(ARGV[9]), tonumber(ARGV[10])
local open_base, open_factor, open_max = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local permits, successes = tonumber(ARGV[14]), tonumber(ARGV[15])
local lease_ms, max_wait, idle_ms = tonumber(ARGV[16]), tonumber(ARGV[17]), tonumber(ARGV[18])
local channel, name = ARGV[19], ARGV[20]

local raw = redis.call('HMGET', S, 'st', 'ep', 'oa', 'ou', 'rc', 'hs', 'hok', 'cf')
local probes_n = redis.call('ZCARD', P)
local function num(i, field)
  if not raw[i] then return 0 end
  local v = tonumber(raw[i])
  if not v then error({ err = 'CORRUPT ' .. field }) end
  return v
end
local st = raw[1] or 'closed'
local ep, oa, ou, rc = num(2, 'ep'), num(3, 'oa'), num(4, 'ou'), num(5, 'rc')
local hs, hok, cf = num(6, 'hs'), num(7, 'hok'), num(8, 'cf')
if ep == 0 then ep = 1 end
local valid = { closed = 1, open = 1, half_open = 1, forced_open = 1, disabled = 1,
  metrics_only = 1 }
if not valid[st] then error({ err = 'CORRUPT st' }) end
local dirty = {}

-- The window's figures: calls, failures, slow.
local function window()
  if wkind == 'c' then
    local w = redis.call('HMGET', S, 'n', 'nf', 'ns')
    return tonumber(w[1] or '0'), tonumber(w[2] or '0'), tonumber(w[3] or '0')
  end
  local fields = {}
  for i = 0, wsize - 1 do fields[#fields + 1] = 'b' .. i end
  local slots = redis.call('HMGET', S, unpack(fields))
  local current = math.floor(now / bucket_ms)
  local n, nf, ns = 0, 0, 0
  for i = 1, wsize do
    if slots[i] then
      local id, c, f, s = string.match(slots[i], '^(%d+):(%d+):(%d+):(%d+)$')
      id = tonumber(id)
      if id and id > current - wsize and id <= current then
        n, nf, ns = n + tonumber(c), nf + tonumber(f), ns + tonumber(s)
      end
    end
  end
  return n, nf, ns
end

local function add_to_window(failed, slow)
  if wkind == 'c' then
    local w = redis.call('HMGET', S, 'ring', 'pos', 'n', 'nf', 'ns')
    local ring = w[1] or string.rep('.', wsize)
    if #ring ~= wsize then ring = string.rep('.', wsize) end
    local pos = tonumber(w[2] or '0') % wsize
    local n, nf, ns = tonumber(w[3] or '0'), tonumber(w[4] or '0'), tonumber(w[5] or '0')
    local old = string.sub(ring, pos + 1, pos + 1)
    if old ~= '.' then
      n = n - 1
      if old == 'F' or old == 'f' then nf = nf - 1 end
      if old == 's' or old == 'f' then ns = ns - 1 end
    end
    local c = failed and (slow and 'f' or 'F') or (slow and 's' or 'S')
    ring = string.sub(ring, 1, pos) .. c .. string.sub(ring, pos + 2)
    n = n + 1
    if failed then nf = nf + 1 end
    if slow then ns = ns + 1 end
    redis.call('HSET', S, 'ring', ring, 'pos', (pos + 1) % wsize, 'n', n, 'nf', nf, 'ns', ns)
    return
  end
  local id = math.floor(now / bucket_ms)
  local field = 'b' .. (id % wsize)
  local slot = redis.call('HGET', S, field)
  local c, f, s = 0, 0, 0
  if slot then
    local sid, sc, sf, ss = string.match(slot, '^(%d+):(%d+):(%d+):(%d+)$')
    if tonumber(sid) == id then c, f, s = tonumber(sc), tonumber(sf), tonumber(ss) end
  end
  c = c + 1
  if failed then f = f + 1 end
  if slow then s = s + 1 end
  redis.call('HSET', S, field, id .. ':' .. c .. ':' .. f .. ':' .. s)
end

local function clear_window()
  if wkind == 'c' then
    redis.call('HDEL', S, 'ring', 'pos', 'n', 'nf', 'ns')
  else
    local fields = {}
    for i = 0, wsize - 1 do fields[#fields + 1] = 'b' .. i end
    redis.call('HDEL', S, unpack(fields))
  end
end

local function emit(kind, payload)
  payload.state = st
  payload.epoch = ep
  ck_emit(channel .. kind, kind, 'cb', name, now, payload)
end

local function open_for(reopenings)
  local d = open_base * (open_factor ^ reopenings)
  if d > open_max then d = open_max end
  return math.floor(d)
end

local function go_open(reason, figures)
  if st == 'half_open' or st == 'open' then rc = rc + 1 else rc = 0 end
  st, ep, oa, ou = 'open', ep + 1, now, now + open_for(rc)
  hok, cf = 0, 0
  dirty.all = true
  clear_window()
  if probes_n > 0 then redis.call('DEL', P) probes_n = 0 end
  figures.reason = reason
  figures.open_until = ou
  figures.reopenings = rc
  emit('opened', figures)
end

local function go_half_open()
  st, ep, hs, hok = 'half_open', ep + 1, now, 0
  dirty.all = true
  if probes_n > 0 then redis.call('DEL', P) probes_n = 0 end
  emit('half_opened', {})
end

local function go_closed(reason)
  st, ep, hok, cf, rc = 'closed', ep + 1, 0, 0, 0
  dirty.all = true
  clear_window()
  if probes_n > 0 then redis.call('DEL', P) probes_n = 0 end
  emit('closed', { reason = reason })
end

-- Lazy transitions on the server clock: open -> half-open, half-open -> open after max wait.
local function settle()
  if st == 'open' and now >= ou then go_half_open() end
  if st == 'half_open' and max_wait > 0 and now - hs >= max_wait then
    go_open('half_open_timeout', {})
    if now >= ou then go_half_open() end
  end
  if st == 'half_open' and probes_n > 0 then
    redis.call('ZREMRANGEBYSCORE', P, '-inf', now)
    probes_n = redis.call('ZCARD', P)
  end
end

local function trip_check()
  local n, nf, ns = window()
  local figures = { calls = n, failures = nf, slow = ns, consecutive_failures = cf }
  if max_cf > 0 and cf >= max_cf then
    go_open('consecutive_failures', figures)
    return
  end
  if n >= min_calls and n > 0 then
    figures.failure_rate = nf / n
    figures.slow_rate = ns / n
    if nf / n >= frt then
      go_open('failure_rate', figures)
    elseif ns / n >= srt then
      go_open('slow_call_rate', figures)
    end
  end
end

local function save()
  if dirty.all then
    redis.call('HSET', S, 'st', st, 'ep', ep, 'oa', oa, 'ou', ou, 'rc', rc, 'hs', hs,
      'hok', hok, 'cf', cf)
  elseif dirty.some then
    redis.call('HSET', S, 'st', st, 'ep', ep, 'hok', hok, 'cf', cf)
  end
  if st == 'forced_open' or st == 'disabled' or st == 'metrics_only' then
    redis.call('PERSIST', S)
  elseif st == 'closed' then
    if dirty.all or dirty.some then redis.call('PEXPIRE', S, idle_ms) end
  else
    -- Open or half-open: keep it until well after the open period.
    redis.call('PEXPIRE', S, math.max(ou - now, 0) + idle_ms)
  end
  if probes_n > 0 then redis.call('PEXPIRE', P, lease_ms + idle_ms) end
end

if op == 'acquire' then
  settle()
  local admitted, kind, retry = 0, '', 0
  if st == 'closed' then
    admitted, kind = 1, 'n'
  elseif st == 'disabled' then
    admitted, kind = 1, 'b'
  elseif st == 'metrics_only' then
    admitted, kind = 1, 'm'
  elseif st == 'open' then
    retry = ou - now
  elseif st == 'half_open' then
    if probes_n < permits then
      redis.call('ZADD', P, now + lease_ms, ARGV[21])
      probes_n = probes_n + 1
      admitted, kind = 1, 'p'
    else
      local first = redis.call('ZRANGE', P, 0, 0, 'WITHSCORES')
      retry = math.max(tonumber(first[2] or now) - now, 1)
    end
  end
  save()
  return { admitted, st, ep, retry, kind }
elseif op == 'record' then
  local permit, pep, pkind, outcome = ARGV[21], tonumber(ARGV[22]), ARGV[23], ARGV[24]
  local duration = tonumber(ARGV[25])
  if pkind == 'p' and probes_n > 0 then
    probes_n = probes_n - redis.call('ZREM', P, permit)
  end
  settle()
  local status = 'recorded'
  if pep ~= ep then
    status = 'stale'
  elseif outcome == 'I' then
    status = 'ignored'
  elseif st == 'disabled' or st == 'forced_open' or st == 'open' then
    status = 'not_counted'
  else
    local failed = outcome == 'F'
    local slow = duration >= slow_ms
    if st == 'half_open' then
      if failed then
        go_open('probe_failed', {})
      else
        hok = hok + 1
        dirty.some = true
        if hok >= successes then go_closed('probes_succeeded') end
      end
    else
      add_to_window(failed, slow)
      if failed then cf = cf + 1 else cf = 0 end
      dirty.some = true
      if st == 'closed' then trip_check() end
    end
  end
  save()
  return { status, st, ep }
elseif op == 'snapshot' then
  settle()
  save()
  local n, nf, ns = window()
  return { st, ep, n, nf, ns, cf, oa, ou, hok, probes_n, rc }
elseif op == 'force' then
  local target = ARGV[21]
  if target ~= 'forced_open' and target ~= 'disabled' and target ~= 'metrics_only' then
    return ck_fail('BADOP', 'force ' .. target)
  end
  st, ep = target, ep + 1
  dirty.all = true
  if probes_n > 0 then redis.call('DEL', P) probes_n = 0 end
  emit('forced', {})
  save()
  return { st, ep }
elseif op == 'clear' then
  settle()
  st, ep, hok, cf, rc = 'closed', ep + 1, 0, 0, 0
  dirty.all = true
  clear_window()
  if probes_n > 0 then redis.call('DEL', P) probes_n = 0 end
  emit('cleared', {})
  save()
  return { st, ep }
end
return ck_fail('BADOP', op)
