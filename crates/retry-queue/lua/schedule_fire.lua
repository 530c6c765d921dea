-- schedule_fire: fires due ticks of the queue's schedules, each at most once however many
-- schedulers call it: an op names the tick it read (T), and fires only while the schedule's
-- next tick is still T, moving it on to N in the same call (a compare-and-set on sched_due).
-- Its tasks are written the way lua/enqueue.lua writes them. Runs after lib/queue.lua and, in
-- `rare()` and `group_helpers()`, the helper pieces src/scripts.rs lists for it.
--
-- KEYS: all of lib/queue.lua's, then KEYS[QKEYS + 1] schedules, KEYS[QKEYS + 2] sched_due (lib/schedule.lua);
--   writes tasks, ready, urgent (a task with a priority), a group's lane, gready and gstate
--   (a task of a group), delayed, info (seq), schedules, sched_due.
-- ARGV[3] n, ARGV[4] struct n x '<I8I8I8I8': T the tick read, L the latest tick due at or
--   before now (0: park the schedule, its record does not decode in Rust), N the tick after
--   now (0: the schedule has no more ticks), M the ticks in [T, L) (missed: fired on time by
--   nobody); ARGV[5..4+n] the names (distinct), ARGV[5+n..4+2n] the specs T, L, N were
--   computed from
-- -> { now, (FIRE_*, x, y) per op }:
--   FIRE_FIRED, first task id, tasks enqueued (1, or 2 with a catch-up for the missed ticks)
--   FIRE_ALREADY, the next tick (0: none): another call fired T first; nothing written
--   FIRE_STALE: L or N does not fit now; nothing written (read again)
--   FIRE_CHANGED: the schedule's ticks changed since they were read; nothing written
--   FIRE_GONE: no such schedule (a stray entry of sched_due removed)
--   FIRE_MALFORMED: its record or tick does not decode: parked (out of sched_due, its record
--     kept for an operator; upserting it again re-arms it)
-- Events: fired {schedule, tick_ms, task, catch_up} per task enqueued; wake.

local FIRE_FIRED, FIRE_ALREADY, FIRE_STALE, FIRE_CHANGED, FIRE_GONE, FIRE_MALFORMED =
  1, 2, 3, 4, 5, 6

local K_SCHED, K_SDUE = KEYS[QKEYS + 1], KEYS[QKEYS + 2]
local n, nums = tonumber(ARGV[3]), ARGV[4]
local h = rare()
-- validate: each op's record and tick are read (both keys' types) and decoded, and checked
-- against the op; then, when tasks are enqueued, the keys enqueue.lua checks.
local names = {}
for i = 1, n do names[i] = ARGV[4 + i] end
local recs = redis.call('HMGET', K_SCHED, unpack(names))
local ticks = redis.call('ZMSCORE', K_SDUE, unpack(names))
local out, plans, seen, pos = { now }, {}, {}, 1
local tasks = 0
for i = 1, n do
  local t, l, nx, m
  t, l, nx, m, pos = struct.unpack('<I8I8I8I8', nums, pos)
  local name, rec, tick = names[i], recs[i], tonumber(ticks[i])
  local code, x = FIRE_FIRED, 0
  local catch_up, _, fired, missed, delay, spec, tail = h.sched(rec)
  local whole = tick and tick == math.floor(tick) and tick >= 0 and tick < EXACT
  if seen[name] then
    code, x = FIRE_ALREADY, whole and tick or 0
  elseif not rec then
    code = FIRE_GONE
  elseif catch_up == nil or (tick and not whole) then
    code = FIRE_MALFORMED
  elseif tick ~= t then
    code, x = FIRE_ALREADY, tick or 0
  elseif l == 0 then
    code = FIRE_MALFORMED
  elseif spec ~= ARGV[4 + n + i] then
    code = FIRE_CHANGED
  elseif l < t or l > now or (nx ~= 0 and (nx <= now or nx <= l or nx >= EXACT))
    or (l > t) ~= (m > 0) or m >= MAXS then
    code = FIRE_STALE
  end
  seen[name] = true
  if code == FIRE_FIRED then
    local k = 1
    if catch_up and m > 0 then k = 2 end
    tasks = tasks + k
    plans[i] = { name, rec, t, l, nx, m, k, fired, missed, delay, tail }
  else
    plans[i] = code
  end
  out[3 * i - 1], out[3 * i], out[3 * i + 1] = code, x, 0
