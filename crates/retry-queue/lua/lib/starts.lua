-- Helper piece (inside `group_helpers()`): a log of starts, the queue's (`starts`) or a
-- group's (`gs:<group>`); the layout in lib/queue.lua. An entry per claim, so that a claim
-- adds one member and its count however many tasks it starts.

-- The starts an entry counts: "<first token>:<count>", or a bare token (one start, logged
-- by an earlier build).
local function counted(m)
  return tonumber(string.match(m, ':(%d+)$')) or 1
end

-- Whether a member is the log's total ("#<starts its entries count>", at score 0).
local function is_total(m)
  return string.byte(m, 1) == 35
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
      total = total or tonumber(string.sub(m, 2))
    else
      gone = gone + counted(m)
    end
  end
  if not total or total < gone or total >= EXACT then
    total = gone
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', log, '(' .. e, '+inf')) do
      if not is_total(m) then total = total + counted(m) end
    end
  end
  local recent = total - gone
  if recent < max then return recent, nil end
  -- The (recent - max)th start from the window's first is in the first j + 1 entries.
  local j = recent - max
  local w = redis.call('ZRANGEBYSCORE', log, '(' .. e, '+inf', 'WITHSCORES', 'LIMIT', 0, j + 1)
  local cum = 0
  for i = 1, #w, 2 do
    if not is_total(w[i]) then
      cum = cum + counted(w[i])
      if cum > j then return recent, tonumber(w[i + 1]) + per end
    end
  end
  -- (Entries that count fewer starts than the total says: the window's end.)
  return recent, now + 1
end

-- writes: `count` starts now, the first with token `first` (text), into `log`, which held
-- `recent` in the window (log_recent): the entries out of the window and the old total go.
function G.log_write(log, edge, recent, first, count)
  redis.call('ZREMRANGEBYSCORE', log, '-inf', string.format('%d', edge))
  redis.call('ZADD', log, string.format('%d', now), first .. ':' .. string.format('%d', count),
    0, '#' .. string.format('%d', recent + count))
end
