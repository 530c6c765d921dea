-- Helper piece (inside `rare()`, after lib/settings.lua; calls the helpers of lib/rewrite.lua,
-- lib/stand_in.lua, lib/events.lua and lib/delete_dead.lua): dead-lettering, and the DLQ caps.

-- How many tasks this call dead-lettered.
H.buried = 0

-- validate: what a dead-lettering writes (dlq, dead, errors through the caps, the counter).
function H.check_bury()
  if H.bury_checked then return end
  ck_expect_type(K_DLQ, 'zset')
  ck_expect_type(K_DEAD, 'hash')
  ck_expect_type(K_ERR, 'hash')
  ck_expect_type(K_TASKS, 'hash')
  ck_expect_type(K_LEASES, 'hash')
  ck_int(redis.call('HGET', K_INFO, 'dead'), K_INFO, 'field dead', EXACT - 1000000)
  H.bury_checked = true
end

-- Moves task `id` (out of its previous structure, its lease gone) to the dead-letter queue,
-- its record rewritten (`rec` with attempts `a`, stalls `s`, last delay `prev`) or, when `a`
-- is nil, kept as it is. Needs check_bury first.
function H.bury(id, rec, a, s, prev, reason)
  if a then redis.call('HSET', K_TASKS, id, H.rewrite(rec, a, s, prev, now)) end
  redis.call('ZADD', K_DLQ, now, id)
  redis.call('HSET', K_DEAD, id, reason)
  redis.call('HINCRBY', K_INFO, 'dead', '1')
  H.emit('dead_lettered', string.format('"task":%s,"reason":%s,"attempts":%d,"stalls":%d',
    H.jid(id), cjson.encode(reason), a or 0, s or 0))
  H.buried = H.buried + 1
end

-- A task whose record cannot be used: dead-lettered as malformed, its bytes kept for an
-- operator (a missing record gets a stand-in, so the dead letter can be listed).
function H.bury_malformed(id, rec)
  if not rec then redis.call('HSET', K_TASKS, id, H.stand_in()) end
  H.bury(id, nil, nil, nil, nil, 'malformed')
end

-- The dead letters past the age cap (oldest first, at most 100): read during validation,
-- deleted by trim_dlq.
function H.aged()
  if DLQ_AGE == 0 then return {} end
  return redis.call('ZRANGEBYSCORE', K_DLQ, '-inf', string.format('%d', now - DLQ_AGE), 'LIMIT',
    '0', '100')
end

-- Applies the DLQ caps: deletes `aged` (from H.aged) and, after a dead-lettering, the
-- oldest beyond the count cap (at most 100 per call).
function H.trim_dlq(aged)
  H.delete_dead(aged)
  if H.buried > 0 and DLQ_MAX > 0 then
    local n = redis.call('ZCARD', K_DLQ)
    if n > DLQ_MAX then
      H.delete_dead(redis.call('ZRANGE', K_DLQ, 0, math.min(n - DLQ_MAX, 100) - 1))
    end
  end
end
