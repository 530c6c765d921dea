-- list: one page of an index, oldest first. Reads only.
-- ARGV[3] which: L_ACTIVE, L_PENDING, L_COMPLETED, L_FAILED, L_CANCELLED, L_RUNNING (the active
--         index, filtered), L_TYPE (ARGV[4] the type)
-- ARGV[4] the cursor's score (the type for L_TYPE), ARGV[5] the cursor's id ('' = from the start),
-- ARGV[6] the page's size.
-- Answer: { { id, header or false (a header that does not decode) }..., }, the next cursor's
-- id or false (the end), its score.
local L_ACTIVE, L_PENDING, L_COMPLETED, L_FAILED, L_CANCELLED, L_RUNNING, L_TYPE =
  1, 2, 3, 4, 5, 6, 7
local which, limit, cursor = tonumber(ARGV[3]), tonumber(ARGV[6]), ARGV[5]
local items, scanned, budget = {}, 0, limit * 10 + 100
local last_id, last_score = false, 0
-- By selector, L_ACTIVE to L_TYPE.
local want = ({ false, PENDING, COMPLETED, FAILED, CANCELLED, RUNNING, false })[which]

local function visit(id)
  scanned = scanned + 1
  local h = redis.call('HGET', K_RECORDS, id)
  if not h then return end
  local r = decode(h)
  if not r then
    items[#items + 1] = { id, false }
  elseif r.expires > NOW and (not want or r.st == want)
    and (which ~= L_ACTIVE or r.st <= RUNNING) and (which ~= L_TYPE or r.typ == ARGV[4]) then
    items[#items + 1] = { id, h }
  end
end

if which == L_TYPE then
  local typ = ARGV[4]
  local stop = '(' .. typ .. '!'
  local from = '[' .. typ .. ' '
  if cursor ~= '' then from = '(' .. typ .. ' ' .. cursor end
  while #items < limit and scanned < budget do
    local page = redis.call('ZRANGE', K_TYPES, from, stop, 'BYLEX', 'LIMIT', 0, limit)
    if #page == 0 then break end
    for _, m in ipairs(page) do
      last_id = string.sub(m, #typ + 2)
      visit(last_id)
      from = '(' .. m
      if #items >= limit or scanned >= budget then break end
    end
  end
  if #redis.call('ZRANGE', K_TYPES, from, stop, 'BYLEX', 'LIMIT', 0, 1) == 0 then
    last_id = false
  end
  return { items, last_id, 0 }
end

-- By selector, L_ACTIVE to L_RUNNING.
local key = ({ K_ACTIVE, K_PENDING, KEYS[5], KEYS[6], KEYS[7], K_ACTIVE })[which]
local start = 0
if cursor ~= '' then
  local rank = redis.call('ZRANK', key, cursor)
  if rank then
    start = rank + 1
  else
    -- The cursor left the index: start after where it was (its score, then its id).
    local score = ARGV[4]
    start = redis.call('ZCOUNT', key, '-inf', '(' .. score)
    for _, m in ipairs(redis.call('ZRANGE', key, score, score, 'BYSCORE')) do
      if m <= cursor then start = start + 1 end
    end
  end
end
while #items < limit and scanned < budget do
  local page = redis.call('ZRANGE', key, start, start + limit - 1, 'WITHSCORES')
  if #page == 0 then break end
  for i = 1, #page, 2 do
    visit(page[i])
    start = start + 1
    last_id, last_score = page[i], page[i + 1]
    if #items >= limit or scanned >= budget then break end
  end
end
if #redis.call('ZRANGE', key, start, start) == 0 then last_id = false end
return { items, last_id, last_score }
