-- extend: moves a held lease's deadline. Runs after lib/queue.lua and, in `rare()` and
-- `group_helpers()`, the helper pieces src/scripts.rs lists for it.
--
-- KEYS: all of lib/queue.lua's; reads leases, tasks; writes leased.
-- ARGV[3] id, ARGV[4] token, ARGV[5] lease_ms ("" = the task's own)
-- -> the new deadline, or NONE when the lease is lost
-- Codes: NONE.

local h = rare()

local id, tok = ARGV[3], tonumber(ARGV[4])
-- validate: leases is read; the task's own lease (when used) must be in bounds; leased is
-- checked by the only write.
local held = redis.call('HGET', K_LEASES, id)
-- (a group's task's lease names its group: lib/lease_of.lua)
if (tonumber(held) or held and group_helpers().lease_of(held)) ~= tok then return NONE end
local ms = tonumber(ARGV[5])
if ms == nil then
  local a, _, _, _, lease = h.head(redis.call('HGET', K_TASKS, id))
  if not a then return NONE end
  ms = lease
end
-- writes:
redis.call('ZADD', K_LEASED, 'XX', string.format('%d', now + ms), id)
return now + ms
