//! [`Scheduler`]: a queue's schedules — upsert, remove, list — and their firing, by
//! [`Scheduler::tick`] or by a [`SchedulerRunner`] that ticks whenever the next tick is due.
//!
//! Schedules live with the queue, under its hash tag: `schedules` (hash name → record) and
//! `sched_due` (zset name → next tick). A tick reads the due schedules, computes in Rust where
//! their ticks fall (a cron expression needs a parser), and fires them with one script that
//! compares each schedule's next tick with the one read and moves it on in the same call:
//! however many schedulers tick, each tick enqueues its task once.

mod runner;

use std::sync::Arc;
use std::time::Duration;

use coordkit_core::redis::Value;
use coordkit_core::wire::{Packed, Reply};
use coordkit_core::{Error as CoreError, Invocation, Key, KeyKind, Script, validate_name};

pub use runner::SchedulerRunner;

use crate::code;
use crate::error::{QueueError, Result, bad_answer};
use crate::queue::{EXACT, Queue, some};
use crate::schedule::{
    RawDue, RawFire, Schedule, ScheduleInfo, ScheduleRecord, Tick, Upserted, plan, report,
};
use crate::scripts;

/// The most due schedules one tick fires (the setter's bound).
const MAX_SCHEDULER_BATCH: usize = 1_000;

/// The schedules of one queue, built by [`Scheduler::builder`]. Cheap to clone (an `Arc`
/// inside).
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Queue,
    keys: [Key; 2],
    batch: usize,
    max_sleep: Duration,
}

impl std::fmt::Debug for Scheduler {
    /// The queue's name and the schedules' keys (never the pool).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("queue", &self.inner.queue.name())
            .field("keys", &self.inner.keys)
            .finish()
    }
}

/// Builds a [`Scheduler`]: from [`Scheduler::builder`], setters, then
/// [`SchedulerBuilder::build`].
#[derive(Debug, Clone)]
pub struct SchedulerBuilder {
    queue: Queue,
    batch: usize,
    max_sleep: Duration,
}

impl Scheduler {
    /// A builder for the schedules of `queue`, every setting at its default.
    pub fn builder(queue: &Queue) -> SchedulerBuilder {
        SchedulerBuilder {
            queue: queue.clone(),
            batch: 100,
            max_sleep: Duration::from_secs(60),
        }
    }
}

impl SchedulerBuilder {
    /// How many due schedules one tick fires at most (1 to 1,000; default 100); more are fired
    /// by the next tick, at once.
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n;
        self
    }

    /// The longest a [`SchedulerRunner`] sleeps between two ticks (10 ms to 1 hour; default
    /// 60 s). It sleeps until the next tick and wakes when a schedule is upserted; this bounds
    /// the drift of a long sleep on the local timer from the server's clock.
    pub fn max_sleep(mut self, d: Duration) -> Self {
        self.max_sleep = d;
        self
    }

    /// Validates the settings: one out of range is
    /// [`Error::InvalidConfig`](coordkit_core::Error::InvalidConfig) naming its setter.
    pub fn build(self) -> Result<Scheduler> {
        if !(1..=MAX_SCHEDULER_BATCH).contains(&self.batch) {
            return Err(CoreError::invalid_config("batch", "must be 1 to 1000").into());
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(3_600)).contains(&self.max_sleep) {
            return Err(CoreError::invalid_config("max_sleep", "must be 10 ms to 1 hour").into());
        }
        let keys = [
            self.queue.key("schedules", KeyKind::Hash),
            self.queue.key("sched_due", KeyKind::ZSet),
        ];
        Ok(Scheduler {
            inner: Arc::new(Inner {
                queue: self.queue,
                keys,
                batch: self.batch,
                max_sleep: self.max_sleep,
            }),
        })
    }
}

impl Scheduler {
    /// The queue its schedules enqueue into.
    pub fn queue(&self) -> &Queue {
        &self.inner.queue
    }

    /// Its keys (for operators and tests): `schedules` (hash name → record), `sched_due`
    /// (zset name → next tick).
    pub fn keys(&self) -> &[Key] {
        &self.inner.keys
    }

