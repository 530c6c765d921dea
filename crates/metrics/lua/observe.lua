-- observe: adds observations to a histogram with fixed buckets, in one step.
--
-- KEYS[1] histogram: a hash; `count` (integer), `sum`, `min`, `max` (%.17g text), and
--         `b<index>` = how many observations fell in bucket <index> (the layout is fixed and
--         documented in histogram.rs; the caller computes the index)
-- ARGV[1], ARGV[2], ... one pair per observation: bucket index (0..=561), value (finite, >= 0)
-- Returns: the histogram's count after the update, as text.
-- Fails, before any write: BADVALUE <detail> (a bad value or bucket, no observation),
-- WRONGTYPE <key> <type> (KEYS[1] is not a hash).

local key = KEYS[1]
local n = #ARGV / 2
if n < 1 or n ~= math.floor(n) then
  return ck_fail('BADVALUE', 'expected one or more bucket/value pairs')
end
local per_bucket, order, values = {}, {}, {}
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
    order[#order + 1] = field
  end
  per_bucket[field] = per_bucket[field] + 1
  values[i] = v
end
ck_expect_type(key, 'hash')

local current = redis.call('HMGET', key, 'count', 'sum', 'min', 'max')
local count = tonumber(current[1] or '0')
local sum = tonumber(current[2] or '0')
local min, max = tonumber(current[3] or ''), tonumber(current[4] or '')
for i = 1, n do
  local v = values[i]
  sum = sum + v
  if min == nil or v < min then min = v end
  if max == nil or v > max then max = v end
end
count = count + n
for _, field in ipairs(order) do
  redis.call('HINCRBY', key, field, per_bucket[field])
end
redis.call('HSET', key, 'count', string.format('%d', count), 'sum', string.format('%.17g', sum),
  'min', string.format('%.17g', min), 'max', string.format('%.17g', max))
return string.format('%d', count)
