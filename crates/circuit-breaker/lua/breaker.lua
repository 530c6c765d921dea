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
-- ARGV[3]  the rules, 16 big-endian doubles (struct '>d' x16; unpacked only off the hot path):
--            window kind (0: last N calls, 1: last T ms in buckets), window size (N calls or
--            the number of buckets), bucket length ms, minimum calls, failure rate threshold
--            (0..1], slow call rate threshold (0..1], slow call duration ms, consecutive failures
--            that trip it (0: off), open duration base ms, open duration factor per re-opening
--            (1: fixed), open duration cap ms, half-open permits K, half-open successes that
--            close it, probe lease ms, maximum stay in half-open ms (0: none), idle expiry ms
-- ARGV[4]  event channel prefix (the event kind is appended)
-- ARGV[5]  the breaker's name (the events' entity)
-- acquire:  ARGV[6] permit id
-- record:   ARGV[6] permit id, ARGV[7] 4 big-endian doubles: permit epoch, permit kind
--           (0 normal, 1 probe, 2 metrics-only, 3 bypass), outcome (0 success, 1 failure,
--           2 ignored), duration ms
-- force:    ARGV[6] forced_open | disabled | metrics_only
-- (Arguments are few on purpose: every ARGV element costs the server a Lua string.)
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

-- The hot path: an acquire on a breaker that is not open or half-open needs no clock, no
-- probes and no rules.
if op == 'acquire' then
  local quick = redis.call('HMGET', S, 'st', 'ep')
  local qst = quick[1] or 'closed'
  local qep = tonumber(quick[2] or '1')
  if qep then
    if qep == 0 then qep = 1 end
    if qst == 'closed' then return { 1, qst, qep, 0, 'n' } end
    if qst == 'disabled' then return { 1, qst, qep, 0, 'b' } end
    if qst == 'metrics_only' then return { 1, qst, qep, 0, 'm' } end
  end
end

local now = ck_now(ARGV[2])
local wk, wsize, bucket_ms, min_calls, frt, srt, slow_ms, max_cf, open_base, open_factor,
  open_max, permits, successes, lease_ms, max_wait, idle_ms =
  struct.unpack('>dddddddddddddddd', ARGV[3])
local wkind = wk == 0 and 'c' or 't'
local channel, name = ARGV[4], ARGV[5]

