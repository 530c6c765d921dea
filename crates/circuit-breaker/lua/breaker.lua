-- circuit breaker: every operation on one breaker, atomically, on the server's clock.
--
-- KEYS[1] state hash:
--   s   the hot numbers, 7 big-endian doubles (struct '>d' x7, 56 bytes): state code
--       (CLOSED .. METRICS_ONLY below), epoch
--       (+1 at every transition; permits carry it, stale outcomes are ignored), consecutive
--       failures, count window: next slot, calls, failures, slow calls
--   c   the numbers of transitions, 5 big-endian doubles (40 bytes; absent: all 0): opened at
--       ms, open until ms, consecutive re-openings, half-open since ms, half-open successes
--   r   count window ring, one char per call: S ok, F failed, s ok but slow, f failed and
--       slow, . empty
--   b<slot>  time window bucket: "<bucket id>:<calls>:<failures>:<slow>"
--   g   the rules (ARGV[3] as given) of the state's first write and of every later write
--       outside a record's fast path (transitions, forces, clears, a window resized), so that
--       a reader without the application's configuration (the `coordkit` command) applies
--       the same
--   Every stored number is a whole number below 2^48 (MAXN), checked before use; the counts
--   this script adds to (epoch, consecutive failures, re-openings, half-open successes, a
--   bucket's figures) stop at 2^48 - 1 (MAXI), so it never writes one it would refuse. Only
--   a stored value written by something else gets there: an epoch stopped at it no longer
--   tells the permits of its last transitions apart.
--   Absent: closed, epoch 1, empty window. The idle expiry is the key's TTL (refreshed when
--   less than three quarters of it is left).
-- KEYS[2] probes sorted set: half-open permit id -> lease deadline (ms)
--
-- ARGV[1]  operation: acquire | record | snapshot | force | clear
-- ARGV[2]  now_ms: "" for the server clock, or a manual time
-- ARGV[3]  the rules, 16 big-endian doubles (struct '>d' x16), the record's hot path first:
--            window kind (WINDOW_COUNT: last N calls, WINDOW_TIME: last T ms in buckets),
--            window size (N calls or the number of buckets), minimum calls, failure rate threshold (0..1], slow call
--            rate threshold (0..1], slow call duration ms, consecutive failures that trip it
--            (0: off), idle expiry ms, bucket length ms, open duration base ms, open duration
--            factor per re-opening (1: fixed), open duration cap ms, half-open permits K,
--            half-open successes that close it, probe lease ms, maximum stay in half-open ms
--            (0: none)
-- ARGV[4]  event channel prefix (the event kind is appended)
-- ARGV[5]  the breaker's name (the events' entity)
-- acquire:  ARGV[6] permit id
-- record:   ARGV[6] permit id, ARGV[7] 4 big-endian doubles: permit epoch, permit kind
--           (KIND_*, as the acquire answered it), outcome (SUCCESS, FAILURE, OUTCOME_IGNORED),
--           duration ms
-- force:    ARGV[6] forced_open | disabled | metrics_only
-- (Arguments are few on purpose: every ARGV element costs the server a Lua string.)
--
-- Returns (numbers only: no number is turned into text):
--   acquire:  admitted without a change (closed, disabled, metrics-only):
--             epoch * STATE_CODES + state; otherwise { admitted 0/1, state, epoch,
--             retry after ms, permit kind KIND_* };
--             retry after: open, the rest of the open period; half-open with every probe
--             taken, min(first lease's rest, base open duration, HALF_OPEN_RETRY_CAP_MS), at
--             least 1
--   record:   (epoch * STATUS_CODES + status) * STATE_CODES + state, status RECORDED | STALE |
--             IGNORED | NOT_COUNTED; when it leaves the breaker open: { that number, open ms
--             left }
--   snapshot: { state, epoch, calls, failures, slow, consecutive failures, opened at,
--               open until, half-open successes, probes in flight, re-openings, now }
--   force, clear: { state, epoch }
-- Errors, all raised before the first write (nothing is written then):
--   BADOP <operation>;
--   WRONGTYPE (Redis's, from the first read of each key) when a key holds another type;
--   CORRUPT <key> field <f>: ... (ck_corrupt, ck_int) when a stored value cannot be used: s or
--   c of another length or with a number out of bounds, the byte of r a record replaces that
--   is no call, window figures that do not fit the ring, a bucket that does not parse, a probe
--   lease deadline out of bounds. A ring of another length than the window (absent, or the
--   window's size was changed) is no fault: the count window starts empty.

-- Codes shared with Rust: the `code` module of src/wire.rs holds the same names and numbers.
-- States:
local CLOSED, OPEN, HALF_OPEN, FORCED_OPEN, DISABLED, METRICS_ONLY = 0, 1, 2, 3, 4, 5
-- Packed answers: epoch * STATE_CODES + state; a record's, (epoch * STATUS_CODES + status) *
-- STATE_CODES + state.
local STATE_CODES, STATUS_CODES = 8, 4
-- A record's status:
local RECORDED, STALE, IGNORED, NOT_COUNTED = 0, 1, 2, 3
-- Permit kinds (an acquire's answer, a record's argument):
local KIND_NONE, KIND_NORMAL, KIND_PROBE, KIND_METRICS_ONLY, KIND_BYPASS = 0, 1, 2, 3, 4
-- Outcomes (a record's argument):
local SUCCESS, FAILURE, OUTCOME_IGNORED = 0, 1, 2
-- Window kinds (the rules):
local WINDOW_COUNT, WINDOW_TIME = 0, 1
-- The longest retry after of a half-open breaker (HALF_OPEN_RETRY_CAP in src/state.rs).
local HALF_OPEN_RETRY_CAP_MS = 2000

local S, P = KEYS[1], KEYS[2]
local op = ARGV[1]
local SFMT, SLEN = '>ddddddd', 56
local CFMT, CLEN = '>ddddd', 40
local MAXN = 2 ^ 48

-- The hot paths: an acquire on a breaker that is not open or half-open, and a record in a
-- count window that changes no state. They need no clock, no probes and few rules; anything
-- else (or anything odd, garbage included) goes on to the general path below, which has
-- written nothing yet and names the fault.
if op == 'acquire' then
  -- validate: S's type (the HGET); the state code and the epoch, the only numbers used.
  local s = redis.call('HGET', S, 's')
  if not s then return 1 * STATE_CODES + CLOSED end
  if #s == SLEN then
    local st, ep = struct.unpack('>dd', s)
    if (st == CLOSED or st == DISABLED or st == METRICS_ONLY) and ep >= 1 and ep < MAXN and ep % 1 == 0 then
      -- writes: none.
      return ep * STATE_CODES + st
    end
  end
elseif op == 'record' then
  local wk, wsize, min_calls, frt, srt, slow_ms, max_cf, idle_ms = struct.unpack('>dddddddd', ARGV[3])
  -- validate: S's type (the HMGET); s whole and bounded; the ring's byte at the next slot and
  -- the figures without it (0 <= failures, slow <= calls < window), so the write keeps them
  -- consistent. Anything else falls through to the general path, which raises the fault.
  local raw = redis.call('HMGET', S, 's', 'r')
  local s, ring = raw[1], raw[2]
  if wk == WINDOW_COUNT and ((not s and not ring) or (s and ring and #s == SLEN and #ring == wsize)) then
    local st, ep, cf, pos, n, nf, ns = CLOSED, 1, 0, 0, 0, 0, 0
    if s then
      st, ep, cf, pos, n, nf, ns = struct.unpack(SFMT, s)
    else
      ring = string.rep('.', wsize)
    end
    if (st == CLOSED or st == METRICS_ONLY) and ep >= 1 and ep < MAXN and ep % 1 == 0 and pos >= 0
      and pos < wsize and pos % 1 == 0 and n >= 0 and n <= wsize and n % 1 == 0 and nf >= 0
      and nf <= n and nf % 1 == 0 and ns >= 0 and ns <= n and ns % 1 == 0 and cf >= 0
      and cf < MAXN - 1 and cf % 1 == 0 then
      local pep, _, outcome, duration = struct.unpack('>dddd', ARGV[7])
      if pep ~= ep then return (ep * STATUS_CODES + STALE) * STATE_CODES + st end
      if outcome == OUTCOME_IGNORED then
        return (ep * STATUS_CODES + IGNORED) * STATE_CODES + st
      end
      -- The call leaving the window: S ok, F failed, s slow, f failed and slow, . none.
      local old = string.byte(ring, pos + 1)
      if old == 83 then
        n = n - 1
      elseif old == 70 then
        n, nf = n - 1, nf - 1
      elseif old == 115 then
        n, ns = n - 1, ns - 1
      elseif old == 102 then
        n, nf, ns = n - 1, nf - 1, ns - 1
      elseif old ~= 46 then
        n = -1
      end
      if n >= 0 and nf >= 0 and ns >= 0 and nf <= n and ns <= n and n < wsize then
        local slow = duration >= slow_ms
        local c
        n = n + 1
        if outcome == FAILURE then
          nf, cf = nf + 1, cf + 1
          c = 'F'
          if slow then c, ns = 'f', ns + 1 end
        else
          cf = 0
          c = 'S'
          if slow then c, ns = 's', ns + 1 end
        end
        if st ~= CLOSED or not ((max_cf > 0 and cf >= max_cf)
            or (n >= min_calls and (nf / n >= frt or ns / n >= srt))) then
          -- writes: s and r, the idle expiry now and then.
          ring = string.sub(ring, 1, pos) .. c .. string.sub(ring, pos + 2)
          pos = pos + 1
          if pos == wsize then pos = 0 end
          if s then
            redis.call('HSET', S, 's', struct.pack(SFMT, st, ep, cf, pos, n, nf, ns), 'r', ring)
          else
            -- The state's first write stores the rules too (see `g` above; reading them on
            -- every record would cost the hot path, so later changes of rules of the same
            -- window size are stored by the next transition).
            redis.call('HSET', S, 's', struct.pack(SFMT, st, ep, cf, pos, n, nf, ns), 'r', ring,
              'g', ARGV[3])
          end
          if st == CLOSED and redis.call('PTTL', S) < idle_ms * 0.75 then
            redis.call('PEXPIRE', S, idle_ms)
          end
          return (ep * STATUS_CODES + RECORDED) * STATE_CODES + st
        end
      end
    end
  end
end

local now = ck_now(ARGV[2])
-- The breaker's state (b) and rules (cfg) live in two tables so the helper functions below
-- capture two upvalues instead of dozens.
local b, cfg = {}, {}
cfg.wk, cfg.wsize, cfg.min_calls, cfg.frt, cfg.srt, cfg.slow_ms, cfg.max_cf, cfg.idle_ms,
  cfg.bucket_ms, cfg.open_base, cfg.open_factor, cfg.open_max, cfg.permits, cfg.successes,
  cfg.lease_ms, cfg.max_wait = struct.unpack('>dddddddddddddddd', ARGV[3])
cfg.wkind = cfg.wk == WINDOW_COUNT and 'c' or 't'
cfg.channel, cfg.name = ARGV[4], ARGV[5]

local NAMES = {
  [CLOSED] = 'closed', [OPEN] = 'open', [HALF_OPEN] = 'half_open', [FORCED_OPEN] = 'forced_open',
  [DISABLED] = 'disabled', [METRICS_ONLY] = 'metrics_only',
}
local MAXI = MAXN - 1

-- validate: every operation. S's type: the HMGET below is the first call on S. s and c: their
-- length, then every number whole and in bounds (ck_int). The count window: the figures within
-- the ring (a ring of another length starts a fresh window), and for a record the byte of r it
-- replaces and the figures without it. The time window: every bucket parsed and
-- bounded. P (open or half-open only; no other state writes it): its type (the ZRANGE, its
-- first call) and every lease deadline bounded. Then settle, the operation and save only work
-- on these checked numbers.
local fields = { 's', 'c', 'g' }
if cfg.wkind == 'c' then
  fields[4] = 'r'
else
  for i = 0, cfg.wsize - 1 do fields[#fields + 1] = 'b' .. i end
end
local raw = redis.call('HMGET', S, unpack(fields))
-- The rules as the last writer stored them (written again by save() when they differ).
local stored_rules = raw[3]
b.st, b.ep, b.cf, b.pos, b.wn, b.wnf, b.wns = CLOSED, 1, 0, 0, 0, 0, 0
b.oa, b.ou, b.rc, b.hs, b.hok = 0, 0, 0, 0, 0
if raw[1] then
  if #raw[1] ~= SLEN then
    ck_corrupt(S, 'field s: ' .. #raw[1] .. ' bytes, not ' .. SLEN)
  end
  local st, ep, cf, pos, n, nf, ns = struct.unpack(SFMT, raw[1])
  b.st = ck_int(st, S, 'field s: state', METRICS_ONLY)
  b.ep = ck_int(ep, S, 'field s: epoch', MAXI)
  b.cf = ck_int(cf, S, 'field s: consecutive failures', MAXI)
  b.pos = ck_int(pos, S, 'field s: next slot', MAXI)
  b.wn = ck_int(n, S, 'field s: calls', MAXI)
  b.wnf = ck_int(nf, S, 'field s: failures', MAXI)
  b.wns = ck_int(ns, S, 'field s: slow calls', MAXI)
end
if raw[2] then
  if #raw[2] ~= CLEN then
    ck_corrupt(S, 'field c: ' .. #raw[2] .. ' bytes, not ' .. CLEN)
  end
  local oa, ou, rc, hs, hok = struct.unpack(CFMT, raw[2])
  b.oa = ck_int(oa, S, 'field c: opened at', MAXI)
  b.ou = ck_int(ou, S, 'field c: open until', MAXI)
  b.rc = ck_int(rc, S, 'field c: re-openings', MAXI)
  b.hs = ck_int(hs, S, 'field c: half-open since', MAXI)
  b.hok = ck_int(hok, S, 'field c: half-open successes', MAXI)
end
if b.ep == 0 then b.ep = 1 end

if cfg.wkind == 'c' then
  local ring = raw[4]
  if ring and #ring == cfg.wsize then
    if not (b.pos < cfg.wsize and b.wn <= cfg.wsize and b.wnf <= b.wn and b.wns <= b.wn) then
      ck_corrupt(S, string.format('field s: next slot %d, calls %d, failures %d, slow %d do not '
        .. 'fit a window of %d', b.pos, b.wn, b.wnf, b.wns, cfg.wsize))
    end
    b.ring = ring
  else
    -- Absent, or the window's size was changed: a fresh window, written with the figures
    -- (figures of an empty window over the old ring would not match it).
    b.ring, b.pos, b.wn, b.wnf, b.wns = string.rep('.', cfg.wsize), 0, 0, 0, 0
    b.ring_fresh = ring ~= nil
  end
  -- A record reads one byte of the ring, the call leaving the window (scanning all of it
  -- would cost the hot path microseconds): that byte is checked, the others when their turn
  -- comes.
  if op == 'record' and (b.st == CLOSED or b.st == METRICS_ONLY) then
    local old = string.sub(b.ring, b.pos + 1, b.pos + 1)
    local n, nf, ns = b.wn, b.wnf, b.wns
    if not string.find('.SFsf', old, 1, true) then
      ck_corrupt(S, string.format('field r: byte %d is %d, not one of . S F s f', b.pos,
        string.byte(old)))
    end
    if old ~= '.' then n = n - 1 end
    if old == 'F' or old == 'f' then nf = nf - 1 end
    if old == 's' or old == 'f' then ns = ns - 1 end
    if not (n >= 0 and nf >= 0 and ns >= 0 and nf <= n and ns <= n and n < cfg.wsize) then
      ck_corrupt(S, string.format('field s: calls %d, failures %d, slow %d do not match r '
        .. '(%s at slot %d)', b.wn, b.wnf, b.wns, old, b.pos))
    end
  end
else
  -- slots[i]: { bucket id, calls, failures, slow } or false.
  b.slots = {}
  for i = 1, cfg.wsize do
    local v = raw[3 + i]
    if v then
      local what = 'field b' .. (i - 1)
      local id, c, f, s = string.match(v, '^(%d+):(%d+):(%d+):(%d+)$')
      if not id then ck_corrupt(S, what .. ': not <bucket>:<calls>:<failures>:<slow>') end
      id = ck_int(id, S, what .. ': bucket', MAXI)
      c = ck_int(c, S, what .. ': calls', MAXI)
      f = ck_int(f, S, what .. ': failures', c)
      s = ck_int(s, S, what .. ': slow calls', c)
      b.slots[i] = { id, c, f, s }
    else
      b.slots[i] = false
    end
  end
end

-- Probe leases (only half-open holds any: every other transition deletes them), read whole:
-- at most K in normal operation.
b.leases, b.probes_n = {}, 0
if b.st == HALF_OPEN or b.st == OPEN then
  local list = redis.call('ZRANGE', P, 0, -1, 'WITHSCORES')
  for i = 1, #list, 2 do
    local deadline = tonumber(list[i + 1])
    if not (deadline and deadline <= MAXI) then
      -- (No control character in an error reply.)
      local member = string.gsub(string.sub(list[i], 1, 40), '%c', '?')
      ck_corrupt(P, 'probe "' .. member .. '": lease deadline ' .. list[i + 1] .. ' out of bounds')
    end
    b.leases[list[i]] = deadline
    b.probes_n = b.probes_n + 1
  end
end

-- The arguments: a force's target.
local force_to
if op == 'force' then
  force_to = ({ forced_open = FORCED_OPEN, disabled = DISABLED, metrics_only = METRICS_ONLY })[ARGV[6]]
  if not force_to then return ck_fail('BADOP', 'force ' .. ARGV[6]) end
end

-- writes: from here on, only through the functions below, on the numbers checked above.
b.dirty = false       -- the numbers changed: s and c are written by save()
b.state_dirty = false -- a transition
b.ring_dirty = false
b.changed = {}        -- time window: field -> new value, written by save()

-- The window's figures: calls, failures, slow.
local function window()
  if cfg.wkind == 'c' then return b.wn, b.wnf, b.wns end
  local current = math.floor(now / cfg.bucket_ms)
  local n, nf, ns = 0, 0, 0
  for i = 1, cfg.wsize do
    local slot = b.slots[i]
    if slot and slot[1] > current - cfg.wsize and slot[1] <= current then
      n, nf, ns = n + slot[2], nf + slot[3], ns + slot[4]
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
    b.dirty, b.ring_dirty = true, true
    return
  end
  local id = math.floor(now / cfg.bucket_ms)
  local i = (id % cfg.wsize) + 1
  local c, f, s = 0, 0, 0
  local slot = b.slots[i]
  if slot and slot[1] == id then c, f, s = slot[2], slot[3], slot[4] end
  -- (f, s <= c <= MAXI stays so: each stops at MAXI.)
  c = math.min(c + 1, MAXI)
  if failed then f = math.min(f + 1, MAXI) end
  if slow then s = math.min(s + 1, MAXI) end
  b.slots[i] = { id, c, f, s }
  b.changed['b' .. (i - 1)] = string.format('%d:%d:%d:%d', id, c, f, s)
end

local function clear_window()
  if cfg.wkind == 'c' then
    b.ring, b.pos, b.wn, b.wnf, b.wns = string.rep('.', cfg.wsize), 0, 0, 0, 0
    b.dirty, b.ring_dirty = true, true
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
  payload.state = NAMES[b.st]
  payload.epoch = b.ep
  redis.call('PUBLISH', cfg.channel .. kind, ck_envelope(kind, 'circuit-breaker', cfg.name, now, cjson.encode(payload)))
end

local function open_for(reopenings)
  local d = cfg.open_base * (cfg.open_factor ^ reopenings)
  if d > cfg.open_max then d = cfg.open_max end
  return math.floor(d)
end

local function drop_probes()
  if b.probes_n > 0 then
    redis.call('DEL', P)
    b.leases, b.probes_n = {}, 0
  end
end

local function go_open(reason, figures)
  if b.st == HALF_OPEN or b.st == OPEN then b.rc = math.min(b.rc + 1, MAXI) else b.rc = 0 end
  b.st, b.ep, b.oa, b.ou = OPEN, math.min(b.ep + 1, MAXI), now, now + open_for(b.rc)
  b.hok, b.cf = 0, 0
  b.state_dirty, b.dirty = true, true
  clear_window()
  drop_probes()
  figures.reason = reason
  figures.open_until = b.ou
  figures.reopenings = b.rc
  emit('opened', figures)
end

local function go_half_open()
  b.st, b.ep, b.hs, b.hok = HALF_OPEN, math.min(b.ep + 1, MAXI), now, 0
  b.state_dirty, b.dirty = true, true
  drop_probes()
  emit('half_opened', {})
end

local function go_closed(reason)
  b.st, b.ep, b.hok, b.cf, b.rc = CLOSED, math.min(b.ep + 1, MAXI), 0, 0, 0
  b.state_dirty, b.dirty = true, true
  clear_window()
  drop_probes()
  emit('closed', { reason = reason })
end

-- Lazy transitions on the server clock: open -> half-open, half-open -> open after max wait;
-- expired probe leases are dropped.
local function settle()
  if b.st == OPEN and now >= b.ou then go_half_open() end
  if b.st == HALF_OPEN and cfg.max_wait > 0 and now - b.hs >= cfg.max_wait then
    go_open('half_open_timeout', {})
    if now >= b.ou then go_half_open() end
  end
  if b.st == HALF_OPEN and b.probes_n > 0 then
    local expired = 0
    for permit, deadline in pairs(b.leases) do
      if deadline <= now then
        b.leases[permit] = nil
        expired = expired + 1
      end
    end
    if expired > 0 then
      redis.call('ZREMRANGEBYSCORE', P, '-inf', now)
      b.probes_n = b.probes_n - expired
    end
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
  local args = {}
  if b.dirty then
    args[1], args[2] = 's', struct.pack(SFMT, b.st, b.ep, b.cf, b.pos, b.wn, b.wnf, b.wns)
    args[3], args[4] = 'c', struct.pack(CFMT, b.oa, b.ou, b.rc, b.hs, b.hok)
    if stored_rules ~= ARGV[3] then
      args[#args + 1] = 'g'
      args[#args + 1] = ARGV[3]
    end
  end
  if b.ring_dirty or (b.dirty and b.ring_fresh) then
    args[#args + 1] = 'r'
    args[#args + 1] = b.ring
  end
  for k, v in pairs(b.changed) do
    args[#args + 1] = k
    args[#args + 1] = v
  end
  if #args > 0 then redis.call('HSET', S, unpack(args)) end
  if b.st == FORCED_OPEN or b.st == DISABLED or b.st == METRICS_ONLY then
    if b.state_dirty then redis.call('PERSIST', S) end
  elseif b.st == CLOSED then
    -- Refresh the idle expiry only now and then: a quarter of it at most goes unrefreshed.
    if #args > 0 and (b.state_dirty or redis.call('PTTL', S) < cfg.idle_ms * 0.75) then
      redis.call('PEXPIRE', S, cfg.idle_ms)
    end
  elseif b.state_dirty then
    -- Open or half-open: keep it until well after the open period.
    redis.call('PEXPIRE', S, math.max(b.ou - now, 0) + cfg.idle_ms)
  end
  if b.probes_n > 0 then redis.call('PEXPIRE', P, cfg.lease_ms + cfg.idle_ms) end
end

if op == 'acquire' then
  settle()
  local admitted, kind, retry = 0, KIND_NONE, 0
  if b.st == CLOSED then
    admitted, kind = 1, KIND_NORMAL
  elseif b.st == DISABLED then
    admitted, kind = 1, KIND_BYPASS
  elseif b.st == METRICS_ONLY then
    admitted, kind = 1, KIND_METRICS_ONLY
  elseif b.st == OPEN then
    retry = b.ou - now
  elseif b.st == HALF_OPEN then
    if b.probes_n < cfg.permits then
      local permit = ARGV[6]
      redis.call('ZADD', P, now + cfg.lease_ms, permit)
      if not b.leases[permit] then b.probes_n = b.probes_n + 1 end
      b.leases[permit] = now + cfg.lease_ms
      admitted, kind = 1, KIND_PROBE
    else
      local first
      for _, deadline in pairs(b.leases) do
        if not first or deadline < first then first = deadline end
      end
      -- Ask again when the probes are likely done: the base open period's scale, at most
      -- HALF_OPEN_RETRY_CAP_MS, and no later than the first lease frees a slot. Not the lease
      -- itself: it is long (30 s by default), and the probes close it sooner.
      retry = math.max(math.min((first or now) - now, cfg.open_base, HALF_OPEN_RETRY_CAP_MS), 1)
    end
  end
  save()
  return { admitted, b.st, b.ep, retry, kind }
elseif op == 'record' then
  local permit = ARGV[6]
  local pep, pkind, outcome, duration = struct.unpack('>dddd', ARGV[7])
  if pkind == KIND_PROBE and b.leases[permit] then
    redis.call('ZREM', P, permit)
    b.leases[permit] = nil
    b.probes_n = b.probes_n - 1
  end
  settle()
  local status = RECORDED
  if pep ~= b.ep then
    status = STALE
  elseif outcome == OUTCOME_IGNORED then
    status = IGNORED
  elseif b.st == DISABLED or b.st == FORCED_OPEN or b.st == OPEN then
    status = NOT_COUNTED
  else
    local failed = outcome == FAILURE
    local slow = duration >= cfg.slow_ms
    if b.st == HALF_OPEN then
      if failed then
        go_open('probe_failed', {})
      else
        b.hok = math.min(b.hok + 1, MAXI)
        b.dirty = true
        if b.hok >= cfg.successes then go_closed('probes_succeeded') end
      end
    else
      add_to_window(failed, slow)
      local was = b.cf
      if failed then b.cf = math.min(b.cf + 1, MAXI) else b.cf = 0 end
      if b.cf ~= was then b.dirty = true end
      if b.st == CLOSED then trip_check() end
    end
  end
  save()
  local answer = (b.ep * STATUS_CODES + status) * STATE_CODES + b.st
  -- Open: how long it stays so (the caller's fallback keeps it open that long).
  if b.st == OPEN then return { answer, math.max(b.ou - now, 0) } end
  return answer
elseif op == 'snapshot' then
  settle()
  save()
  local n, nf, ns = window()
  return { b.st, b.ep, n, nf, ns, b.cf, b.oa, b.ou, b.hok, b.probes_n, b.rc, now }
elseif op == 'force' then
  b.st, b.ep = force_to, math.min(b.ep + 1, MAXI)
  b.state_dirty, b.dirty = true, true
  drop_probes()
  emit('forced', {})
  save()
  return { b.st, b.ep }
elseif op == 'clear' then
  settle()
  b.st, b.ep, b.hok, b.cf, b.rc = CLOSED, math.min(b.ep + 1, MAXI), 0, 0, 0
  b.state_dirty, b.dirty = true, true
  clear_window()
  drop_probes()
  emit('cleared', {})
  save()
  return { b.st, b.ep }
end
return ck_fail('BADOP', op)
