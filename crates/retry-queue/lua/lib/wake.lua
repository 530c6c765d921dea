-- Helper piece (inside `rare()`, after lib/settings.lua): wakes idle workers up (work became
-- ready, or an earlier task was scheduled).

function H.wake()
  ck_emit_json(WAKE_CH, 'wake', SOURCE, QNAME, now, '{}')
end
