-- context write: a batch of writes (partial updates, field deletions, deletions of a whole
-- entity), applied one after the other; each gets a new version, stamps, a history entry and a
-- change event, all at once. Concurrent writes of one store share a call (group commit).
--
-- KEYS[2i-1] write i's entity data hash (user fields + __version, __updated_ms, __updated_by,
--            __expires_ms)
-- KEYS[2i]   write i's entity history: a list of JSON changes, oldest first, one per version
--            (consecutive versions; each entry ends with ',"v":<version>,"ts":<ms>}')
-- ARGV[1] now_ms: "" for the server clock, or a manual time
-- ARGV[2] the event channel
-- Then, per write, from ARGV[a]:
--   a    seven big-endian doubles (struct '>ddddddd'): expected version (EXPECT_NONE: none;
--        otherwise the write fails unless it is the current version), mode (MODE_UPDATE or
--        MODE_DELETE the entity), idle ttl ms (NO_IDLE_TTL: no expiry), history length, tombstone ttl ms (how long a
--        deleted entity's history is kept), n = fields to set, d = fields to delete
--   a+1  actor
--   a+2  the history entry, JSON without its version and time: '{"by":…,"set":…,"del":…,
--        "gone":…' (the script appends ',"v":<version>,"ts":<now>}')
--   a+3  the event's entity ("<kind>:<id>")
--   a+4  the event's payload JSON up to its version: '{"changed":…,"version":' (the script
--        appends <version>} and publishes the prelude's ck_envelope of it: kind `changed`,
--        source `context`)
--   a+5 .. a+4+2n        field, value pairs to set
--   a+5+2n .. a+4+2n+d   fields to delete
-- Returns, per write: its new version (> 0); -(current version + CONFLICT_OFFSET) when its
--          expected version is not the current one (a conflict); 'WRONGTYPE data <type>' or 'WRONGTYPE history
--          <type>' when one of its keys holds another type; 'CORRUPT data <detail>' or
--          'CORRUPT history <detail>' when a stored value it needs does not decode (__version
--          or __expires_ms not a whole number in 0..2^53-2, or, for an entity without data, a
--          newest history entry without its version). Nothing of a failed write is done; the
--          other writes of a batch apply. A lone write's answer comes alone; a batch answers a
--          list, one per write.
-- Each write validates (its keys' types, its stored numbers) before its first write: Redis
-- keeps what a script wrote before an error, and one bad entity must not fail the batch.
-- The JSON parts come encoded from the caller, the time is read as text, and each version is
-- turned into text once: turning numbers into text and back, building tables and making
-- closures cost a script more than most of its Redis calls, so the code does without them where
-- it can (one loop, no function, no reply list for a lone write).
-- The numbers shared with the Rust, named the same in its `code` module (src/code.rs).
local EXPECT_NONE = -1
local MODE_UPDATE = 0
local MODE_DELETE = 1
local NO_IDLE_TTL = 0
local CONFLICT_OFFSET = 1
-- The largest stored number used: versions and times stay whole in a Lua number up to 2^53
-- (`MAX_STORED` in src/wire.rs).
local MAX = 9007199254740991
local now_s = ck_now_text(ARGV[1])
local channel = ARGV[2]
local n_writes = #KEYS / 2
local out = {}
local a = 3
for i = 1, n_writes do
  local expected, mode, ttl, history_len, tombstone_ms, n_set, n_del =
    struct.unpack('>ddddddd', ARGV[a])
  local data, hist = KEYS[2 * i - 1], KEYS[2 * i]
  local first_field = a + 5
  local first_del = first_field + 2 * n_set
  local answer
  repeat -- once; `break` ends this write early with its answer
    -- validate: the data hash's type (its read fails on another type) and its stamps; for an
    -- entity past its idle expiry, the history's type (it is deleted); for one without data,
    -- the history's type and its newest entry's version (a tombstone carries the numbering on).
    local meta = redis.pcall('HMGET', data, '__version', '__expires_ms')
    if meta.err then
      answer = 'WRONGTYPE data ' .. redis.call('TYPE', data)['ok']
      break
    end
    local current, expires, bad, raw, limit = 0, 0, nil, nil, MAX
    if meta[1] then
      current = tonumber(meta[1])
      -- Below MAX: the next version must stay whole too.
      if not (current and current >= 0 and current < MAX and current % 1 == 0) then
        bad, raw, limit = '__version', meta[1], MAX - 1
      end
    end
    if meta[2] and not bad then
      expires = tonumber(meta[2])
      if not (expires and expires >= 0 and expires <= MAX and expires % 1 == 0) then
        bad, raw = '__expires_ms', meta[2]
      end
    end
    if bad then
      answer = 'CORRUPT data ' .. bad .. ' is ' .. string.format('%q', string.sub(raw, 1, 40))
        .. ', not a whole number in 0..' .. string.format('%d', limit)
      break
    end
    -- Past its idle expiry: gone, whatever the server's own expiry says yet.
    local gone = expires > 0 and expires <= tonumber(now_s)
    local tombstone = false
    if gone then
      local t = redis.call('TYPE', hist)['ok']
      if t ~= 'none' and t ~= 'list' then answer = 'WRONGTYPE history ' .. t break end
      current = 0
    elseif current == 0 then
      local top = redis.pcall('LINDEX', hist, -1)
      if type(top) == 'table' then
        answer = 'WRONGTYPE history ' .. redis.call('TYPE', hist)['ok']
        break
      end
      if top then
        local v = string.match(top, '"v":(%d+),"ts":%d+}$')
        current = tonumber(v)
        if not (current and current < MAX) then
          answer = 'CORRUPT history the newest entry '
            .. string.format('%q', string.sub(top, -40))
            .. ' does not end with ,"v":<version below 2^53-1>,"ts":<ms>}'
          break
        end
        tombstone = current > 0
      end
    end
    if expected ~= EXPECT_NONE and expected ~= current then
      answer = -current - CONFLICT_OFFSET
      break
    end
    local version = current + 1
    local v_s = string.format('%d', version)
    -- writes: from here on (the history append fails, writing nothing, on a history of another
    -- type, the one key not read above).
    if gone then
      redis.call('DEL', data, hist)
      expires = 0
    end
    local len = redis.pcall('RPUSH', hist, ARGV[a + 2] .. ',"v":' .. v_s .. ',"ts":' .. now_s .. '}')
    if type(len) == 'table' then
      answer = 'WRONGTYPE history ' .. redis.call('TYPE', hist)['ok']
      break
    end
    -- Versions in a history are consecutive: it keeps the last history_len, trimmed every 8th
    -- version (a trim is a call of its own; the changes script hides the few older ones). A
    -- list append costs the server a third of a sorted-set insert of the same entry.
    if len > history_len and version % 8 == 0 then
      redis.call('LTRIM', hist, -history_len, -1)
    end
    if mode == MODE_DELETE then
      redis.call('DEL', data)
      redis.call('PEXPIRE', hist, tombstone_ms)
    else
      if n_del > 0 then
        redis.call('HDEL', data, unpack(ARGV, first_del, first_del + n_del - 1))
      end
      if ttl ~= NO_IDLE_TTL then
        redis.call('HSET', data, '__version', v_s, '__updated_ms', now_s, '__updated_by',
          ARGV[a + 1], '__expires_ms', tonumber(now_s) + ttl, unpack(ARGV, first_field, first_del - 1))
        redis.call('PEXPIRE', data, ttl)
        redis.call('PEXPIRE', hist, ttl)
      else
        redis.call('HSET', data, '__version', v_s, '__updated_ms', now_s, '__updated_by',
          ARGV[a + 1], unpack(ARGV, first_field, first_del - 1))
        if expires > 0 then
          redis.call('HDEL', data, '__expires_ms')
        end
        if expires > 0 or tombstone then
          -- It had an expiry (an idle TTL, or a deleted entity's tombstone) and has none now.
          redis.call('PERSIST', data)
          redis.call('PERSIST', hist)
        end
      end
    end
    redis.call('PUBLISH', channel, ck_envelope('changed', 'context', ARGV[a + 3], now_s, ARGV[a + 4] .. v_s .. '}'))
    answer = version
  until true
  if n_writes == 1 then return answer end
  out[i] = answer
  a = first_del + n_del
end
return out
