-- group_limits: sets the limits of one group, obeyed by every worker's claims: at most
-- max_leased of its tasks leased at once, at most rate_max starts in any rate_ms (0: no such
-- limit). Runs after lib/queue.lua and, in `rare()` and `group_helpers()`, the helper pieces
-- src/scripts.rs lists for it.
--
-- KEYS: all of lib/queue.lua's; writes gstate (the group's), gready and, when the rate limit
--   goes, deletes the group's starts.
-- ARGV[3] group, ARGV[4] max_leased, ARGV[5] rate_max, ARGV[6] rate_ms (either 0 = none)
-- -> 1
-- Events: wake (when the group has ready tasks: the new limits may let them start).

local gh = group_helpers()
local g = ARGV[3]
local max, rmax, rms = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
-- validate: the group's state decoded, its lanes read (whether it has ready tasks), its starts
-- and gready type-checked.
gh.load_groups({ g })
local starts = gh.gkey('gs', g)
ck_expect_type(starts, 'zset')
ck_expect_type(K_GREADY, 'zset')
local s = gh.states[g]
local waiting, lanes = gh.lanes_len(g, s[6])
-- writes:
if rmax == 0 or rms == 0 then
  rmax, rms = 0, 0
  redis.call('DEL', starts)
end
redis.call('HSET', K_GSTATE, g, gh.gstate_pack(s[1], max, rmax, rms, lanes))
if waiting > 0 then
  -- Ready now: a claim applies the new limits (and drops it again when they bind).
  redis.call('ZADD', K_GREADY, string.format('%d', now), g)
  rare().wake()
end
return 1
