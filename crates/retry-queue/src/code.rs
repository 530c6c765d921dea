//! Numbers shared with the scripts: the constants of the same names at the top of
//! `lua/lib/queue.lua` (`NONE`, policies, jitters, the events' source) and of `lua/settle.lua`
//! (settle ops and answers). Change one side, change the other.

/// Settle ops, as a settle packs them (per op of a batch: data, not a dispatch).
pub(crate) const OP_ACK: u8 = 1;
pub(crate) const OP_FAIL: u8 = 2;
pub(crate) const OP_DEFER: u8 = 3;
pub(crate) const OP_DEAD_LETTER: u8 = 4;

/// Settle answers, one per op.
pub(crate) const SETTLED_LOST: u64 = 0;
pub(crate) const SETTLED_ACKED: u64 = 1;
pub(crate) const SETTLED_RETRYING: u64 = 2;
pub(crate) const SETTLED_DEAD_LETTERED: u64 = 3;
pub(crate) const SETTLED_DEFERRED: u64 = 4;
pub(crate) const SETTLED_ALREADY: u64 = 5;

/// A number an answer does not have (no due time, no deadline, a lost lease): `NONE` in the
/// script. Rust reads any negative number so.
pub(crate) const NONE: i64 = -1;

/// Backoff policy kinds and jitters: the first two bytes of a record's policy.
pub(crate) const POLICY_EXPONENTIAL: u8 = 0;
pub(crate) const POLICY_FIXED: u8 = 1;
pub(crate) const POLICY_SCHEDULE: u8 = 2;
pub(crate) const JITTER_NONE: u8 = 0;
pub(crate) const JITTER_FULL: u8 = 1;
pub(crate) const JITTER_EQUAL: u8 = 2;
pub(crate) const JITTER_DECORRELATED: u8 = 3;

/// The `source` of the script's events.
pub(crate) const SOURCE: &str = "retry-queue";
