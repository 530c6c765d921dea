-- Helper piece (inside `group_helpers()`): a group's state in gstate (the layout in lib/queue.lua).

-- A group's state: leased, max_leased, rate_max, rate_ms (all 0 when it has none yet). A
-- state that does not decode or is out of bounds fails the call naming the key and the group.
function G.gstate(raw, g)
  if not raw then return 0, 0, 0, 0 end
  if #raw ~= 20 then ck_corrupt(K_GSTATE, 'group ' .. g .. ' state of ' .. #raw .. ' bytes') end
  local leased, max, rmax, rms = struct.unpack('<I4I4I4I8', raw)
  if max > MAXL or rmax > MAXR or rms > MAXD then
    ck_corrupt(K_GSTATE, 'group ' .. g .. ' state out of bounds')
  end
  return leased, max, rmax, rms
end
