-- instance index: the instances of one primitive kind in one namespace, so tools list them
-- in one call instead of scanning the keyspace (see src/index.rs).
--
-- KEYS[1] names: sorted set, every recorded instance's name, all with score 0, so pages go by
--         name (BYLEX)
-- KEYS[2] expiry: sorted set, name -> the time (ms) after which the instance's keys are surely
--         gone; only instances whose keys expire have an entry. Absent: lives until forgotten.
--
-- ARGV[1] operation: record | forget | list | page
-- ARGV[2] now_ms: "" for the server clock, or a manual time
-- record: ARGV[3] name, ARGV[4] lifetime ms ("" = the keys do not expire), ARGV[5] mode:
--           extend  the deadline only moves later, and an instance without expiry keeps none
--           set     the deadline becomes now + lifetime (or none)
-- forget: ARGV[3] name
-- page:   ARGV[3] the last name of the previous page ("" = from the first), ARGV[4] the most
--         names to look at (1..1000)
--
-- Returns:
--   record: 1 when the name was not listed (absent, or its deadline had passed), else 0
--   forget: 1 when the name was recorded, else 0
--   list:   every listed name (deadline absent or later than now), after removing the
--           entries whose deadline has passed
--   page:   { next ("" when the index ends here), the listed names among the next ones }
--           (read-only: expired entries are skipped, not removed)
-- Errors, all raised before the first write (nothing is written then):
--   BADOP <operation>;
--   WRONGTYPE (Redis's, from the first read of each key) when a key is not a sorted set;
--   CORRUPT <names key> (page) when a name's score is not 0: pages by name need equal scores.
--   A deadline that is not a time (negative, fractional, inf) is no fault: it is only
--   compared, and `record` replaces it.

local NAMES, EXPIRY = KEYS[1], KEYS[2]
local op = ARGV[1]

-- validate: both keys are sorted sets (ZCARD fails with WRONGTYPE otherwise).
redis.call('ZCARD', NAMES)
redis.call('ZCARD', EXPIRY)
local now = ck_now(ARGV[2])

-- A score as Redis answers it ("inf" and "-inf" included, which Lua's tonumber refuses).
local function score(text)
  local n = tonumber(text)
  if n then return n end
  if text == '-inf' then return -math.huge end
  return math.huge
end

-- Whether an instance whose deadline is `deadline` (false: none) is listed.
local function live(deadline)
  return not deadline or score(deadline) > now
end

if op == 'record' then
  local name, lifetime, mode = ARGV[3], ARGV[4], ARGV[5]
  local listed = redis.call('ZSCORE', NAMES, name)
  local deadline = redis.call('ZSCORE', EXPIRY, name)
  local was_live = listed and live(deadline)
  -- writes: the name (its score repaired to 0), then its deadline.
  redis.call('ZADD', NAMES, 0, name)
  if lifetime == '' then
    redis.call('ZREM', EXPIRY, name)
  else
    local until_ms = now + tonumber(lifetime)
    if mode == 'set' or not listed or (deadline and not live(deadline)) then
      redis.call('ZADD', EXPIRY, until_ms, name)
    elseif deadline then
      -- extend: a live deadline only moves later; one without (no expiry) stays so.
      redis.call('ZADD', EXPIRY, 'GT', until_ms, name)
    end
  end
  if was_live then return 0 end
  return 1
elseif op == 'forget' then
  local name = ARGV[3]
  -- writes:
  redis.call('ZREM', EXPIRY, name)
  return redis.call('ZREM', NAMES, name)
elseif op == 'list' then
  local expired = redis.call('ZRANGE', EXPIRY, '-inf', now, 'BYSCORE')
  -- writes: the expired entries go, a chunk at a time (unpack has a limit).
  for i = 1, #expired, 500 do
    local chunk = {}
    for j = i, math.min(i + 499, #expired) do chunk[#chunk + 1] = expired[j] end
    redis.call('ZREM', NAMES, unpack(chunk))
    redis.call('ZREM', EXPIRY, unpack(chunk))
  end
  return redis.call('ZRANGE', NAMES, 0, -1)
elseif op == 'page' then
  local after, count = ARGV[3], tonumber(ARGV[4])
  for _, rank in ipairs({ 0, -1 }) do
    local first = redis.call('ZRANGE', NAMES, rank, rank, 'WITHSCORES')
    if first[2] and score(first[2]) ~= 0 then
      ck_corrupt(NAMES, 'name score is ' .. first[2] .. ', not 0')
    end
  end
  local min = '-'
  if after ~= '' then min = '(' .. after end
  local names = redis.call('ZRANGE', NAMES, min, '+', 'BYLEX', 'LIMIT', 0, count)
  local next = ''
  if #names == count then next = names[#names] end
  local out = {}
  if #names > 0 then
    local deadlines = redis.call('ZMSCORE', EXPIRY, unpack(names))
    for i, name in ipairs(names) do
      if live(deadlines[i]) then out[#out + 1] = name end
    end
  end
  return { next, out }
end
return ck_fail('BADOP', op)
