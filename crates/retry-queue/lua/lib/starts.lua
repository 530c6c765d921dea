-- Helper piece (inside `group_helpers()`): a log of starts, the queue's (`starts`) or a
-- group's (`gs:<group>`); the layout in lib/queue.lua. An entry per claim, so that a claim
-- adds one member and its count however many tasks it starts.

-- The starts an entry counts: "<first token>:<count>", or a bare token (one start, logged
-- by an earlier build; so is a member whose count is no whole number in 1..MAXR).
local function counted(m)
  local k = tonumber(string.match(m, ':(%d+)$'))
  if k and k >= 1 and k <= MAXR then return k end
  return 1
end

-- Whether a member is the log's total ("#<starts its entries count>", at score 0).
local function is_total(m)
  return string.byte(m, 1) == 35
end

-- The starts the entries after `e` (text) count, read whole.
local function count_window(log, e)
  local n = 0
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', log, '(' .. e, '+inf')) do
    if not is_total(m) then n = n + counted(m) end
  end
  return n
end

-- The time of the jth start (from 0) after `e` (text): it is in the first j + 1 entries (nil:
-- they count fewer).
local function jth_start(log, e, j)
  local w = redis.call('ZRANGEBYSCORE', log, '(' .. e, '+inf', 'WITHSCORES', 'LIMIT', '0',
    string.format('%d', j + 1))
  local cum = 0
  for i = 1, #w, 2 do
    if not is_total(w[i]) then
      cum = cum + counted(w[i])
      if cum > j then return tonumber(w[i + 1]) end
    end
  end
end

-- validate: how many starts `log` holds after `edge` (the window is (edge, now]: edge is now
-- less the interval), read as its total less the entries that leave the window; a log with
-- no usable total (an earlier build's, or one written by something else) is counted whole.
-- At `max` or more, also when the next start is allowed: when the start that must leave the
-- window does, plus `per`. -> recent, next start (nil: under the limit)
function G.log_recent(log, edge, max, per)
  local e = string.format('%d', edge)
  local total, gone = nil, 0
  for _, m in ipairs(ck_read('zset', 'ZRANGEBYSCORE', log, '-inf', e)) do
    if is_total(m) then
      total = total or tonumber(string.match(m, '^#(%d+)$'))
    else
      gone = gone + counted(m)
    end
  end
  local recent
  if total and total >= gone and total < EXACT then
    recent = total - gone
  else
    recent = count_window(log, e)
  end
  if recent < max then return recent, nil end
  local at = jth_start(log, e, recent - max)
  if not at then
    -- The entries count fewer starts than the total said (a log changed by something else):
    -- counted whole, once; the next write stores the count.
    recent = count_window(log, e)
    if recent < max then return recent, nil end
    at = jth_start(log, e, recent - max) or now + 1 - per
  end
  return recent, at + per
end

-- writes: `count` starts now, the first with token `first` (text), into `log`, which held
-- `recent` in the window (log_recent): the entries out of the window and the old total go.
function G.log_write(log, edge, recent, first, count)
  redis.call('ZREMRANGEBYSCORE', log, '-inf', string.format('%d', edge))
  redis.call('ZADD', log, string.format('%d', now), first .. ':' .. string.format('%d', count),
    0, '#' .. string.format('%d', recent + count))
end
