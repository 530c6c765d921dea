-- errors record: records one or more error occurrences (a batch, applied in order as if each
-- were its own call): the signature's state and last sample, the task's details record, the
-- counters by kind and component, the chronological log, correlation with a cascade check, and
-- one event per record. Caps on signatures, tasks, counters and the log bound memory.
-- Lean by design: in the steady state a record costs HMGET, XADD, HSET and PUBLISH.
--
-- KEYS[1] data (hash):
--   <sig>          "count first_ms last_ms resolved_ms regressions indexed_ms[ comp...]"
--   "<sig> s"      last sample (JSON)          "<sig> m"   meta (JSON, first sight)
--   "~t <slot>"    a task's latest record (JSON); "~to <slot>" = "<task> <ms>", its owner.
--                  A task may use one of two slots (of max_tasks, chosen by a hash of its id in
--                  Rust): the one it owns, else a free one, else the one written longest ago.
--   "~c <kind> <component>" occurrences; "~np" counter fields; "~o" occurrences beyond the cap
--   "~corr"        "kind ms kind ms ...": kinds in the correlation window, oldest first (<= 64)
--   "~cascade"     when the last cascade fired
-- KEYS[2] seen (zset): sig -> last seen ms, refreshed at most once per second per signature;
--         the lowest goes when a new signature exceeds the cap
-- KEYS[3] log (stream): id <ms>-<seq> (the record's time), fields f = sig, e = entry (JSON)
-- ARGV[1]  now_ms: "" for the server clock (the log id's time), or a manual time
-- ARGV[2]  log max length      ARGV[3] log max age ms       ARGV[4] (unused)
-- ARGV[5]  max signatures      ARGV[6] (unused)             ARGV[7] max counter fields
-- ARGV[8]  correlation window ms                            ARGV[9] cascade threshold (kinds)
-- ARGV[10] cascade channel     ARGV[11] envelope head ('{"source":"errors","entity":"<name>",')
-- ARGV[12] entity (tracker name)
-- Then 11 arguments per record, from ARGV[13]:
--   sig, kind, component, task ("" = none), task slot 1, task slot 2, occurred_ms ("" = now),
--   record JSON without its leading "{", meta JSON, log entry JSON, event channel
-- Returns per record 6 integers: count, first_ms, now, new (0/1), regression (0/1), cascade (0/1).
-- Errors: WRONGTYPE when a key holds another type (the data hash is read before any write).

local data, seen, log = KEYS[1], KEYS[2], KEYS[3]
local manual = ARGV[1]
local log_max, max_age = tonumber(ARGV[2]), tonumber(ARGV[3])
local max_sigs, max_tasks, max_counters = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local window, threshold = tonumber(ARGV[8]), tonumber(ARGV[9])
local head = ARGV[11]
local out = {}

for base = 13, #ARGV - 10, 11 do
  local sig, kind, comp, task = ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  local slot1, slot2 = ARGV[base + 4], ARGV[base + 5]
  local occurred = tonumber(ARGV[base + 6])
  local pair = '~c ' .. kind .. ' ' .. comp
  local got = redis.call('HMGET', data, sig, '~cascade', '~corr', pair, '~np', '~to ' .. slot1,
    '~to ' .. slot2)

  -- The log entry first: with the server clock its id is the record's time.
  local id
  if manual ~= '' then
    id = redis.pcall('XADD', log, 'MAXLEN', log_max, manual .. '-*', 'f', sig, 'e', ARGV[base + 9])
    if type(id) == 'table' then
      if string.find(id.err, 'WRONGTYPE', 1, true) then error(id) end
      -- The log holds a later id (the manual clock went back): keep the order.
      id = redis.call('XADD', log, 'MAXLEN', log_max, '*', 'f', sig, 'e', ARGV[base + 9])
    end
  else
    id = redis.call('XADD', log, 'MAXLEN', log_max, '*', 'f', sig, 'e', ARGV[base + 9])
  end
  local now = tonumber(manual) or tonumber(string.match(id, '^(%d+)'))

  local state = got[1]
  local n, first, resolved, regressions, indexed, comps = 0, now, 0, 0, 0, ''
  if state then
    local sn, sf, sr, sg, si, sc = string.match(state, '^(%d+) (%d+) %d+ (%d+) (%d+) (%d+)(.*)$')
    n, first, resolved, regressions, indexed, comps = tonumber(sn), tonumber(sf), tonumber(sr),
      tonumber(sg), tonumber(si), sc
  end
  n = n + 1
  local regression = 0
  if resolved > 0 and (occurred == nil or occurred > resolved) then
    regression, resolved, regressions = 1, 0, regressions + 1
  end
  if not string.find(comps .. ' ', ' ' .. comp .. ' ', 1, true) then
    local _, k = string.gsub(comps, ' ', '')
    if k < 16 then comps = comps .. ' ' .. comp end
  end

  -- Signatures: the least recently seen go beyond the cap; recency is refreshed once a second.
  if not state then
    local over = redis.call('ZCARD', seen) - max_sigs + 1
    if over > 0 then
      local victims = redis.call('ZPOPMIN', seen, over)
      local del = {}
      for i = 1, #victims, 2 do
        local v = victims[i]
        del[#del + 1] = v
        del[#del + 1] = v .. ' s'
        del[#del + 1] = v .. ' m'
      end
      redis.call('HDEL', data, unpack(del))
    end
  end
  if not state or now - indexed >= 1000 then
    redis.call('ZADD', seen, now, sig)
    indexed = now
  end

  local stamped = '{"ts_ms":' .. now .. ',"count":' .. n .. ',' .. ARGV[base + 7]
  local hset = { sig, n .. ' ' .. first .. ' ' .. now .. ' ' .. resolved .. ' ' .. regressions
    .. ' ' .. indexed .. comps, sig .. ' s', stamped }
  local h = 4
  if not state then
    hset[5], hset[6], h = sig .. ' m', ARGV[base + 8], 6
  end

  -- Correlation: the kinds seen within the window, newest last.
  local kinds, cutoff = {}, now - window
  if got[3] then
    for k, ts in string.gmatch(got[3], '(%S+) (%d+)') do
      if k ~= kind and tonumber(ts) > cutoff then
        kinds[#kinds + 1] = k .. ' ' .. ts
      end
    end
  end
  kinds[#kinds + 1] = kind .. ' ' .. now
  while #kinds > 64 do table.remove(kinds, 1) end
  hset[h + 1], hset[h + 2], h = '~corr', table.concat(kinds, ' '), h + 2
  local fired = tonumber(got[2])
  local cascade = 0
  if #kinds >= threshold and (fired == nil or now - fired >= window) then
    cascade = 1
    hset[h + 1], hset[h + 2], h = '~cascade', now, h + 2
  end

  -- Counters by kind and component; new pairs beyond the cap count as "~o".
  local pairs_n = tonumber(got[5]) or 0
  if got[4] then
    hset[h + 1], hset[h + 2], h = pair, tonumber(got[4]) + 1, h + 2
  elseif pairs_n < max_counters then
    hset[h + 1], hset[h + 2], hset[h + 3], hset[h + 4], h = pair, 1, '~np', pairs_n + 1, h + 4
  else
    redis.call('HINCRBY', data, '~o', 1)
  end

  -- Tasks: the slot the task owns, else a free one, else the one written longest ago.
  if task ~= '' then
    local o1, o2 = got[6], got[7]
    local slot = slot1
    if o1 and string.match(o1, '^(%S+)') == task then
      slot = slot1
    elseif o2 and string.match(o2, '^(%S+)') == task then
      slot = slot2
    elseif not o1 then
      slot = slot1
    elseif not o2 then
      slot = slot2
    elseif tonumber(string.match(o2, '(%d+)$')) < tonumber(string.match(o1, '(%d+)$')) then
      slot = slot2
    end
    hset[h + 1], hset[h + 2], hset[h + 3], hset[h + 4], h = '~t ' .. slot, stamped,
      '~to ' .. slot, task .. ' ' .. now, h + 4
  end

  redis.call('HSET', data, unpack(hset))
  if n % 64 == 1 then
    redis.call('XTRIM', log, 'MINID', math.max(now - max_age, 0))
  end

  local ev = 'recorded'
  if not state then ev = 'new_signature' elseif regression == 1 then ev = 'regression' end
  redis.call('PUBLISH', ARGV[base + 10], head .. '"kind":"' .. ev .. '","ts_ms":' .. now
    .. ',"payload":' .. stamped .. '}')

  if cascade == 1 then
    local counts, components, names = {}, {}, {}
    for i, entry in ipairs(kinds) do names[i] = string.match(entry, '^(%S+)') end
    local recent = redis.call('XREVRANGE', log, '+', math.max(cutoff + 1, 0), 'COUNT', 2000)
    for _, item in ipairs(recent) do
      local fields = item[2]
      for i = 1, #fields, 2 do
        if fields[i] == 'e' then
          local ok, decoded = pcall(cjson.decode, fields[i + 1])
          if ok then
            local k, c = decoded['kind'] or '?', decoded['component'] or '?'
            counts[k] = (counts[k] or 0) + 1
            components[c] = (components[c] or 0) + 1
          end
        end
      end
    end
    ck_emit(ARGV[10], 'cascade', 'errors', ARGV[12], now, { kinds = names, counts = counts,
      components = components, window_ms = window, threshold = threshold, trigger = sig })
  end

  out[#out + 1] = n
  out[#out + 1] = first
  out[#out + 1] = now
  out[#out + 1] = state and 0 or 1
  out[#out + 1] = regression
  out[#out + 1] = cascade
end
return out
