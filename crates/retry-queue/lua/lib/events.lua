-- Helper piece (inside `rare()`, after lib/settings.lua): the queue's events.

-- Publishes an event; `payload` is the JSON object's inside, already encoded.
function H.emit(kind, payload)
  redis.call('PUBLISH', CH .. kind, ck_envelope(kind, SOURCE, QNAME, now, '{' .. payload .. '}'))
end

