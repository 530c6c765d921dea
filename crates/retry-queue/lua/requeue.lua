-- requeue: puts dead-lettered tasks back in the ready queue. Runs after lib/queue.lua and, in
-- `rare()` and `group_helpers()`, the helper pieces src/scripts.rs lists for it.
--
-- KEYS: all of lib/queue.lua's; reads dlq, tasks; writes dlq, dead, leases, errors, tasks,
--   ready, urgent, and for tasks of groups their lanes, gready, gstate.
-- ARGV[3] reset 0|1, ARGV[4] limit, ARGV[5..] ids (none = the oldest `limit`)
-- -> the requeued ids
-- Events: requeued, wake.

local h = rare()

local reset = ARGV[3] == '1'
-- validate: dlq, tasks, both ready lanes and the id sequence are read, dead and errors
-- type-checked. A record that cannot be used is requeued as it is (the claim dead-letters it
-- again, its bytes kept).
local ids = h.dead_ids(tonumber(ARGV[4]), 5)
if #ids == 0 then return {} end
local recs = redis.call('HMGET', K_TASKS, unpack(ids))
ck_expect_type(K_DEAD, 'hash')
ck_expect_type(K_ERR, 'hash')
ck_expect_type(K_LEASES, 'hash')
local was_empty = h.none_ready()
local order = h.order()
local sets = {}
for i, id in ipairs(ids) do
  local rec = recs[i]
  local a, _, prev, max = h.head(rec)
  if a then
    if reset then
      a, prev = 0, 0
    elseif a >= max then
      a = max - 1
    end
    sets[#sets + 1] = id
    sets[#sets + 1] = h.rewrite(rec, a, 0, prev, now)
  elseif not rec then
    sets[#sets + 1] = id
    sets[#sets + 1] = h.stand_in()
  end
end
local plain, prios, pushes = h.lanes_of(ids, recs)
if pushes then group_helpers().check_groups(pushes) end
-- writes:
for _, id in ipairs(ids) do
  h.emit('requeued', string.format('"task":%s,"reset":%s', h.jid(id), reset and 'true' or 'false'))
end
redis.call('ZREM', K_DLQ, unpack(ids))
redis.call('HDEL', K_DEAD, unpack(ids))
redis.call('HDEL', K_LEASES, unpack(ids))
if reset then redis.call('HDEL', K_ERR, unpack(ids)) end
if #sets > 0 then redis.call('HSET', K_TASKS, unpack(sets)) end
h.push_ready(plain, prios, order)
if pushes then
  G.push_groups(pushes)
  G.save_groups()
end
if was_empty or pushes then h.wake() end
return ids
