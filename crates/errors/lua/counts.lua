-- errors counts: the counters by kind and component.
--
-- KEYS[1] data (hash), as in record.lua
-- Returns {other, field1, count1, field2, count2, ...} with fields "<kind> <component>" (the
-- counters are kept packed: struct '>d').
-- Errors: WRONGTYPE when the data hash holds another type; CORRUPT <data> naming the field when
-- "~o" or a counter is no whole number in 0..2^53 (the counter's next occurrence restarts it).
-- Stored bytes as printable ASCII for an error message (Redis's error replies must be text),
-- at most 40 of them.
local function shown(v)
  return '"' .. string.gsub(string.sub(v, 1, 40), '[%c\128-\255"\\]', function(c)
    return string.format('\\x%02x', string.byte(c))
  end) .. '"'
end
local data = KEYS[1]
local BIG = 9007199254740992
local other = redis.call('HGET', data, '~o')
local out = { 0 }
if other then
  out[1] = tonumber(other)
  if not (out[1] and out[1] >= 0 and out[1] <= BIG and out[1] % 1 == 0) then
    ck_corrupt(data, '~o is ' .. shown(other) .. ', not a whole number in 0..2^53')
  end
end
local cursor = '0'
repeat
  local page = redis.call('HSCAN', data, cursor, 'MATCH', '~c *', 'COUNT', 1000)
  cursor = page[1]
  local items = page[2]
  for i = 1, #items, 2 do
    local packed = items[i + 1]
    local n = #packed == 8 and struct.unpack('>d', packed)
    if not (n and n >= 0 and n <= BIG and n % 1 == 0) then
      ck_corrupt(data, 'counter ' .. shown(items[i]) .. ' is ' .. shown(packed)
        .. ', not a whole number in 0..2^53 packed in 8 bytes')
    end
    out[#out + 1] = string.sub(items[i], 4)
    out[#out + 1] = n
  end
until cursor == '0'
return out