    fn call(&self, script: &'static Script) -> Invocation<'static> {
        let mut call = self.inner.queue.call(script);
        for key in &self.inner.keys {
            call.key(key);
        }
        call
    }

    /// Creates the schedule `name` or replaces its definition. A schedule whose ticks are the
    /// same (the same interval or cron expression) keeps its next tick and counters, so every
    /// process may upsert its schedules when it starts; one with new ticks is armed from its
    /// first tick after now (server time). Wakes the queue's [`SchedulerRunner`]s.
    ///
    /// A bad name is [`Error::InvalidName`](coordkit_core::Error::InvalidName); a payload over
    /// the queue's limit [`QueueError::PayloadTooLarge`]; a cron expression with no match
    /// after now [`Error::InvalidConfig`](coordkit_core::Error::InvalidConfig) naming `cron`.
    pub async fn upsert(&self, name: &str, schedule: &Schedule) -> Result<Upserted> {
        validate_name("schedule", name)?;
        schedule.validate()?;
        let max = self.inner.queue.inner_config().max_payload_bytes;
        let len = schedule.task.payload.len();
        if len > max {
            return Err(QueueError::PayloadTooLarge { index: 0, len, max });
        }
        self.inner.queue.registered().await?;
        let record = schedule.record();
        let mut first = 0;
        // A first tick computed from one call's `now` can fall behind the next call's only
        // when a tick passes between the two: a few rounds at most.
        for _ in 0..5 {
            let mut call = self.call(&scripts::SCHEDULE_SET);
            call.arg(name).arg(record.as_slice()).arg(first);
            let answer: Value = call.invoke(self.inner.queue.inner_pool()).await?;
            let r = Reply::array(scripts::SCHEDULE_SET.name(), &answer)?;
            let (status, next, now) = (r.u64(0, "status")?, r.u64(1, "next")?, r.u64(2, "now")?);
            match status {
                code::SET_CREATED => return Ok(Upserted::Created { next_ms: next }),
                code::SET_RESCHEDULED => return Ok(Upserted::Rescheduled { next_ms: next }),
                code::SET_UPDATED => return Ok(Upserted::Updated { next_ms: next }),
                code::SET_STALE => {
                    first = schedule.every.first_after(now)?.ok_or_else(|| {
                        let field = match schedule.every {
                            crate::Every::Interval(_) => "every",
                            crate::Every::Cron(_) => "cron",
                        };
                        QueueError::from(CoreError::invalid_config(
                            field,
                            format!("no tick after {now} ms"),
                        ))
                    })?;
                }
                other => return Err(bad_answer("schedule_set", format!("status {other}"))),
            }
        }
        Err(bad_answer(
            "schedule_set",
            "the first tick kept falling behind now",
        ))
    }

    /// Removes the schedule `name` (the tasks it enqueued stay); whether there was one.
    pub async fn remove(&self, name: &str) -> Result<bool> {
        validate_name("schedule", name)?;
        let mut call = self.call(&scripts::SCHEDULE_REMOVE);
        call.arg(name);
        let n: u64 = call.invoke(self.inner.queue.inner_pool()).await?;
        Ok(n > 0)
    }

    /// Every schedule of the queue, by name. A record that does not decode is listed with its
    /// bytes ([`ScheduleInfo::raw_record`]) and no definition.
    pub async fn list(&self) -> Result<Vec<ScheduleInfo>> {
        let answer: Value = self
            .call(&scripts::SCHEDULE_LIST)
            .invoke(self.inner.queue.inner_pool())
            .await?;
        let r = Reply::array(scripts::SCHEDULE_LIST.name(), &answer)?;
        let recs = r.list(1, "records")?;
        let ticks = r.list(2, "ticks")?;
        let mut next = std::collections::BTreeMap::new();
        for i in (0..ticks.len().saturating_sub(1)).step_by(2) {
            let tick = ticks.text(i + 1, "tick")?.parse::<f64>().ok();
            next.insert(ticks.text(i, "name")?.to_owned(), tick.and_then(whole));
        }
        let mut out = Vec::new();
        for i in (0..recs.len().saturating_sub(1)).step_by(2) {
            let name = String::from_utf8_lossy(recs.bytes(i, "name")?).into_owned();
            let raw = recs.bytes(i + 1, "record")?;
            let next_ms = next.get(&name).copied().flatten();
            out.push(info(name, raw, next_ms));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Fires what is due now: for each due schedule (at most [`SchedulerBuilder::batch`]), its
    /// latest due tick, once however many schedulers tick at the same time, and with
    /// [`Missed::CatchUp`](crate::Missed::CatchUp) one task for the ticks missed before it.
    /// Two round trips (three scripts' worth when nothing is due: one). The answer says when
    /// to tick next.
    pub async fn tick(&self) -> Result<Tick> {
        let (now, next, due) = self.due().await?;
        if due.is_empty() {
            return Ok(report(now, next, &[], &[], self.inner.keys[0].as_str()));
        }
        let ops = plan(now, &due);
        let (now, answers) = self.fire(&ops).await?;
        Ok(report(
            now,
            next,
            &ops,
            &answers,
            self.inner.keys[0].as_str(),
        ))
    }

    /// The due schedules as the due script answers them: now, the next tick of the others, and
    /// (name, record, tick) per due schedule (feature `testing`).
    #[cfg(feature = "testing")]
    pub async fn due_raw(&self) -> Result<(u64, Option<u64>, Vec<RawDue>)> {
        self.due().await
    }

    /// Sends fire ops as given (feature `testing`: a scheduler that read long ago); answers the
    /// script's now and (code, x, y) per op.
    #[cfg(feature = "testing")]
    pub async fn fire_raw(&self, ops: &[RawFire]) -> Result<(u64, Vec<(u64, u64, u64)>)> {
        self.fire(ops).await
    }

    async fn due(&self) -> Result<(u64, Option<u64>, Vec<RawDue>)> {
        let mut call = self.call(&scripts::SCHEDULE_DUE);
        call.arg(self.inner.batch);
        let answer: Value = call.invoke(self.inner.queue.inner_pool()).await?;
        let r = Reply::array(scripts::SCHEDULE_DUE.name(), &answer)?;
        if r.len() < 2 || (r.len() - 2) % 3 != 0 {
            return Err(bad_answer("schedule_due", format!("{} items", r.len())));
        }
        let now = r.u64(0, "now")?;
        let next = some(r.i64(1, "next")?);
        let mut due = Vec::with_capacity((r.len() - 2) / 3);
        for i in (2..r.len()).step_by(3) {
            let name = String::from_utf8_lossy(r.bytes(i, "name")?).into_owned();
            let rec = r.bytes(i + 1, "record")?.to_vec();
            due.push((name, rec, some(r.i64(i + 2, "tick")?)));
        }
        Ok((now, next, due))
    }

    async fn fire(&self, ops: &[RawFire]) -> Result<(u64, Vec<(u64, u64, u64)>)> {
        let mut call = self.call(&scripts::SCHEDULE_FIRE);
        let packed = ops.iter().fold(Packed::new(), |p, op| {
            p.u64_le(op.tick)
                .u64_le(op.latest)
                .u64_le(op.next)
                .u64_le(op.missed)
        });
        call.arg(ops.len()).arg(packed.into_bytes());
        for op in ops {
            call.arg(op.name.as_str());
        }
        for op in ops {
            call.arg(op.spec.as_slice());
        }
        let answer: Value = call.invoke(self.inner.queue.inner_pool()).await?;
        let r = Reply::array(scripts::SCHEDULE_FIRE.name(), &answer)?;
        if r.len() != 1 + 3 * ops.len() {
            return Err(bad_answer(
                "schedule_fire",
                format!("{} items for {} ops", r.len(), ops.len()),
            ));
        }
        let answers = (0..ops.len())
            .map(|i| {
                Ok((
                    r.u64(1 + 3 * i, "status")?,
                    r.u64(2 + 3 * i, "x")?,
                    r.u64(3 + 3 * i, "y")?,
                ))
            })
            .collect::<coordkit_core::Result<_>>()?;
        Ok((r.u64(0, "now")?, answers))
    }
}

/// A stored tick (a sorted-set score) as a whole number of ms in bounds.
fn whole(t: f64) -> Option<u64> {
    (t.fract() == 0.0 && (0.0..EXACT as f64).contains(&t)).then_some(t as u64)
}

/// One schedule's info from its stored record and next tick.
pub(crate) fn info(name: String, raw: &[u8], next_ms: Option<u64>) -> ScheduleInfo {
    let decoded = ScheduleRecord::decode(raw);
    let schedule = decoded.as_ref().and_then(ScheduleRecord::schedule);
    let raw_record = schedule.is_none().then(|| raw.to_vec());
    let (last, fired, missed) = decoded.map_or((0, 0, 0), |r| (r.last, r.fired, r.missed));
    ScheduleInfo {
        name,
        schedule,
        next_ms,
        last_fired_ms: (last > 0).then_some(last),
        fired,
        missed,
        raw_record,
    }
}
