-- Helper piece (inside `group_helpers()`, after lib/gkey.lua and lib/load_groups.lua): what a
-- claim takes from the groups.

-- validate: the groups that may start a task now (at most n, the longest waiting first), with
-- their states, lanes and starts. Each gives what its limits allow: at most max_leased leased
-- at once (one at its limit leaves gready: a settle that frees a slot puts it back), at most
-- rate_max starts in any rate_ms (over it, it waits in gready until its next start is
-- allowed). `back` (group -> { rank, id, ... }, or nil) holds the tasks this claim puts back
-- in their groups' lanes: a group takes from its lane and those together, by rank; the ids it
-- takes of them are removed from `back`. -> { take = ids in order, gof = the group of each
-- (by position in take), steps = what to write per group (each with `first`, the position of
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
      local lane = G.gkey('gl', g)
      local pushed = back and back[g]
      -- ids: those taken from the lane (to remove from it); taken: all, for the starts. Each
      -- read takes one more than the group may start: whether its lane holds more after.
      local ids, taken, more
      if not pushed then
        -- Nothing of this group comes back in this claim: the lane's front as it stands,
        -- without the scores (Redis would format each the slow way and Lua parse it back).
        ids = ck_read('zset', 'ZRANGE', lane, '0', string.format('%d', allow))
        more = #ids > allow
        ids[allow + 1] = nil
        taken = ids
      else
        local got = ck_read('zset', 'ZRANGE', lane, '0', string.format('%d', allow), 'WITHSCORES')
        more = #got > 2 * allow
        local cand = {}
        for i = 1, math.min(#got, 2 * allow), 2 do
          cand[#cand + 1] = { tonumber(got[i + 1]), got[i], true }
        end
        for i = 1, #pushed, 2 do cand[#cand + 1] = { tonumber(pushed[i]), pushed[i + 1] } end
        -- As the zset orders them: by rank, then by id (bytes).
        table.sort(cand, function(x, y)
          if x[1] ~= y[1] then return x[1] < y[1] end
          return x[2] < y[2]
        end)
        local taken_back = {}
        ids, taken = {}, {}
        for i = 1, math.min(allow, #cand) do
          local id = cand[i][2]
          taken[#taken + 1] = id
          if cand[i][3] then ids[#ids + 1] = id else taken_back[id] = true end
        end
        -- (The lane's entries read and not taken stay in it.)
        more = more or #ids < math.min(#got / 2, allow)
        if next(taken_back) then
          local rest = {}
          for i = 1, #pushed, 2 do
            if not taken_back[pushed[i + 1]] then
              rest[#rest + 1] = pushed[i]
              rest[#rest + 1] = pushed[i + 1]
            end
          end
          back[g] = #rest > 0 and rest or nil
        end
      end
      local ptake, gof = plan.take, plan.gof
      step.first = #ptake + 1
      for _, id in ipairs(taken) do
        local k = #ptake + 1
        ptake[k], gof[k] = id, g
      end
      step.ids, step.taken, step.lane = ids, taken, lane
      step.empty = not more and not (back and back[g])
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
    elseif st.ids then
      -- (Those taken from the lane are its front: removed by rank, not each looked up.)
      if #st.ids > 0 then
        redis.call('ZREMRANGEBYRANK', st.lane, '0', string.format('%d', #st.ids - 1))
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
