-- Helper piece (inside `group_helpers()`, after lib/gstate.lua): the groups' states a call
-- reads (and may change: lib/save_groups.lua writes them back).

-- The states read so far: group -> { leased, max_leased, rate_max, rate_ms, leased as read,
-- lanes, lanes as read (-1: no state yet, to write) }.
G.states = {}

-- validate: reads the states of the groups in `names` not read yet.
function G.load_groups(names)
  local want = {}
  for _, g in ipairs(names) do
    if not G.states[g] then
      want[#want + 1] = g
      G.states[g] = false
    end
  end
  if #want == 0 then return end
  local raw = ck_read('hash', 'HMGET', K_GSTATE, unpack(want))
  for i, g in ipairs(want) do
    local leased, max, rmax, rms, lanes = G.gstate(raw[i], g)
    G.states[g] = { leased, max, rmax, rms, leased, lanes, raw[i] and lanes or -1 }
  end
end
