//! Where a schedule's ticks fall: an interval's on a grid from the Unix epoch, a cron
//! expression's where croner says (UTC, whole seconds). Every scheduler and the reference model
//! compute them here; the fire script checks what it can (the order of the ticks against its
//! clock) and compares the schedule's spec, so a caller with an old definition fires nothing.

use chrono::{DateTime, Utc};
use coordkit_core::Error as CoreError;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

use super::Every;
use crate::error::Result;
use crate::queue::EXACT;

/// The most missed ticks of a cron schedule counted for one firing (an interval's are counted
/// exactly): beyond it the count saturates, so a long outage of a per-second schedule costs
/// no long walk.
const MAX_COUNTED: u64 = 10_000;

/// A cron expression as croner reads it: five fields, or six with seconds first.
pub(crate) fn parse(expr: &str) -> Result<Cron> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expr)
        .map_err(|e| CoreError::invalid_config("cron", format!("{expr:?}: {e}")).into())
}

/// What firing a schedule whose tick `due` is due at `now` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Advance {
    /// The latest tick at or before `now` (at least `due`): the one fired.
    pub(crate) latest: u64,
    /// The first tick after `now`; `None`: there is none (the schedule ends).
    pub(crate) next: Option<u64>,
    /// Ticks in `[due, latest)`: missed.
    pub(crate) missed: u64,
}

fn at(ms: u64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(i64::try_from(ms).ok()?)
}

fn ms(t: DateTime<Utc>) -> Option<u64> {
    u64::try_from(t.timestamp_millis())
        .ok()
        .filter(|m| *m < EXACT)
}

impl Every {
    /// The first tick after `now`, if any.
    pub(crate) fn first_after(&self, now: u64) -> Result<Option<u64>> {
        Ok(match self {
            Every::Interval(d) => {
                let every = coordkit_core::time::duration_ms(*d).max(1);
                (now / every + 1).checked_mul(every).filter(|t| *t < EXACT)
            }
            Every::Cron(expr) => {
                let cron = parse(expr)?;
                next_after(&cron, now)
            }
        })
    }

    /// Firing tick `due` at `now` (`due <= now`); `None` when the ticks cannot be computed
    /// (a time out of range).
    pub(crate) fn advance(&self, due: u64, now: u64) -> Result<Option<Advance>> {
        let now = now.max(due);
        Ok(match self {
            Every::Interval(d) => {
                let every = coordkit_core::time::duration_ms(*d).max(1);
                let missed = (now - due) / every;
                let latest = due + missed * every;
                Some(Advance {
                    latest,
                    next: latest.checked_add(every).filter(|t| *t < EXACT),
                    missed,
                })
            }
            Every::Cron(expr) => {
                let cron = parse(expr)?;
                let Some(floor) = at(now - now % 1000) else {
                    return Ok(None);
                };
                let latest = cron
                    .find_previous_occurrence(&floor, true)
                    .ok()
                    .and_then(ms)
                    .filter(|l| *l > due)
                    .unwrap_or(due);
                let missed = match at(due) {
                    Some(from) if latest > due => cron
                        .iter_from(from, croner::Direction::Forward)
                        .take(MAX_COUNTED as usize)
                        .take_while(|t| ms(*t).is_some_and(|t| t < latest))
                        .count()
                        .max(1) as u64,
                    _ => 0,
                };
                Some(Advance {
                    latest,
                    next: next_after(&cron, now),
                    missed,
                })
            }
        })
    }
}

/// The first match of `cron` after `now` (ms), in range.
fn next_after(cron: &Cron, now: u64) -> Option<u64> {
    // Matches are whole seconds: the first after the second `now` falls in is after `now`.
    let floor = at(now - now % 1000)?;
    cron.find_next_occurrence(&floor, false).ok().and_then(ms)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_interval_ticks_on_a_grid_from_the_epoch() {
        let every = Every::Interval(Duration::from_millis(100));
        assert_eq!(every.first_after(1_050).unwrap(), Some(1_100));
        assert_eq!(every.first_after(1_100).unwrap(), Some(1_200));
        let a = every.advance(1_100, 1_100).unwrap().unwrap();
        assert_eq!((a.latest, a.next, a.missed), (1_100, Some(1_200), 0));
        let a = every.advance(1_100, 1_399).unwrap().unwrap();
        assert_eq!((a.latest, a.next, a.missed), (1_300, Some(1_400), 2));
    }

    #[test]
    fn a_cron_expression_ticks_on_whole_seconds_in_utc() {
        // Every 5 s; and 09:00 UTC each day.
        let every = Every::Cron("*/5 * * * * *".into());
        let t0 = 1_700_000_000_000; // 2023-11-14T22:13:20Z
        assert_eq!(every.first_after(t0).unwrap(), Some(t0 + 5_000));
        assert_eq!(every.first_after(t0 + 4_999).unwrap(), Some(t0 + 5_000));
        let a = every.advance(t0 + 5_000, t0 + 17_500).unwrap().unwrap();
        assert_eq!(
            (a.latest, a.next, a.missed),
            (t0 + 15_000, Some(t0 + 20_000), 2)
        );
        let daily = Every::Cron("0 9 * * *".into());
        let next = daily.first_after(t0).unwrap().unwrap();
        assert_eq!(next % 86_400_000, 9 * 3_600_000);
        assert!(next > t0 && next - t0 < 86_400_000);
        // A schedule with no further match ends.
        let past = Every::Cron("0 0 0 1 1 * 2020".into());
        assert_eq!(past.first_after(t0).unwrap(), None);
        assert!(parse("61 * * * *").is_err());
    }
}
