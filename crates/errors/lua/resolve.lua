-- errors resolve: marks a signature resolved at the script's time. A later occurrence re-opens
-- it as a regression (see record.lua).
--
-- KEYS[1] data (hash), as in record.lua
-- ARGV[1] now_ms: "" for the server clock, or a manual time
-- ARGV[2] signature
-- ARGV[3] event channel        ARGV[4] entity (tracker name)
-- Returns {status, ms}: {0, 0} unknown signature, {1, now} resolved, {2, resolved_ms} it already
-- was. Emits a `resolved` event when it resolves.
local now = ck_now(ARGV[1])
local state = redis.call('HGET', KEYS[1], ARGV[2])
if not state then
  return { 0, 0 }
end
local n, first, last, resolved, regressions, indexed, comps =
  struct.unpack('>dddddds', state)
if resolved > 0 then
  return { 2, resolved }
end
redis.call('HSET', KEYS[1], ARGV[2],
  struct.pack('>dddddds', n, first, last, now, regressions, indexed, comps))
ck_emit(ARGV[3], 'resolved', 'errors', ARGV[4], now, { signature = ARGV[2], count = n })
return { 1, now }
