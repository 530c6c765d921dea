-- purge: deletes dead-lettered tasks for good. Runs after lib/queue.lua and, in `rare()`, the
-- helper pieces src/scripts.rs lists for it.
--
-- KEYS: all of lib/queue.lua's; reads dlq; writes dlq, tasks, leases, errors, dead.
-- ARGV[3] limit, ARGV[4..] ids (none = the oldest `limit`)
-- -> the number purged

local h = rare()

-- validate: dlq is read; tasks, leases, errors and dead type-checked.
local ids = h.dead_ids(tonumber(ARGV[3]), 4)
if #ids > 0 then
  ck_expect_type(K_TASKS, 'hash')
  ck_expect_type(K_LEASES, 'hash')
  ck_expect_type(K_ERR, 'hash')
  ck_expect_type(K_DEAD, 'hash')
end
-- writes:
h.delete_dead(ids)
return #ids
