-- pause: stops claims (ARGV[3] "1") or lets them go on again ("0"). A paused queue's claims
-- take no task; they still hand expired leases back to ready and promote due tasks, so nothing
-- waits longer than it would have once the queue resumes. Tasks leased before the pause run to
-- their settle as usual. Runs after lib/queue.lua and, in `rare()`, the helper pieces
-- src/scripts.rs lists for it.
--
-- KEYS: all of lib/queue.lua's; writes info (`paused`: 1 while paused, absent otherwise).
-- ARGV[3] "1" to pause, "0" to resume
-- -> 1 when this call changed the state, 0 when the queue already was so
-- Events: paused, resumed; a resume wakes idle workers.

local pause = ARGV[3] == '1'
-- validate: info is read (its type, and the flag a whole number in 0..1).
local was = ck_int(redis.call('HGET', K_INFO, 'paused'), K_INFO, 'field paused', 1) == 1
if was == pause then return 0 end
-- writes:
local h = rare()
if pause then
  redis.call('HSET', K_INFO, 'paused', 1)
  h.emit('paused', '')
else
  redis.call('HDEL', K_INFO, 'paused')
  h.emit('resumed', '')
  h.wake()
end
return 1
