-- errors counts: the counters by kind and component.
--
-- KEYS[1] data (hash), as in record.lua
-- Returns {other, field1, count1, field2, count2, ...} with fields "<kind> <component>" (the
-- counters are kept packed: struct '>d').
local out = { tonumber(redis.call('HGET', KEYS[1], '~o') or '0') }
local cursor = '0'
repeat
  local page = redis.call('HSCAN', KEYS[1], cursor, 'MATCH', '~c *', 'COUNT', 1000)
  cursor = page[1]
  local items = page[2]
  for i = 1, #items, 2 do
    out[#out + 1] = string.sub(items[i], 4)
    out[#out + 1] = struct.unpack('>d', items[i + 1])
  end
until cursor == '0'
return out
