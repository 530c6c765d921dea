-- group: one group's state. Reads only. Runs after lib/queue.lua and, in `group_helpers()`, the
-- helper pieces src/scripts.rs lists for it.
--
-- KEYS: all of lib/queue.lua's; reads gstate, gready, the group's lanes.
-- ARGV[3] group
-- -> { leased, max_leased, rate_max, rate_ms, ready, next_start|NONE, now }: next_start is
--    when the group may start a task next while it waits for its rate limit
-- Codes: NONE.

local gh = group_helpers()
local g = ARGV[3]
gh.load_groups({ g })
local s = gh.states[g]
local at = tonumber(redis.call('ZSCORE', K_GREADY, g) or NONE)
if at <= now then at = NONE end
return { s[1], s[2], s[3], s[4], gh.lanes_len(g, s[6]), at, now }
