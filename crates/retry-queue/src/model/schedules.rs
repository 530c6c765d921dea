//! The reference model of a queue's schedules (`lua/schedule_*.lua`): the same answers as the
//! scripts on an explicit clock, the tasks fired into a [`QueueModel`]. It shares with the
//! scheduler the record layout and the tick arithmetic (`schedule::record`, `schedule::ticks`,
//! unit-tested on their own); what it models is the scripts' state machine: the
//! compare-and-set on the next tick, the missed-tick policies, parking, the tasks enqueued.

use std::collections::BTreeMap;

use coordkit_core::{Error as CoreError, validate_name};

use super::QueueModel;
use crate::code;
use crate::error::Result;
use crate::queue::EXACT;
use crate::schedule::{
    RawDue, RawFire, Schedule, ScheduleInfo, ScheduleRecord, Tick, Upserted, plan, report,
};
use crate::scheduler::info;

/// A queue's schedules as stored: records and next ticks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScheduleDump {
    /// Name → record bytes (`schedules`).
    pub records: BTreeMap<String, Vec<u8>>,
    /// (name, next tick) by tick, then name (`sched_due`).
    pub due: Vec<(String, u64)>,
}

/// The reference model of one queue's schedules.
#[derive(Debug, Clone)]
pub struct ScheduleModel {
    batch: usize,
    key: String,
    records: BTreeMap<String, Vec<u8>>,
    due: BTreeMap<String, u64>,
}

/// The code, x, y of one fire op's answer.
type Answer = (u64, u64, u64);

impl ScheduleModel {
    /// No schedules; ticks fire at most `batch` schedules (`SchedulerBuilder::batch`), and
    /// name `key` (the scheduler's `keys()[0]`) for the ones they park.
    pub fn new(batch: usize, key: &str) -> Self {
        Self {
            batch,
            key: key.to_owned(),
            records: BTreeMap::new(),
            due: BTreeMap::new(),
        }
    }

    /// The whole state.
    pub fn dump(&self) -> ScheduleDump {
        let mut due: Vec<(String, u64)> = self.due.iter().map(|(k, t)| (k.clone(), *t)).collect();
        due.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        ScheduleDump {
            records: self.records.clone(),
            due,
        }
    }

    /// `Scheduler::upsert` at `now`.
    pub fn upsert(&mut self, now: u64, name: &str, schedule: &Schedule) -> Result<Upserted> {
        validate_name("schedule", name)?;
        schedule.validate()?;
        let mut rec = schedule.record();
        let old = self
            .records
            .get(name)
            .and_then(|r| ScheduleRecord::decode(r));
        let kept = old
            .as_ref()
            .filter(|o| o.spec == schedule.spec())
            .and(self.due.get(name).copied());
        let next = match kept {
            Some(t) => t,
            None => schedule.every.first_after(now)?.ok_or_else(|| {
                let field = match schedule.every {
                    crate::Every::Interval(_) => "every",
                    crate::Every::Cron(_) => "cron",
                };
                CoreError::invalid_config(field, format!("no tick after {now} ms"))
            })?,
        };
        if let Some(o) = &old {
            rec[1..25].copy_from_slice(
                &[o.last, o.fired, o.missed]
                    .iter()
                    .flat_map(|n| n.to_le_bytes())
                    .collect::<Vec<u8>>(),
            );
        }
        let existed = self.records.insert(name.to_owned(), rec).is_some();
        self.due.insert(name.to_owned(), next);
        Ok(match (kept, existed) {
            (Some(_), _) => Upserted::Updated { next_ms: next },
            (None, true) => Upserted::Rescheduled { next_ms: next },
            (None, false) => Upserted::Created { next_ms: next },
        })
    }

    /// `Scheduler::remove`.
    pub fn remove(&mut self, name: &str) -> bool {
        self.due.remove(name);
        self.records.remove(name).is_some()
    }

    /// `Scheduler::list`.
    pub fn list(&self) -> Vec<ScheduleInfo> {
        self.records
            .iter()
            .map(|(name, raw)| info(name.clone(), raw, self.due.get(name).copied()))
            .collect()
    }

