-- create: a pending workflow, unless one of that id exists (then nothing is written).
-- Also sweeps up to SWEEP records whose TTL ran out.
-- ARGV[3] id, ARGV[4] type, ARGV[5] input.
-- Answer: { OK, header, skipped } (created; `skipped`: the ids the sweep met whose header does
-- not decode, left as they are) or { EXISTS, header } (the existing one, unchanged).

-- validate: the record (read), the types of the indexes written
local id, typ = ARGV[3], ARGV[4]
local r = load(id)
if r and r.expires > NOW then
  return { EXISTS, encode(r) }
end
local plan, rescore, skipped = { seen = {}, keys = {} }, {}, {}
if r then plan_delete(plan, id, r) end
plan_sweep(plan, rescore, SWEEP, skipped)
expect_writes(plan, K_ACTIVE, K_PENDING, K_TYPES, K_EXPIRY)

-- writes:
apply_delete(plan)
zadd_pairs(K_EXPIRY, rescore)
local n = { st = PENDING, step = 0, ncp = 0, token = 0, lease = 0, created = NOW, started = 0,
  updated = NOW, finished = 0, expires = NOW + ACTIVE_TTL, claims = 0, typ = typ, owner = '' }
local h = encode(n)
redis.call('HSET', K_RECORDS, id, h, id .. ' i', ARGV[5], id .. ' t', typ)
redis.call('ZADD', K_ACTIVE, NOW_S, id)
redis.call('ZADD', K_PENDING, NOW_S, id)
redis.call('ZADD', K_TYPES, '0', typ .. ' ' .. id)
redis.call('ZADD', K_EXPIRY, n.expires, id)
emit('created', id, n, '0', '0')
return { OK, h, skipped }
