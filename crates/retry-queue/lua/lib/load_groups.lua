-- Helper piece (inside `rare()`, after lib/gstate.lua): the groups' states a call reads (and
-- may change: lib/save_groups.lua writes them back).

-- The states read so far: group -> { leased, max_leased, rate_max, rate_ms, leased as read }.
H.groups = {}

-- validate: reads the states of the groups in `names` not read yet.
function H.load_groups(names)
  local want = {}
  for _, g in ipairs(names) do
    if not H.groups[g] then
      want[#want + 1] = g
      H.groups[g] = false
    end
  end
  if #want == 0 then return end
  local raw = redis.call('HMGET', K_GSTATE, unpack(want))
  for i, g in ipairs(want) do
    local leased, max, rmax, rms = H.gstate(raw[i], g)
    H.groups[g] = { leased, max, rmax, rms, leased }
  end
end
