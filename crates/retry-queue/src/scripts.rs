//! The queue's scripts, one per operation: `lua/<operation>.lua`, after `lua/lib/queue.lua`
//! (the keys, the settings, the record layout, the codes and bounds every operation shares)
//! and the helper pieces (`lua/lib/<piece>.lua`) the operation calls.
//!
//! The pieces go inside one function, `rare()`, that the operation calls the first time it
//! needs a helper: making a closure costs the server time on every call that makes it, so a
//! hot path (a claim with nothing to reclaim, an ack) makes none, and a script holds only the
//! pieces it calls. `settings` (the decoded ARGV[2]) comes first when a piece needs it.
//!
//! The groups' pieces go inside a second such function, `group_helpers()` (table `G`): a
//! grouped task's claim, settle and enqueue make only those few closures. `rare()` with all
//! of a claim's pieces costs about 30,000 server instructions a call, `group_helpers()` a
//! fifth of that. `group_helpers()` comes first, so that a piece of `rare()` may call it.

use coordkit_core::Script;

/// `script!("op")`: lib/queue.lua then lua/op.lua. `script!("op", ["piece", ...])`: the same
/// with the pieces in `rare()` between them; `script!("op", [...], ["group piece", ...])` also
/// with the groups' pieces in `group_helpers()`.
macro_rules! script {
    ($op:literal) => {
        Script::new(
            concat!("retry-queue-", $op),
            concat!(
                include_str!("../lua/lib/queue.lua"),
                include_str!(concat!("../lua/", $op, ".lua")),
            ),
        )
    };
    ($op:literal, [$($piece:literal),+]) => {
        Script::new(
            concat!("retry-queue-", $op),
            concat!(
                include_str!("../lua/lib/queue.lua"),
                rare!($($piece),+),
                include_str!(concat!("../lua/", $op, ".lua")),
            ),
        )
    };
    ($op:literal, [$($piece:literal),+], [$($group:literal),+]) => {
        Script::new(
            concat!("retry-queue-", $op),
            concat!(
                include_str!("../lua/lib/queue.lua"),
                groups!($($group),+),
                rare!($($piece),+),
                include_str!(concat!("../lua/", $op, ".lua")),
            ),
        )
    };
    ($op:literal, [], [$($group:literal),+]) => {
        Script::new(
            concat!("retry-queue-", $op),
            concat!(
                include_str!("../lua/lib/queue.lua"),
                groups!($($group),+),
                include_str!(concat!("../lua/", $op, ".lua")),
            ),
        )
    };
}

/// `group_helpers()` with the groups' pieces.
macro_rules! groups {
    ($($piece:literal),+) => {
        concat!(
            "\n-- The groups' helpers of this script (lua/lib/<piece>.lua), made on the first",
            " call of group_helpers().\nlocal G = nil\nlocal function group_helpers()\n",
            "if G then return G end\nG = {}\n",
            $(include_str!(concat!("../lua/lib/", $piece, ".lua")),)+
            "return G\nend\n\n",
        )
    };
}

/// `rare()` with the pieces.
macro_rules! rare {
    ($($piece:literal),+) => {
        concat!(
            "\n-- The helpers of this script (lua/lib/<piece>.lua), made on the first call of",
            " rare().\nlocal H = nil\nlocal function rare()\nif H then return H end\nH = {}\n",
            $(include_str!(concat!("../lua/lib/", $piece, ".lua")),)+
            "return H\nend\n\n",
        )
    };
}

#[rustfmt::skip]
pub(crate) static ENQUEUE: Script = script!("enqueue",
    ["settings", "wake", "first_due", "rank", "none_ready"],
    ["gkey", "lane", "gstate", "load_groups", "save_groups", "gstate_pack", "lanes_len",
     "to_lane", "push_groups"]);
#[rustfmt::skip]
pub(crate) static CLAIM: Script = script!("claim",
    ["settings", "head", "rewrite", "stand_in", "events", "jid", "wake", "delete_dead", "bury",
     "priority", "rank", "order", "push_ready", "none_ready", "group_of", "component_of"],
    ["gkey", "lane", "gstate", "load_groups", "save_groups", "gstate_pack", "serve_groups",
     "lanes_len", "to_lane", "push_groups", "lease_of", "lease_groups", "starts"]);
#[rustfmt::skip]
pub(crate) static SETTLE: Script = script!("settle",
    ["settings", "head", "rewrite", "stand_in", "events", "jid", "wake", "first_due",
     "delete_dead", "backoff", "history", "bury", "none_ready", "group_of"],
    ["gstate", "load_groups", "save_groups", "gstate_pack", "lease_of", "lease_groups"]);
pub(crate) static EXTEND: Script = script!("extend", ["head"], ["lease_of"]);
#[rustfmt::skip]
pub(crate) static MAKE_DUE: Script = script!("make_due",
    ["settings", "head", "rewrite", "wake", "priority", "rank", "order", "push_ready",
     "none_ready", "group_of", "lanes_of"],
    ["gkey", "lane", "gstate", "load_groups", "save_groups", "gstate_pack", "lanes_len",
     "to_lane", "push_groups"]);
