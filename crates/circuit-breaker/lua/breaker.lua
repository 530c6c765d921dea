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
-- The breaker's state (b) and rules (cfg) live in two tables so the helper functions below
-- capture two upvalues instead of dozens.
local b, cfg = {}, {}
cfg.wk, cfg.wsize, cfg.bucket_ms, cfg.min_calls, cfg.frt, cfg.srt, cfg.slow_ms, cfg.max_cf, cfg.open_base, cfg.open_factor,
  cfg.open_max, cfg.permits, cfg.successes, cfg.lease_ms, cfg.max_wait, cfg.idle_ms =
  struct.unpack('>dddddddddddddddd', ARGV[3])
cfg.wkind = cfg.wk == 0 and 'c' or 't'
cfg.channel, cfg.name = ARGV[4], ARGV[5]

-- Everything is read in one call; every change is written in one call at the end (save).
local fields = { 'st', 'ep', 'oa', 'ou', 'rc', 'hs', 'hok', 'cf', 'xr' }
if cfg.wkind == 'c' then
  for _, f in ipairs({ 'ring', 'pos', 'n', 'nf', 'ns' }) do fields[#fields + 1] = f end
else
  for i = 0, cfg.wsize - 1 do fields[#fields + 1] = 'b' .. i end
end
local raw = redis.call('HMGET', S, unpack(fields))
local function num(i)
  if not raw[i] then return 0 end
  local v = tonumber(raw[i])
  if not v then error({ err = 'CORRUPT ' .. fields[i] }) end
  return v
end
b.st = raw[1] or 'closed'
b.ep, b.oa, b.ou, b.rc = num(2), num(3), num(4), num(5)
b.hs, b.hok, b.cf, b.xr = num(6), num(7), num(8), num(9)
if b.ep == 0 then b.ep = 1 end
local valid = { closed = 1, open = 1, half_open = 1, forced_open = 1, disabled = 1,
  metrics_only = 1 }
if not valid[b.st] then error({ err = 'CORRUPT st' }) end
-- Probes exist only in half-open (every other transition deletes them).
b.probes_n = 0
if b.st == 'half_open' or b.st == 'open' then b.probes_n = redis.call('ZCARD', P) end

b.changed = {}      -- field -> new value, written by save()
b.state_dirty = false

-- The window, cached from the read.

if cfg.wkind == 'c' then
  b.ring = raw[10]
  if not b.ring or #b.ring ~= cfg.wsize then b.ring = string.rep('.', cfg.wsize) end
  b.pos, b.wn, b.wnf, b.wns = num(11) % cfg.wsize, num(12), num(13), num(14)
else
  b.slots = {}
  for i = 1, cfg.wsize do b.slots[i] = raw[9 + i] or false end
end

-- The window's figures: calls, failures, slow.
local function window()
  if cfg.wkind == 'c' then return b.wn, b.wnf, b.wns end
  local current = math.floor(now / cfg.bucket_ms)
  local n, nf, ns = 0, 0, 0
  for i = 1, cfg.wsize do
    if b.slots[i] then
      local id, c, f, s = string.match(b.slots[i], '^(%d+):(%d+):(%d+):(%d+)$')
      id = tonumber(id)
      if id and id > current - cfg.wsize and id <= current then
        n, nf, ns = n + tonumber(c), nf + tonumber(f), ns + tonumber(s)
      end
    end
  end
  return n, nf, ns
end

local function add_to_window(failed, slow)
  if cfg.wkind == 'c' then
    local old = string.sub(b.ring, b.pos + 1, b.pos + 1)
    if old ~= '.' then
      b.wn = b.wn - 1
      if old == 'F' or old == 'f' then b.wnf = b.wnf - 1 end
      if old == 's' or old == 'f' then b.wns = b.wns - 1 end
    end
    local c = failed and (slow and 'f' or 'F') or (slow and 's' or 'S')
    b.ring = string.sub(b.ring, 1, b.pos) .. c .. string.sub(b.ring, b.pos + 2)
    b.wn = b.wn + 1
    if failed then b.wnf = b.wnf + 1 end
    if slow then b.wns = b.wns + 1 end
    b.pos = (b.pos + 1) % cfg.wsize
    b.changed.ring, b.changed.pos, b.changed.n, b.changed.nf, b.changed.ns = b.ring, b.pos, b.wn, b.wnf, b.wns
    return
  end
  local id = math.floor(now / cfg.bucket_ms)
  local i = (id % cfg.wsize) + 1
  local c, f, s = 0, 0, 0
  if b.slots[i] then
    local sid, sc, sf, ss = string.match(b.slots[i], '^(%d+):(%d+):(%d+):(%d+)$')
    if tonumber(sid) == id then c, f, s = tonumber(sc), tonumber(sf), tonumber(ss) end
  end
  c = c + 1
  if failed then f = f + 1 end
  if slow then s = s + 1 end
  b.slots[i] = id .. ':' .. c .. ':' .. f .. ':' .. s
  b.changed['b' .. (i - 1)] = b.slots[i]
end

local function clear_window()
  if cfg.wkind == 'c' then
    b.ring, b.pos, b.wn, b.wnf, b.wns = string.rep('.', cfg.wsize), 0, 0, 0, 0
    b.changed.ring, b.changed.pos, b.changed.n, b.changed.nf, b.changed.ns = b.ring, 0, 0, 0, 0
  else
    for i = 1, cfg.wsize do
      if b.slots[i] then
        b.slots[i] = false
        b.changed['b' .. (i - 1)] = '0:0:0:0'
      end
    end
  end
end

local function emit(kind, payload)
  payload.state = b.st
  payload.epoch = b.ep
  ck_emit(cfg.channel .. kind, kind, 'cb', cfg.name, now, payload)
end

local function open_for(reopenings)
  local d = cfg.open_base * (cfg.open_factor ^ reopenings)
  if d > cfg.open_max then d = cfg.open_max end
  return math.floor(d)
end

local function drop_probes()
  if b.probes_n > 0 then
    redis.call('DEL', P)
    b.probes_n = 0
  end
end

local function go_open(reason, figures)
  if b.st == 'half_open' or b.st == 'open' then b.rc = b.rc + 1 else b.rc = 0 end
  b.st, b.ep, b.oa, b.ou = 'open', b.ep + 1, now, now + open_for(b.rc)
  b.hok, b.cf = 0, 0
  b.state_dirty = true
  clear_window()
  drop_probes()
  figures.reason = reason
  figures.open_until = b.ou
  figures.reopenings = b.rc
  emit('opened', figures)
end

local function go_half_open()
  b.st, b.ep, b.hs, b.hok = 'half_open', b.ep + 1, now, 0
  b.state_dirty = true
  drop_probes()
  emit('half_opened', {})
end

local function go_closed(reason)
  b.st, b.ep, b.hok, b.cf, b.rc = 'closed', b.ep + 1, 0, 0, 0
  b.state_dirty = true
  clear_window()
  drop_probes()
  emit('closed', { reason = reason })
end

-- Lazy transitions on the server clock: open -> half-open, half-open -> open after max wait.
local function settle()
  if b.st == 'open' and now >= b.ou then go_half_open() end
  if b.st == 'half_open' and cfg.max_wait > 0 and now - b.hs >= cfg.max_wait then
    go_open('half_open_timeout', {})
    if now >= b.ou then go_half_open() end
  end
  if b.st == 'half_open' and b.probes_n > 0 then
    redis.call('ZREMRANGEBYSCORE', P, '-inf', now)
    b.probes_n = redis.call('ZCARD', P)
  end
end

local function trip_check()
  local n, nf, ns = window()
  local figures = { calls = n, failures = nf, slow = ns, consecutive_failures = b.cf }
  if cfg.max_cf > 0 and b.cf >= cfg.max_cf then
    go_open('consecutive_failures', figures)
    return
  end
  if n >= cfg.min_calls and n > 0 then
    figures.failure_rate = nf / n
    figures.slow_rate = ns / n
    if nf / n >= cfg.frt then
      go_open('failure_rate', figures)
    elseif ns / n >= cfg.srt then
      go_open('slow_call_rate', figures)
    end
  end
end

local function save()
  if b.state_dirty then
    b.changed.st, b.changed.ep, b.changed.oa, b.changed.ou, b.changed.rc = b.st, b.ep, b.oa, b.ou, b.rc
    b.changed.hs, b.changed.hok, b.changed.cf = b.hs, b.hok, b.cf
  end
  local forced = b.st == 'forced_open' or b.st == 'disabled' or b.st == 'metrics_only'
  -- Refresh the idle expiry only now and then: a quarter of it at most goes unrefreshed.
  local refresh = false
  if forced then
    if b.state_dirty then redis.call('PERSIST', S) end
  elseif b.st == 'closed' then
    if next(b.changed) ~= nil and (b.state_dirty or now - b.xr >= cfg.idle_ms / 4) then refresh = true end
  elseif b.state_dirty then
    refresh = true
  end
  if refresh then b.changed.xr = now end
  local args = {}
  for k, v in pairs(b.changed) do
    args[#args + 1] = k
    args[#args + 1] = v
  end
  if #args > 0 then redis.call('HSET', S, unpack(args)) end
  if refresh then
    if b.st == 'closed' then
      redis.call('PEXPIRE', S, cfg.idle_ms)
    else
      -- Open or half-open: keep it until well after the open period.
      redis.call('PEXPIRE', S, math.max(b.ou - now, 0) + cfg.idle_ms)
    end
  end
  if b.probes_n > 0 then redis.call('PEXPIRE', P, cfg.lease_ms + cfg.idle_ms) end
end

if op == 'acquire' then
  settle()
  local admitted, kind, retry = 0, '', 0
  if b.st == 'closed' then
    admitted, kind = 1, 'n'
  elseif b.st == 'disabled' then
    admitted, kind = 1, 'b'
  elseif b.st == 'metrics_only' then
    admitted, kind = 1, 'm'
  elseif b.st == 'open' then
    retry = b.ou - now
  elseif b.st == 'half_open' then
    if b.probes_n < cfg.permits then
      redis.call('ZADD', P, now + cfg.lease_ms, ARGV[6])
      b.probes_n = b.probes_n + 1
      admitted, kind = 1, 'p'
    else
      local first = redis.call('ZRANGE', P, 0, 0, 'WITHSCORES')
      retry = math.max(tonumber(first[2] or now) - now, 1)
    end
  end
  save()
  return { admitted, b.st, b.ep, retry, kind }
elseif op == 'record' then
  local permit = ARGV[6]
  local pep, pkind, outcome, duration = struct.unpack('>dddd', ARGV[7])
  if pkind == 1 and b.probes_n > 0 then
    b.probes_n = b.probes_n - redis.call('ZREM', P, permit)
  end
  settle()
  local status = 'recorded'
  if pep ~= b.ep then
    status = 'stale'
  elseif outcome == 2 then
    status = 'ignored'
  elseif b.st == 'disabled' or b.st == 'forced_open' or b.st == 'open' then
    status = 'not_counted'
  else
    local failed = outcome == 1
    local slow = duration >= cfg.slow_ms
    if b.st == 'half_open' then
      if failed then
        go_open('probe_failed', {})
      else
        b.hok = b.hok + 1
        b.changed.hok = b.hok
        if b.hok >= cfg.successes then go_closed('probes_succeeded') end
      end
    else
      add_to_window(failed, slow)
      local was = b.cf
      if failed then b.cf = b.cf + 1 else b.cf = 0 end
      if b.cf ~= was then b.changed.cf = b.cf end
      if b.st == 'closed' then trip_check() end
    end
  end
  save()
  return { status, b.st, b.ep }
elseif op == 'snapshot' then
  settle()
  save()
  local n, nf, ns = window()
  return { b.st, b.ep, n, nf, ns, b.cf, b.oa, b.ou, b.hok, b.probes_n, b.rc }
elseif op == 'force' then
  local target = ARGV[6]
  if target ~= 'forced_open' and target ~= 'disabled' and target ~= 'metrics_only' then
    return ck_fail('BADOP', 'force ' .. target)
  end
  b.st, b.ep = target, b.ep + 1
  b.state_dirty = true
  if b.probes_n > 0 then redis.call('DEL', P) b.probes_n = 0 end
  emit('forced', {})
  save()
  return { b.st, b.ep }
elseif op == 'clear' then
  settle()
  b.st, b.ep, b.hok, b.cf, b.rc = 'closed', b.ep + 1, 0, 0, 0
  b.state_dirty = true
  clear_window()
  if b.probes_n > 0 then redis.call('DEL', P) b.probes_n = 0 end
  emit('cleared', {})
  save()
  return { b.st, b.ep }
end
return ck_fail('BADOP', op)
