//! A schedule's stored record (the layout in `lua/lib/schedule.lua`), and the two halves of a
//! tick around the fire script: which ops to send for the due schedules ([`plan`]) and what
//! the answers mean ([`report`]). The scheduler and the reference model share both.

use std::time::Duration;

use coordkit_core::time::duration_ms;
use coordkit_core::wire::Packed;

use super::{Every, Fired, Missed, Parked, Schedule, Tick};
use crate::code;
use crate::options::{Backoff, Jitter, MAX_DURATION_MS, TaskOptions};
use crate::queue::EXACT;
use crate::record::{Record, task_tail};
use crate::types::NewTask;

/// The fixed head of a schedule record (`SHDR`).
const HEAD: usize = 35;

/// A schedule record, decoded and in bounds (what `H.sched` accepts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScheduleRecord {
    pub(crate) catch_up: bool,
    pub(crate) last: u64,
    pub(crate) fired: u64,
    pub(crate) missed: u64,
    pub(crate) delay: u64,
    pub(crate) spec: Vec<u8>,
    pub(crate) task: Record,
}

fn le(b: &[u8], at: usize, len: usize) -> u64 {
    let mut v = [0u8; 8];
    v[..len].copy_from_slice(&b[at..at + len]);
    u64::from_le_bytes(v)
}

impl Schedule {
    /// The spec the fire script compares: kind, then the interval (ms) or the expression.
    pub(crate) fn spec(&self) -> Vec<u8> {
        match &self.every {
            Every::Interval(d) => Packed::new()
                .bytes(&[code::SPEC_INTERVAL])
                .u64_le(duration_ms(*d)),
            Every::Cron(expr) => Packed::new()
                .bytes(&[code::SPEC_CRON])
                .bytes(expr.as_bytes()),
        }
        .into_bytes()
    }

    /// The record as stored by a first upsert (counters zero).
    pub(crate) fn record(&self) -> Vec<u8> {
        let o = &self.task.options;
        let spec = self.spec();
        let policy = match self.missed {
            Missed::Skip => code::MISSED_SKIP,
            Missed::CatchUp => code::MISSED_CATCH_UP,
        };
        Packed::new()
            .bytes(&[policy])
            .u64_le(0)
            .u64_le(0)
            .u64_le(0)
            .u64_le(duration_ms(o.delay))
            .bytes(&(spec.len() as u16).to_le_bytes())
            .bytes(&spec)
            .bytes(&task_tail(o, &self.task.payload))
            .into_bytes()
    }
}

impl ScheduleRecord {
    /// Decodes a record as the scripts do; `None` when they would not use it.
    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < HEAD {
            return None;
        }
        let (policy, last, fired, missed) = (b[0], le(b, 1, 8), le(b, 9, 8), le(b, 17, 8));
        let (delay, slen) = (le(b, 25, 8), le(b, 33, 2) as usize);
        if policy > code::MISSED_CATCH_UP
            || [last, fired, missed].iter().any(|n| *n >= EXACT)
            || delay > MAX_DURATION_MS
            || slen < 2
            || b.len() < HEAD + slen + 16
        {
            return None;
        }
        let spec = &b[HEAD..HEAD + slen];
        match spec[0] {
            code::SPEC_INTERVAL => {
                if slen != 9 || !(1..=MAX_DURATION_MS).contains(&le(spec, 1, 8)) {
                    return None;
                }
            }
            code::SPEC_CRON => {}
            _ => return None,
        }
        let mut whole = vec![0u8; 32];
        whole.extend_from_slice(&b[HEAD + slen..]);
        let task = Record::decode(&whole).filter(|r| {
            (1..=MAX_DURATION_MS).contains(&r.lease) && (1..=10_000).contains(&r.max)
        })?;
        Some(Self {
            catch_up: policy == code::MISSED_CATCH_UP,
            last,
            fired,
            missed,
            delay,
            spec: spec.to_vec(),
            task,
        })
    }

    /// When its ticks fall; `None` for a cron expression that is not text.
    pub(crate) fn every(&self) -> Option<Every> {
        match self.spec[0] {
            code::SPEC_INTERVAL => {
                Some(Every::Interval(Duration::from_millis(le(&self.spec, 1, 8))))
            }
            _ => String::from_utf8(self.spec[1..].to_vec())
                .ok()
                .map(Every::Cron),
        }
    }

    /// The schedule it stores; `None` when a part does not read back (a backoff policy
    /// written by something else, a cron expression croner refuses).
    pub(crate) fn schedule(&self) -> Option<Schedule> {
        let t = &self.task;
        let (backoff, jitter) = policy(&t.policy)?;
        let mut options = TaskOptions::default()
            .max_attempts(t.max)
            .lease(Duration::from_millis(t.lease))
            .backoff(backoff)
            .jitter(jitter)
            .priority(t.priority)
            .delay(Duration::from_millis(self.delay));
        if let Some(c) = &t.component {
            options = options.component(c.clone());
        }
        let schedule = Schedule {
            every: self.every()?,
            missed: if self.catch_up {
                Missed::CatchUp
            } else {
                Missed::Skip
            },
            task: NewTask::new(t.payload.clone()).options(options),
        };
        schedule.validate().ok()?;
        Some(schedule)
    }
}

