-- coordkit prelude: put in front of every coordkit script by coordkit_core::Script.
-- It defines helpers only; it reads no KEYS or ARGV and returns nothing. A script gets only the
-- helpers its body names (each `-- helper: NAME` section below is kept or left out whole), so
-- it pays for no closure it does not use.
--
-- ck_now(arg) -> integer milliseconds
--   `arg` when it is a positive number (a manual clock injected by tests), else the server's TIME.
-- ck_now_text(arg) -> the same time as decimal text
--   `arg` itself when it is not empty (the manual clock), else TIME's seconds and milliseconds,
--   put together as text: for scripts that write the time into strings, it turns no number
--   into text and no text into a number (both cost a script more than a Redis call's share).
-- ck_envelope(kind, source, entity, ts_ms, payload_json) -> text
--   The event envelope {kind, source, entity, ts_ms, payload} as JSON text, with
--   `payload_json` already encoded: the one place the envelope is written, for scripts that
--   send it with another command than PUBLISH (SPUBLISH). `ts_ms` is a number or its text.
--   `kind` and `source` are put in as they are: plain words, as coordkit's own are (a script
--   that takes them from a caller escapes them first: cjson.encode(s):sub(2, -2)); `entity` is
--   encoded. A hot script PUBLISHes `ck_envelope(...)` itself: one closure instead of two.
-- ck_emit_json(channel, kind, source, entity, ts_ms, payload_json)
--   PUBLISHes the event envelope {kind, source, entity, ts_ms, payload} on `channel`, with
--   `payload_json` already encoded (a script on a hot path writes it by concatenation), in the
--   envelope of ck_envelope (`kind` and `source` put in as they are). Returns the number of
--   receivers.
-- ck_emit(channel, kind, source, entity, ts_ms, payload)
--   The same with `payload` a Lua table (encoded with cjson) or nil (encoded as {}); it calls
--   ck_envelope itself, so a script using it carries two helpers, not three.
-- ck_fail(code, detail)
--   Returns an error reply "CODE detail": Rust maps it to Error::Script { code, detail }.
-- ck_expect_type(key, expected)
--   Raises "WRONGTYPE <key> <found>" (ending the script) when `key` exists and is not of type
--   `expected`. Scripts call it before their first write: Redis does not roll back a script's
--   writes when it fails halfway.
-- ck_read(expected, cmd, key, ...) -> the reply of redis.call(cmd, key, ...)
--   A read that checks the type of its key itself: when `key` holds another type than
--   `expected`, it raises what ck_expect_type raises, with no TYPE call before a read that
--   works (a call costs a script more than its command).
-- ck_corrupt(key, detail)
--   Raises "CORRUPT <key> <detail>" (ending the script): `key` holds data of the right type that
--   cannot be used (a record that does not decode, a number out of bounds). Rust maps it to
--   Error::Corrupt naming the key. Like ck_expect_type, only before the first write.
-- ck_int(value, key, what, max) -> integer or nil
--   A number read from `key` (`what` names the field): nil when absent (nil or false), else a
--   whole number in 0..max, written as plain decimal digits when it is a string (what HINCRBY
--   accepts); anything else raises "CORRUPT <key> <what> ...". Bounds every stored number
--   before arithmetic.

-- helper: ck_now
local function ck_now(arg)
  local manual = tonumber(arg)
  if manual and manual > 0 then
    return math.floor(manual)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- helper: ck_now_text
local function ck_now_text(arg)
  if arg ~= '' then
    return arg
  end
  local t = redis.call('TIME')
  return t[1] .. string.sub('00000' .. t[2], -6, -4)
end

-- helper: ck_envelope
local function ck_envelope(kind, source, entity, ts_ms, payload_json)
  if type(ts_ms) == 'number' then
    ts_ms = string.format('%d', ts_ms)
  end
  return '{"kind":"' .. kind .. '","source":"' .. source .. '","entity":'
    .. cjson.encode(entity) .. ',"ts_ms":' .. ts_ms .. ',"payload":' .. payload_json .. '}'
end

-- helper: ck_emit_json
local function ck_emit_json(channel, kind, source, entity, ts_ms, payload_json)
  return redis.call('PUBLISH', channel, ck_envelope(kind, source, entity, ts_ms, payload_json))
end

-- helper: ck_emit
local function ck_emit(channel, kind, source, entity, ts_ms, payload)
  local json = '{}'
  if payload and next(payload) ~= nil then
    json = cjson.encode(payload)
  end
  return redis.call('PUBLISH', channel, ck_envelope(kind, source, entity, ts_ms, json))
end

-- helper: ck_fail
local function ck_fail(code, detail)
  return redis.error_reply(code .. ' ' .. (detail or ''))
end

-- helper: ck_expect_type
local function ck_expect_type(key, expected)
  local found = redis.call('TYPE', key)['ok']
  if found ~= 'none' and found ~= expected then
    error({ err = 'WRONGTYPE ' .. key .. ' ' .. found })
  end
end

-- helper: ck_read
local function ck_read(expected, cmd, key, ...)
  local reply = redis.pcall(cmd, key, ...)
  if type(reply) == 'table' and reply.err then
    ck_expect_type(key, expected)
    error(reply)
  end
  return reply
end

-- helper: ck_corrupt
local function ck_corrupt(key, detail)
  error({ err = 'CORRUPT ' .. key .. ' ' .. detail })
end

-- helper: ck_int
local function ck_int(value, key, what, max)
  if not value then return nil end
  local n = nil
  if type(value) == 'number' then
    n = value
  elseif string.find(value, '^[1-9]%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?$')
    or value == '0' then
    -- Plain decimal digits only, as HINCRBY reads them: Lua's tonumber also takes "5.0",
    -- " 5", "0x10" and "1e3", which a later HINCRBY of the same field would refuse.
    n = tonumber(value)
  end
  if n == nil or n ~= n or n < 0 or n > max or n % 1 ~= 0 then
    -- The value as printable ASCII (an error reply must be valid text), cut to 40 bytes.
    local shown = string.gsub(string.sub(tostring(value), 1, 40), '[^%w%p ]', function(c)
      return string.format('\\x%02x', string.byte(c))
    end)
    if #tostring(value) > 40 then shown = shown .. '...' end
    error({ err = 'CORRUPT ' .. key .. ' ' .. what .. ' is "' .. shown
      .. '", not a whole number in 0..' .. string.format('%d', max) })
  end
  return n
end