pub(crate) static STATS: Script =
    script!("stats", ["head"], ["gkey", "lane", "gstate", "lanes_len"]);
pub(crate) static DLQ_LIST: Script = script!("dlq_list");
pub(crate) static INSPECT: Script = script!("inspect");
#[rustfmt::skip]
pub(crate) static REQUEUE: Script = script!("requeue",
    ["settings", "head", "rewrite", "stand_in", "events", "jid", "wake", "dead_ids",
     "priority", "rank", "order", "push_ready", "none_ready", "group_of", "lanes_of"],
    ["gkey", "lane", "gstate", "load_groups", "save_groups", "gstate_pack", "lanes_len",
     "to_lane", "push_groups"]);
pub(crate) static PURGE: Script = script!("purge", ["delete_dead", "dead_ids"]);
pub(crate) static PAUSE: Script = script!("pause", ["settings", "events", "wake"]);
pub(crate) static LIMITS: Script = script!("limits", ["settings", "wake"]);
#[rustfmt::skip]
pub(crate) static GROUP_LIMITS: Script = script!("group_limits",
    ["settings", "wake"], ["gkey", "lane", "gstate", "load_groups", "gstate_pack", "lanes_len"]);
pub(crate) static GROUP: Script = script!(
    "group",
    [],
    ["gkey", "lane", "gstate", "load_groups", "lanes_len"]
);
pub(crate) static HOLD: Script = script!("hold");
#[rustfmt::skip]
pub(crate) static SCHEDULE_SET: Script = script!("schedule_set",
    ["settings", "events", "head", "schedule"]);
pub(crate) static SCHEDULE_REMOVE: Script = script!("schedule_remove", ["settings", "events"]);
pub(crate) static SCHEDULE_DUE: Script = script!("schedule_due");
pub(crate) static SCHEDULE_LIST: Script = script!("schedule_list");
#[rustfmt::skip]
pub(crate) static SCHEDULE_FIRE: Script = script!("schedule_fire",
    ["settings", "events", "head", "schedule", "wake", "first_due", "rank", "none_ready"],
    ["gkey", "lane", "gstate", "load_groups", "save_groups", "gstate_pack", "lanes_len",
     "to_lane", "push_groups"]);
pub(crate) static OUTCOME: Script = script!("outcome");
pub(crate) static PROGRESS: Script =
    script!("progress", ["settings", "events", "jid"], ["lease_of"]);

#[cfg(test)]
mod tests {
    use super::*;

    /// The names after `prefix` (an identifier, then `(`) at word starts of `source`.
    fn names_after<'a>(source: &'a str, prefix: &str) -> Vec<&'a str> {
        source
            .match_indices(prefix)
            .filter(|(at, _)| {
                let before = source[..*at].chars().next_back();
                !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            })
            .filter_map(|(at, _)| {
                let rest = &source[at + prefix.len()..];
                let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
                rest[end..].starts_with('(').then(|| &rest[..end])
            })
            .collect()
    }

    /// Each script defines every helper it calls, and no helper it does not call: a closure
    /// made for nothing costs every call that makes it.
    #[test]
    fn each_script_holds_exactly_the_helpers_it_calls() {
        let all = [
            &ENQUEUE,
            &CLAIM,
            &SETTLE,
            &EXTEND,
            &MAKE_DUE,
            &STATS,
            &DLQ_LIST,
            &INSPECT,
            &REQUEUE,
            &PURGE,
            &PAUSE,
            &LIMITS,
            &SCHEDULE_SET,
            &SCHEDULE_REMOVE,
            &SCHEDULE_DUE,
            &SCHEDULE_LIST,
            &SCHEDULE_FIRE,
            &OUTCOME,
            &PROGRESS,
            &GROUP_LIMITS,
            &GROUP,
            &HOLD,
        ];
        for script in all {
            let source = script.source();
            // `rare()`'s helpers (H), then the groups' (G).
            for (table, callers, maker) in [
                ("H.", ["h.", "H.", "rare()."], "rare"),
                ("G.", ["gh.", "G.", "group_helpers()."], "group_helpers"),
            ] {
                let definition = format!("function {table}");
                let mut defined = names_after(&source, &definition);
                defined.sort_unstable();
                // (A definition `function H.name(` is no call: its `H.` follows "function ".)
                let calls = source.replace(&definition, "function ");
                let mut called: Vec<&str> = callers
                    .iter()
                    .flat_map(|p| names_after(&calls, p))
                    .collect();
                called.sort_unstable();
                called.dedup();
                assert_eq!(defined, called, "{} {table}", script.name());
                if defined.is_empty() {
                    assert!(!source.contains(maker), "{} {maker}", script.name());
                }
            }
        }
    }
}
