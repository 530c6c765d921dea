-- step: a lease holder's checkpoint or extension. The lease (and the record's TTL) is renewed
-- to at least now + lease ms; a lease is never shortened (the `leases` index may lag behind a
-- header, never run ahead of it).
-- ARGV[3] op: CHECKPOINT or EXTEND. ARGV[4] id, ARGV[5] token, ARGV[6] lease ms,
-- ARGV[7] step (checkpoint), ARGV[8] output (checkpoint). KEYS: the records alone.
-- Answer: { OK, header } | { LEASE_LOST, header or false } | { STEP_DONE, header } (the step is
-- not after the last checkpointed one) | { FINISHED, header } (completed or failed under this
-- token; a cancelled one is a lost lease) | { FULL, header } (a checkpoint of a workflow that
-- holds MAX_CHECKPOINTS already: nothing written).
local CHECKPOINT, EXTEND = 1, 2

-- validate: the record (read); the only key written is the record's
local op, id, token, lease_ms = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local r = load(id)
if not r or r.expires <= NOW then return { LEASE_LOST, false } end
if r.token == token and (r.st == COMPLETED or r.st == FAILED) then
  return { FINISHED, encode(r) }
end
if r.st ~= RUNNING or r.token ~= token or r.lease <= NOW then return { LEASE_LOST, encode(r) } end
local step = tonumber(ARGV[7])
if op == CHECKPOINT and step <= r.step then return { STEP_DONE, encode(r) } end
if op == CHECKPOINT and r.ncp >= MAX_CHECKPOINTS then return { FULL, encode(r) } end
-- The lease stays a number the header holds (Rust refuses more than 2^40 ms already).
if not (lease_ms >= 0) then lease_ms = 0 end
if lease_ms > MAX - NOW then lease_ms = MAX - NOW end

-- writes:
if NOW + lease_ms > r.lease then r.lease = NOW + lease_ms end
r.updated, r.expires = NOW, NOW + ACTIVE_TTL
if op == EXTEND then
  local h = encode(r)
  redis.call('HSET', K_RECORDS, id, h)
  return { OK, h }
end
r.step, r.ncp = step, r.ncp + 1
local h = encode(r)
redis.call('HSET', K_RECORDS, id, h, id .. ' c' .. r.ncp, struct.pack('<I4', step) .. ARGV[8])
emit('checkpointed', id, r, ARGV[7], ARGV[5])
return { OK, h }
