-- settle: acks, fails, defers and dead-letters leased tasks, a batch of ops in one call. Runs
-- after lib/queue.lua and, in `rare()` and `group_helpers()`, the helper pieces src/scripts.rs
-- lists for it, made on first use (an ack makes none, unless `succeeded` events are on; the
-- ack of a group's task makes the groups' few).
--
-- KEYS: all of lib/queue.lua's; writes leased, leases, tasks, errors, delayed, info
--   (completed, dead), and dlq, dead when dead-lettering, gstate, gready (and glease, for a
--   lease made before `leases` named its group) for the tasks of groups; reads info's max_leased and, at that limit, both ready lanes. Then KEYS[QKEYS + 1..] the result key of each ack with a result, in the
--   ops' order (a string: struct '<I8' expires at (ms, this clock), then the result's bytes;
--   SET with PX its TTL).
-- ARGV[3] n, ARGV[4] struct n x '<BI8I8I8' (op: an OP_* code, id, token, x: the jitter draw
--   0..65535 of a fail (of a fail in place, plus 65536 times the attempt its holder ran: one
--   already recorded answers as the first time, writing nothing), the delay of a defer, the
--   result TTL ms of an ack (0: no result)), then
--   ARGV[5..] the strings of the ops in order: a fail's error; a dead-letter's reason, then its
--   error; an ack's result (when it has one)
-- -> { status, attempts, due, ... } per op (status: a SETTLED_* code; a retry in place answers
--    its delay in place of `due`)
-- Retry in place: a fail that may stay (OP_FAIL_IN_PLACE: its holder can run the task again)
-- and whose backoff is shorter than the queue's threshold keeps its lease (same token) to the
-- worker that failed it, extended by the backoff; that worker runs it again after the backoff.
-- Its attempt, error and event are recorded as for any retry; if the worker dies, the lease
-- runs out and the task is reclaimed with its attempts. Not while the queue is paused or
-- rate-limited, or its group is: those retries go through `delayed`, so that the claim decides
-- when they start.
-- Events: succeeded (when on, and always for an ack with a result: a waiter wakes on it),
--   retry_scheduled (`in_place` true for a retry in place), dead_lettered, wake.

-- Codes shared with Rust: the same names and numbers in `code` (src/code.rs).
-- Settle ops (ARGV[4]):
local OP_ACK, OP_FAIL, OP_DEFER, OP_DEAD_LETTER = 1, 2, 3, 4
-- A fail from a holder that can run the task again itself (a worker): it may stay leased.
local OP_FAIL_IN_PLACE = 5
-- Settle answers (one per op):
local SETTLED_LOST, SETTLED_ACKED, SETTLED_RETRYING = 0, 1, 2
local SETTLED_DEAD_LETTERED, SETTLED_DEFERRED, SETTLED_ALREADY = 3, 4, 5
local SETTLED_RETRYING_IN_PLACE = 6

local n, ops = tonumber(ARGV[3]), ARGV[4]
local kinds, ids, toks, xs, stay = {}, {}, {}, {}, {}
local pos = 1
for i = 1, n do
  kinds[i], ids[i], toks[i], xs[i], pos = struct.unpack('<BI8I8I8', ops, pos)
  -- (as text: lib/queue.lua)
  ids[i] = string.format('%d', ids[i])
  if kinds[i] == OP_FAIL_IN_PLACE then
    -- x: the draw, plus 65536 times the attempt its holder ran (to tell a replay).
    kinds[i], stay[i] = OP_FAIL, math.floor(xs[i] / 65536)
    xs[i] = xs[i] % 65536
  end
