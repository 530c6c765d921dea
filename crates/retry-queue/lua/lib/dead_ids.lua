-- Helper piece (inside `rare()`): the dead letters an operator's call names.

-- The ids a DLQ operation applies to: those given from ARGV[first] on that are dead, or (none
-- given) the oldest `limit`.
function H.dead_ids(limit, first)
  if #ARGV < first then return redis.call('ZRANGE', K_DLQ, 0, limit - 1) end
  local given = {}
  for i = first, #ARGV do given[#given + 1] = ARGV[i] end
  local scores = redis.call('ZMSCORE', K_DLQ, unpack(given))
  local ids, seen = {}, {}
  for i, id in ipairs(given) do
    if scores[i] and not seen[id] then
      seen[id] = true
      ids[#ids + 1] = id
    end
  end
  return ids
end
