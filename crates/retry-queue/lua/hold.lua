-- hold: puts a component on hold until a time (its circuit breaker is open until then): claims
-- take its tasks out of the ready lanes into `delayed`, due when the hold ends, and hand none
-- of them to a worker before; a hold with `until` 0 ends one now. Runs after lib/queue.lua.
--
-- KEYS: all of lib/queue.lua's; writes info (`hold:<component>`: until (ms); `held_until`: the
--   latest until of any hold, so that claims look at components only while one may hold).
-- ARGV[3] component, ARGV[4] for how long (ms; 0 ends the hold)
-- -> the hold's end (ms), or 0

local c, ms = ARGV[3], tonumber(ARGV[4])
-- validate: info read (its type, the latest hold decoded).
local latest = ck_int(redis.call('HGET', K_INFO, 'held_until'), K_INFO, 'field held_until', EXACT)
  or 0
-- writes:
if ms == 0 then
  redis.call('HDEL', K_INFO, 'hold:' .. c)
  return 0
end
local until_ = now + ms
redis.call('HSET', K_INFO, 'hold:' .. c, until_)
if until_ > latest then redis.call('HSET', K_INFO, 'held_until', until_) end
return until_
