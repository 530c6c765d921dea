-- progress: a handler's report on a leased task, published as a `progress` event. Runs after
-- lib/queue.lua and, in `rare()` and `group_helpers()`, the helper pieces src/scripts.rs lists
-- for it.
--
-- KEYS: all of lib/queue.lua's; reads leases. Writes nothing (stores no progress).
-- ARGV[3] id, ARGV[4] token, ARGV[5] the progress as JSON (encoded by Rust)
-- -> 1 when the token holds the lease (the event is published), 0 otherwise (nothing is)
-- Events: progress { task, progress }.

local id, tok = ARGV[3], tonumber(ARGV[4])
-- validate: leases is read (a key of another type fails here).
local held = redis.call('HGET', K_LEASES, id)
-- (a group's task's lease names its group: lib/lease_of.lua)
if (tonumber(held) or held and group_helpers().lease_of(held)) ~= tok then return 0 end
-- writes: (the event only)
local h = rare()
h.emit('progress', '"task":' .. h.jid(id) .. ',"progress":' .. ARGV[5])
return 1
