//! Numbers shared with the scripts: the constants of the same names at the top of
//! `lua/lib/queue.lua` (`NONE`, policies, jitters, the events' source, the highest priority),
//! of `lua/settle.lua` (settle ops and answers) and of `lua/outcome.lua`. Change one side,
//! change the other.

/// Settle ops, as a settle packs them (per op of a batch: data, not a dispatch).
pub(crate) const OP_ACK: u8 = 1;
pub(crate) const OP_FAIL: u8 = 2;
pub(crate) const OP_DEFER: u8 = 3;
pub(crate) const OP_DEAD_LETTER: u8 = 4;
pub(crate) const OP_FAIL_IN_PLACE: u8 = 5;

/// Settle answers, one per op.
pub(crate) const SETTLED_LOST: u64 = 0;
pub(crate) const SETTLED_ACKED: u64 = 1;
pub(crate) const SETTLED_RETRYING: u64 = 2;
pub(crate) const SETTLED_DEAD_LETTERED: u64 = 3;
pub(crate) const SETTLED_DEFERRED: u64 = 4;
pub(crate) const SETTLED_ALREADY: u64 = 5;
pub(crate) const SETTLED_RETRYING_IN_PLACE: u64 = 6;

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

/// The bit of a group's lanes (in its state) for its ranked lane of an earlier build; bit p
/// is its lane of priority p. (Only the scripts read it: checked here against them.)
#[cfg(test)]
pub(crate) const LANE_ZSET: u16 = 1 << (crate::MAX_PRIORITY + 1);

/// The `source` of the script's events.
pub(crate) const SOURCE: &str = "retry-queue";

/// Schedules (`lua/lib/schedule.lua`): what a missed tick gets, and the kinds of spec.
pub(crate) const MISSED_SKIP: u8 = 0;
pub(crate) const MISSED_CATCH_UP: u8 = 1;
pub(crate) const SPEC_INTERVAL: u8 = 0;
pub(crate) const SPEC_CRON: u8 = 1;

/// `lua/schedule_set.lua`'s answers.
pub(crate) const SET_STALE: u64 = 0;
pub(crate) const SET_CREATED: u64 = 1;
pub(crate) const SET_RESCHEDULED: u64 = 2;
pub(crate) const SET_UPDATED: u64 = 3;

/// `lua/schedule_fire.lua`'s answers, one per op.
pub(crate) const FIRE_FIRED: u64 = 1;
pub(crate) const FIRE_ALREADY: u64 = 2;
pub(crate) const FIRE_STALE: u64 = 3;
pub(crate) const FIRE_CHANGED: u64 = 4;
pub(crate) const FIRE_GONE: u64 = 5;
pub(crate) const FIRE_MALFORMED: u64 = 6;

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
                settle,
                format!("local SETTLED_RETRYING_IN_PLACE = {SETTLED_RETRYING_IN_PLACE}"),
            ),
            (
                settle,
                format!("local OP_FAIL_IN_PLACE = {OP_FAIL_IN_PLACE}"),
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
            (lib, format!("local LANE_ZSET = {LANE_ZSET}")),
            (
                lib,
                format!(
                    "local MAXP, PRIO_SPAN = {}, {}",
                    crate::MAX_PRIORITY,
                    1u64 << 49
                ),
            ),
        ] {
            assert!(script.lines().any(|l| l == line), "no line `{line}`");
        }
    }

    /// The schedule scripts name the same numbers.
    #[test]
    fn the_schedule_scripts_name_the_same_numbers() {
        let lib = include_str!("../lua/lib/schedule.lua");
        let set = include_str!("../lua/schedule_set.lua");
        let fire = include_str!("../lua/schedule_fire.lua").replace("=\n  ", "= ");
        for (script, line) in [
            (
                lib,
                format!("local MISSED_SKIP, MISSED_CATCH_UP = {MISSED_SKIP}, {MISSED_CATCH_UP}"),
            ),
            (
                lib,
                format!("local SPEC_INTERVAL, SPEC_CRON = {SPEC_INTERVAL}, {SPEC_CRON}"),
            ),
            (
                set,
                format!(
                    "local SET_STALE, SET_CREATED, SET_RESCHEDULED, SET_UPDATED = \
                     {SET_STALE}, {SET_CREATED}, {SET_RESCHEDULED}, {SET_UPDATED}"
                ),
            ),
            (
                &fire,
                format!(
                    "local FIRE_FIRED, FIRE_ALREADY, FIRE_STALE, FIRE_CHANGED, FIRE_GONE, \
                     FIRE_MALFORMED = {FIRE_FIRED}, {FIRE_ALREADY}, {FIRE_STALE}, \
                     {FIRE_CHANGED}, {FIRE_GONE}, {FIRE_MALFORMED}"
                ),
            ),
        ] {
            assert!(script.lines().any(|l| l == line), "no line `{line}`");
        }
    }
}