end
local seq = 0
local was_empty, first_due = false, nil
if tasks > 0 then
  seq = ck_int(redis.call('HGET', K_INFO, 'seq'), K_INFO, 'field seq', EXACT - 1 - tasks) or 0
  ck_expect_type(K_TASKS, 'hash')
  was_empty = h.none_ready()
  first_due = h.first_due()
end
-- The group a plan's task names (its tail's fourth byte is the group's length), or nil.
local function group_of(tail)
  local glen = string.byte(tail, 4)
  if glen == 0 then return nil end
  local plen, clen = struct.unpack('<I2I2', tail, 13)
  return string.sub(tail, 17 + plen + clen, 16 + plen + clen + glen)
end
-- The lanes the ready tasks of groups go to (lib/to_lane.lua, without the ids).
local lanes = nil
for i = 1, n do
  local p = plans[i]
  if type(p) == 'table' and p[10] == 0 and group_of(p[11]) then
    lanes = group_helpers().to_lane(lanes, group_of(p[11]), math.min(string.byte(p[11], 3), MAXP), 0)
  end
end
if lanes then group_helpers().check_groups(lanes) end
-- writes:
local sets, ready, ranked, delayed, earliest, gpush = {}, {}, {}, {}, nil, nil
local function task(p, tick, catch_up)
  seq = seq + 1
  local due = now + p[10]
  sets[#sets + 1] = seq
  sets[#sets + 1] = struct.pack('<I4I4I8I8I8c0', 0, 0, 0, due, now, p[11])
  if p[10] > 0 then
    delayed[#delayed + 1] = due
    delayed[#delayed + 1] = seq
    if earliest == nil or due < earliest then earliest = due end
  elseif group_of(p[11]) then
    -- A group's task: its lane, as enqueue.lua does.
    local g = group_of(p[11])
    gpush = G.to_lane(gpush, g, math.min(string.byte(p[11], 3), MAXP), seq)
  elseif string.byte(p[11], 3) > 0 then
    -- A priority (the third byte of the record tail): the urgent lane, as enqueue.lua does.
    ranked[#ranked + 1] = string.format('%d', h.rank(math.min(string.byte(p[11], 3), MAXP), seq))
    ranked[#ranked + 1] = seq
  else
    ready[#ready + 1] = seq
  end
  h.emit('fired', string.format('"schedule":%s,"tick_ms":%d,"task":"%d","catch_up":%s',
    cjson.encode(p[1]), tick, seq, catch_up and 'true' or 'false'))
end
for i = 1, n do
  local p = plans[i]
  if p == FIRE_GONE or p == FIRE_MALFORMED then
    redis.call('ZREM', K_SDUE, names[i])
  elseif type(p) == 'table' then
    out[3 * i], out[3 * i + 1] = seq + 1, p[7]
    if p[7] == 2 then task(p, p[3], true) end
    task(p, p[4], false)
    if p[5] > 0 then
      redis.call('ZADD', K_SDUE, p[5], p[1])
    else
      redis.call('ZREM', K_SDUE, p[1])
    end
    redis.call('HSET', K_SCHED, p[1], h.sched_counted(p[2], p[4], p[8] + p[7], p[9] + p[6]))
  end
end
if #sets > 0 then
  redis.call('HSET', K_TASKS, unpack(sets))
  redis.call('HINCRBY', K_INFO, 'seq', tasks)
end
if #ready > 0 then redis.call('LPUSH', K_READY, unpack(ready)) end
if #ranked > 0 then redis.call('ZADD', K_URGENT, unpack(ranked)) end
if gpush then
  G.push_groups(gpush)
  G.save_groups()
end
if (was_empty and #ready + #ranked > 0) or gpush then h.wake() end
if #delayed > 0 then
  redis.call('ZADD', K_DELAYED, unpack(delayed))
  if not first_due or earliest <= first_due then h.wake() end
end
return out
