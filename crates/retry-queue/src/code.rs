//! Numbers shared with the scripts: the constants of the same names at the top of
//! `lua/lib/queue.lua` (`NONE`, policies, jitters, the events' source), of `lua/settle.lua`
//! (settle ops and answers) and of `lua/outcome.lua`. Change one side, change the other.

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

/// Where a task stands, for a waiter (`lua/outcome.lua`).
pub(crate) const OUTCOME_PENDING: u64 = 0;
pub(crate) const OUTCOME_DONE: u64 = 1;
pub(crate) const OUTCOME_DEAD: u64 = 2;
pub(crate) const OUTCOME_GONE: u64 = 3;

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The scripts name the same numbers, in the lines at their top.
    #[test]
    fn the_scripts_name_the_same_numbers() {
        let lib = include_str!("../lua/lib/queue.lua");
        let settle = include_str!("../lua/settle.lua");
        let outcome = include_str!("../lua/outcome.lua");
        for (script, line) in [
            (
                settle,
                format!(
                    "local OP_ACK, OP_FAIL, OP_DEFER, OP_DEAD_LETTER = \
                     {OP_ACK}, {OP_FAIL}, {OP_DEFER}, {OP_DEAD_LETTER}"
                ),
            ),
            (
                settle,
                format!(
                    "local SETTLED_LOST, SETTLED_ACKED, SETTLED_RETRYING = \
                     {SETTLED_LOST}, {SETTLED_ACKED}, {SETTLED_RETRYING}"
                ),
            ),
            (
                settle,
                format!(
                    "local SETTLED_DEAD_LETTERED, SETTLED_DEFERRED, SETTLED_ALREADY = \
                     {SETTLED_DEAD_LETTERED}, {SETTLED_DEFERRED}, {SETTLED_ALREADY}"
                ),
            ),
            (
                outcome,
                format!(
                    "local OUTCOME_PENDING, OUTCOME_DONE, OUTCOME_DEAD, OUTCOME_GONE = \
                     {OUTCOME_PENDING}, {OUTCOME_DONE}, {OUTCOME_DEAD}, {OUTCOME_GONE}"
                ),
            ),
            (lib, format!("local NONE = {NONE}")),
            (
                lib,
                format!(
                    "local POLICY_EXPONENTIAL, POLICY_FIXED, POLICY_SCHEDULE = \
                     {POLICY_EXPONENTIAL}, {POLICY_FIXED}, {POLICY_SCHEDULE}"
                ),
            ),
            (
                lib,
                format!(
                    "local JITTER_NONE, JITTER_FULL, JITTER_EQUAL, JITTER_DECORRELATED = \
                     {JITTER_NONE}, {JITTER_FULL}, {JITTER_EQUAL}, {JITTER_DECORRELATED}"
                ),
            ),
            (lib, format!("local SOURCE = '{SOURCE}'")),
        ] {
            assert!(script.lines().any(|l| l == line), "no line `{line}`");
        }
    }
}
