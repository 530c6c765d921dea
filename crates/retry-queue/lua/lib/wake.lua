-- Helper piece (inside `rare()`, after lib/settings.lua): wakes idle workers up (work became
-- ready, or an earlier task was scheduled).

function H.wake()
  redis.call('PUBLISH', WAKE_CH, ck_envelope('wake', SOURCE, QNAME, now, '{}'))
end