end
-- validate: leases is read; the records and histories the ops use are read and decoded (a
-- task whose record or history cannot be used is dead-lettered as malformed, alone); then
-- the keys the ops write are type-checked and the counters they bump decoded.
local held = redis.call('HMGET', K_LEASES, unpack(ids))
local emit_ok = string.byte(CFG, 1) == 1
-- Which ops hold their lease (the first of duplicates); the records of those that are no ack
-- (and of the acks too when `succeeded` events, which tell the attempt, are on), and of the
-- tasks no lease is held for (gone: already settled).
local valid, done, need, already, unheld = {}, {}, {}, {}, nil
local acks, others = 0, 0
-- The group each valid op's lease names (lib/queue.lua), by position.
local gof = {}
for i = 1, n do
  local id, v = ids[i], held[i]
  local h, g = tonumber(v), nil
  if not h and v then h, g = group_helpers().lease_of(v) end
  if h == toks[i] and not done[id] then
    done[id] = true
    valid[i] = true
    if g then gof[i] = g end
    if kinds[i] == OP_ACK then acks = acks + 1 else others = others + 1 end
    -- (results: an ack with a result tells its attempt in its `succeeded` event)
    if kinds[i] ~= OP_ACK or emit_ok or xs[i] > 0 then need[#need + 1] = id end
  elseif h == toks[i] or h == -toks[i] then
    already[i] = true
  elseif not held[i] then
    unheld = unheld or {}
    unheld[#unheld + 1] = i
  end
end
local recs, errs = {}, {}
local probe = need
if unheld then
  probe = {}
  for _, id in ipairs(need) do probe[#probe + 1] = id end
  for _, i in ipairs(unheld) do probe[#probe + 1] = ids[i] end
end
if #probe > 0 then
  local r = redis.call('HMGET', K_TASKS, unpack(probe))
  for i, id in ipairs(probe) do recs[id] = r[i] end
  for _, i in ipairs(unheld or {}) do
    if not recs[ids[i]] then already[i] = true end
  end
end
if acks + others == 0 then
  local out = {}
  for i = 1, n do
    out[3 * i - 2], out[3 * i - 1], out[3 * i] = already[i] and SETTLED_ALREADY or SETTLED_LOST, 0, 0
  end
  return out
end
if #need > 0 then
  local e = redis.call('HMGET', K_ERR, unpack(need))
  for i, id in ipairs(need) do errs[id] = e[i] end
else
  if #probe == 0 then ck_expect_type(K_TASKS, 'hash') end
  ck_expect_type(K_ERR, 'hash')
end
-- The counter the acks bump, the limits, and the pause flag (retries in place need neither).
local info = redis.call('HMGET', K_INFO, 'completed', 'max_leased', 'paused', 'rate_max',
  'grouped')
if acks > 0 then ck_int(info[1], K_INFO, 'field completed', EXACT - n) end
local max_leased = ck_int(info[2], K_INFO, 'field max_leased', MAXL) or 0
-- What each valid op that is no ack does: { a, s, prev, max, lease } of a usable record, or
-- false; a fail retried in place also gets its backoff in `in_place`.
local heads, burials, delays, in_place = nil, 0, 0, {}
-- Retries in place already recorded (a settle sent again after an error: its first try ran):
-- answered as then, nothing written.
local replay = {}
if others > 0 then
  heads = {}
  local h = rare()
  local may_stay = h.in_place > 0
    and ck_int(info[3], K_INFO, 'field paused', 1) ~= 1
    and (ck_int(info[4], K_INFO, 'field rate_max', MAXR) or 0) == 0
  for i = 1, n do
    local what, id = kinds[i], ids[i]
    if valid[i] and what ~= OP_ACK then
      local rec = recs[id]
      local a, s, prev, max, lease, plen = h.head(rec)
      if a and what ~= OP_DEFER and not h.history_ok(errs[id]) then a = nil end
      if a and what == OP_FAIL and a + 1 < max and not h.policy_ok(rec, plen) then a = nil end
      if not a then
        heads[i] = false
        burials = burials + 1
      else
        heads[i] = { a, s, prev, max, lease }
        if stay[i] and a >= stay[i] then
          replay[i], in_place[i] = true, prev
        elseif what == OP_DEAD_LETTER or (what == OP_FAIL and a + 1 >= max) then
          burials = burials + 1
        else
          local delay = what == OP_FAIL and h.backoff(rec, a + 1, prev, xs[i])
          local stays = delay and stay[i] and may_stay and delay < h.in_place
          if stays then
            -- Not for a group with a rate limit either: each start must go through a claim.
            local g = h.group_of(rec)
            if g then
              group_helpers().load_groups({ g })
              stays = G.states[g][3] == 0
            end
          end
          if stays then
            in_place[i] = delay
          else
            delays = delays + 1
          end
        end
      end
    end
  end
end
-- The leases that go: all but those of the retries in place, which stay leased; with groups,
-- how many of them each group held (`bare`: those whose lease names none).
local grouped = ck_int(info[5], K_INFO, 'field grouped', 1) == 1
local unlease, drops, bare = {}, nil, nil
for i = 1, n do
  if valid[i] and not in_place[i] then
    local id, g = ids[i], gof[i]
    unlease[#unlease + 1] = id
    if g and grouped then
      drops = drops or {}
      drops[g] = (drops[g] or 0) + 1
    elseif grouped then
      bare = bare or {}
      bare[#bare + 1] = id
    end
  end
end
if #unlease < acks + others then ck_expect_type(K_LEASED, 'zset') end
-- The leases of groups' tasks that go: their groups count fewer, and a group with ready tasks
-- that was at its limit (out of gready) may start one again. (A bare lease may still have its
-- group in glease: lib/lease_groups.lua.)
local greopen, legacy = nil, nil
if bare then
  local of
  of, legacy = group_helpers().lease_groups(bare, {})
  for k in ipairs(bare) do
    local g = of[k]
    if g then
      drops = drops or {}
      drops[g] = (drops[g] or 0) + 1
    end
  end
end
if drops then
  local gh, names = group_helpers(), {}
  for g in pairs(drops) do names[#names + 1] = g end
  gh.load_groups(names)
  greopen = {}
  for g, k in pairs(drops) do
    local s = gh.states[g]
    s[1] = s[1] - k
    -- Only a group that was at its limit left gready (lib/serve_groups.lua): it goes back,
    -- and a claim drops it again if its lane is empty.
    if s[2] > 0 and s[5] >= s[2] then greopen[#greopen + 1] = g end
  end
  if #greopen > 0 then ck_expect_type(K_GREADY, 'zset') end
end
-- The concurrency limit: a settle that frees a slot of a queue at its limit wakes the idle
-- workers (their claims took nothing while it was full).
local held_before = max_leased > 0 and redis.call('ZCARD', K_LEASED)
-- (With groups, their lanes may hold the waiting tasks: a spare wake-up is harmless.)
local waiting = held_before and held_before >= max_leased
  and (not rare().none_ready() or grouped)
if burials > 0 then H.check_bury() end
local first_due, aged = nil, nil
if delays > 0 then first_due = H.first_due() end
if burials > 0 then aged = H.aged() end
-- writes: (the first one, the ZREM from `leased`, checks that key's type)
local freed = #unlease > 0 and redis.call('ZREM', K_LEASED, unpack(unlease)) or 0
if waiting and held_before - freed < max_leased then H.wake() end
if drops then
  if legacy then redis.call('HDEL', K_GLEASE, unpack(legacy)) end
  G.save_groups()
  local at = string.format('%d', now)
  for _, g in ipairs(greopen) do redis.call('ZADD', K_GREADY, 'NX', at, g) end
  -- They were full: the idle workers' claims took none of their tasks.
  if #greopen > 0 then rare().wake() end
end
-- An ack's lease goes; any other settle leaves its token's mark (a retry in place keeps its
-- lease: its token stays).
local gone, marks = {}, {}
for i = 1, n do
  if valid[i] and not in_place[i] then
    if kinds[i] == OP_ACK then
      gone[#gone + 1] = ids[i]
    else
      marks[#marks + 1] = ids[i]
      marks[#marks + 1] = string.format('%d', -toks[i])
    end
  end
end
if #gone > 0 then redis.call('HDEL', K_LEASES, unpack(gone)) end
if #marks > 0 then redis.call('HSET', K_LEASES, unpack(marks)) end
local out, acked, sets, errsets, delayed, kept = {}, {}, {}, {}, {}, {}
local earliest = nil
local spos, kpos = 5, QKEYS + 1
for i = 1, n do
  local what, id = kinds[i], ids[i]
  local text, reason, rkey = nil, nil, nil
  if what == OP_ACK and xs[i] > 0 then
    -- results: an ack's result and its key (SET replaces a key of any type: nothing to check)
    text, rkey = ARGV[spos], KEYS[kpos]
    spos, kpos = spos + 1, kpos + 1
  elseif what == OP_FAIL then
    text = ARGV[spos]
    spos = spos + 1
  elseif what == OP_DEAD_LETTER then
    reason, text = ARGV[spos], ARGV[spos + 1]
    spos = spos + 2
  end
  local k = #out
  if not valid[i] then
    out[k + 1], out[k + 2], out[k + 3] = already[i] and SETTLED_ALREADY or SETTLED_LOST, 0, 0
  elseif what == OP_ACK then
    acked[#acked + 1] = id
    -- results: stored with the ack, expiring on this clock (the head) and Redis's (PX)
    if rkey then
      redis.call('SET', rkey, struct.pack('<I8', now + xs[i]) .. text, 'PX',
        string.format('%d', xs[i]))
    end
    if emit_ok or rkey then
      local rec, a = recs[id], 0
      if rec and #rec >= 4 then a = struct.unpack('<I4', rec) end
      rare().emit('succeeded', string.format('"task":"%d","attempt":%d', id, a + 1))
    end
    out[k + 1], out[k + 2], out[k + 3] = SETTLED_ACKED, 0, 0
  else
    local h = H
    local rec, head = recs[id], heads[i]
    if not head then
      h.bury_malformed(id, rec)
      out[k + 1], out[k + 2], out[k + 3] = SETTLED_DEAD_LETTERED, 0, 0
    else
      local a, s, prev, max = head[1], head[2], head[3], head[4]
      if replay[i] then
        out[k + 1], out[k + 2], out[k + 3] = SETTLED_RETRYING_IN_PLACE, a, prev
      elseif what == OP_DEAD_LETTER then
        errs[id] = h.with_error(errs[id], a + 1, text)
        errsets[#errsets + 1] = id
        errsets[#errsets + 1] = errs[id]
        h.bury(id, rec, a, s, prev, reason)
        out[k + 1], out[k + 2], out[k + 3] = SETTLED_DEAD_LETTERED, a, 0
      else
        local delay
        if what == OP_FAIL then
          a = a + 1
          errs[id] = h.with_error(errs[id], a, text)
          errsets[#errsets + 1] = id
          errsets[#errsets + 1] = errs[id]
          if a >= max then
            h.bury(id, rec, a, s, prev, 'exhausted')
            out[k + 1], out[k + 2], out[k + 3] = SETTLED_DEAD_LETTERED, a, 0
          elseif in_place[i] then
            -- Still leased to the same token, until the backoff and a whole lease are over.
            local d = in_place[i]
            sets[#sets + 1] = id
            sets[#sets + 1] = h.rewrite(rec, a, s, d, now + d)
            kept[#kept + 1] = string.format('%d', now + math.min(d + head[5], MAXD))
            kept[#kept + 1] = id
            h.emit('retry_scheduled', string.format(
              '"task":"%d","attempt":%d,"delay_ms":%d,"due_ms":%d,"in_place":true', id, a, d,
              now + d))
            out[k + 1], out[k + 2], out[k + 3] = SETTLED_RETRYING_IN_PLACE, a, d
          else
            delay = h.backoff(rec, a, prev, xs[i])
            prev = delay
          end
        else
          delay = xs[i]
        end
        if delay then
          local due = now + delay
          sets[#sets + 1] = id
          sets[#sets + 1] = h.rewrite(rec, a, s, prev, due)
          delayed[#delayed + 1] = string.format('%d', due)
          delayed[#delayed + 1] = id
          if earliest == nil or due < earliest then earliest = due end
          if what == OP_FAIL then
            h.emit('retry_scheduled', string.format(
              '"task":"%d","attempt":%d,"delay_ms":%d,"due_ms":%d', id, a, delay, due))
            out[k + 1], out[k + 2], out[k + 3] = SETTLED_RETRYING, a, due
          else
            out[k + 1], out[k + 2], out[k + 3] = SETTLED_DEFERRED, a, due
          end
        end
      end
    end
  end
end
if #acked > 0 then
  redis.call('HDEL', K_TASKS, unpack(acked))
  redis.call('HDEL', K_ERR, unpack(acked))
  redis.call('HINCRBY', K_INFO, 'completed', string.format('%d', #acked))
end
if #errsets > 0 then redis.call('HSET', K_ERR, unpack(errsets)) end
if #sets > 0 then redis.call('HSET', K_TASKS, unpack(sets)) end
if #kept > 0 then redis.call('ZADD', K_LEASED, unpack(kept)) end
if #delayed > 0 then
  redis.call('ZADD', K_DELAYED, unpack(delayed))
  -- Wake the sleepers when a retry is now the first task due.
  if not first_due or earliest <= first_due then H.wake() end
end
if aged then H.trim_dlq(aged) end
return out
