-- Helper piece (inside `group_helpers()`, after lib/load_groups.lua and lib/gstate.lua): the
-- groups' states a call changed, written back.

-- writes: the states whose lease count or lanes changed.
function G.save_groups()
  for g, s in pairs(G.states) do
    if s[1] ~= s[5] or s[6] ~= s[7] then
      redis.call('HSET', K_GSTATE, g, G.gstate_pack(math.max(s[1], 0), s[2], s[3], s[4], s[6]))
    end
  end
end
