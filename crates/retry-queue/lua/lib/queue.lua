-- coordkit retry queue: what every operation's script starts with (src/scripts.rs puts this
-- file first, then the helper pieces the operation uses, then `lua/<operation>.lua`).
--
-- KEYS (all of one queue, one hash tag, the same in every script; built in Rust):
--   KEYS[1]  tasks     HASH  id -> record (below)
--   KEYS[2]  ready     LIST  ids; LPUSH at the back, RPOP side is the front
--   KEYS[3]  delayed   ZSET  id -> due time (ms)
--   KEYS[4]  leased    ZSET  id -> lease deadline (ms)
--   KEYS[5]  leases    HASH  id -> fencing token of its lease (leased tasks), "<token>:<group>"
--                            for a task of a group, or minus the token whose fail, defer or
--                            dead-letter settled it (until claimed again)
--   KEYS[6]  dlq       ZSET  id -> dead-lettered at (ms)
--   KEYS[7]  errors    HASH  id -> error history (below; the latest `errors kept`)
--   KEYS[8]  dead      HASH  id -> dead-letter reason
--   KEYS[9]  idem      HASH  idempotency key -> struct '<I8I8' id, expires_at
--   KEYS[10] idem_exp  ZSET  idempotency key -> expires_at
--   KEYS[11] info      HASH  seq (ids), token (fencing), completed, dead (counters), paused
--                            (1 while claims are paused: lua/pause.lua), and the limits every
--                            worker obeys (lua/limits.lua): max_leased (tasks leased at once),
--                            rate_max starts per rate_ms
--   KEYS[12] starts    ZSET  the log of starts of a queue with a rate limit: per claim that
--                            started tasks, "<its first token>:<how many>" -> the claim's time
--                            (ms), within the last rate interval, and "#<the starts they count>"
--                            -> 0 (an earlier build logged a bare token per start: one each;
--                            lib/starts.lua)
--   KEYS[13] urgent    ZSET  id -> rank: the ready tasks with a priority above 0 and no group,
--                            claimed before the ready list; rank (MAXP - priority) * PRIO_SPAN
--                            + order, order the task's id when enqueued, the id sequence when it
--                            came back (so: by priority, then first in first out)
--   KEYS[14] gstate    HASH  group -> struct '<I4I4I4I8I2' leased (its tasks leased now),
--                            max_leased, rate_max starts per rate_ms (0: no such limit), lanes:
--                            bit p (1 << p) set while its lane of priority p holds tasks, bit
--                            LANE_ZSET while its ranked lane of an earlier build does (a state
--                            of 20 bytes, without lanes, is an earlier build's: LANE_ZSET)
--   KEYS[15] gready    ZSET  group -> when it may start a task next: the groups with ready tasks
--                            (one at its concurrency limit may linger until a claim drops it;
--                            a settle that frees a slot adds it back)
--   KEYS[16] glease    HASH  id -> group, for a task of a group leased before `leases` held its
--                            group (read while it holds any: lib/lease_groups.lua)
--   A group's own keys, named from gstate's (`<instance>gl<p>:<group>`, `<instance>gs:<group>`,
--   the same hash tag):
--            gl<p>:<group> LIST  its ready tasks of priority p (0..MAXP), as `ready`: LPUSH at
--                              the back, the RPOP side is the front
--            gs:<group>    ZSET  its log of starts, as `starts`
--            gl:<group>    ZSET  id -> rank (as urgent's): its ready tasks as an earlier build
--                              ranked them, all ahead of those of their priority in the lists
--                              (nothing is added to it; claims drain it)
-- Scripts that take keys of their own take them after these, from KEYS[QKEYS + 1].
--
-- ARGV (every script; the operation's own arguments follow, from ARGV[3]):
--   ARGV[1] now_ms ("" = server TIME)
--   ARGV[2] settings: struct '<BI4I8I8BI8' succeeded events 0|1, max stalls, DLQ count cap (0 =
--           none), DLQ age cap ms (0 = none), errors kept, retry-in-place threshold ms (0 =
--           none); then three I2-length strings: the queue's name, the event channel prefix (the
--           kind is appended), the wake channel
--
-- A record is little-endian binary (struct): a head of HDR = 48 bytes, of which the scripts
-- write the first 32 (bytes 1 to 32 in Lua's 1-based positions) and Rust the other 16, then the
-- variable part Rust writes:
--   a I4 attempts | s I4 stalls | prev I8 last backoff delay | since I8 | enq I8 enqueued at
--   (32 bytes, the scripts') | max I2 | priority B (0..MAXP; higher is claimed first) | glen B
--   | lease I8 | plen I2 | clen I2 (48 bytes) | policy (plen)
--   | component (clen) | group (glen: the task's group, none when 0) | payload
-- policy: B kind (POLICY_*: exponential: I8 base, d factor, I8 cap | fixed: I8 delay | schedule:
--   I2 n, n x I8), B jitter (JITTER_*) -- kind and jitter first.
-- An error history: B count, then per error I4 attempt, I8 at, I2 length, text.
--
-- A task is in exactly one state: the one structure (ready or urgent, delayed, leased, dlq)
-- holding its id;
-- `leases` holds a positive token for exactly the leased ones. A settle whose token no longer
-- holds the lease answers "already settled" when that token settled the task (the negative
-- mark) or the task is gone (acknowledged or purged), else "lease lost". `since` is when it
-- became (or becomes) ready, or when it was dead-lettered.
--
-- Stored data is validated before the first write (CONTRIBUTING.md): each operation reads or
-- type-checks every key it may write and decodes every stored value it uses first. A record is
-- used only when it is whole and in bounds (lease 1..2^35 ms to be leased; attempts <= max <=
-- 10000, stalls < 2^31, delays <= 2^35 ms, times < 2^53, a sound policy and error history to be
-- failed, deferred or dead-lettered); a task whose record is not is dead-lettered as
-- `malformed` with its bytes kept, alone, and the rest of the batch applies. A counter in `info`
-- that is not a whole number in bounds fails the call with CORRUPT <info key> field <name>,
-- nothing written.
--
-- Events: the prelude's ck_envelope PUBLISHed on <prefix><kind>, source SOURCE, entity the
-- queue's name; `wake` (no payload) on the wake channel.

-- Numbers go to redis.call as text (string.format '%d'): Redis formats a Lua number with
-- %.17g, the slow path of printf, which cost an eighth of the queue's server time.

-- Codes shared with Rust: the same names and numbers in `code` (src/code.rs).
-- A number an answer does not have (no due time, no deadline, a lost lease):
local NONE = -1
-- Backoff policy kinds and jitters, the first two bytes of a record's policy:
local POLICY_EXPONENTIAL, POLICY_FIXED, POLICY_SCHEDULE = 0, 1, 2
local JITTER_NONE, JITTER_FULL, JITTER_EQUAL, JITTER_DECORRELATED = 0, 1, 2, 3
-- The source of the scripts' events.
local SOURCE = 'retry-queue'

local K_TASKS, K_READY, K_DELAYED, K_LEASED, K_LEASES = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local K_DLQ, K_ERR, K_DEAD, K_IDEM, K_IDEMX, K_INFO = KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local K_STARTS, K_URGENT = KEYS[12], KEYS[13]
local K_GSTATE, K_GREADY, K_GLEASE = KEYS[14], KEYS[15], KEYS[16]
-- How many keys every script takes (others follow them).
local QKEYS = 16

local now = ck_now(ARGV[1])
local CFG = ARGV[2]
local HDR = 48
-- Bounds of stored numbers (MAX_DURATION_MS and EXACT in Rust): durations, times, counters.
local MAXD, EXACT, MAXS, MAXA = 34359738368, 9007199254740992, 2147483648, 10000
-- Bounds of the limits (MAX_LIMIT in Rust, for both).
local MAXL, MAXR = 1000000, 1000000
-- The highest priority (MAX_PRIORITY in Rust), and the span of ranks one priority level of
-- `urgent` covers: orders (ids) below it, every rank below 2^53.
local MAXP, PRIO_SPAN = 9, 562949953421312
-- The bit of a group's lanes (in gstate) for its ranked lane of an earlier build.
local LANE_ZSET = 1024
