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
-- increment, a bad timestamp, no sample, a value that would take the counter's total or a
-- rollup bucket's sum past the largest finite number: refused, never stored as "inf", which
-- the next write would refuse as corrupt), WRONGTYPE <key> <type> (a key of another type),
-- CORRUPT <key> <detail> (a stored value the write needs does not decode: meta's `total` not a
-- finite number >= 0 or `alert_ms` not a whole number in 0..2^53, a rollup bucket the samples
-- fall in not "count sum min max", a rollup field not a bucket start when the rollups are
-- trimmed). One call is one series' write: pipelined writes of other calls are not affected.
-- The age trim reads the list after the append: a timestamp it cannot read ends the trim there
-- (it never drops what it cannot date; the trim by count drops the oldest, whatever they hold).

local samples, meta, rollups = KEYS[1], KEYS[2], KEYS[3]
-- Stored times and counts stay whole in a Lua number up to 2^53.
local MAX = 9007199254740992
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

-- validate: the caller's samples, then every stored value the write uses (Redis does not roll
-- back a script's writes when it fails halfway).
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

local function finite(x)
  return x and x == x and x ~= math.huge and x ~= -math.huge
end

-- A stored value in an error: quoted, cut, printable ASCII (an error reply must be text).
local function shown(text)
  return string.format('%q', (string.gsub(string.sub(text, 1, 40), '[^ -~]', '?')))
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
-- Stored values, read before the first write (each read fails on a key of another type): a
-- counter's total and the last alert's time (meta), the rollup buckets the samples fall in and,
-- when new buckets make the rollups too long, every bucket start. The samples list's type is
-- checked by the append itself, the first write (it fails writing nothing).
local total_before, last = 0, nil
if counter or alerting then
  local m = redis.call('HMGET', meta, 'total', 'alert_ms')
  if counter and m[1] then
    total_before = tonumber(m[1])
    if not (finite(total_before) and total_before >= 0) then
      ck_corrupt(meta, 'total is ' .. shown(m[1]) .. ', not a finite number >= 0')
    end
  end
  if alerting then last = ck_int(m[2], meta, 'alert_ms', MAX) end
end
-- The counter's new total, in recording order; a total past the largest number is refused.
local total = ''
if counter then
  local t = total_before
  for i = 1, n do
    t = t + values[i]
    if t == math.huge then
      return ck_fail('BADVALUE', 'increment ' .. ARGV[first_pair + 2 * i - 1] .. ' would take '
        .. 'the total past the largest number (it is ' .. string.format('%.17g', t - values[i])
        .. ')')
    end
  end
  total = string.format('%.17g', t)
end
local buckets, touched, drop = {}, {}, {}
if resolution > 0 then
  local created = {}
  for i = 1, n do
    local start = string.format('%d', stamps[i] - stamps[i] % resolution)
    if not buckets[start] then
      local text = redis.call('HGET', rollups, start)
      local b
      if text then
        local c, s, lo, hi = string.match(text, '^(%S+) (%S+) (%S+) (%S+)$')
        b = { tonumber(c), tonumber(s), tonumber(lo), tonumber(hi) }
        if not (b[1] and b[1] >= 0 and b[1] <= MAX and b[1] % 1 == 0 and finite(b[2])
            and finite(b[3]) and finite(b[4])) then
          ck_corrupt(rollups, 'bucket ' .. start .. ' is ' .. shown(text)
            .. ', not "count sum min max"')
        end
      else
        b = { 0, 0, values[i], values[i] }
        created[#created + 1] = start
      end
      buckets[start] = b
      touched[#touched + 1] = start
    end
  end
  if #created > 0 then
    local count = redis.call('HLEN', rollups) + #created
    local keep = tonumber(ARGV[7])
    if count > keep then
      local starts = redis.call('HKEYS', rollups)
      for _, start in ipairs(starts) do
        local t = tonumber(start)
        if not (t and t >= 0 and t <= MAX and t % 1 == 0) then
          ck_corrupt(rollups, 'field ' .. shown(start) .. ' is not a bucket start')
        end
      end
      for _, start in ipairs(created) do starts[#starts + 1] = start end
      table.sort(starts, function(a, b) return tonumber(a) < tonumber(b) end)
      for i = 1, count - keep do drop[i] = starts[i] end
    end
  end
  -- The buckets' new figures (in memory): a sum past the largest number is refused.
  for i = 1, n do
    local b = buckets[string.format('%d', stamps[i] - stamps[i] % resolution)]
    local v = values[i]
    b[1] = b[1] + 1
    b[2] = b[2] + v
    if v < b[3] then b[3] = v end
    if v > b[4] then b[4] = v end
    if not finite(b[2]) then
      return ck_fail('BADVALUE', 'value ' .. ARGV[first_pair + 2 * i - 1] .. ' would take the '
        .. 'sum of rollup bucket ' .. string.format('%d', stamps[i] - stamps[i] % resolution)
        .. ' past the largest number')
    end
  end
end

-- writes:
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
  local head = tonumber(redis.call('LINDEX', samples, 0))
  if head and head < cutoff then
    repeat
      local chunk = redis.call('LRANGE', samples, 0, 255)
      local old = 0
      while old * 2 < #chunk do
        local ts = tonumber(chunk[old * 2 + 1])
        if not ts or ts >= cutoff then break end
        old = old + 1
      end
      if old > 0 then
        redis.call('LTRIM', samples, old * 2, -1)
        len = len - old * 2
      end
    until old < 128
  end
end

-- Counter: the running total of increments (summed above).
if counter then redis.call('HSET', meta, 'total', total) end

-- Rollups: one bucket per `resolution` ms of sample time (updated above), the newest `keep`
-- kept.
if resolution > 0 then
  local fields = {}
  for _, start in ipairs(touched) do
    local b = buckets[start]
    fields[#fields + 1] = start
    fields[#fields + 1] = string.format('%d %.17g %.17g %.17g', b[1], b[2], b[3], b[4])
  end
  redis.call('HSET', rollups, unpack(fields))
  if #drop > 0 then redis.call('HDEL', rollups, unpack(drop)) end
end

-- Threshold alerts: at most one per interval, in recording order.
if alerting then
  local interval = tonumber(ARGV[10])
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
