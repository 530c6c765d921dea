-- record_one: one sample into a plain gauge series (no age limit, rollups or alerts), the
-- commonest write, as a script of its own: record.lua's layout and answer, without its general
-- path (so a call makes one closure, ck_now, and no Lua string: Redis itself writes the
-- timestamp's digits). record.lua documents the samples list and the amortised trim.
--
-- KEYS[1] samples: a list of alternating timestamp (integer ms) and value (decimal text)
-- ARGV[1] now_ms: "" for the server's TIME, or a manual clock's time in ms
-- ARGV[2] keep: 2 x max_samples, the list entries a trim keeps
-- ARGV[3] trim above: the list is cut back to `keep` entries once it is longer than this
--         (2 x (max_samples + floor(max_samples / 16)))
-- ARGV[4] timestamp ms ("" = now)
-- ARGV[5] value
-- Returns now_ms (an integer) when the series holds max_samples samples (its steady state, and
-- a reply with no table to build), else {retained, now_ms, ""} (retained = the samples held).
-- Fails, before any write: BADVALUE <detail> (a value that is not a finite number, a bad
-- timestamp), WRONGTYPE <key> <type> (the key holds another type), or the server's own error
-- (out of memory, ...).

local samples = KEYS[1]
local now = ck_now(ARGV[1])
-- validate: the caller's sample. No stored value is used (the trim goes by the list's length);
-- the list's type is checked by the append itself, which fails writing nothing.
local ts, value = now, ARGV[5]
if ARGV[4] ~= '' then
  ts = tonumber(ARGV[4])
  if not ts or ts < 0 or ts ~= math.floor(ts) or ts > 9007199254740992 then
    return redis.error_reply('BADVALUE timestamp ' .. ARGV[4] .. ' is not a whole number of ms')
  end
end
local v = tonumber(value)
if not v or v ~= v or v == math.huge or v == -math.huge then
  return redis.error_reply('BADVALUE value ' .. value .. ' is not a finite number')
end
-- writes:
local len = redis.pcall('RPUSH', samples, ts, value)
if type(len) == 'table' then
  -- Name the key and its type when that was the cause; any other failure as it came.
  local found = redis.call('TYPE', samples)['ok']
  if found ~= 'none' and found ~= 'list' then
    return redis.error_reply('WRONGTYPE ' .. samples .. ' ' .. found)
  end
  return len
end
local keep = tonumber(ARGV[2])
if len < keep then return { len / 2, now, '' } end
if len > tonumber(ARGV[3]) then redis.call('LTRIM', samples, len - keep, -1) end
return now
