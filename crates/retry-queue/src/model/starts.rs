//! A log of starts in the model (the queue's, or a group's), as `lua/lib/starts.lua` keeps
//! it: an entry per claim that started tasks, `"<its first token>:<how many>"` at the claim's
//! time, and `"#<the starts the entries count>"` at 0.

use std::collections::BTreeMap;

use super::ordered;
use crate::limits::MAX_LIMIT;

/// The starts an entry counts: the whole number after its last ':' when in 1..=MAX_LIMIT,
/// else one (a bare token: an earlier build's).
fn counted(member: &str) -> u64 {
    member
        .rsplit_once(':')
        .filter(|(_, k)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|(_, k)| k.parse().ok())
        .filter(|k| (1..=u64::from(MAX_LIMIT)).contains(k))
        .unwrap_or(1)
}

/// How many starts `log` holds after `since`, and, when they are `max` or more, when the next
/// start is allowed: when the start that must leave the window does, plus `per`.
pub(super) fn recent(
    log: &BTreeMap<String, u64>,
    since: i128,
    max: u64,
    per: u64,
) -> (u64, Option<u64>) {
    let window: Vec<(String, u64)> = ordered(log)
        .into_iter()
        .filter(|(m, t)| !m.starts_with('#') && i128::from(*t) > since)
        .collect();
    let recent = window.iter().map(|(m, _)| counted(m)).sum::<u64>();
    if recent < max {
        return (recent, None);
    }
    // The (recent - max)th start from the window's first (the entries count `recent`, so
    // the last entry is as far as it can be).
    let j = recent - max;
    let mut cum = 0;
    let at = window
        .iter()
        .find(|(m, _)| {
            cum += counted(m);
            cum > j
        })
        .or(window.last());
    (recent, at.map(|(_, t)| t + per))
}

/// `count` starts at `now`, the first with token `first`: the entries out of the window
/// (after `since`) and the old total go.
pub(super) fn write(
    log: &mut BTreeMap<String, u64>,
    now: u64,
    since: i128,
    first: u64,
    count: u64,
) {
    log.retain(|m, t| !m.starts_with('#') && i128::from(*t) > since);
    log.insert(format!("{first}:{count}"), now);
    let total: u64 = log.keys().map(|m| counted(m)).sum();
    log.insert(format!("#{total}"), 0);
}
