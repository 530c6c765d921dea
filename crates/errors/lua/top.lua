-- errors top: the signatures with the most occurrences in the log within a window.
--
-- KEYS[1] data (hash), KEYS[2] log (stream), as in record.lua
-- ARGV[1] now_ms: "" for the server clock, or a manual time
-- ARGV[2] window ms: occurrences at times > now - window count
-- ARGV[3] max age ms (older log entries never count)
-- ARGV[4] how many signatures to return
-- ARGV[5] the log's max length
-- Returns {complete, undecodable, sig1, count1, state1, meta1, sig2, ...}: complete = 0 when the
-- log was trimmed by count inside the window (counts are then lower bounds); undecodable = the
-- window's entries that name no signature (written by something else: no "f", or one that is
-- not a signature's ASCII or starts with "~", the tracker's own fields), left out of the counts; state and meta
-- are "" for a signature no longer tracked (Rust decodes them). Ordered by count (descending),
-- then signature.
local now = ck_now(ARGV[1])
local from = math.max(now - tonumber(ARGV[2]) + 1, now - tonumber(ARGV[3]), 0)
local log_max = tonumber(ARGV[5])
local entries = redis.call('XREVRANGE', KEYS[2], '+', from, 'COUNT', log_max)
local counts, order, undecodable = {}, {}, 0
for _, item in ipairs(entries) do
  local fields, sig = item[2], nil
  for i = 1, #fields, 2 do
    if fields[i] == 'f' then sig = fields[i + 1] end
  end
  -- Signatures are ASCII: "v<n>-<hex>" or "c-<cleaned>" (with "~<digest>" when cut).
  if sig and string.byte(sig, 1) ~= 126 and string.find(sig, '^[%w%-%._:/@~]+$') then
    local c = counts[sig]
    if c then
      counts[sig] = c + 1
    else
      counts[sig] = 1
      order[#order + 1] = sig
    end
  else
    undecodable = undecodable + 1
  end
end
table.sort(order, function(a, b)
  if counts[a] ~= counts[b] then return counts[a] > counts[b] end
  return a < b
end)
local complete = 1
if redis.call('XLEN', KEYS[2]) >= log_max then
  local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
  if oldest and tonumber(string.match(oldest[1], '^(%d+)')) >= from then
    complete = 0
  end
end
local out = { complete, undecodable }
for i = 1, math.min(#order, tonumber(ARGV[4])) do
  local sig = order[i]
  local got = redis.call('HMGET', KEYS[1], sig, sig .. ' m')
  out[#out + 1] = sig
  out[#out + 1] = counts[sig]
  out[#out + 1] = got[1] or ''
  out[#out + 1] = got[2] or ''
end
return out
