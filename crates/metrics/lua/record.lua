-- record: appends samples to a gauge or counter series and, in the same step, enforces its
-- retention (by count, then by age), adds counter increments to the running total, updates the
-- downsampled rollups and emits threshold alerts (at most once per interval).
--
-- Retention by count is amortised: once the list holds more than max_samples + slack samples
-- (slack = floor(max_samples / 16)), it is cut back to the newest max_samples. Queries
-- (query.lua) only ever look at the newest max_samples, so the slack is invisible; it saves a
-- trim on 15 writes out of 16.
--
-- KEYS[1] samples: a list of alternating timestamp (integer ms) and value (decimal text, as the
--         caller sent it), in recording order: [ts1, v1, ts2, v2, ...]
-- KEYS[2] meta (options "+" only): a hash; `total` = a counter's sum of increments (%.17g),
--         `alert_ms` = when the last threshold alert was emitted
-- KEYS[3] rollups (options "+" only): a hash; field = bucket start ms, value =
--         "count sum min max" (%.17g)
-- ARGV[1]  now_ms: "" for the server's TIME, or a manual clock's time in ms
-- ARGV[2]  max_samples: how many samples the series keeps (>= 1); the oldest recorded go first
-- ARGV[3]  options: "" for a plain gauge (no age limit, rollups or alerts; one key), or "+"
--          when ARGV[4..12] follow (one sample into a plain gauge goes to record_one.lua):
--   ARGV[4]  max_age_ms: samples whose timestamp is older than now - max_age_ms are removed
--            from the head of the list (0 = no age limit)
--   ARGV[5]  kind: "gauge", or "counter" (values are increments, must be >= 0, and are added
--            to meta.total)
--   ARGV[6]  rollup resolution ms (0 = no rollups)
--   ARGV[7]  rollup buckets kept (the newest by bucket start)
--   ARGV[8]  alert when a value is above this bound ("" = never)
--   ARGV[9]  alert when a value is below this bound ("" = never)
--   ARGV[10] alert interval ms: at most one alert per interval, by the script's clock
--   ARGV[11] alert channel
--   ARGV[12] alert entity (the series id)
-- Then one pair per sample, from ARGV[4] (plain) or ARGV[13] ("+"): timestamp ms ("" = now),
-- value.
-- Returns {retained, now_ms, total}: retained = min(samples in the list, max_samples), now_ms
-- the script's clock, total a counter's total as text ("" for gauges).
-- Fails, before any write: BADVALUE <detail> (a value that is not a finite number, a negative
-- increment, a bad timestamp, no sample), WRONGTYPE <key> <type> (a key of another type).

local samples, meta, rollups = KEYS[1], KEYS[2], KEYS[3]
local now = ck_now(ARGV[1])
local max_samples = tonumber(ARGV[2])
local trim_above = 2 * (max_samples + math.floor(max_samples / 16))

local max_age, counter, resolution, above, below, first_pair = 0, false, 0, nil, nil, 4
if ARGV[3] == '+' then
  max_age = tonumber(ARGV[4])
  counter = ARGV[5] == 'counter'
  resolution = tonumber(ARGV[6])
  above = tonumber(ARGV[8])
  below = tonumber(ARGV[9])
  first_pair = 13
end
local alerting = above ~= nil or below ~= nil

-- Validate everything first: Redis does not roll back a script's writes when it fails halfway.
local function parse_sample(ts_arg, value_arg)
  local ts = now
  if ts_arg ~= '' then
    ts = tonumber(ts_arg)
    if not ts or ts < 0 or ts ~= math.floor(ts) or ts > 9007199254740992 then
      return nil, ck_fail('BADVALUE', 'timestamp ' .. ts_arg .. ' is not a whole number of ms')
    end
  end
  local v = tonumber(value_arg)
  if not v or v ~= v or v == math.huge or v == -math.huge then
    return nil, ck_fail('BADVALUE', 'value ' .. value_arg .. ' is not a finite number')
  end
  if counter and v < 0 then
    return nil, ck_fail('BADVALUE', 'increment ' .. value_arg .. ' is negative')
  end
  return ts, v
end

local function failed_push(reply)
  if type(reply) == 'table' and reply.err then
    ck_expect_type(samples, 'list') -- names the key and its type when that was the cause
    return true
  end
  return false
end