/// A task record's backoff policy read back (the layout of `TaskOptions::policy`).
fn policy(p: &[u8]) -> Option<(Backoff, Jitter)> {
    let (&kind, rest) = p.split_first()?;
    let (&jitter, rest) = rest.split_first()?;
    let jitter = match jitter {
        code::JITTER_NONE => Jitter::None,
        code::JITTER_FULL => Jitter::Full,
        code::JITTER_EQUAL => Jitter::Equal,
        code::JITTER_DECORRELATED => Jitter::Decorrelated,
        _ => return None,
    };
    let ms = |at: usize| Duration::from_millis(le(rest, at, 8));
    let backoff = match (kind, rest.len()) {
        (code::POLICY_EXPONENTIAL, 24) => Backoff::Exponential {
            base: ms(0),
            factor: f64::from_le_bytes(rest[8..16].try_into().ok()?),
            max: ms(16),
        },
        (code::POLICY_FIXED, 8) => Backoff::Fixed(ms(0)),
        (code::POLICY_SCHEDULE, n) if n >= 2 && n == 2 + 8 * le(rest, 0, 2) as usize => {
            Backoff::Schedule((0..(n - 2) / 8).map(|i| ms(2 + 8 * i)).collect())
        }
        _ => return None,
    };
    Some((backoff, jitter))
}

/// One op of the fire script (feature `testing`: what `Scheduler::fire_raw` sends; feature
/// `model`: what `model::ScheduleModel::fire` takes).
#[cfg_attr(
    not(any(feature = "testing", feature = "model")),
    allow(unreachable_pub)
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFire {
    /// The schedule.
    pub name: String,
    /// The tick read (T).
    pub tick: u64,
    /// The latest tick due (L); 0: park the schedule.
    pub latest: u64,
    /// The tick after now (N); 0: none.
    pub next: u64,
    /// Ticks in `[T, L)`.
    pub missed: u64,
    /// The spec the ticks were computed from.
    pub spec: Vec<u8>,
}

/// One due schedule as the due script answers it: name, record bytes (empty when missing), and
/// its tick (`None`: not a whole number of ms in bounds). Features `testing` and `model`.
#[cfg_attr(
    not(any(feature = "testing", feature = "model")),
    allow(unreachable_pub)
)]
pub type RawDue = (String, Vec<u8>, Option<u64>);

/// The ops that fire the due schedules at `now`.
pub(crate) fn plan(now: u64, due: &[RawDue]) -> Vec<RawFire> {
    due.iter()
        .map(|(name, rec, tick)| {
            let park = RawFire {
                name: name.clone(),
                tick: tick.unwrap_or(0),
                latest: 0,
                next: 0,
                missed: 0,
                spec: Vec::new(),
            };
            let Some(tick) = *tick else { return park };
            let Some(r) = ScheduleRecord::decode(rec) else {
                return park;
            };
            let Some(Ok(Some(a))) = r.every().map(|e| e.advance(tick, now)) else {
                return park;
            };
            RawFire {
                name: name.clone(),
                tick,
                latest: a.latest,
                next: a.next.unwrap_or(0),
                missed: a.missed,
                spec: r.spec,
            }
        })
        .collect()
}

/// One answer of the fire script: code, x, y.
pub(crate) type FireAnswer = (u64, u64, u64);

/// The tick a firing at `now` made: the due read's `next`, the ops and their answers.
pub(crate) fn report(
    now: u64,
    due_next: Option<u64>,
    ops: &[RawFire],
    answers: &[FireAnswer],
    key: &str,
) -> Tick {
    let mut tick = Tick {
        now_ms: now,
        fired: Vec::new(),
        parked: Vec::new(),
        next_ms: due_next,
    };
    let mut soon = |t: u64| {
        tick.next_ms = Some(tick.next_ms.map_or(t, |n| n.min(t)));
    };
    let mut fired = Vec::new();
    let mut parked = Vec::new();
    for (op, &(status, x, y)) in ops.iter().zip(answers) {
        match status {
            code::FIRE_FIRED => {
                if op.next > 0 {
                    soon(op.next);
                }
                fired.push(Fired {
                    schedule: op.name.clone(),
                    tick_ms: op.latest,
                    tasks: (0..y).map(|i| (x + i).to_string()).collect(),
                    missed: op.missed,
                });
            }
            code::FIRE_ALREADY if x > 0 => soon(x),
            code::FIRE_STALE | code::FIRE_CHANGED => soon(now),
            code::FIRE_MALFORMED => parked.push(Parked {
                schedule: op.name.clone(),
                key: key.to_owned(),
            }),
            code::FIRE_GONE => {}
            _ => {}
        }
    }
    tick.fired = fired;
    tick.parked = parked;
    tick
}
