-- errors record: records a batch of error occurrences, applied in order exactly as if each were
-- its own call: the signature's state and last sample, the task's details record, the counters
-- by kind and component, the chronological log, correlation with a cascade check, and events.
-- Caps on signatures, tasks, counters and the log bound memory.
--
-- Lean by design. In Redis's Lua every new string is hashed byte by byte and every growing
-- table is rehashed, so the script makes as few of either as it can: the batch reads the data
-- hash once (HMGET) and writes it once (HSET); each record adds one XADD (only the batch's last
-- trims the log to its length); numbers are kept packed (struct, big-endian doubles), never
-- formatted; field names, delimiters and JSON are built in Rust; the batch takes its time from
-- its first XADD (the server clock; TIME instead when the log's last id is past year 9999, so
-- no clock's) and records all its occurrences at that time. ZADD on
-- `seen` happens for a new signature and at most once a second per signature; PUBLISH for
-- notable records only (unless every record is asked for).
--
-- KEYS[1] data (hash):
--   <sig>          state: struct '>dddddds' count, first_ms, last_ms, resolved_ms (0 = open),
--                  regressions, indexed_ms, components seen (" a b ", at most 16)
--   "<sig> s"      last sample (JSON; its time and count are the state's last_ms and count)
--   "<sig> m"      meta (JSON, first sight)
--   "~t <slot>"    a task's latest record (JSON); "~to <slot>" = "<task>\t<ms>", its owner and
--                  the record's time.
--                  A task may use one of two slots (of max_tasks, chosen by a hash of its id in
--                  Rust): the one it owns, else a free one, else the one written longest ago.
--   "~c <kind> <component>" occurrences (struct '>d'); "~np" how many such fields; "~o"
--                  occurrences of pairs first seen beyond the cap (both decimal)
--   "~corr"        "<last cascade ms or 0>\n" then "~k <kind>\n" per kind seen lately (at
--                  most 64); "~k <kind>" its last occurrence (ms). Kinds that left the window
--                  are dropped when a cascade check needs the count.
-- KEYS[2] seen (zset): sig -> last seen ms, refreshed at most once a second per signature; the
--         lowest goes when a new signature exceeds the cap
-- KEYS[3] log (stream): id <ms>-<seq> (the record's time, unless the log's ids were past year
--         9999 already), fields f = sig, e = entry (JSON)
-- ARGV[1]: struct '>dddddd': log max age ms, every (1: an event for every record; 0: for new
--   signatures, regressions and counts of 10, 100, 1000, ... only), max signatures, max counter
--   fields, correlation window ms, cascade threshold (kinds); then (as 'Hc0', a 2-byte length
--   then bytes) log max length, now_ms ("" for the server clock, the log id's time, or a manual
--   time); and for events (I4 length first, so the script reads them only when it publishes):
--   the channel prefix ("<ns>:events:errors:", the severity's name follows), the entity (the
--   tracker's name).
-- Then 15 arguments per record (each an argument of its own: every byte of a new Lua string is
-- hashed, so no string is cut from another): the fields the batch reads: sig,
-- "~c <kind> <component>", "~to <slot1>", "~to <slot2>" ("" without a task); then "<sig> s",
-- "~k <kind>", " <component> ", "<task>\t" ("" = none), log entry JSON ("": the record is the
-- entry), "~t <slot1>", "~t <slot2>" ("" without a task), occurred_ms ("" = now), severity,
-- meta JSON, the record's JSON.
-- Returns struct '>d' now, then per record '>ddd' count, first_ms, flags (the FLAG_* below; the
-- same in the Rust's `wire::code`): one string, which costs the server less than a list. A
-- record with repairs always publishes an event, with "repaired": its repair flags /
-- FLAG_REPAIRED_STATE. Events are the prelude's ck_envelope, PUBLISHed.
-- Errors: WRONGTYPE when a key holds another type, with nothing written: the data hash (HMGET)
-- and, when the call may write it, the index (ZCARD) are read before the first write, the XADD,
-- which checks the log's type. CORRUPT <log> when the log has no stream id left for the records
-- (it is at 2^64-1-2^64-1; for a batch, at ms 2^64-1), with nothing written. Stored data never
-- fails a record: what does not decode is repaired for the record that needs it (flags above)
-- and the batch's other records apply as ever. Index members that are no signature (starting
-- with "~") are evicted from the index only. The cascade event counts log entries it cannot
-- decode ("undecodable").

-- Helpers are closures without upvalues and hot paths are inlined: each closure and each
-- captured local is an allocation per call.

-- A record's flags in the answer (the same in the Rust's `wire::code`): new signature,
-- regression, cascade; then repairs: the signature's state, its counter, a task slot taken over
-- from an owner that did not decode, the correlation state (all started afresh), "~np" set to
-- the cap, "~o" restarted at this occurrence.
local FLAG_NEW, FLAG_REGRESSION, FLAG_CASCADE = 1, 2, 4
local FLAG_REPAIRED_STATE, FLAG_REPAIRED_COUNTER, FLAG_REPAIRED_TASK_SLOT = 8, 16, 32
local FLAG_REPAIRED_CORRELATION, FLAG_REPAIRED_COUNTER_FIELDS, FLAG_REPAIRED_OTHER = 64, 128, 256

-- The library functions the script calls, looked up once.
local find, sub, byte, spack, sunpack = string.find, string.sub, string.byte, struct.pack,
  struct.unpack

-- Forgets this batch's writes to the fields in `gone` (deleted meanwhile); returns the HSET
-- list and its length.
local function drop_writes(gone, hset, nset, written)
  local kept = {}
  for h = 1, nset, 2 do
    if not gone[hset[h]] then
      kept[#kept + 1] = hset[h]
      kept[#kept + 1] = hset[h + 1]
    end
  end
  for f in pairs(gone) do written[f] = false end
  return kept, #kept
end

-- The kinds listed in `corr` with their last occurrences, those that left the window dropped
-- (fields deleted), oldest first; `current` (this record's kind) and the kinds written in this
-- batch occurred now.
local function window_kinds(data, corr, written, now, window, current)
  local listed, fields, once = {}, {}, {}
  for kf in string.gmatch(corr, '\n([^\n]+)') do
    -- A line that names no kind field (written by something else), or names one twice, is
    -- dropped here, never read or deleted as a field.
    if not once[kf] and string.sub(kf, 1, 3) == '~k ' then
      once[kf] = true
      listed[#listed + 1] = kf
      if kf ~= current and written[kf] == nil then fields[#fields + 1] = kf end
    end
  end
  local fetched = {}
  if #fields > 0 then
    local got = redis.call('HMGET', data, unpack(fields))
    for f = 1, #fields do fetched[fields[f]] = got[f] end
  end
  local cutoff = now - window
  local kept, gone = {}, {}
  for order = 1, #listed do
    local kf = listed[order]
    local ts = (kf == current or written[kf]) and now or tonumber(fetched[kf]) or 0
    -- An undecodable last occurrence counts as none: the kind leaves the window.
    if not (ts >= 0 and ts < 9007199254740992) then ts = 0 end
    if ts > cutoff then
      kept[#kept + 1] = { ts, order, kf }
    else
      gone[#gone + 1] = kf
    end
  end
  if #gone > 0 then redis.call('HDEL', data, unpack(gone)) end
  table.sort(kept, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  return kept
end

-- The correlation state for the last cascade `fired_str` and the kinds `kept`.
local function kinds_state(fired_str, kept)
  local parts = { fired_str }
  for k = 1, #kept do parts[k + 1] = kept[k][3] end
  return table.concat(parts, '\n') .. '\n'
end

local data, seen, log = KEYS[1], KEYS[2], KEYS[3]
local argv = ARGV
local header = argv[1]
local max_age, every, max_sigs, max_counters, window, threshold, log_max, manual, _,
  events_at = sunpack('>ddddddHc0Hc0I4', header)
-- Stored numbers are whole and at most 2^53: exact in a double, and +1 saturates there.
local BIG = 9007199254740992
-- The last ms of year 9999: a log id beyond is no server's clock (written by something else),
-- and its time is not the record's.
local TIME_MAX = 253402300799999

-- Every field the batch reads, read once: 4 per record (sig, pair, the two owners), then the
-- correlation state. A lone record names them directly; a batch's list is made at its final size (a constructor from
-- string.byte of PAD's 255 bytes, a constant), since every growth of a table rehashes it.
local PAD = [[
000000000000000000000000000000000000000000000000000000000000000
000000000000000000000000000000000000000000000000000000000000000
000000000000000000000000000000000000000000000000000000000000000
000000000000000000000000000000000000000000000000000000000000000]]
local STRIDE = 15
local nrec = (#argv - 1) / STRIDE
if nrec < 1 or nrec % 1 ~= 0 then
  return redis.error_reply('ERR errors-record: ' .. #argv .. ' arguments; want 1 + 15 per record')
end
local base = 4 * nrec
local nnames = base + 1
local single = nrec == 1
-- validate: the keys' types, before any write: the data hash by this HMGET; the index by a
-- batch's ZCARD here (a lone record's just before its XADD, when it may write the index); the
-- log by the XADD, the first write (evictions come after it).
-- The index's size: read once, then kept by the script (its ZPOPMIN and ZADD change it).
local card
local values
if single then
  values = redis.call('HMGET', data, argv[2], argv[3], argv[4], argv[5], '~corr')
else
  card = redis.call('ZCARD', seen)
  local names = nnames <= 255 and { byte(PAD, 1, nnames) } or {}
  for n = 1, nrec do
    local b, k = STRIDE * n - STRIDE + 1, 4 * n - 4
    names[k + 1], names[k + 2], names[k + 3], names[k + 4] =
      argv[b + 1], argv[b + 2], argv[b + 3], argv[b + 4]
  end
  names[nnames] = '~corr'
  values = redis.call('HMGET', data, unpack(names, 1, nnames))
end

-- The batch's HSET, and (for a batch of several) the fields written that a later record of the
-- batch may read.
local written = {}
local nset = 0
local hset = 14 * nrec + 4 <= 255 and { byte(PAD, 1, 14 * nrec + 4) } or {}

-- validate: the correlation state: "<ms>\n" then lines; one that does not decode (no final
-- newline, a bad time, over 16 KiB) is started afresh, reported on the batch's first record
-- (FLAG_REPAIRED_CORRELATION). Its lines are checked where they are used (window_kinds).
local repaired = 0
local corr = values[base + 1]
local fired_str, fired
if corr then
  local e = #corr <= 16384 and byte(corr, -1) == 10 and find(corr, '\n', 1, true)
  fired_str = e and sub(corr, 1, e - 1)
  fired = fired_str and tonumber(fired_str)
  if not (fired and fired >= 0 and fired <= BIG and fired % 1 == 0) then
    corr, repaired = nil, FLAG_REPAIRED_CORRELATION
  end
end
local corr_changed = repaired > 0
if not corr then corr, fired_str, fired = '0\n', '0', 0 end

-- The batch's time: the manual clock, or the first XADD's.
local now, nowstr, xid
if manual ~= '' then
  now, nowstr, xid = tonumber(manual), manual, manual .. '-*'
end

-- The counter fields' count, read when a new pair first needs it; written once, at the end.
local np, np_dirty, one
-- The answer's numbers: count, first seen and flags per record.
local out = 3 * nrec <= 255 and { byte(PAD, 1, 3 * nrec) } or {}
for ri = 1, nrec do
  -- The record's arguments follow argv[b]; the fields it read are at values[i + 1 .. i + 4].
  local b, i = STRIDE * ri - STRIDE + 1, 4 * ri - 4
  local sig = argv[b + 1]
  local sig_s, kf, compmark, taskmark, entry = argv[b + 5], argv[b + 6], argv[b + 7],
    argv[b + 8], argv[b + 9]
  local occurred, severity, meta, record = argv[b + 12], argv[b + 13], argv[b + 14],
    argv[b + 15]
  if entry == '' then entry = record end
  local fixed = repaired
  repaired = 0

  -- validate: every stored value this record uses, before its writes. None fails the call: one
  -- that does not decode is this record's alone to handle (started afresh, flagged), so the
  -- occurrence is still recorded and the batch's other records apply. What earlier records of
  -- the batch wrote (`written`) is this script's own and decodes.
  -- The signature's state: six whole numbers in 0..2^53 (the count at least 1), then the
  -- components (" a b ", NUL-terminated, ending the value). One that does not decode is
  -- started afresh as a new signature (FLAG_REPAIRED_STATE).
  local n, first, resolved, regressions, indexed, comps
  local state = written[sig]
  if state == nil then
    state = values[i + 1]
    if state then
      local ok = #state >= 50 and #state <= 4096 and byte(state, -1) == 0
      if ok then
        local last, stop
        n, first, last, resolved, regressions, indexed, comps, stop =
          sunpack('>dddddds', state)
        ok = stop == #state + 1 and n >= 1 and n <= BIG and n % 1 == 0
          and first >= 0 and first <= BIG and first % 1 == 0
          and last >= 0 and last <= BIG and last % 1 == 0
          and resolved >= 0 and resolved <= BIG and resolved % 1 == 0
          and regressions >= 0 and regressions <= BIG and regressions % 1 == 0
          and indexed >= 0 and indexed <= BIG and indexed % 1 == 0
          and byte(comps, 1) == 32 and byte(comps, -1) == 32
      end
      if not ok then state, fixed = false, fixed + FLAG_REPAIRED_STATE end
    end
  elseif state then
    local _
    n, first, _, resolved, regressions, indexed, comps = sunpack('>dddddds', state)
  end

  -- The counter of (kind, component): 8 bytes, a whole number in 1..2^53; one that does not
  -- decode restarts at this occurrence (FLAG_REPAIRED_COUNTER). A new pair needs the fields' count (a read
  -- on that path only): not a whole number, it is taken as full (FLAG_REPAIRED_COUNTER_FIELDS) so the fields stay
  -- within their cap.
  local pair = argv[b + 2]
  local c = written[pair]
  local cv
  if c == nil then
    c = values[i + 2]
    if c then
      cv = #c == 8 and sunpack('>d', c)
      if not (cv and cv >= 1 and cv <= BIG and cv % 1 == 0) then
        cv, fixed = 0, fixed + FLAG_REPAIRED_COUNTER
      end
    end
  elseif c then
    cv = sunpack('>d', c)
  end
  if not cv and np == nil then
    np = redis.call('HGET', data, '~np')
    if np then
      np = tonumber(np)
      if not (np and np >= 0 and np <= BIG and np % 1 == 0) then
        np, np_dirty, fixed = max_counters, true, fixed + FLAG_REPAIRED_COUNTER_FIELDS
      end
    else
      np = 0
    end
  end

  -- The task's slot: the one it owns, else a free one, else the one written longest ago; an
  -- owner whose time does not decode counts as the oldest (FLAG_REPAIRED_TASK_SLOT when its slot is taken).
  local slot_f, slot_t
  if taskmark ~= '' then
    local f1, f2 = argv[b + 3], argv[b + 4]
    local o1, o2 = written[f1], written[f2]
    if o1 == nil then o1 = values[i + 3] end
    if o2 == nil then o2 = values[i + 4] end
    local second
    if o1 and find(o1, taskmark, 1, true) == 1 then
      second = false
    elseif o2 and find(o2, taskmark, 1, true) == 1 then
      second = true
    elseif not o1 then
      second = false
    elseif not o2 then
      second = true
    else
      local p1, p2 = find(o1, '\t', 1, true), find(o2, '\t', 1, true)
      local t1, t2 = p1 and tonumber(sub(o1, p1 + 1)), p2 and tonumber(sub(o2, p2 + 1))
      if not (t1 and t1 >= 0 and t1 <= BIG) then t1 = -1 end
      if not (t2 and t2 >= 0 and t2 <= BIG) then t2 = -1 end
      second = t2 < t1
      if (second and t2 or t1) < 0 then fixed = fixed + FLAG_REPAIRED_TASK_SLOT end
    end
    slot_f, slot_t = f1, argv[b + 10]
    if second then slot_f, slot_t = f2, argv[b + 11] end
  end

  -- A lone record reads the index's type (and size) when it may write the index: a new
  -- signature, or a refresh (due, or possibly due: the server clock is read by the XADD).
  if single and not (state and now and now - indexed < 1000) then
    card = redis.call('ZCARD', seen)
  end

  -- writes: from here on, the XADD first.
  -- The log entry: with the server clock its id gives the batch's time. Only the batch's last
  -- entry trims the log to its length.
  local trim = ri == nrec
  local id = xid or '*'
  local added
  if trim then
    added = redis.pcall('XADD', log, 'MAXLEN', log_max, id, 'f', sig, 'e', entry)
  else
    added = redis.pcall('XADD', log, id, 'f', sig, 'e', entry)
  end
  if type(added) == 'table' then
    if find(added.err, 'WRONGTYPE', 1, true) then error(added) end
    -- The log holds a later id (the manual clock went back, or the batch's ms has no sequence
    -- number left): keep the order.
    if id ~= '*' and trim then
      added = redis.pcall('XADD', log, 'MAXLEN', log_max, '*', 'f', sig, 'e', entry)
    elseif id ~= '*' then
      added = redis.pcall('XADD', log, '*', 'f', sig, 'e', entry)
    end
    if type(added) == 'table' then
      if not find(added.err, 'exhausted', 1, true) then error(added) end
      -- Only a first XADD can get here (see the batch's check below): nothing written.
      error({ err = 'CORRUPT ' .. log .. ' has no stream id left (its last is 2^64-1-2^64-1)' })
    end
  end
  if ri == 1 and not single and find(added, '18446744073709551615-', 1, true) == 1 then
    -- The batch's next ids might run out half-way: its first entry (never trimmed) goes back.
    redis.call('XDEL', log, added)
    error({ err = 'CORRUPT ' .. log .. ' is at stream id ms 2^64-1: no ids left for a batch' })
  end
  if not now then
    nowstr = sub(added, 1, find(added, '-', 1, true) - 1)
    now = tonumber(nowstr)
    if now > TIME_MAX then
      -- The log's last id is no clock's: the server's TIME is the batch's, and its next
      -- entries take ids after the log's.
      local t = redis.call('TIME')
      nowstr = t[1] .. sub('00000' .. t[2], -6, -4)
      now = tonumber(nowstr)
    elseif not trim then
      xid = nowstr .. '-*'
    end
  end

  -- Signatures: the least recently seen go beyond the cap (after the XADD, which may fail).
  if not state then
    local over = card - max_sigs + 1
    if over > 0 then
      local victims = redis.call('ZPOPMIN', seen, over)
      card = card - #victims / 2
      local del, gone = {}, {}
      for v = 1, #victims, 2 do
        local victim = victims[v]
        -- A member that is no signature (written by something else) leaves the index only:
        -- "~" fields are the tracker's own state, never a signature's.
        if byte(victim, 1) ~= 126 then
          for _, f in ipairs({ victim, victim .. ' s', victim .. ' m' }) do
            del[#del + 1] = f
            gone[f] = true
          end
        end
      end
      if #del > 0 then
        redis.call('HDEL', data, unpack(del))
        hset, nset = drop_writes(gone, hset, nset, written)
      end
    end
  end

  if not state then
    n, first, resolved, regressions, indexed, comps = 0, now, 0, 0, 0, ' '
  end
  n = n + 1
  local flags = (state and 0 or FLAG_NEW) + fixed
  if resolved > 0 then
    if occurred == '' or tonumber(occurred) > resolved then
      flags, resolved, regressions = flags + FLAG_REGRESSION, 0, regressions + 1
    end
  end
  if not find(comps, compmark, 1, true) then
    local k, p = 0, find(comps, ' ', 2, true)
    while p do
      k = k + 1
      p = find(comps, ' ', p + 1, true)
    end
    if k < 16 then comps = comps .. sub(compmark, 2) end
  end

  if not state or now - indexed >= 1000 then
    -- (The index's type was read before the XADD.)
    card = card + redis.call('ZADD', seen, nowstr, sig)
    indexed = now
  end

  local packed = spack('>dddddds', n, first, now, resolved, regressions, indexed, comps)
  if not single then written[sig] = packed end
  hset[nset + 1], hset[nset + 2], hset[nset + 3], hset[nset + 4] = sig, packed, sig_s, record
  nset = nset + 4
  if not state then
    hset[nset + 1], hset[nset + 2] = sig .. ' m', meta
    nset = nset + 2
  end

  -- Correlation: this kind's last occurrence is now; a kind not listed yet is added (at most
  -- 64: the oldest go).
  if written[kf] ~= nowstr then
    if not single then written[kf] = nowstr end
    hset[nset + 1], hset[nset + 2] = kf, nowstr
    nset = nset + 2
  end
  local p, q = find(corr, kf, 1, true)
  while p and (byte(corr, p - 1) ~= 10 or byte(corr, q + 1) ~= 10) do
    p, q = find(corr, kf, p + 1, true)
  end
  if not p then
    corr, corr_changed = corr .. kf .. '\n', true
    local count, e = -1, 0
    while e do
      count = count + 1
      e = find(corr, '\n', e + 1, true)
    end
    if count > 65 then
      local kept = window_kinds(data, corr, written, now, window, kf)
      local gone = {}
      while #kept > 64 do
        redis.call('HDEL', data, kept[1][3])
        gone[kept[1][3]] = true
        table.remove(kept, 1)
      end
      hset, nset = drop_writes(gone, hset, nset, written)
      corr = kinds_state(fired_str, kept)
    end
  end
  -- A cascade is possible only a window after the last, with enough kinds listed: then the
  -- kinds that left the window are dropped and the rest counted.
  local cascade_kinds
  if fired == 0 or now - fired >= window then
    local count, e = -2, 0
    while e do
      count = count + 1
      e = find(corr, '\n', e + 1, true)
    end
    if count >= threshold then
      local kept = window_kinds(data, corr, written, now, window, kf)
      if #kept ~= count then corr, corr_changed = kinds_state(fired_str, kept), true end
      if #kept >= threshold then
        fired, fired_str = now, nowstr
        corr, corr_changed = kinds_state(fired_str, kept), true
        flags, cascade_kinds = flags + FLAG_CASCADE, {}
        for k = 1, #kept do cascade_kinds[k] = sub(kept[k][3], 4) end
      end
    end
  end

  -- Counters by kind and component; new pairs beyond the cap count under "~o".
  if cv then
    c = spack('>d', cv + 1)
    if not single then written[pair] = c end
    hset[nset + 1], hset[nset + 2] = pair, c
    nset = nset + 2
  elseif np < max_counters then
    one = one or spack('>d', 1)
    if not single then written[pair] = one end
    np, np_dirty = np + 1, true
    hset[nset + 1], hset[nset + 2] = pair, one
    nset = nset + 2
  else
    -- "~o" is decoded by HINCRBY itself (no read on the other paths): not an integer, or out
    -- of 1..2^53 once counted, it restarts at this occurrence (FLAG_REPAIRED_OTHER).
    local o = redis.pcall('HINCRBY', data, '~o', 1)
    if type(o) ~= 'number' or o < 1 or o > BIG then
      redis.call('HSET', data, '~o', 1)
      fixed, flags = fixed + FLAG_REPAIRED_OTHER, flags + FLAG_REPAIRED_OTHER
    end
  end

  -- The task's details record and its slot's owner.
  if slot_f then
    local owner = taskmark .. nowstr
    if not single then written[slot_f] = owner end
    hset[nset + 1], hset[nset + 2], hset[nset + 3], hset[nset + 4] = slot_t, record, slot_f, owner
    nset = nset + 4
  end

  if n % 64 == 1 then
    redis.call('XTRIM', log, 'MINID', math.max(now - max_age, 0))
  end

  local ev
  if not state then
    ev = 'new_signature'
  elseif flags % (2 * FLAG_REGRESSION) >= FLAG_REGRESSION then
    ev = 'regression'
  else
    local m = n
    while m % 10 == 0 do m = m / 10 end
    if m == 1 then ev = 'recurring' elseif every == 1 or fixed > 0 then ev = 'recorded' end
  end
  if ev then
    local prefix, entity = sunpack('>Hc0Hc0', header, events_at)
    -- A record that started stored state afresh says which (its repair flags, shifted down to
    -- start at 1).
    local repairs = fixed > 0 and ',"repaired":' .. fixed / FLAG_REPAIRED_STATE or ''
    redis.call('PUBLISH', prefix .. severity, ck_envelope(ev, 'errors', entity, nowstr,
      '{"count":' .. n .. ',"first_seen_ms":' .. (state and first or nowstr) .. repairs
      .. ',"record":' .. record .. '}'))
  end

  if cascade_kinds then
    local counts, components, undecodable = {}, {}, 0
    -- At most the newest log-max entries (what the log holds once trimmed), and at most 2000:
    -- `complete` says whether they are every occurrence of the window.
    local from, limit = math.max(now - window + 1, 0), math.min(2000, tonumber(log_max))
    local recent = redis.call('XREVRANGE', log, '+', from, 'COUNT', limit)
    local complete = #recent < limit
    if complete and redis.call('XLEN', log) >= tonumber(log_max) then
      -- A full log whose oldest entry is inside the window may have lost some of it.
      local oldest = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)[1]
      complete = not (oldest and tonumber(string.match(oldest[1], '^(%d+)')) >= from)
    end
    for _, item in ipairs(recent) do
      local fields, decoded = item[2], nil
      for f = 1, #fields, 2 do
        if fields[f] == 'e' then
          local ok, d = pcall(cjson.decode, fields[f + 1])
          if ok and type(d) == 'table' then decoded = d end
        end
      end
      if decoded then
        local k, cp = decoded['kind'], decoded['component']
        k, cp = type(k) == 'string' and k or '?', type(cp) == 'string' and cp or '?'
        counts[k] = (counts[k] or 0) + 1
        components[cp] = (components[cp] or 0) + 1
      else
        -- Written by something else: counted, never silently left out.
        undecodable = undecodable + 1
      end
    end
    local prefix, entity = sunpack('>Hc0Hc0', header, events_at)
    redis.call('PUBLISH', prefix .. 'critical', ck_envelope('cascade', 'errors', entity, nowstr,
      cjson.encode({ kinds = cascade_kinds, counts = counts, components = components,
        complete = complete, window_ms = window, threshold = threshold, trigger = sig,
        undecodable = undecodable })))
  end

  out[3 * ri - 2], out[3 * ri - 1], out[3 * ri] = n, first, flags
end

if corr_changed then
  hset[nset + 1], hset[nset + 2] = '~corr', corr
  nset = nset + 2
end
if np_dirty then
  hset[nset + 1], hset[nset + 2] = '~np', np
  nset = nset + 2
end
if nset > 0 then redis.call('HSET', data, unpack(hset, 1, nset)) end
if single then return spack('>dddd', now, out[1], out[2], out[3]) end
return spack('>d' .. string.rep('ddd', nrec), now, unpack(out, 1, 3 * nrec))
