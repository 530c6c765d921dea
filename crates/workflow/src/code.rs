//! Numbers shared with the scripts: the constants of the same names at the top of
//! `lua/lib/store.lua`, `lua/claim.lua`, `lua/step.lua` and `lua/list.lua`. Change one side, change the other.

/// Statuses, as a header stores them.
pub(crate) const PENDING: u8 = 1;
pub(crate) const RUNNING: u8 = 2;
pub(crate) const COMPLETED: u8 = 3;
pub(crate) const FAILED: u8 = 4;
pub(crate) const CANCELLED: u8 = 5;

/// Answers.
pub(crate) const OK: u64 = 1;
pub(crate) const LEASE_LOST: u64 = 2;
pub(crate) const STEP_DONE: u64 = 3;
pub(crate) const FINISHED: u64 = 4;
pub(crate) const NOT_FOUND: u64 = 5;
pub(crate) const BUSY: u64 = 6;
pub(crate) const EXISTS: u64 = 7;
pub(crate) const SKIPPED: u64 = 8;
pub(crate) const FULL: u64 = 9;

/// Claim modes.
pub(crate) const BY_ID: u8 = 1;
pub(crate) const OLDEST_PENDING: u8 = 2;
pub(crate) const ORPHANS: u8 = 3;

/// List selectors.
pub(crate) const L_ACTIVE: u8 = 1;
pub(crate) const L_PENDING: u8 = 2;
pub(crate) const L_COMPLETED: u8 = 3;
pub(crate) const L_FAILED: u8 = 4;
pub(crate) const L_CANCELLED: u8 = 5;
pub(crate) const L_RUNNING: u8 = 6;
pub(crate) const L_TYPE: u8 = 7;

/// Step ops.
pub(crate) const CHECKPOINT: u8 = 1;
pub(crate) const EXTEND: u8 = 2;

/// The `source` of the scripts' events.
pub(crate) const SOURCE: &str = "workflow";

/// The largest number the scripts hold exactly (2^53 − 1).
pub(crate) const MAX: u64 = (1 << 53) - 1;

/// The most checkpoints one workflow holds.
pub(crate) const MAX_CHECKPOINTS: u32 = 100_000;

#[cfg(test)]
mod tests {
    use super::*;

    /// The scripts name the same numbers, in the lines at their top.
    #[test]
    fn the_scripts_name_the_same_numbers() {
        let lib = include_str!("../lua/lib/store.lua");
        let claim = include_str!("../lua/claim.lua");
        let step = include_str!("../lua/step.lua");
        let list = include_str!("../lua/list.lua");
        for (script, line) in [
            (
                lib,
                format!(
                    "local PENDING, RUNNING, COMPLETED, FAILED, CANCELLED = \
                     {PENDING}, {RUNNING}, {COMPLETED}, {FAILED}, {CANCELLED}"
                ),
            ),
            (
                lib,
                "local OK, LEASE_LOST, STEP_DONE, FINISHED, NOT_FOUND, BUSY, EXISTS, SKIPPED, FULL ="
                    .to_owned(),
            ),
            (
                lib,
                format!(
                    "  {OK}, {LEASE_LOST}, {STEP_DONE}, {FINISHED}, {NOT_FOUND}, {BUSY}, {EXISTS}, \
                     {SKIPPED}, {FULL}"
                ),
            ),
            (lib, format!("local SOURCE = '{SOURCE}'")),
            (lib, format!("local MAX = {MAX}")),
            (lib, format!("local MAX_CHECKPOINTS = {MAX_CHECKPOINTS}")),
            (
                claim,
                format!(
                    "local BY_ID, OLDEST_PENDING, ORPHANS = {BY_ID}, {OLDEST_PENDING}, {ORPHANS}"
                ),
            ),
            (
                step,
                format!("local CHECKPOINT, EXTEND = {CHECKPOINT}, {EXTEND}"),
            ),
            (
                list,
                "local L_ACTIVE, L_PENDING, L_COMPLETED, L_FAILED, L_CANCELLED, L_RUNNING, L_TYPE ="
                    .to_owned(),
            ),
            (
                list,
                format!(
                    "  {L_ACTIVE}, {L_PENDING}, {L_COMPLETED}, {L_FAILED}, {L_CANCELLED}, \
                     {L_RUNNING}, {L_TYPE}"
                ),
            ),
        ] {
            assert!(script.lines().any(|l| l == line), "no line `{line}`");
        }
    }
}
