-- Helper piece (inside `group_helpers()`): the groups of the leases that go, with those kept in
-- glease before `leases` named their group (lib/queue.lua).

-- The groups of leased tasks `ids` (`groups`: each one's from its lease, or false), and the
-- ids whose group glease held (to delete from it): a task leased before `leases` named its
-- group has it there, read only while glease holds any.
function G.lease_groups(ids, groups)
  local bare = nil
  for i = 1, #ids do
    if not groups[i] then
      bare = bare or {}
      bare[#bare + 1] = i
    end
  end
  local legacy = nil
  if bare and redis.call('HLEN', K_GLEASE) > 0 then
    local want = {}
    for k, i in ipairs(bare) do want[k] = ids[i] end
    local gs = redis.call('HMGET', K_GLEASE, unpack(want))
    for k, i in ipairs(bare) do
      if gs[k] then
        groups[i] = gs[k]
        legacy = legacy or {}
        legacy[#legacy + 1] = ids[i]
      end
    end
  end
  return groups, legacy
end
