-- Helper piece (inside `group_helpers()`): a lease's token and group (the layout of `leases` in
-- lib/queue.lua). A lease of no group is its bare token, which a script reads with tonumber
-- and no helper.

-- A `leases` value: its token and, for a lease of a group's task ("<token>:<group>"), the
-- group (nil, nil: no lease).
function G.lease_of(v)
  if not v then return nil end
  local t = tonumber(v)
  if t then return t end
  local c = string.find(v, ':', 1, true)
  t = c and c < #v and tonumber(string.sub(v, 1, c - 1))
  if t then return t, string.sub(v, c + 1) end
end
