-- Helper piece (inside `rare()`): when the next delayed task is due.

-- The due time of the earliest delayed task, or nil (validation: reads `delayed`).
function H.first_due()
  local first = redis.call('ZRANGE', K_DELAYED, '0', '0', 'WITHSCORES')
  return first[2] and tonumber(first[2])
end
