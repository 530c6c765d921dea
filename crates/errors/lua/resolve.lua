-- errors resolve: marks a signature resolved at the script's time. A later occurrence re-opens
-- it as a regression (see record.lua).
--
-- KEYS[1] data (hash), as in record.lua
-- ARGV[1] now_ms: "" for the server clock, or a manual time
-- ARGV[2] signature
-- ARGV[3] event channel        ARGV[4] entity (tracker name)
-- Returns {status, ms}: {RESOLVE_UNKNOWN, 0} unknown signature, {RESOLVE_DONE, now} resolved,
-- {RESOLVE_ALREADY, resolved_ms} it already was (the codes below; the same in the Rust's
-- `wire::code`). Emits a `resolved` event when it resolves.
-- Errors: WRONGTYPE (by the HGET) when the data hash holds another type; CORRUPT <data> when the
-- signature's state does not decode (record.lua's checks; the next occurrence starts it
-- afresh). Both with nothing written.
local RESOLVE_UNKNOWN, RESOLVE_DONE, RESOLVE_ALREADY = 0, 1, 2

local data, sig = KEYS[1], ARGV[2]
local now = ck_now(ARGV[1])
-- validate: the data hash's type (the HGET) and the signature's state, whole (as record.lua).
local state = redis.call('HGET', data, sig)
if not state then
  return { RESOLVE_UNKNOWN, 0 }
end
local BIG = 9007199254740992
local ok = #state >= 50 and #state <= 4096 and string.byte(state, -1) == 0
local n, first, last, resolved, regressions, indexed, comps, stop
if ok then
  n, first, last, resolved, regressions, indexed, comps, stop = struct.unpack('>dddddds', state)
  ok = stop == #state + 1 and n >= 1 and string.byte(comps, 1) == 32
    and string.byte(comps, -1) == 32
  for _, v in ipairs({ n, first, last, resolved, regressions, indexed }) do
    ok = ok and v >= 0 and v <= BIG and v % 1 == 0
  end
end
if not ok then
  ck_corrupt(data, 'signature ' .. sig .. ' state (' .. #state .. ' bytes) does not decode:'
    .. ' six whole numbers in 0..2^53 then the components')
end
if resolved > 0 then
  return { RESOLVE_ALREADY, resolved }
end
-- writes:
redis.call('HSET', data, sig, struct.pack('>dddddds', n, first, last, now, regressions, indexed,
  comps))
ck_emit(ARGV[3], 'resolved', 'errors', ARGV[4], now, { signature = sig, count = n })
return { RESOLVE_DONE, now }
