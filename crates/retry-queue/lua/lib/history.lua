-- Helper piece (inside `rare()`, after lib/settings.lua): a task's error history (its layout
-- in lib/queue.lua).

-- Whether an error history (or none) decodes to its last byte.
function H.history_ok(old)
  if not old or #old == 0 then return true end
  local pos = 2
  for _ = 1, string.byte(old, 1) do
    if pos + 13 > #old then return false end
    local _, _, len = struct.unpack('<I4I8I2', old, pos)
    pos = pos + 14 + len
  end
  return pos == #old + 1
end

-- The history `old` (checked by history_ok, or none) with one more error, the oldest
-- dropped beyond the cap.
function H.with_error(old, attempt, text)
  local count, rest = 0, ''
  if old and #old > 0 then
    count = string.byte(old, 1)
    local pos, drop = 2, count + 1 - MAX_ERRORS
    for _ = 1, drop do
      local _, _, len = struct.unpack('<I4I8I2', old, pos)
      pos = pos + 14 + len
    end
    if drop > 0 then count = count - drop end
    rest = string.sub(old, pos)
  end
  return struct.pack('<Bc0I4I8I2c0', count + 1, rest, attempt, now, #text, text)
end
