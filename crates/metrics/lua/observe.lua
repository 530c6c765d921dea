-- observe: adds observations to a histogram with fixed buckets, in one step.
--
-- KEYS[1] histogram: a hash; `count` (integer), `sum`, `min`, `max` (%.17g text), and
--         `b<index>` = how many observations fell in bucket <index> (the layout is fixed and
--         documented in histogram.rs; the caller computes the index)
-- ARGV[1], ARGV[2], ... one pair per observation: bucket index (0..=561), value (finite, >= 0)
-- Returns: the histogram's count after the update, as text.
-- Fails, before any write: BADVALUE <detail> (a bad value or bucket, no observation, or an
-- observation that would take the sum past the largest finite number: it is refused, never
-- stored as "inf", which the next call would refuse as corrupt),
-- WRONGTYPE (KEYS[1] is not a hash: its read fails), CORRUPT <key> <detail> (`count` or a
-- touched bucket not a whole number in 0..2^53, or the count at that cap; `sum`, `min` or `max`
-- not a finite number >= 0).

local key = KEYS[1]
local MAX = 9007199254740992
local n = #ARGV / 2
-- validate: the observations, then the stored fields this update reads (one HMGET, which also
-- fails on a key of another type).
if n < 1 or n ~= math.floor(n) then
  return ck_fail('BADVALUE', 'expected one or more bucket/value pairs')
end
local per_bucket, fields, values = {}, { 'count', 'sum', 'min', 'max' }, {}
for i = 1, n do
  local bucket, v = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  if not bucket or bucket < 0 or bucket > 561 or bucket ~= math.floor(bucket) then
    return ck_fail('BADVALUE', 'bucket ' .. ARGV[2 * i - 1] .. ' is out of range')
  end
  if not v or v ~= v or v == math.huge or v < 0 then
    return ck_fail('BADVALUE', 'value ' .. ARGV[2 * i] .. ' is not a finite number >= 0')
  end
  local field = 'b' .. string.format('%d', bucket)
  if not per_bucket[field] then
    per_bucket[field] = 0
    fields[#fields + 1] = field
  end
  per_bucket[field] = per_bucket[field] + 1
  values[i] = v
end

local current = redis.call('HMGET', key, unpack(fields))
local count = ck_int(current[1], key, 'count', MAX) or 0
if count > MAX - n then ck_corrupt(key, 'count is at its cap of 2^53') end
local function stored(i)
  local text = current[i]
  if not text then return nil end
  local x = tonumber(text)
  if not (x and x >= 0 and x ~= math.huge) then
    local shown = string.gsub(string.sub(text, 1, 40), '[^ -~]', '?')
    ck_corrupt(key, fields[i] .. ' is ' .. string.format('%q', shown)
      .. ', not a finite number >= 0')
  end
  return x
end
local sum, min, max = stored(2) or 0, stored(3), stored(4)
local out = {}
for i = 5, #fields do
  local field = fields[i]
  out[#out + 1] = field
  out[#out + 1] = (ck_int(current[i], key, field, MAX - per_bucket[field]) or 0)
    + per_bucket[field]
end
for i = 1, n do
  local v = values[i]
  sum = sum + v
  if sum == math.huge then
    return ck_fail('BADVALUE', 'observation ' .. ARGV[2 * i] .. ' would take the sum past '
      .. 'the largest number (the sum is ' .. string.format('%.17g', sum - v) .. ')')
  end
  if min == nil or v < min then min = v end
  if max == nil or v > max then max = v end
end
count = count + n

-- writes: one HSET of the touched buckets and the totals.
for i = 1, #out, 2 do out[i + 1] = string.format('%d', out[i + 1]) end
redis.call('HSET', key, 'count', string.format('%d', count), 'sum', string.format('%.17g', sum),
  'min', string.format('%.17g', min), 'max', string.format('%.17g', max), unpack(out))
return string.format('%d', count)
