-- Helper piece (inside `rare()`, after lib/settings.lua): the queue's events.

-- Each kind's channel and envelope up to its payload's inside, made on its first event of the
-- call: the prelude's ck_envelope, whose kind, source, entity and time are the same for all.
local envelopes = {}

-- Publishes an event; `payload` is the JSON object's inside, already encoded.
function H.emit(kind, payload)
  local e = envelopes[kind]
  if not e then
    -- (ck_envelope's text with '{' for its payload, less its closing brace)
    e = { CH .. kind, string.sub(ck_envelope(kind, SOURCE, QNAME, now, '{'), 1, -2) }
    envelopes[kind] = e
  end
  redis.call('PUBLISH', e[1], e[2] .. payload .. '}}')
end
