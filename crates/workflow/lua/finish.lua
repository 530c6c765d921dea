-- finish: complete or fail under a lease, or cancel (any lease). The finished index of the
-- status keeps the last KEEP: the oldest beyond are deleted with their records.
-- ARGV[3] op: the status set (COMPLETED, FAILED or CANCELLED). ARGV[4] id, ARGV[5] token
-- (ignored by a cancel), ARGV[6] the result, the error, or '' (a cancel).
-- Answer: { OK, header, skipped (the ids met by the eviction whose header does not decode:
-- kept) } | { LEASE_LOST, header or false } | { FINISHED, header } (finished already:
-- completed or failed under this token, or any way for a cancel) | { NOT_FOUND, false } (a
-- cancel).

-- validate: the record (read), the finished index (read), the evicted records (read), the
-- types of the indexes written
local op, id, token = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local r = load(id)
if not r or r.expires <= NOW then
  if op == CANCELLED then return { NOT_FOUND, false } end
  return { LEASE_LOST, false }
end
if r.st >= COMPLETED then
  if op == CANCELLED or (r.token == token and r.st ~= CANCELLED) then
    return { FINISHED, encode(r) }
  end
  return { LEASE_LOST, encode(r) }
end
if op ~= CANCELLED and (r.st ~= RUNNING or r.token ~= token or r.lease <= NOW) then
  return { LEASE_LOST, encode(r) }
end
local k_done = K_DONE[op]
local plan = { seen = { [id] = true }, keys = {} }
local card = redis.call('ZCARD', k_done)
CHECKED[k_done] = true
-- An entry whose live record says another status is stray: the header wins, only the entry
-- goes. A record whose header does not decode is left as it is (index entry too) and named.
local strays, skipped = {}, {}
if card + 1 > KEEP then
  for _, old in ipairs(redis.call('ZRANGE', k_done, 0, card - KEEP)) do
    local h = redis.call('HGET', K_RECORDS, old)
    local o = h and decode(h)
    if o and o.st ~= op and o.expires > NOW then
      strays[#strays + 1] = old
    elseif h and not o then
      skipped[#skipped + 1] = old
    else
      plan_delete(plan, old, o, k_done)
    end
  end
end
expect_writes(plan, K_ACTIVE, r.st == PENDING and K_PENDING or K_LEASES, K_EXPIRY)

-- writes:
apply_delete(plan)
for _, old in ipairs(strays) do redis.call('ZREM', k_done, old) end
local was = r.st
r.st, r.finished, r.updated, r.lease, r.expires = op, NOW, NOW, 0, NOW + FINISHED_TTL
local h = encode(r)
redis.call('HSET', K_RECORDS, id, h, id .. ' o', ARGV[6])
redis.call('ZREM', K_ACTIVE, id)
if was == PENDING then
  redis.call('ZREM', K_PENDING, id)
else
  redis.call('ZREM', K_LEASES, id)
end
redis.call('ZADD', k_done, NOW_S, id)
redis.call('ZADD', K_EXPIRY, r.expires, id)
emit(STATUS_NAMES[op], id, r, nil, op ~= CANCELLED and ARGV[5] or nil)
return { OK, h, skipped }
