-- Helper piece (inside `rare()`): the order of the tasks that come back to ready.

-- The id sequence, the order of the tasks that come back to ready (validation: reads info).
function H.order()
  return ck_int(redis.call('HGET', K_INFO, 'seq'), K_INFO, 'field seq', EXACT) or 0
end
