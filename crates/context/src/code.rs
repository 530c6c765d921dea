//! Numbers shared with the scripts: each is named the same at the top of the script that uses
//! it (`lua/<script>.lua`), with a comment pointing here.

// lua/write.lua: a write's packed numbers, and its answer.
/// The expected version of a write that expects none (`EXPECT_NONE` there): any current
/// version will do.
pub(crate) const EXPECT_NONE: f64 = -1.0;
/// A write's mode: a partial update (`MODE_UPDATE` there).
pub(crate) const MODE_UPDATE: f64 = 0.0;
/// A write's mode: delete the whole entity (`MODE_DELETE` there).
pub(crate) const MODE_DELETE: f64 = 1.0;
/// The idle TTL of an entity that never expires (`NO_IDLE_TTL` there; read.lua's
/// `NO_REFRESH` is the same number).
pub(crate) const NO_IDLE_TTL: u64 = 0;
/// A conflict answers `-(current + CONFLICT_OFFSET)` (`CONFLICT_OFFSET` there), so that a
/// current version of 0 is still negative; a write that was applied answers its version (> 0).
pub(crate) const CONFLICT_OFFSET: i64 = 1;

// lua/read.lua: ARGV[2].
/// The TTL a read refreshes when it does not refresh (`NO_REFRESH` there).
pub(crate) const NO_REFRESH: u64 = 0;

// lua/agent_heartbeat.lua: its answer.
/// The agent was alive and its deadline moved (`HEARTBEAT_ALIVE` there).
pub(crate) const HEARTBEAT_ALIVE: i64 = 1;
/// The agent is unknown or expired (`HEARTBEAT_GONE` there).
pub(crate) const HEARTBEAT_GONE: i64 = 0;

// lua/agent_query.lua: the `remove` question's answer.
/// The agent was alive and is removed (`REMOVED` there).
pub(crate) const REMOVED: i64 = 1;
/// The agent was not alive (`NOT_REMOVED` there).
pub(crate) const NOT_REMOVED: i64 = 0;

#[cfg(test)]
mod tests {
    use super::*;

    /// Each script names the same numbers: `local <NAME> = <value>` at its top.
    #[test]
    fn the_scripts_name_the_same_numbers() {
        let write = include_str!("../lua/write.lua");
        let read = include_str!("../lua/read.lua");
        let heartbeat = include_str!("../lua/agent_heartbeat.lua");
        let query = include_str!("../lua/agent_query.lua");
        let changes = include_str!("../lua/changes.lua");
        let record = include_str!("../lua/agent_record.lua");
        for (script, line) in [
            (write, format!("local EXPECT_NONE = {EXPECT_NONE}")),
            (write, format!("local MODE_UPDATE = {MODE_UPDATE}")),
            (write, format!("local MODE_DELETE = {MODE_DELETE}")),
            (write, format!("local NO_IDLE_TTL = {NO_IDLE_TTL}")),
            (write, format!("local CONFLICT_OFFSET = {CONFLICT_OFFSET}")),
            (read, format!("local NO_REFRESH = {NO_REFRESH}")),
            (
                heartbeat,
                format!("local HEARTBEAT_ALIVE = {HEARTBEAT_ALIVE}"),
            ),
            (
                heartbeat,
                format!("local HEARTBEAT_GONE = {HEARTBEAT_GONE}"),
            ),
            (query, format!("local REMOVED = {REMOVED}")),
            (query, format!("local NOT_REMOVED = {NOT_REMOVED}")),
            (write, format!("local MAX = {}", crate::wire::MAX_STORED)),
            (read, format!("local MAX = {}", crate::wire::MAX_STORED)),
            (changes, format!("local MAX = {}", crate::wire::MAX_STORED)),
            (record, format!("local MAX = {}", crate::wire::MAX_STORED)),
        ] {
            assert!(script.contains(&line), "{line:?} is not in its script");
        }
    }
}
