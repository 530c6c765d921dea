-- Helper piece (inside `group_helpers()`, after lib/lane.lua and lib/load_groups.lua): ready
-- tasks into their groups' lanes. A call that pushes saves the groups' states after
-- (lib/save_groups.lua: the lanes they hold).

-- validate: for `pushes` (as lib/to_lane.lua makes it; only the groups and priorities are
-- read), the lanes type-checked, the states read (a group with none yet: its lanes read, which hold tasks only
-- if its state was deleted by hand) and gready read (a read checks its key's type), which
-- tells the groups out of gready (G.out: a later ZREM in the same call adds to it).
function G.check_groups(pushes)
  local names = {}
  for g, levels in pairs(pushes) do
    names[#names + 1] = g
    for p in pairs(levels) do ck_expect_type(G.lane(g, p), 'list') end
  end
  G.load_groups(names)
  for _, g in ipairs(names) do
    local s = G.states[g]
    if s[7] == -1 then s[6] = select(2, G.lanes_len(g, s[6])) end
  end
  local at = ck_read('zset', 'ZMSCORE', K_GREADY, unpack(names))
  G.out = {}
  for i, g in ipairs(names) do
    if not at[i] then G.out[g] = true end
  end
end

-- writes: `pushes` (as lib/to_lane.lua makes it) behind each group's tasks of their priority, in order; each
-- group ready now unless it waits already (for its rate limit: the wait stays); info's
-- `grouped` set unless `flagged` (the caller read it set).
function G.push_groups(pushes, flagged)
  for g, levels in pairs(pushes) do
    local s = G.states[g]
    for p, ids in pairs(levels) do
      redis.call('LPUSH', G.lane(g, p), unpack(ids))
      s[6] = bit.bor(s[6], bit.lshift(1, p))
    end
    if G.out[g] then redis.call('ZADD', K_GREADY, 'NX', string.format('%d', now), g) end
  end
  if not flagged then redis.call('HSET', K_INFO, 'grouped', '1') end
end
