-- Helper piece (inside `rare()`, after lib/settings.lua): the queue's events.

-- Publishes an event; `payload` is the JSON object's inside, already encoded.
function H.emit(kind, payload)
  redis.call('PUBLISH', CH .. kind, ck_envelope(kind, SOURCE, QNAME, now, '{' .. payload .. '}'))
end

-- The id as a JSON string (ids are numbers where they come from struct, strings from Redis).
function H.jid(id)
  if type(id) == 'number' then return string.format('"%d"', id) end
  return cjson.encode(id)
end
