-- query: reads a gauge or counter series written by record.lua or record_one.lua. Writes
-- nothing.
--
-- KEYS[1] samples: the series' list of alternating timestamp and value, in recording order
-- ARGV[1] now_ms: "" for the server's TIME, or a manual clock's time in ms
-- ARGV[2] max_samples: only the newest max_samples of the list are visible (record.lua may keep
--         a few more until its next trim)
-- ARGV[3] max_age_ms: samples older than now - max_age_ms are invisible, even before the next
--         write trims them (0 = no age limit)
-- ARGV[4] selector:
--         "last"   ARGV[5] = n: the n most recently recorded visible samples (n >= 1)
--         "range"  ARGV[5] = from ms, ARGV[6] = to ms: visible samples with from <= ts <= to
--         "recent" ARGV[5] = d ms: visible samples with now - d < ts <= now
-- ARGV[7] what: "samples" or "aggregate"
-- ARGV[8], ARGV[9], ... quantiles q in [0, 1] ("aggregate" only)
-- Returns, as text:
--   "samples":   {now, ts1, v1, ts2, v2, ...} in recording order
--   "aggregate": {now, count, sum, min, max, p(q1), p(q2), ...}, or {now, "0"} when empty.
--                sum is taken in recording order; p(q) is the nearest-rank percentile: the
--                ceil(q * count)-th smallest value (the smallest when that is 0).
-- Fails: WRONGTYPE <key> <type> when KEYS[1] is not a list (its read fails); CORRUPT <key>
-- <detail> when the list does not hold timestamp, value pairs (an odd length short of the
-- window), or a sample the query judges or aggregates does not decode (a timestamp not a whole
-- number in 0..2^53, a value not a finite number). Samples it only returns are decoded by the
-- caller.

local key = KEYS[1]
local now = ck_now(ARGV[1])
local max_samples = tonumber(ARGV[2])
local max_age = tonumber(ARGV[3])
local cutoff = -math.huge
if max_age > 0 then cutoff = now - max_age end
local selector = ARGV[4]
local visible_from = -2 * max_samples

-- A stored value in an error: quoted, cut, printable ASCII (an error reply must be text).
local function shown(text)
  return string.format('%q', (string.gsub(string.sub(text, 1, 40), '[^ -~]', '?')))
end

-- A stored timestamp, decoded (a list of another layout fails naming the key).
local function stamp(text)
  local ts = tonumber(text)
  if not (ts and ts >= 0 and ts <= 9007199254740992 and ts % 1 == 0) then
    ck_corrupt(key, 'a sample\'s timestamp is ' .. shown(text)
      .. ', not a whole number in 0..9007199254740992')
  end
  return ts
end

-- A range of the list: pairs only (a list shorter than the range starts at its head).
local function entries(from)
  local list = redis.call('LRANGE', key, from, -1)
  if #list % 2 ~= 0 then
    ck_corrupt(key, 'holds ' .. #list .. ' entries in its newest ' .. -from
      .. ', not timestamp, value pairs')
  end
  return list
end

local picked = {}
local function pick_from(list, from, to)
  for i = 1, #list, 2 do
    local ts = stamp(list[i])
    if ts >= cutoff and ts >= from and ts <= to then
      picked[#picked + 1] = list[i]
      picked[#picked + 1] = list[i + 1]
    end
  end
end

if selector == 'last' then
  local want = math.min(tonumber(ARGV[5]), max_samples)
  if want >= 1 then
    local tail = entries(-2 * want)
    local all_visible = true
    if max_age > 0 then
      for i = 1, #tail, 2 do
        if stamp(tail[i]) < cutoff then all_visible = false break end
      end
    end
    if all_visible then
      picked = tail
    else
      pick_from(entries(visible_from), -math.huge, math.huge)
      if #picked > 2 * want then
        local last = {}
        for i = #picked - 2 * want + 1, #picked do last[#last + 1] = picked[i] end
        picked = last
      end
    end
  end
elseif selector == 'range' then
  pick_from(entries(visible_from), tonumber(ARGV[5]), tonumber(ARGV[6]))
elseif selector == 'recent' then
  pick_from(entries(visible_from), now - tonumber(ARGV[5]) + 1, now)
else
  return ck_fail('BADQUERY', 'unknown selector ' .. selector)
end

local now_text = string.format('%d', now)
if ARGV[7] == 'samples' then
  table.insert(picked, 1, now_text)
  return picked
end

local count = #picked / 2
if count == 0 then return { now_text, '0' } end
local values = {}
local sum, min, max = 0, nil, nil
for i = 1, count do
  local v = tonumber(picked[2 * i])
  if not (v and v == v and v ~= math.huge and v ~= -math.huge) then
    ck_corrupt(key, 'a sample\'s value is ' .. shown(picked[2 * i]) .. ', not a finite number')
  end
  values[i] = v
  sum = sum + v
  if min == nil or v < min then min = v end
  if max == nil or v > max then max = v end
end
local out = { now_text, string.format('%d', count), string.format('%.17g', sum),
  string.format('%.17g', min), string.format('%.17g', max) }
if #ARGV >= 8 then
  table.sort(values)
  for a = 8, #ARGV do
    local rank = math.ceil(tonumber(ARGV[a]) * count)
    if rank < 1 then rank = 1 end
    if rank > count then rank = count end
    out[#out + 1] = string.format('%.17g', values[rank])
  end
end
return out
