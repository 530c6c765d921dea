-- errors record: records a batch of error occurrences, applied in order exactly as if each were
-- its own call: the signature's state and last sample, the task's details record, the counters
-- by kind and component, the chronological log, correlation with a cascade check, and events.
-- Caps on signatures, tasks, counters and the log bound memory.
--
-- Lean by design: the batch reads the data hash once (HMGET) and writes it once (HSET); each
-- record adds one XADD (whose id gives the server time). ZADD on `seen` happens for a new
-- signature and at most once a second per signature; PUBLISH for notable records only (unless
-- every record is asked for).
--
-- KEYS[1] data (hash):
--   <sig>          "count first_ms last_ms resolved_ms regressions indexed_ms[ comp...]"
--   "<sig> s"      last sample (JSON; its time and count are the state's last_ms and count)
--   "<sig> m"      meta (JSON, first sight)
--   "~t <slot>"    a task's latest record (JSON); "~to <slot>" = "<task> <ms>", its owner and
--                  the record's time.
--                  A task may use one of two slots (of max_tasks, chosen by a hash of its id in
--                  Rust): the one it owns, else a free one, else the one written longest ago.
--   "~c <kind> <component>" occurrences; "~np" how many such fields; "~o" occurrences of pairs
--                  first seen beyond the cap
--   "~corr"        "<last cascade ms or 0>[ kind ms ...]": the kinds seen within the
--                  correlation window, oldest first (at most 64)
-- KEYS[2] seen (zset): sig -> last seen ms, refreshed at most once a second per signature; the
--         lowest goes when a new signature exceeds the cap
-- KEYS[3] log (stream): id <ms>-<seq> (the record's time), fields f = sig, e = entry (JSON)
-- ARGV[1]  now_ms: "" for the server clock (the log id's time), or a manual time
-- ARGV[2]  log max length      ARGV[3] log max age ms
-- ARGV[4]  "1": an event for every record; "0": for new signatures, regressions and counts of
--          10, 100, 1000, ... only
-- ARGV[5]  max signatures      ARGV[6] (unused)             ARGV[7] max counter fields
-- ARGV[8]  correlation window ms                            ARGV[9] cascade threshold (kinds)
-- ARGV[10] cascade channel     ARGV[11] envelope head ('{"source":"errors","entity":"<name>",')
-- ARGV[12] entity (tracker name)
-- Then 16 arguments per record, from ARGV[13] (field names are built in Rust, so the script
-- does no string work it can avoid):
--   +0 sig  +1 "<sig> s"  +2 "<sig> m"  +3 kind  +4 component  +5 "~c <kind> <component>"
--   +6 task ("" = none)  +7 "~to <slot1>"  +8 "~to <slot2>"  +9 "~t <slot1>"  +10 "~t <slot2>"
--   +11 occurred_ms ("" = now)  +12 record JSON  +13 meta JSON  +14 log entry JSON
--   +15 event channel
-- Returns per record 6 integers: count, first_ms, now, new (0/1), regression (0/1), cascade (0/1).
-- Errors: WRONGTYPE when a key holds another type (the data hash is read before any write).

local data, seen, log = KEYS[1], KEYS[2], KEYS[3]
local manual = ARGV[1]
local log_max, max_age, every = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1'
local max_sigs, max_counters = tonumber(ARGV[5]), tonumber(ARGV[7])
local window, threshold = tonumber(ARGV[8]), tonumber(ARGV[9])
local head = ARGV[11]
local last = #ARGV - 15

-- Every field the batch reads, read once.
local want, names = {}, {}
local function need(f)
  if not want[f] then
    want[f] = true
    names[#names + 1] = f
  end
end
need('~corr')
need('~np')
need('~o')
for base = 13, last, 16 do
  need(ARGV[base])
  need(ARGV[base + 5])
  if ARGV[base + 6] ~= '' then
    need(ARGV[base + 7])
    need(ARGV[base + 8])
  end
end
local values = redis.call('HMGET', data, unpack(names))
local cache, changed, order = {}, {}, {}
for i, f in ipairs(names) do cache[f] = values[i] end
local function put(f, v)
  cache[f] = v
  if not changed[f] then
    changed[f] = true
    order[#order + 1] = f
  end
end

local out = {}
for base = 13, last, 16 do
  local sig, kind, comp, task = ARGV[base], ARGV[base + 3], ARGV[base + 4], ARGV[base + 6]
  local occurred = tonumber(ARGV[base + 11])
  local record = ARGV[base + 12]

  -- The log entry first: with the server clock its id is the record's time.
  local id
  if manual ~= '' then
    id = redis.pcall('XADD', log, 'MAXLEN', log_max, manual .. '-*', 'f', sig, 'e', ARGV[base + 14])
    if type(id) == 'table' then
      if string.find(id.err, 'WRONGTYPE', 1, true) then error(id) end
      -- The log holds a later id (the manual clock went back): keep the order.
      id = redis.call('XADD', log, 'MAXLEN', log_max, '*', 'f', sig, 'e', ARGV[base + 14])
    end
  else
    id = redis.call('XADD', log, 'MAXLEN', log_max, '*', 'f', sig, 'e', ARGV[base + 14])
  end
  local now = tonumber(manual) or tonumber(string.match(id, '^(%d+)'))

  local state = cache[sig]
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

  -- Signatures: the least recently seen go beyond the cap.
  if not state then
    local over = redis.call('ZCARD', seen) - max_sigs + 1
    if over > 0 then
      local victims = redis.call('ZPOPMIN', seen, over)
      local del = {}
      for i = 1, #victims, 2 do
        local v = victims[i]
        for _, f in ipairs({ v, v .. ' s', v .. ' m' }) do
          del[#del + 1] = f
          cache[f] = false
          changed[f] = nil
        end
      end
      redis.call('HDEL', data, unpack(del))
    end
  end
  if not state or now - indexed >= 1000 then
    redis.call('ZADD', seen, now, sig)
    indexed = now
  end

  put(sig, n .. ' ' .. first .. ' ' .. now .. ' ' .. resolved .. ' ' .. regressions .. ' '
    .. indexed .. comps)
  put(ARGV[base + 1], record)
  if not state then put(ARGV[base + 2], ARGV[base + 13]) end

  -- Correlation: the kinds seen within the window, newest last; one cascade per window.
  local cutoff = now - window
  local corr = cache['~corr'] or '0'
  local fired = tonumber(string.match(corr, '^(%d+)'))
  local kinds = {}
  for k, ts in string.gmatch(corr, ' (%S+) (%d+)') do
    if k ~= kind and tonumber(ts) > cutoff then kinds[#kinds + 1] = k .. ' ' .. ts end
  end
  kinds[#kinds + 1] = kind .. ' ' .. now
  while #kinds > 64 do table.remove(kinds, 1) end
  local cascade = 0
  if #kinds >= threshold and (fired == 0 or now - fired >= window) then
    cascade, fired = 1, now
  end
  put('~corr', fired .. ' ' .. table.concat(kinds, ' '))

  -- Counters by kind and component; new pairs beyond the cap count under "~o".
  local pair = ARGV[base + 5]
  local np = tonumber(cache['~np']) or 0
  if cache[pair] then
    put(pair, tonumber(cache[pair]) + 1)
  elseif np < max_counters then
    put(pair, 1)
    put('~np', np + 1)
  else
    put('~o', (tonumber(cache['~o']) or 0) + 1)
  end

  -- Tasks: the slot the task owns, else a free one, else the one written longest ago.
  if task ~= '' then
    local owner1, owner2 = ARGV[base + 7], ARGV[base + 8]
    local o1, o2 = cache[owner1], cache[owner2]
    local second = false
    if o1 and string.match(o1, '^(%S+)') == task then
      second = false
    elseif o2 and string.match(o2, '^(%S+)') == task then
      second = true
    elseif not o1 then
      second = false
    elseif not o2 then
      second = true
    else
      second = tonumber(string.match(o2, '(%d+)$')) < tonumber(string.match(o1, '(%d+)$'))
    end
    if second then
      put(ARGV[base + 10], record)
      put(owner2, task .. ' ' .. now)
    else
      put(ARGV[base + 9], record)
      put(owner1, task .. ' ' .. now)
    end
  end

  if n % 64 == 1 then
    redis.call('XTRIM', log, 'MINID', math.max(now - max_age, 0))
  end

  local ev
  if not state then
    ev = 'new_signature'
  elseif regression == 1 then
    ev = 'regression'
  else
    local m = n
    while m % 10 == 0 do m = m / 10 end
    if m == 1 then ev = 'recurring' elseif every then ev = 'recorded' end
  end
  if ev then
    redis.call('PUBLISH', ARGV[base + 15], head .. '"kind":"' .. ev .. '","ts_ms":' .. now
      .. ',"payload":{"count":' .. n .. ',"first_seen_ms":' .. first .. ',"record":' .. record
      .. '}}')
  end

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

local hset = {}
for _, f in ipairs(order) do
  if changed[f] then
    hset[#hset + 1] = f
    hset[#hset + 1] = cache[f]
  end
end
if #hset > 0 then redis.call('HSET', data, unpack(hset)) end
return out
