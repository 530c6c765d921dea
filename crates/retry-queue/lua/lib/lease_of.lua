-- Helper piece (inside `group_helpers()`): a lease's token and group (the layout of `leases` in
-- lib/queue.lua). A lease of no group is its bare token, which a script reads with tonumber
-- and no helper.

-- A `leases` value: its token and, for a lease of a group's task ("<token>:<group>"), the
-- group (nil, nil: no lease).
function G.lease_of(v)
  if not v then return nil end
  local t, g = string.match(v, '^(%d+):(.+)$')
  if t then return tonumber(t), g end
  return tonumber(v)
end