    /// The due read at `now`: the next tick of the others, and (name, record, tick) per due
    /// schedule (what `Scheduler::due_raw` answers).
    pub fn due(&self, now: u64) -> (Option<u64>, Vec<RawDue>) {
        let mut next = None;
        let mut out = Vec::new();
        for (name, tick) in self.dump().due.into_iter().take(self.batch + 1) {
            if tick > now {
                next = Some(tick);
                break;
            }
            if out.len() == self.batch {
                next = Some(now);
                break;
            }
            let rec = self.records.get(&name).cloned().unwrap_or_default();
            out.push((name, rec, Some(tick)));
        }
        (next, out)
    }

    /// The fire script at `now` (what `Scheduler::fire_raw` answers), its tasks enqueued into
    /// `queue`.
    pub fn fire(&mut self, queue: &mut QueueModel, now: u64, ops: &[RawFire]) -> Vec<Answer> {
        let mut seen = std::collections::BTreeSet::new();
        let mut answers = Vec::with_capacity(ops.len());
        let mut plans = Vec::with_capacity(ops.len());
        for op in ops {
            let rec = self.records.get(&op.name);
            let decoded = rec.and_then(|r| ScheduleRecord::decode(r));
            let tick = self.due.get(&op.name).copied();
            let stale = op.latest < op.tick
                || op.latest > now
                || (op.next != 0 && (op.next <= now || op.next <= op.latest || op.next >= EXACT))
                || (op.latest > op.tick) != (op.missed > 0)
                || op.missed >= 1 << 31;
            let answer = if !seen.insert(op.name.clone()) {
                (code::FIRE_ALREADY, tick.unwrap_or(0))
            } else if rec.is_none() {
                (code::FIRE_GONE, 0)
            } else if decoded.is_none() {
                (code::FIRE_MALFORMED, 0)
            } else if tick != Some(op.tick) {
                (code::FIRE_ALREADY, tick.unwrap_or(0))
            } else if op.latest == 0 {
                (code::FIRE_MALFORMED, 0)
            } else if decoded.as_ref().is_some_and(|d| d.spec != op.spec) {
                (code::FIRE_CHANGED, 0)
            } else if stale {
                (code::FIRE_STALE, 0)
            } else {
                (code::FIRE_FIRED, 0)
            };
            plans.push((answer.0, decoded));
            answers.push((answer.0, answer.1, 0));
        }
        for ((op, (status, decoded)), answer) in ops.iter().zip(plans).zip(&mut answers) {
            match status {
                code::FIRE_GONE | code::FIRE_MALFORMED => {
                    self.due.remove(&op.name);
                }
                code::FIRE_FIRED => {
                    let Some(d) = decoded else { continue };
                    let k = if d.catch_up && op.missed > 0 { 2 } else { 1 };
                    // The record's task, as the script writes it: a schedule's task decodes.
                    let Some(schedule) = d.schedule() else {
                        continue;
                    };
                    let batch = vec![schedule.task.clone(); k];
                    let ids = queue.enqueue(now, &batch);
                    let first = ids.first().map_or(0, |e| e.id().parse().unwrap_or(0));
                    *answer = (code::FIRE_FIRED, first, k as u64);
                    if op.next > 0 {
                        self.due.insert(op.name.clone(), op.next);
                    } else {
                        self.due.remove(&op.name);
                    }
                    if let Some(rec) = self.records.get_mut(&op.name) {
                        let counters = [op.latest, d.fired + k as u64, d.missed + op.missed];
                        let bytes: Vec<u8> =
                            counters.iter().flat_map(|n| n.to_le_bytes()).collect();
                        rec[1..25].copy_from_slice(&bytes);
                    }
                }
                _ => {}
            }
        }
        answers
    }

    /// `Scheduler::tick` at `now`.
    pub fn tick(&mut self, queue: &mut QueueModel, now: u64) -> Tick {
        let (next, due) = self.due(now);
        if due.is_empty() {
            return report(now, next, &[], &[], &self.key);
        }
        let ops = plan(now, &due);
        let answers = self.fire(queue, now, &ops);
        report(now, next, &ops, &answers, &self.key)
    }
}
