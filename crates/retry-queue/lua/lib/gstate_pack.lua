-- Helper piece (inside `group_helpers()`): a group's state as gstate stores it (lib/queue.lua).

-- The state as stored.
function G.gstate_pack(leased, max, rmax, rms, lanes)
  return struct.pack('<I4I4I4I8I2', leased, max, rmax, rms, lanes)
end
