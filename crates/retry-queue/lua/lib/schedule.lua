-- Helper piece (inside `rare()`, after lib/head.lua): a schedule's record.
--
-- A schedule (lua/schedule_*.lua; KEYS[QKEYS + 1] schedules HASH name -> record, KEYS[QKEYS + 2] sched_due
-- ZSET name -> its next tick in ms) is stored as a little-endian struct: a head of SHDR = 35
-- bytes, B missed policy (MISSED_*) | I8 last tick fired (0: none) | I8 fired (tasks enqueued)
-- | I8 missed (ticks not fired on time: skipped, or folded into a catch-up) | I8 delay (ms, of
-- each task) | I2 slen; then the spec (slen bytes: B kind (SPEC_*), then for an interval I8 ms,
-- for a cron expression its text), then the task's record tail (lib/queue.lua's record from
-- its 33rd byte: max, lease, plen, clen, policy, component, payload).

-- Codes shared with Rust: the same names and numbers in `code` (src/code.rs).
local MISSED_SKIP, MISSED_CATCH_UP = 0, 1
local SPEC_INTERVAL, SPEC_CRON = 0, 1
local SHDR = 35

-- The parts of a schedule record that is whole and in bounds: catch-up (boolean), last tick
-- fired, fired, missed, delay, spec, task record tail; nil when it is not.
function H.sched(rec)
  if not rec or #rec < SHDR then return nil end
  local policy, last, fired, missed, delay, slen = struct.unpack('<BI8I8I8I8I2', rec)
  if policy > MISSED_CATCH_UP or last >= EXACT or fired >= EXACT or missed >= EXACT
    or delay > MAXD or slen < 2 or #rec < SHDR + slen + 16 then
    return nil
  end
  local spec = string.sub(rec, SHDR + 1, SHDR + slen)
  local kind = string.byte(spec, 1)
  if kind == SPEC_INTERVAL then
    if slen ~= 9 then return nil end
    local every = struct.unpack('<I8', spec, 2)
    if every < 1 or every > MAXD then return nil end
  elseif kind ~= SPEC_CRON then
    return nil
  end
  local tail = string.sub(rec, SHDR + slen + 1)
  if not H.head(struct.pack('<I4I4I8I8I8', 0, 0, 0, 0, 0) .. tail) then return nil end
  return policy == MISSED_CATCH_UP, last, fired, missed, delay, spec, tail
end

-- The record with new counters (the rest kept).
function H.sched_counted(rec, last, fired, missed)
  return struct.pack('<BI8I8I8', string.byte(rec, 1), last, fired, missed) .. string.sub(rec, 26)
end