local n = (#ARGV - first_pair + 1) / 2
if n < 1 or n ~= math.floor(n) then
  return ck_fail('BADVALUE', 'expected one or more timestamp/value pairs')
end
local stamps, values, push = {}, {}, {}
for i = 1, n do
  local value_arg = ARGV[first_pair + 2 * i - 1]
  local ts, v = parse_sample(ARGV[first_pair + 2 * i - 2], value_arg)
  if not ts then return v end
  stamps[i], values[i] = ts, v
  push[2 * i - 1], push[2 * i] = string.format('%d', ts), value_arg
end
-- The other keys are checked before the first write; the samples key by that write itself.
if counter or alerting then ck_expect_type(meta, 'hash') end
if resolution > 0 then ck_expect_type(rollups, 'hash') end

-- Append (in chunks: unpack has a stack limit), then trim by count.
local len = 0
for first = 1, #push, 2000 do
  local pushed = redis.pcall('RPUSH', samples, unpack(push, first, math.min(first + 1999, #push)))
  if failed_push(pushed) then return pushed end
  len = pushed
end
if len > trim_above then
  redis.call('LTRIM', samples, len - 2 * max_samples, -1)
  len = 2 * max_samples
end

-- Trim by age: pop whole pairs from the head while they are older than the cutoff.
if max_age > 0 then
  local cutoff = now - max_age
  local head = redis.call('LINDEX', samples, 0)
  if head and tonumber(head) < cutoff then
    repeat
      local chunk = redis.call('LRANGE', samples, 0, 255)
      local old = 0
      while old * 2 < #chunk and tonumber(chunk[old * 2 + 1]) < cutoff do
        old = old + 1
      end
      if old > 0 then
        redis.call('LTRIM', samples, old * 2, -1)
        len = len - old * 2
      end
    until old < 128
  end
end

-- Counter: the running total of increments, summed in recording order.
local total = ''
if counter then
  local t = tonumber(redis.call('HGET', meta, 'total') or '0')
  for i = 1, n do t = t + values[i] end
  total = string.format('%.17g', t)
  redis.call('HSET', meta, 'total', total)
end

-- Rollups: one bucket per `resolution` ms of sample time, the newest `keep` kept.
if resolution > 0 then
  local buckets, touched, created = {}, {}, false
  for i = 1, n do
    local start = string.format('%d', stamps[i] - stamps[i] % resolution)
    local b = buckets[start]
    if not b then
      local text = redis.call('HGET', rollups, start)
      if text then
        local c, s, lo, hi = string.match(text, '^(%S+) (%S+) (%S+) (%S+)$')
        b = { tonumber(c), tonumber(s), tonumber(lo), tonumber(hi) }
      else
        b = { 0, 0, values[i], values[i] }
        created = true
      end
      buckets[start] = b
      touched[#touched + 1] = start
    end
    local v = values[i]
    b[1] = b[1] + 1
    b[2] = b[2] + v
    if v < b[3] then b[3] = v end
    if v > b[4] then b[4] = v end
  end
  local fields = {}
  for _, start in ipairs(touched) do
    local b = buckets[start]
    fields[#fields + 1] = start
    fields[#fields + 1] = string.format('%d %.17g %.17g %.17g', b[1], b[2], b[3], b[4])
  end
  redis.call('HSET', rollups, unpack(fields))
  if created then
    local count = redis.call('HLEN', rollups)
    local keep = tonumber(ARGV[7])
    if count > keep then
      local starts = redis.call('HKEYS', rollups)
      table.sort(starts, function(a, b) return tonumber(a) < tonumber(b) end)
      local drop = {}
      for i = 1, count - keep do drop[i] = starts[i] end
      redis.call('HDEL', rollups, unpack(drop))
    end
  end
end

-- Threshold alerts: at most one per interval, in recording order.
if alerting then
  local interval = tonumber(ARGV[10])
  local last = tonumber(redis.call('HGET', meta, 'alert_ms') or '')
  for i = 1, n do
    local v = values[i]
    local direction, bound
    if above and v > above then
      direction, bound = 'above', above
    elseif below and v < below then
      direction, bound = 'below', below
    end
    if direction and (not last or now - last >= interval) then
      last = now
      redis.call('HSET', meta, 'alert_ms', string.format('%d', now))
      ck_emit(ARGV[11], 'threshold', 'metrics', ARGV[12], now, {
        direction = direction, bound = bound, value = v, sample_ts_ms = stamps[i],
      })
    end
  end
end

if len > 2 * max_samples then len = 2 * max_samples end
return { len / 2, now, total }
