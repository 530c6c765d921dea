-- Helper piece (inside `rare()`): task ids in event payloads.

-- The id as a JSON string (ids are numbers where they come from struct, strings from Redis).
function H.jid(id)
  if type(id) == 'number' then return string.format('"%d"', id) end
  return cjson.encode(id)
end
