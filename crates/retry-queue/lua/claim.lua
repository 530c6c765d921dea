-- claim: leases up to n ready tasks, after reclaiming expired leases (a stall: back to ready,
-- or dead-lettered as `stalled` past the max stalls) and promoting due delayed tasks; applies
-- the dead-letter queue's age cap. Runs after lib/queue.lua and, in `rare()` and
-- `group_helpers()`, the helper pieces src/scripts.rs lists for it, made on first use: the hot
-- path (no lease expired, no delayed task due, nothing dead-lettered, no group, no rate limit)
-- makes none.
--
-- KEYS: all of lib/queue.lua's; writes leased, leases, ready, urgent, delayed, tasks, info
--   (token, dead), starts with a rate limit, and dlq, dead, errors when dead-lettering; with
--   groups, gstate, gready, the groups' lanes and starts, and glease when a reclaimed lease's
--   group is there.
-- Order: the urgent lane by rank (priority, then first in first out), then the groups that
-- may start a task (lib/serve_groups.lua: the longest waiting first, each by rank), then the
-- ready list's front; reclaimed and promoted tasks join their lane behind the tasks ready
-- before them (a group's: its lane, for the next claim).
-- ARGV[3] n (at most MAX_BATCH, 500; none taken while the queue is paused), ARGV[4] promote
-- limit, ARGV[5] reclaim limit, ARGV[6..] (a claim by capabilities) the groups to serve, in
-- the caller's order, in place of every group that may start a task
-- -> { now, next_due|NONE, next_deadline|NONE, first token, next_start|NONE, id, record, id,
--      record, ... }: the k-th task (from 0) got token first + k, deadline now + its lease;
--    next_start: when the rate limit lets the next task start (NONE: not limited now)
-- Codes: NONE. Events: stalled, dead_lettered, wake (also after moving tasks on hold).

local n, plimit, rlimit = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local caps = nil
if #ARGV >= 6 then
  caps = {}
  for i = 6, #ARGV do caps[#caps + 1] = ARGV[i] end
end
-- The pause flag, the token counter and the limits, in one read. A paused queue
-- (lua/pause.lua) takes no task: the claim still reclaims and promotes.
local info = redis.call('HMGET', K_INFO, 'paused', 'token', 'max_leased', 'rate_max', 'rate_ms',
  'grouped', 'held_until')
-- Whether any task ever named a group (then leases may be a group's).
local grouped = ck_int(info[6], K_INFO, 'field grouped', 1) == 1
local paused = ck_int(info[1], K_INFO, 'field paused', 1) == 1
local max_leased = ck_int(info[3], K_INFO, 'field max_leased', MAXL) or 0
local rate_max = ck_int(info[4], K_INFO, 'field rate_max', MAXR) or 0
local rate_ms = ck_int(info[5], K_INFO, 'field rate_ms', MAXD) or 0
if paused then n = 0 end
-- validate: leased, delayed, ready, tasks and dlq are read before any write; the token
-- counter is decoded; each record claimed must be whole with a lease in bounds, each one
-- reclaimed whole and in bounds (else it is dead-lettered as malformed, alone); leases and
-- the dead-letter keys are type-checked when written. The hot path (no lease expired, no
-- delayed task due) makes no table it does not answer with.
local first_lease = redis.call('ZRANGE', K_LEASED, '0', '0', 'WITHSCORES')
local next_deadline = tonumber(first_lease[2] or NONE)
local expired, exp_recs = nil, nil
if first_lease[2] and next_deadline <= now then
  expired = redis.call('ZRANGEBYSCORE', K_LEASED, '-inf', string.format('%d', now), 'LIMIT', '0',
    string.format('%d', rlimit))
elseif first_lease[2] and next_deadline > now + MAXD then
  -- A deadline no lease can have (a lease is at most MAXD long), written by something else:
  -- reclaimed now rather than never. The first is the earliest, so all are beyond.
  expired = redis.call('ZRANGE', K_LEASED, '0', string.format('%d', rlimit - 1))
end
local exp_groups, exp_legacy = nil, nil
if expired then
  exp_recs = redis.call('HMGET', K_TASKS, unpack(expired))
  if grouped then
    local vals = ck_read('hash', 'HMGET', K_LEASES, unpack(expired))
    local gh = group_helpers()
    exp_groups = {}
    for i = 1, #expired do
      local _, g = gh.lease_of(vals[i])
      exp_groups[i] = g or false
    end
    exp_groups, exp_legacy = gh.lease_groups(expired, exp_groups)
  else
    ck_expect_type(K_LEASES, 'hash')
  end
end
local first_due = redis.call('ZRANGE', K_DELAYED, '0', '0', 'WITHSCORES')
local next_due = tonumber(first_due[2] or NONE)
local due = nil
if first_due[2] and next_due <= now then
  due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', string.format('%d', now), 'LIMIT', '0',
    string.format('%d', plimit))
elseif first_due[2] and next_due > now + MAXD then
  -- A due time no delay can give (at most MAXD ahead): due now rather than never.
  due = redis.call('ZRANGE', K_DELAYED, '0', string.format('%d', plimit - 1))
end
-- The promoted tasks' records, for their priorities (a record that cannot be used goes to the
-- list, whose claim dead-letters it).
local due_recs = due and #due > 0 and redis.call('HMGET', K_TASKS, unpack(due))
-- The limits (lua/limits.lua): at most max_leased tasks leased at once (the leases this claim
-- reclaims no longer count), at most rate_max starts in any rate_ms (a sliding log of the
-- starts: exact). A claim over the rate answers when the next start is allowed.
local next_start = NONE
if n > 0 and max_leased > 0 then
  local held = redis.call('ZCARD', K_LEASED) - (expired and #expired or 0)
  n = math.max(0, math.min(n, max_leased - held))
end
-- (The queue's log of starts is read and written with the groups' helpers: a group's log has
-- the same layout.) `logged`: the starts in its window, when this claim may start some.
local logged = nil
if n > 0 and rate_max > 0 and rate_ms > 0 then
  local recent, wait = group_helpers().log_recent(K_STARTS, now - rate_ms, rate_max, rate_ms)
  if wait then
    next_start = wait
    n = 0
  else
    n = math.min(n, rate_max - recent)
    logged = recent
  end
end
-- The ids this claim takes, in the order they come to the front of their lanes: the urgent
-- lane first (by rank), then the ready list's front (its RPOP end). Reclaimed and promoted tasks
-- join their lane's back: their ranks order them after the urgent tasks there now, and in the
-- list they come after the tasks there now.
local take, was_empty, urgent = {}, nil, nil
-- Reclaimed leases: back to ready (a stall) or, after too many stalls or with a record that
-- cannot be used, to the DLQ. `back` maps a reclaimed id to its rewritten record.
local sets, back, stalled, stalls, bad = nil, nil, nil, nil, nil
local pushed, prios = nil, nil
-- Tasks back to a group's lanes (lib/to_lane.lua); the groups' leases reclaimed, and
-- the groups with ready tasks among theirs.
local gpush, gfreed, greopen = nil, nil, nil
if expired or due then
  sets, back, stalled, stalls, bad, pushed, prios = {}, {}, {}, {}, {}, {}, {}
  local h = rare()
  if exp_groups then
    local names = {}
    for i = 1, #expired do
      if exp_groups[i] then names[#names + 1] = exp_groups[i] end
    end
    if #names > 0 then
      group_helpers().load_groups(names)
      gfreed, greopen = {}, {}
      for i, id in ipairs(expired) do
        local g = exp_groups[i]
        if g then
          G.states[g][1] = G.states[g][1] - 1
          gfreed[#gfreed + 1] = id
        end
      end
      -- A group whose lease went (whatever becomes of its task) may start a task again: one
      -- that was at its limit left gready, and goes back (a claim drops it if its lane is
      -- empty).
      ck_expect_type(K_GREADY, 'zset')
      for g, s in pairs(G.states) do
        if s[2] > 0 and s[5] >= s[2] then greopen[#greopen + 1] = g end
      end
    end
  end
  for i, id in ipairs(expired or {}) do
    local rec = exp_recs[i]
    local a, s, prev, _, _, _, prio = h.head(rec)
    if not a then
      bad[#bad + 1] = id
      bad[id] = rec or false
    else
      s = s + 1
      stalls[#stalls + 1] = { id, s }
      if s > h.max_stalls then
        stalled[#stalled + 1] = { id, rec, a, s, prev }
      else
        local r = h.rewrite(rec, a, s, prev, now)
        sets[#sets + 1] = id
        sets[#sets + 1] = r
        back[id] = r
        local g = h.group_of(rec)
        if g then
          gpush = group_helpers().to_lane(gpush, g, prio, id)
        else
          pushed[#pushed + 1] = id
          prios[#pushed] = prio
        end
      end
    end
  end
  for i, id in ipairs(due or {}) do
    local g = h.group_of(due_recs[i])
    if g then
      gpush = group_helpers().to_lane(gpush, g, h.priority(due_recs[i]), id)
    else
      pushed[#pushed + 1] = id
      prios[#pushed] = h.priority(due_recs[i])
    end
  end
  if gpush then group_helpers().check_groups(gpush) end
end
-- The pushed tasks that are urgent, ranked; those not taken are added to `urgent`.
local ranked, order = nil, nil
if pushed then
  for i, id in ipairs(pushed) do
    if prios[i] > 0 then
      order = order or H.order()
      ranked = ranked or {}
      ranked[#ranked + 1] = { tonumber(H.rank(prios[i], order)), id }
    end
  end
end
-- The urgent lane's first n (a prefix of it is taken: writes remove it by rank).
local from_urgent, urgent_taken = {}, 0
if n > 0 and not ranked then
  -- As they stand, without the scores (Redis would format each the slow way for Lua to parse).
  urgent = redis.call('ZRANGE', K_URGENT, '0', string.format('%d', n - 1))
  for i, id in ipairs(urgent) do take[i], from_urgent[i] = id, id end
elseif n > 0 then
  -- Those there now (already by rank) merged with the pushed.
  urgent = redis.call('ZRANGE', K_URGENT, '0', string.format('%d', n - 1), 'WITHSCORES')
  local cand = {}
  for i = 1, #urgent, 2 do cand[#cand + 1] = { tonumber(urgent[i + 1]), urgent[i], true } end
  for _, r in ipairs(ranked) do cand[#cand + 1] = r end
  -- As the zset orders them: by rank, then by id (bytes).
  table.sort(cand, function(x, y)
    if x[1] ~= y[1] then return x[1] < y[1] end
    return x[2] < y[2]
  end)
  for i = 1, math.min(n, #cand) do
    take[i] = cand[i][2]
    if cand[i][3] then
      from_urgent[#from_urgent + 1] = cand[i][2]
    else
      urgent_taken = urgent_taken + 1
      ranked[cand[i][2]] = true
    end
  end
end
-- The groups, after the urgent lane (lib/serve_groups.lua).
local served = nil
if grouped and n > #take then
  served = group_helpers().serve_groups(n - #take, gpush, caps)
  -- (take[served.at + k] is served.take[k])
  served.at = #take
  for _, id in ipairs(served.take) do take[#take + 1] = id end
  if served.next_start and (next_start == NONE or served.next_start < next_start) then
    next_start = served.next_start
  end
end
local n_list = n - #take
local from_front, from_pushed = 0, 0
if n_list > 0 then
  local tail = redis.call('LRANGE', K_READY, string.format('%d', -n_list), '-1')
  local len = #tail
  for i = 1, len do take[#take + 1] = tail[len + 1 - i] end
  from_front = len
  was_empty = len == 0 and #urgent == 0
elseif n > 0 then
  -- (LLEN always: it checks the type of the list the pushed tasks may go to.)
  was_empty = redis.call('LLEN', K_READY) == 0 and #urgent == 0
elseif expired or due then
  was_empty = rare().none_ready()
end
if pushed then
  for i, id in ipairs(pushed) do
    if #take >= n then break end
    if prios[i] == 0 then
      take[#take + 1] = id
      from_pushed = from_pushed + 1
    end
  end
end
-- The records of the ids taken (the reclaimed ones are rewritten above).
local recs = take
if #take > 0 then
  if back and next(back) then
    local want = {}
    for _, id in ipairs(take) do
      if not back[id] then want[#want + 1] = id end
    end
    local got, r = {}, {}
    if #want > 0 then r = redis.call('HMGET', K_TASKS, unpack(want)) end
    for i, id in ipairs(want) do got[id] = r[i] or false end
    recs = {}
    for i, id in ipairs(take) do recs[i] = back[id] or got[id] end
  else
    recs = redis.call('HMGET', K_TASKS, unpack(take))
  end
end
local tok = 0
if #take > 0 then
  tok = ck_int(info[2], K_INFO, 'field token', EXACT - 1 - n) or 0
end
local out = { now, next_due, next_deadline, tok + 1, next_start }
local leases, tokens = {}, {}
-- The tokens as text of groups' tasks, for their starts (by position in the served tasks).
local gtokens = nil
local earliest = nil
-- Components on hold (lua/hold.lua: their breaker is open): their tasks taken now are not
-- leased but wait in `delayed` until the hold ends; no worker sees them before.
local holds, held = nil, nil
if #take > 0 and (ck_int(info[7], K_INFO, 'field held_until', EXACT) or 0) > now then
  local names, seen = {}, {}
  for i = 1, #take do
    local c = rare().component_of(recs[i])
    if c and not seen[c] then
      seen[c] = true
      names[#names + 1] = c
    end
  end
  if #names > 0 then
    local fields = {}
    for i, c in ipairs(names) do fields[i] = 'hold:' .. c end
    local untils = redis.call('HMGET', K_INFO, unpack(fields))
    for i, c in ipairs(names) do
      local u = tonumber(untils[i])
      if u and u > now and u <= now + MAXD then
        holds = holds or {}
        holds[c] = u
      end
    end
  end
end
for i, id in ipairs(take) do
  local rec = recs[i]
  local lease = nil
  -- Whether the record is whole with a lease in bounds (else dead-lettered as malformed).
  if rec and #rec >= HDR then
    local glen, l, plen, clen = struct.unpack('<BI8I2I2', rec, 36)
    if #rec >= HDR + plen + clen + glen and l >= 1 and l <= MAXD then lease = l end
  end
  local until_ = holds and lease and holds[H.component_of(rec)]
  if lease == nil then
    bad = bad or {}
    if bad[id] == nil then
      bad[#bad + 1] = id
      bad[id] = rec or false
    end
  elseif until_ then
    held = held or {}
    held[#held + 1] = { id, rec, until_ }
  else
    local deadline = now + lease
    if earliest == nil or deadline < earliest then earliest = deadline end
    tok = tok + 1
    leases[#leases + 1] = string.format('%d', deadline)
    leases[#leases + 1] = id
    local t = string.format('%d', tok)
    out[#out + 1] = id
    out[#out + 1] = rec
    local k = served and i - served.at
    local g = k and k >= 1 and served.gof[k]
    tokens[#tokens + 1] = id
    if g then
      -- A group's task: its lease names the group (lib/queue.lua).
      tokens[#tokens + 1] = t .. ':' .. g
      gtokens = gtokens or {}
      gtokens[k] = t
      G.states[g][1] = G.states[g][1] + 1
    else
      tokens[#tokens + 1] = t
    end
  end
end
local burying = (bad and #bad > 0) or (stalled and #stalled > 0)
local aged
if H or burying then
  local h = rare()
  if burying then h.check_bury() end
  aged = h.aged()
  if #aged > 0 then h.check_bury() end
else
  -- The age cap holds even while nothing new is dead-lettered: every claim applies it.
  local dlq_age = struct.unpack('<I8', CFG, 14)
  if dlq_age > 0 then
    aged = redis.call('ZRANGEBYSCORE', K_DLQ, '-inf', string.format('%d', now - dlq_age),
      'LIMIT', '0', '100')
    if #aged > 0 then rare().check_bury() end
  end
end
-- writes: (without reclaimed leases, the first write, the tokens' HSET, is what checks the
-- type of `leases` on the hot path)
if expired then
  redis.call('ZREM', K_LEASED, unpack(expired))
  redis.call('HDEL', K_LEASES, unpack(expired))
end
if earliest then
  redis.call('HSET', K_LEASES, unpack(tokens))
  redis.call('HINCRBY', K_INFO, 'token', string.format('%d', #tokens / 2))
  -- (The leases' tokens run from out[4], one each.)
  if logged then
    G.log_write(K_STARTS, now - rate_ms, logged, string.format('%d', out[4]), #leases / 2)
  end
end
if expired then
  for _, e in ipairs(stalls) do
    H.emit('stalled', string.format('"task":%s,"stalls":%d', H.jid(e[1]), e[2]))
  end
  if #sets > 0 then redis.call('HSET', K_TASKS, unpack(sets)) end
  for _, t in ipairs(stalled) do H.bury(t[1], t[2], t[3], t[4], t[5], 'stalled') end
  local l = redis.call('ZRANGE', K_LEASED, '0', '0', 'WITHSCORES')
  next_deadline = tonumber(l[2] or NONE)
  out[3] = next_deadline
end
if due then redis.call('ZREM', K_DELAYED, unpack(due)) end
-- (By rank: a ZREM would look each one up, in a small zset by a scan.)
if #from_urgent > 0 then
  redis.call('ZREMRANGEBYRANK', K_URGENT, '0', string.format('%d', #from_urgent - 1))
end
if from_front > 0 then redis.call('LTRIM', K_READY, '0', string.format('%d', -from_front - 1)) end
if pushed and #pushed > from_pushed + urgent_taken then
  -- The pushed tasks not taken, to their lanes' backs.
  local rest, rest_prios, skipped = {}, {}, 0
  for i, id in ipairs(pushed) do
    local taken
    if prios[i] > 0 then
      taken = ranked[id] == true
    else
      skipped = skipped + 1
      taken = skipped <= from_pushed
    end
    if not taken then
      rest[#rest + 1] = id
      rest_prios[#rest] = prios[i]
    end
  end
  H.push_ready(rest, rest_prios, order or 0)
  -- Others sleep only after seeing no ready task: wake them when there were none and some are
  -- left that this claim did not take (not while paused: they could take none of them).
  if was_empty and not paused then H.wake() end
end
if bad then
  for _, id in ipairs(bad) do H.bury_malformed(id, bad[id]) end
end
-- The groups: reclaimed leases let go, served groups' leases, lanes and starts, tasks back in
-- their lanes (waking the idle workers: the claim decides whether their group may start one).
if gfreed then
  if exp_legacy then redis.call('HDEL', K_GLEASE, unpack(exp_legacy)) end
  local at = string.format('%d', now)
  for _, g in ipairs(greopen) do redis.call('ZADD', K_GREADY, 'NX', at, g) end
  -- They were full: the idle workers' claims took none of their tasks.
  if #greopen > 0 and not paused then H.wake() end
end
if served then
  G.write_served(served, gtokens or {})
  -- A group this claim found full left gready, or one holds tasks an earlier build's process
  -- added that the next claim serves; the groups behind it, which this claim did not read, may
  -- have tasks to start: the idle workers claim again.
  if served.dropped and #take < n and not paused then rare().wake() end
end
if gpush and next(gpush) then
  G.push_groups(gpush)
  if not paused then H.wake() end
end
if G then G.save_groups() end
if earliest then
  redis.call('ZADD', K_LEASED, unpack(leases))
  if next_deadline < 0 or earliest < next_deadline then out[3] = earliest end
end
if held then
  -- On hold: due when the hold ends, spending no attempt.
  local h, sets_h, zs = rare(), {}, {}
  for _, t in ipairs(held) do
    local a, s, prev = h.head(t[2])
    if a then
      sets_h[#sets_h + 1] = t[1]
      sets_h[#sets_h + 1] = h.rewrite(t[2], a, s, prev, t[3])
    end
    zs[#zs + 1] = t[3]
    zs[#zs + 1] = t[1]
  end
  if #sets_h > 0 then redis.call('HSET', K_TASKS, unpack(sets_h)) end
  redis.call('ZADD', K_DELAYED, unpack(zs))
  -- Held tasks filled this claim: the lanes may hold more, that the workers should claim
  -- rather than sleep on (this claim hands out fewer than it took).
  if #take >= n and not paused then h.wake() end
end
if due or held then
  local d = redis.call('ZRANGE', K_DELAYED, '0', '0', 'WITHSCORES')
  out[2] = tonumber(d[2] or NONE)
end
if H and aged and (#aged > 0 or H.buried > 0) then H.trim_dlq(aged) end
-- The next due time and deadline the caller sleeps until: within bounds, else "now" (what is
-- left beyond the limits of this call, or scores written by something else).
for _, i in ipairs({ 2, 3, 5 }) do
  if out[i] ~= NONE and (out[i] < 0 or out[i] > now + MAXD) then out[i] = now end
end
return out
