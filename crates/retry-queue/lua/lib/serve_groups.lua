-- Helper piece (inside `group_helpers()`, after lib/gkey.lua and lib/load_groups.lua): what a
-- claim takes from the groups.

-- validate: the groups that may start a task now (at most n, the longest waiting first), with
-- their states, lanes and starts. Each gives what its limits allow: at most max_leased leased
-- at once (one at its limit leaves gready: a settle that frees a slot puts it back), at most
-- rate_max starts in any rate_ms (over it, it waits in gready until its next start is
-- allowed). `back` (as lib/to_lane.lua makes it, or nil) holds the tasks this claim puts back
-- in their groups' lanes: behind those there, of their priority; the ids a group takes of them
-- are removed from `back`. -> { take = ids in order, gof = the group of each (by position in
-- take), steps = what to write per group (each with `first`, the position of
-- its first task in take), next_start = when the first waiting group may start (nil: none
-- waits) }
-- With `caps` (a worker's capabilities: group names in its order of preference), only those
-- groups are served, in that order, each while it may start a task.
function G.serve_groups(n, back, caps)
  local plan = { take = {}, gof = {}, steps = {}, next_start = nil }
  local names = {}
  if caps then
    local at = redis.call('ZMSCORE', K_GREADY, unpack(caps))
    for i, g in ipairs(caps) do
      local t = tonumber(at[i])
      if t and t <= now then
        names[#names + 1] = g
      elseif t and (not plan.next_start or t < plan.next_start) then
        plan.next_start = t
      end
    end
  else
    local ready = redis.call('ZRANGE', K_GREADY, '0', string.format('%d', n - 1), 'WITHSCORES')
    for i = 1, #ready, 2 do
      local at = tonumber(ready[i + 1])
      if at > now then
        plan.next_start = at
        break
      end
      names[#names + 1] = ready[i]
    end
  end
  G.load_groups(names)
  for _, g in ipairs(names) do
    local left = n - #plan.take
    if left <= 0 then break end
    local s, step = G.states[g], { g = g }
    local allow = left
    if s[2] > 0 then allow = math.min(allow, s[2] - s[1]) end
    if allow <= 0 then
      step.drop = true
      plan.dropped = true
    elseif s[3] > 0 and s[4] > 0 then
      local gs, edge = G.gkey('gs', g), now - s[4]
      local recent, wait = G.log_recent(gs, edge, s[3], s[4])
      if wait then
        step.wait = wait
        allow = 0
      else
        allow = math.min(allow, s[3] - recent)
        step.rate, step.edge, step.recent = gs, edge, recent
      end
    end
    if allow > 0 then
      local taken = G.take_lanes(g, s, allow, step, back)
      local ptake, gof = plan.take, plan.gof
      step.first = #ptake + 1
      for _, id in ipairs(taken) do
        local k = #ptake + 1
        ptake[k], gof[k] = id, g
      end
      step.taken = taken
      step.empty = s[6] == 0 and not (back and back[g])
      if step.empty and redis.call('EXISTS', G.gkey('gl', g)) == 1 then
        -- A ranked lane an earlier build's process added to after this build wrote the state
        -- (its enqueue does not read the state): served from the next claim on, which the
        -- idle workers make.
        s[6] = s[6] + LANE_ZSET
        step.empty = false
        plan.dropped = true
      end
    end
    if step.wait and (not plan.next_start or step.wait < plan.next_start) then
      plan.next_start = step.wait
    end
    plan.steps[#plan.steps + 1] = step
  end
  return plan
end

-- writes: the plan of serve_groups, once the claim knows the tokens of the tasks it leased
-- (`tokens`: position in the plan's take -> the token as text; a task dead-lettered as
-- malformed or held has none).
function G.write_served(plan, tokens)
  for _, st in ipairs(plan.steps) do
    local g = st.g
    if st.drop then
      redis.call('ZREM', K_GREADY, g)
      if G.out then G.out[g] = true end
    elseif st.wait then
      redis.call('ZADD', K_GREADY, string.format('%d', st.wait), g)
    elseif st.taken then
      -- (Those taken from a lane are its front: cut by position, not each looked up.)
      for _, c in ipairs(st.cuts) do
        if c[3] then
          redis.call('ZREMRANGEBYRANK', c[1], '0', string.format('%d', c[2] - 1))
        else
          redis.call('LTRIM', c[1], '0', string.format('%d', -c[2] - 1))
        end
      end
      -- Served: behind the groups that waited longer (or out: its lane empty, or its limit
      -- reached by this claim's leases).
      local s = G.states[g]
      if st.empty or (s[2] > 0 and s[1] >= s[2]) then
        redis.call('ZREM', K_GREADY, g)
        if G.out then G.out[g] = true end
      else
        redis.call('ZADD', K_GREADY, string.format('%d', now), g)
      end
      if st.rate then
        -- Its tasks leased now (not those held or dead-lettered): one entry in its log.
        local first, count = nil, 0
        for k = st.first, st.first + #st.taken - 1 do
          local t = tokens[k]
          if t then
            first = first or t
            count = count + 1
          end
        end
        if count > 0 then G.log_write(st.rate, st.edge, st.recent, first, count) end
      end
    end
  end
end

-- validate: up to `allow` of group g's ready tasks (state `s`), its front, with those of
-- `back[g]` behind those of their priority in its lanes: by priority, the earlier build's
-- ranked lane first (its tasks came before any in the lists), then the list, then those put
-- back. -> the ids in order; step.cuts = { key, how many from its front, ranked? } to write;
-- s[6] without the lanes this empties; back[g] without the ids taken.
function G.take_lanes(g, s, allow, step, back)
  local taken, cuts, need = {}, {}, allow
  local lanes = s[6]
  local pushed = back and back[g]
  -- The ranked lane's front (one more than may be taken: whether it holds more after).
  local z, zi, zn = nil, 1, 0
  if lanes >= LANE_ZSET then
    z = ck_read('zset', 'ZRANGE', G.gkey('gl', g), '0', string.format('%d', allow), 'WITHSCORES')
    zn = #z / 2
  end
  for p = MAXP, 0, -1 do
    if need == 0 then break end
    if z then
      -- Its tasks of priority p (at 0, any left: a rank out of bounds is served last).
      local hi = (MAXP - p + 1) * PRIO_SPAN
      while need > 0 and zi <= zn and (p == 0 or tonumber(z[2 * zi]) < hi) do
        taken[#taken + 1] = z[2 * zi - 1]
        zi, need = zi + 1, need - 1
      end
    end
    local bit_p = bit.lshift(1, p)
    if need > 0 and bit.band(lanes, bit_p) ~= 0 then
      local lane = G.lane(g, p)
      local got = ck_read('list', 'LRANGE', lane, string.format('%d', -need - 1), '-1')
      local k = math.min(#got, need)
      for i = #got, #got - k + 1, -1 do taken[#taken + 1] = got[i] end
      if k > 0 then cuts[#cuts + 1] = { lane, k } end
      if #got <= k then lanes = lanes - bit_p end
      need = need - k
    end
    local ids = pushed and pushed[p]
    if need > 0 and ids then
      local k = math.min(#ids, need)
      for i = 1, k do taken[#taken + 1] = ids[i] end
      local rest = nil
      for i = k + 1, #ids do
        rest = rest or {}
        rest[#rest + 1] = ids[i]
      end
      pushed[p] = rest
      need = need - k
    end
  end
  if z then
    if zi > 1 then cuts[#cuts + 1] = { G.gkey('gl', g), zi - 1, true } end
    if zi > zn and zn <= allow then lanes = lanes - LANE_ZSET end
  end
  if pushed and not next(pushed) then back[g] = nil end
  s[6], step.cuts = lanes, cuts
  return taken
end
