-- Helper piece (inside `rare()`): deletes dead letters.

-- Deletes dead letters for good (every trace of them).
function H.delete_dead(ids)
  if #ids == 0 then return end
  redis.call('ZREM', K_DLQ, unpack(ids))
  redis.call('HDEL', K_LEASES, unpack(ids))
  redis.call('HDEL', K_TASKS, unpack(ids))
  redis.call('HDEL', K_ERR, unpack(ids))
  redis.call('HDEL', K_DEAD, unpack(ids))
end