-- Everything is read in one call; every change is written in one call at the end (save).
local fields = { 'st', 'ep', 'oa', 'ou', 'rc', 'hs', 'hok', 'cf', 'xr' }
if wkind == 'c' then
  for _, f in ipairs({ 'ring', 'pos', 'n', 'nf', 'ns' }) do fields[#fields + 1] = f end
else
  for i = 0, wsize - 1 do fields[#fields + 1] = 'b' .. i end
end
local raw = redis.call('HMGET', S, unpack(fields))
local function num(i)
  if not raw[i] then return 0 end
  local v = tonumber(raw[i])
  if not v then error({ err = 'CORRUPT ' .. fields[i] }) end
  return v
end
local st = raw[1] or 'closed'
local ep, oa, ou, rc = num(2), num(3), num(4), num(5)
local hs, hok, cf, xr = num(6), num(7), num(8), num(9)
if ep == 0 then ep = 1 end
local valid = { closed = 1, open = 1, half_open = 1, forced_open = 1, disabled = 1,
  metrics_only = 1 }
if not valid[st] then error({ err = 'CORRUPT st' }) end
-- Probes exist only in half-open (every other transition deletes them).
local probes_n = 0
if st == 'half_open' or st == 'open' then probes_n = redis.call('ZCARD', P) end

local changed = {}      -- field -> new value, written by save()
local state_dirty = false

-- The window, cached from the read.
local ring, pos, wn, wnf, wns, slots
if wkind == 'c' then
  ring = raw[10]
  if not ring or #ring ~= wsize then ring = string.rep('.', wsize) end
  pos, wn, wnf, wns = num(11) % wsize, num(12), num(13), num(14)
else
  slots = {}
  for i = 1, wsize do slots[i] = raw[9 + i] or false end
end

-- The window's figures: calls, failures, slow.
local function window()
  if wkind == 'c' then return wn, wnf, wns end
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
    local old = string.sub(ring, pos + 1, pos + 1)
    if old ~= '.' then
      wn = wn - 1
      if old == 'F' or old == 'f' then wnf = wnf - 1 end
      if old == 's' or old == 'f' then wns = wns - 1 end
    end
    local c = failed and (slow and 'f' or 'F') or (slow and 's' or 'S')
    ring = string.sub(ring, 1, pos) .. c .. string.sub(ring, pos + 2)
    wn = wn + 1
    if failed then wnf = wnf + 1 end
    if slow then wns = wns + 1 end
    pos = (pos + 1) % wsize
    changed.ring, changed.pos, changed.n, changed.nf, changed.ns = ring, pos, wn, wnf, wns
    return
  end
  local id = math.floor(now / bucket_ms)
  local i = (id % wsize) + 1
  local c, f, s = 0, 0, 0
  if slots[i] then
    local sid, sc, sf, ss = string.match(slots[i], '^(%d+):(%d+):(%d+):(%d+)$')
    if tonumber(sid) == id then c, f, s = tonumber(sc), tonumber(sf), tonumber(ss) end
  end
  c = c + 1
  if failed then f = f + 1 end
  if slow then s = s + 1 end
  slots[i] = id .. ':' .. c .. ':' .. f .. ':' .. s
  changed['b' .. (i - 1)] = slots[i]
end

local function clear_window()
  if wkind == 'c' then
    ring, pos, wn, wnf, wns = string.rep('.', wsize), 0, 0, 0, 0
    changed.ring, changed.pos, changed.n, changed.nf, changed.ns = ring, 0, 0, 0, 0
  else
    for i = 1, wsize do
      if slots[i] then
        slots[i] = false
        changed['b' .. (i - 1)] = '0:0:0:0'
      end
    end
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

local function drop_probes()
  if probes_n > 0 then
    redis.call('DEL', P)
    probes_n = 0
  end
end

local function go_open(reason, figures)
  if st == 'half_open' or st == 'open' then rc = rc + 1 else rc = 0 end
  st, ep, oa, ou = 'open', ep + 1, now, now + open_for(rc)
  hok, cf = 0, 0
  state_dirty = true
  clear_window()
  drop_probes()
  figures.reason = reason
  figures.open_until = ou
  figures.reopenings = rc
  emit('opened', figures)
end

local function go_half_open()
  st, ep, hs, hok = 'half_open', ep + 1, now, 0
  state_dirty = true
  drop_probes()
  emit('half_opened', {})
end

local function go_closed(reason)
  st, ep, hok, cf, rc = 'closed', ep + 1, 0, 0, 0
  state_dirty = true
  clear_window()
  drop_probes()
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
  if state_dirty then
    changed.st, changed.ep, changed.oa, changed.ou, changed.rc = st, ep, oa, ou, rc
    changed.hs, changed.hok, changed.cf = hs, hok, cf
  end
  local forced = st == 'forced_open' or st == 'disabled' or st == 'metrics_only'
  -- Refresh the idle expiry only now and then: a quarter of it at most goes unrefreshed.
  local refresh = false
  if forced then
    if state_dirty then redis.call('PERSIST', S) end
  elseif st == 'closed' then
    if next(changed) ~= nil and (state_dirty or now - xr >= idle_ms / 4) then refresh = true end
  elseif state_dirty then
    refresh = true
  end
  if refresh then changed.xr = now end
  local args = {}
  for k, v in pairs(changed) do
    args[#args + 1] = k
    args[#args + 1] = v
  end
  if #args > 0 then redis.call('HSET', S, unpack(args)) end
  if refresh then
    if st == 'closed' then
      redis.call('PEXPIRE', S, idle_ms)
    else
      -- Open or half-open: keep it until well after the open period.
      redis.call('PEXPIRE', S, math.max(ou - now, 0) + idle_ms)
    end
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
      redis.call('ZADD', P, now + lease_ms, ARGV[6])
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
  local permit = ARGV[6]
  local pep, pkind, outcome, duration = struct.unpack('>dddd', ARGV[7])
  if pkind == 1 and probes_n > 0 then
    probes_n = probes_n - redis.call('ZREM', P, permit)
  end
  settle()
  local status = 'recorded'
  if pep ~= ep then
    status = 'stale'
  elseif outcome == 2 then
    status = 'ignored'
  elseif st == 'disabled' or st == 'forced_open' or st == 'open' then
    status = 'not_counted'
  else
    local failed = outcome == 1
    local slow = duration >= slow_ms
    if st == 'half_open' then
      if failed then
        go_open('probe_failed', {})
      else
        hok = hok + 1
        changed.hok = hok
        if hok >= successes then go_closed('probes_succeeded') end
      end
    else
      add_to_window(failed, slow)
      local was = cf
      if failed then cf = cf + 1 else cf = 0 end
      if cf ~= was then changed.cf = cf end
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
  local target = ARGV[6]
  if target ~= 'forced_open' and target ~= 'disabled' and target ~= 'metrics_only' then
    return ck_fail('BADOP', 'force ' .. target)
  end
  st, ep = target, ep + 1
  state_dirty = true
  if probes_n > 0 then redis.call('DEL', P) probes_n = 0 end
  emit('forced', {})
  save()
  return { st, ep }
elseif op == 'clear' then
  settle()
  st, ep, hok, cf, rc = 'closed', ep + 1, 0, 0, 0
  state_dirty = true
  clear_window()
  if probes_n > 0 then redis.call('DEL', P) probes_n = 0 end
  emit('cleared', {})
  save()
  return { st, ep }
end
return ck_fail('BADOP', op)
