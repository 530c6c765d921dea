-- enqueue: adds a batch of tasks, ready or delayed, each at most once per idempotency key.
-- Runs after lib/queue.lua and, in `rare()` and `group_helpers()`, the helper pieces
-- src/scripts.rs lists for it, made on first use (to wake workers up, for a group's tasks).
--
-- KEYS: all of lib/queue.lua's; writes tasks, ready, urgent (a ready task with a priority),
--   the lanes of the tasks' groups, gready, gstate (their lanes), delayed, idem, idem_exp, info
--   (seq, grouped).
-- ARGV[3] n, ARGV[4] struct n x '<I8I8' (delay_ms, idempotency ttl_ms, 0 = no key), then
--   ARGV[5..4+n] the n record tails (the record from its 33rd byte: max, lease, ..., payload),
--   then the idempotency keys of the keyed tasks, in order
-- -> { first id, (index, id of the original) for each duplicate ... }; task i's id is
--    first id + i - 1 unless it is a duplicate
-- Events: wake.

local n, nums = tonumber(ARGV[3]), ARGV[4]
local kpos = 5 + n
-- validate: idem and idem_exp are read when keys are in use (an entry that does not decode
-- counts as expired and is replaced), the id sequence is decoded, ready and delayed are read
-- when written; tasks is checked by the first write.
local old, held = nil, nil
if #ARGV >= kpos then
  old = redis.call('ZRANGEBYSCORE', K_IDEMX, '-inf', string.format('%d', now), 'LIMIT', '0', '100')
  local keys = {}
  for i = kpos, #ARGV do keys[#keys + 1] = ARGV[i] end
  held = redis.call('HMGET', K_IDEM, unpack(keys))
end
local info = redis.call('HMGET', K_INFO, 'seq', 'grouped')
local seq = ck_int(info[1], K_INFO, 'field seq', EXACT - 1 - n) or 0
local out, sets, ready, delayed, ranked = { seq + 1 }, {}, {}, {}, nil
-- Ready tasks of a group (lib/to_lane.lua).
local grouped = nil
local earliest = nil
local pos, delay, ttl = 1, 0, 0
-- Keys taken by this batch (a later duplicate in it answers the first), and their entries.
local k, mine, claims = 0, nil, nil
for i = 1, n do
  seq = seq + 1
  -- (as text: lib/queue.lua)
  local id = string.format('%d', seq)
  delay, ttl, pos = struct.unpack('<I8I8', nums, pos)
  local dup = nil
  if ttl > 0 then
    k = k + 1
    local key = ARGV[kpos + k - 1]
    mine, claims = mine or {}, claims or {}
    dup = mine[key]
    local v = held[k]
    if not dup and v and #v == 16 then
      local vid, exp = struct.unpack('<I8I8', v)
      if exp > now and vid < EXACT then dup = vid end
    end
    if not dup then
      mine[key] = seq
      claims[#claims + 1] = { key, seq, now + ttl }
    end
  end
  if dup then
    out[#out + 1] = i
    out[#out + 1] = dup
  else
    local due = now + delay
    sets[#sets + 1] = id
    sets[#sets + 1] = struct.pack('<I4I4I8I8I8c0', 0, 0, 0, due, now, ARGV[4 + i])
    if delay > 0 then
      delayed[#delayed + 1] = string.format('%d', due)
      delayed[#delayed + 1] = id
      if earliest == nil or due < earliest then earliest = due end
    else
      -- The priority and group length, the third and fourth bytes of the record tail.
      local tail = ARGV[4 + i]
      local p, glen = string.byte(tail, 3, 4)
      if glen > 0 then
        local plen, clen = struct.unpack('<I2I2', tail, 13)
        local g = string.sub(tail, 17 + plen + clen, 16 + plen + clen + glen)
        grouped = group_helpers().to_lane(grouped, g, math.min(p, MAXP), id)
      elseif p > 0 then
        ranked = ranked or {}
        ranked[#ranked + 1] = string.format('%d', rare().rank(math.min(p, MAXP), seq))
        ranked[#ranked + 1] = id
      else
        ready[#ready + 1] = id
      end
    end
  end
end
-- `urgent`'s { rank, id, ... } with the highest rank first: a zset of up to 128 members (a
-- listpack) puts each one by a scan from its lowest rank, and new tasks rank above those
-- waiting, so that the batch's first lands behind them and each next one in front of it
-- (ascending, each would scan past the batch's earlier ones too).
local function descending(list)
  local out, m = {}, #list
  for i = 1, m, 2 do out[m - i], out[m - i + 1] = list[i], list[i + 1] end
  return out
end
local was_empty, first_due = false, nil
-- (A task of priority 0 reads only the list: a spare wake-up when urgent ones wait is harmless.)
if ranked then
  was_empty = H.none_ready()
elseif #ready > 0 then
  was_empty = redis.call('LLEN', K_READY) == 0
end
if grouped then group_helpers().check_groups(grouped) end
if #delayed > 0 then first_due = rare().first_due() end
-- writes: (the first one, the records' HSET, checks the type of `tasks`)
if #sets > 0 then redis.call('HSET', K_TASKS, unpack(sets)) end
if old and #old > 0 then
  redis.call('ZREM', K_IDEMX, unpack(old))
  redis.call('HDEL', K_IDEM, unpack(old))
end
for _, c in ipairs(claims or {}) do
  redis.call('HSET', K_IDEM, c[1], struct.pack('<I8I8', c[2], c[3]))
  redis.call('ZADD', K_IDEMX, c[3], c[1])
end
redis.call('HINCRBY', K_INFO, 'seq', string.format('%d', n))
if #ready > 0 then redis.call('LPUSH', K_READY, unpack(ready)) end
if ranked then redis.call('ZADD', K_URGENT, unpack(descending(ranked))) end
-- (A group's tasks always wake the idle workers: whether its group may start one now is the
-- claim's to say.)
if grouped then
  G.push_groups(grouped, info[2] == '1')
  G.save_groups()
end
if was_empty or grouped then rare().wake() end
if #delayed > 0 then
  redis.call('ZADD', K_DELAYED, unpack(delayed))
  if not first_due or earliest <= first_due then H.wake() end
end
return out
