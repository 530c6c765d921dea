-- claim: leases workflows to an owner, each with a new fencing token: a pending one (started)
-- or one whose lease ran out (resumed).
-- ARGV[3] mode: BY_ID the workflow ARGV[4]; OLDEST_PENDING the oldest pending, up to ARGV[4];
--         ORPHANS those whose lease ran out, up to ARGV[4]
-- ARGV[5] owner, ARGV[6] lease ms.
-- Answer: a list of { code, id, header, input, last checkpoint }: OK (claimed; the header
-- after it, the input, the last checkpoint or false), BUSY (a live lease; header), FINISHED
-- (header), NOT_FOUND, SKIPPED (a header that does not decode, or a last checkpoint that is
-- missing or shorter than 4 bytes: nothing done to it).
local BY_ID, OLDEST_PENDING, ORPHANS = 1, 2, 3

-- validate: every candidate's header (read), the indexes' types
local mode, owner, lease_ms = tonumber(ARGV[3]), ARGV[5], tonumber(ARGV[6])
local out, taken, plan = {}, {}, { seen = {}, keys = {} }
local rescore, drop_pending, drop_leases = {}, {}, {}

-- Claims `id` (its header `r`), or answers SKIPPED when its last checkpoint is missing or
-- shorter than 4 bytes (BY_ID: CORRUPT); nothing is written before the write section.
local function take(id, r)
  local got = redis.call('HMGET', K_RECORDS, id .. ' i', id .. ' c' .. r.ncp)
  if r.ncp > 0 and not (got[2] and #got[2] >= 4) then
    if mode == BY_ID then
      ck_corrupt(K_RECORDS, 'checkpoint ' .. r.ncp .. ' of workflow ' .. id
        .. ' is missing or shorter than 4 bytes')
    end
    out[#out + 1] = { SKIPPED, id, false, false, false }
    return
  end
  local resumed = r.st == RUNNING
  if not resumed then
    r.started = NOW
  end
  r.st, r.token, r.lease, r.owner = RUNNING, r.token + 1, NOW + lease_ms, owner
  -- claims: a 4-byte field, saturated (as the model does).
  r.updated, r.expires, r.claims = NOW, NOW + ACTIVE_TTL, math.min(r.claims + 1, 4294967295)
  local h = encode(r)
  taken[#taken + 1] = { id, h, resumed, r }
  out[#out + 1] = { OK, id, h, got[1] or '', got[2] or false }
end

if mode == BY_ID then
  local id = ARGV[4]
  local r = load(id)
  if r and r.expires <= NOW then
    plan_delete(plan, id, r)
    r = nil
  end
  if not r then
    out[1] = { NOT_FOUND, id, false, false, false }
  elseif r.st >= COMPLETED then
    out[1] = { FINISHED, id, encode(r), false, false }
  elseif r.st == RUNNING and r.lease > NOW then
    out[1] = { BUSY, id, encode(r), false, false }
  else
    take(id, r)
  end
else
  local max = tonumber(ARGV[4])
  local off, scanned = 0, 0
  -- Orphans are taken by their header's lease, then id (the model's order): the index's scores
  -- lag behind the headers (a checkpoint or an extend moves only the header), but never ahead,
  -- so every orphan is among the entries scored up to now, all scanned (up to a bound) before
  -- any is chosen.
  local orphans = {}
  while (mode == ORPHANS or #taken < max) and scanned < max + 1000 do
    local ids
    if mode == OLDEST_PENDING then
      ids = redis.call('ZRANGE', K_PENDING, off, off + max - 1)
    else
      ids = redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', NOW, 'LIMIT', off, max)
    end
    CHECKED[mode == OLDEST_PENDING and K_PENDING or K_LEASES] = true
    if #ids == 0 then break end
    off = off + #ids
    for _, id in ipairs(ids) do
      if mode == OLDEST_PENDING and #taken >= max then break end
      scanned = scanned + 1
      local h = redis.call('HGET', K_RECORDS, id)
      local r = h and decode(h)
      local want = mode == OLDEST_PENDING and PENDING or RUNNING
      local drop = mode == OLDEST_PENDING and drop_pending or drop_leases
      if h and not r then
        out[#out + 1] = { SKIPPED, id, false, false, false }
      elseif not r then
        drop[#drop + 1] = id
      elseif r.expires <= NOW then
        plan_delete(plan, id, r, mode == OLDEST_PENDING and K_PENDING or K_LEASES)
      elseif r.st ~= want then
        drop[#drop + 1] = id
      elseif mode == ORPHANS and r.lease > NOW then
        rescore[#rescore + 1] = r.lease
        rescore[#rescore + 1] = id
      elseif mode == ORPHANS then
        orphans[#orphans + 1] = { id, r }
      else
        take(id, r)
      end
    end
  end
  table.sort(orphans, function(a, b)
    return a[2].lease < b[2].lease or (a[2].lease == b[2].lease and a[1] < b[1])
  end)
  for i = 1, math.min(max, #orphans) do take(orphans[i][1], orphans[i][2]) end
end
expect_writes(plan, K_PENDING, K_LEASES)

-- writes:
apply_delete(plan)
for _, id in ipairs(drop_pending) do redis.call('ZREM', K_PENDING, id) end
for _, id in ipairs(drop_leases) do redis.call('ZREM', K_LEASES, id) end
zadd_pairs(K_LEASES, rescore)
for _, t in ipairs(taken) do
  local id, h, resumed, r = t[1], t[2], t[3], t[4]
  redis.call('HSET', K_RECORDS, id, h)
  if not resumed then redis.call('ZREM', K_PENDING, id) end
  redis.call('ZADD', K_LEASES, r.lease, id)
  emit(resumed and 'resumed' or 'started', id, r)
end
return out
