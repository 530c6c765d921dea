-- errors record: records one or more error occurrences (a batch, applied in order as if each
-- were its own call): per-signature state, last sample, the task's details, counters by kind and
-- component, the chronological log, correlation and a cascade check, and one event per record.
-- Caps on signatures, tasks, counter fields and log length keep memory bounded.
--
-- KEYS[1] data (hash): field <sig> = "count first_ms last_ms resolved_ms regressions[ comp...]",
--         "<sig> s" = last sample (JSON), "<sig> m" = meta (JSON, written on first sight),
--         "~t <task>" = the task's latest record (JSON), "~cascade" = last cascade ms
-- KEYS[2] seen (zset): sig -> last seen ms (least recent evicted beyond the cap)
-- KEYS[3] tasks (zset): task -> last record ms (oldest evicted beyond the cap; older than the
--         TTL = expired)
-- KEYS[4] counts (hash): "<kind> <component>" -> occurrences (at most max counter fields), plus
--         "~other": occurrences of pairs first seen beyond the cap
-- KEYS[5] log (stream): id <ms>-<seq>, fields f = sig, e = entry (JSON)
-- KEYS[6] corr (zset): kind -> last occurrence ms (the correlation window)
-- ARGV[1]  now_ms: "" for the server clock, or a manual time
-- ARGV[2]  log max length      ARGV[3] log max age ms       ARGV[4] task ttl ms
-- ARGV[5]  max signatures      ARGV[6] max tasks            ARGV[7] max counter fields
-- ARGV[8]  correlation window ms                            ARGV[9] cascade threshold (kinds)
-- ARGV[10] cascade channel     ARGV[11] envelope head ('{"source":"errors","entity":"<name>",')
-- ARGV[12] entity (tracker name)
-- Then 9 arguments per record, from ARGV[13]:
--   sig, kind, component, task ("" = none), occurred_ms ("" = now), record JSON without its
--   leading "{", meta JSON, log entry JSON without its leading "{", event channel
-- Returns per record 6 integers: count, first_ms, now, new (0/1), regression (0/1), cascade (0/1).
-- Errors: WRONGTYPE when a key holds another type (the data hash is checked before any write).

local data, seen, tasks, counts, log, corr = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now = ck_now(ARGV[1])
local log_max, max_age, task_ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local max_sigs, max_tasks, max_counters = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local window, threshold = tonumber(ARGV[8]), tonumber(ARGV[9])
local head = ARGV[11]
local fired = tonumber(redis.call('HGET', data, '~cascade'))
local out = {}

for base = 13, #ARGV - 8, 9 do
  local sig, kind, comp, task = ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  local occurred = tonumber(ARGV[base + 4])
  local state = redis.call('HGET', data, sig)
  local n, first, resolved, regressions, comps = 0, now, 0, 0, ''
  if state then
    local sn, sf, sr, sg, sc = string.match(state, '^(%d+) (%d+) %d+ (%d+) (%d+)(.*)$')
    n, first, resolved, regressions, comps = tonumber(sn), tonumber(sf), tonumber(sr),
      tonumber(sg), sc
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

  -- Correlation: the kind's last occurrence; stale kinds go when a new one arrives.
  if redis.call('ZADD', corr, now, kind) == 1 then
    redis.call('ZREMRANGEBYSCORE', corr, '-inf', now - window)
  end
  local cascade = 0
  if (fired == nil or now - fired >= window)
      and redis.call('ZCOUNT', corr, '(' .. (now - window), '+inf') >= threshold then
    cascade, fired = 1, now
  end

  -- Signatures: the least recently seen go beyond the cap.
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
  redis.call('ZADD', seen, now, sig)

  local stamped = '{"ts_ms":' .. now .. ',"count":' .. n .. ',' .. ARGV[base + 5]
  local hset = { sig, n .. ' ' .. first .. ' ' .. now .. ' ' .. resolved .. ' ' .. regressions
    .. comps, sig .. ' s', stamped }
  if not state then
    hset[5], hset[6] = sig .. ' m', ARGV[base + 6]
  end
  if cascade == 1 then
    local h = #hset
    hset[h + 1], hset[h + 2] = '~cascade', now
  end

  -- Tasks: a new one evicts the oldest beyond the cap, and expired ones it comes across.
  if task ~= '' then
    local h = #hset
    hset[h + 1], hset[h + 2] = '~t ' .. task, stamped
    if redis.call('ZADD', tasks, now, task) == 1 then
      local over = redis.call('ZCARD', tasks) - max_tasks
      local cand = redis.call('ZRANGE', tasks, 0, math.max(over, 0) + 3, 'WITHSCORES')
      local victims, fields = {}, {}
      for i = 1, #cand, 2 do
        local t = cand[i]
        if t ~= task then
          if over > 0 then
            over = over - 1
            victims[#victims + 1] = t
          elseif tonumber(cand[i + 1]) <= now - task_ttl then
            victims[#victims + 1] = t
          end
        end
      end
      if #victims > 0 then
        for i, t in ipairs(victims) do fields[i] = '~t ' .. t end
        redis.call('ZREM', tasks, unpack(victims))
        redis.call('HDEL', data, unpack(fields))
      end
    end
  end

  -- Counters by kind and component; new fields beyond the cap count as "~other".
  local pair = kind .. ' ' .. comp
  if redis.call('HINCRBY', counts, pair, 1) == 1
      and redis.call('HLEN', counts) - redis.call('HEXISTS', counts, '~other') > max_counters then
    redis.call('HDEL', counts, pair)
    redis.call('HINCRBY', counts, '~other', 1)
  end

  -- The log, capped by count (exactly) and by age (readers skip older entries; trimmed here now
  -- and then).
  local entry = '{"ts_ms":' .. now .. ',' .. ARGV[base + 7]
  local added = redis.pcall('XADD', log, 'MAXLEN', log_max, now .. '-*', 'f', sig, 'e', entry)
  if type(added) == 'table' and added.err then
    if string.find(added.err, 'WRONGTYPE', 1, true) then error(added) end
    -- The log already holds a later id (the clock went back): keep the order.
    redis.call('XADD', log, 'MAXLEN', log_max, '*', 'f', sig, 'e', entry)
  end
  if n % 64 == 1 then
    redis.call('XTRIM', log, 'MINID', math.max(now - max_age, 0))
  end

  redis.call('HSET', data, unpack(hset))

  local ev = 'recorded'
  if not state then ev = 'new_signature' elseif regression == 1 then ev = 'regression' end
  redis.call('PUBLISH', ARGV[base + 8], head .. '"kind":"' .. ev .. '","ts_ms":' .. now
    .. ',"payload":' .. stamped .. '}')

  if cascade == 1 then
    local kinds, components = {}, {}
    local recent = redis.call('XREVRANGE', log, '+', math.max(now - window + 1, 0), 'COUNT', 2000)
    for _, item in ipairs(recent) do
      local fields = item[2]
      for i = 1, #fields, 2 do
        if fields[i] == 'e' then
          local ok, decoded = pcall(cjson.decode, fields[i + 1])
          if ok then
            local k, c = decoded['kind'] or '?', decoded['component'] or '?'
            kinds[k] = (kinds[k] or 0) + 1
            components[c] = (components[c] or 0) + 1
          end
        end
      end
    end
    local distinct = redis.call('ZRANGEBYSCORE', corr, '(' .. (now - window), '+inf')
    ck_emit(ARGV[10], 'cascade', 'errors', ARGV[12], now, { kinds = distinct, counts = kinds,
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
