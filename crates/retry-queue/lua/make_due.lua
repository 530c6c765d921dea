-- make_due: makes delayed tasks ready now, at the back of the ready list. Runs after
-- lib/queue.lua and, in `rare()` and `group_helpers()`, the helper pieces src/scripts.rs lists
-- for it.
--
-- KEYS: all of lib/queue.lua's; reads delayed, tasks; writes delayed, tasks, ready, urgent, and
--   for tasks of groups their lanes, gready, gstate.
-- ARGV[3..] ids
-- -> the ids moved from delayed to the back of their ready lane (those not delayed are skipped)
-- Events: wake.

local h = rare()

-- validate: delayed, tasks, both ready lanes and the id sequence are read. A record that
-- cannot be used moves as it is (the claim dead-letters it, its bytes kept).
local given, seen = {}, {}
for i = 3, #ARGV do
  if not seen[ARGV[i]] then
    seen[ARGV[i]] = true
    given[#given + 1] = ARGV[i]
  end
end
if #given == 0 then return {} end
local scores = redis.call('ZMSCORE', K_DELAYED, unpack(given))
local ids = {}
for i, id in ipairs(given) do
  if scores[i] then ids[#ids + 1] = id end
end
if #ids == 0 then return {} end
local recs = redis.call('HMGET', K_TASKS, unpack(ids))
local was_empty = h.none_ready()
local order = h.order()
local sets = {}
for i, id in ipairs(ids) do
  local a, s, prev = h.head(recs[i])
  if a then
    sets[#sets + 1] = id
    sets[#sets + 1] = h.rewrite(recs[i], a, s, prev, now)
  end
end
local plain, prios, pushes = h.lanes_of(ids, recs)
if pushes then group_helpers().check_groups(pushes) end
-- writes:
redis.call('ZREM', K_DELAYED, unpack(ids))
if #sets > 0 then redis.call('HSET', K_TASKS, unpack(sets)) end
h.push_ready(plain, prios, order)
if pushes then
  G.push_groups(pushes)
  G.save_groups()
end
if was_empty or pushes then h.wake() end
return ids
