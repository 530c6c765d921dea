//! [`Schedule`]: a repeatable task — when it fires (a fixed interval or a cron expression, in
//! UTC), what it enqueues (a payload and [`TaskOptions`]) and what a missed tick gets
//! ([`Missed`]) — and the values a [`Scheduler`](crate::Scheduler) answers.

mod record;
mod ticks;

use std::time::Duration;

use coordkit_core::Error as CoreError;
use coordkit_core::time::duration_ms;

#[cfg_attr(
    not(any(feature = "testing", feature = "model")),
    allow(unreachable_pub)
)]
pub use record::{RawDue, RawFire};
pub(crate) use record::{ScheduleRecord, plan, report};

use crate::error::Result;
use crate::options::{MAX_DURATION_MS, TaskOptions};
use crate::types::NewTask;

/// The longest cron expression accepted, in bytes.
pub const MAX_CRON_BYTES: usize = 200;

/// When a schedule's ticks fall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Every {
    /// Every this long, on a grid from the Unix epoch (an hourly schedule ticks at the top of
    /// each UTC hour, whenever it was created): 1 ms to 2^35 ms.
    Interval(Duration),
    /// A cron expression, in UTC: five fields (minute hour day-of-month month day-of-week) or
    /// six with seconds first, as [croner](https://docs.rs/croner) reads them (ranges, steps,
    /// names, `L`, `#`, `W`, `@daily` …).
    Cron(String),
}

/// What a tick that no scheduler fired in time gets — one whose next tick was due too when a
/// scheduler came to fire it (no scheduler ran, or all were stalled, for a whole period).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Missed {
    /// Missed ticks are skipped: only the latest due tick fires. After an outage of any length
    /// the schedule enqueues one task, then goes on. The default.
    #[default]
    Skip,
    /// One catch-up: one task stands for all the missed ticks (however many), enqueued just
    /// before the task of the latest due tick; then the schedule goes on.
    CatchUp,
}

/// A repeatable task, built by [`Schedule::every`] or [`Schedule::cron`] and stored by
/// [`Scheduler::upsert`](crate::Scheduler::upsert).
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub(crate) every: Every,
    pub(crate) missed: Missed,
    pub(crate) task: NewTask,
}

/// Builds a [`Schedule`]: [`ScheduleBuilder::build`] validates it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleBuilder {
    schedule: Schedule,
}

impl Schedule {
    /// A schedule that ticks every `interval` (1 ms to 2^35 ms), on a grid from the Unix epoch.
    pub fn every(interval: Duration) -> ScheduleBuilder {
        Self::builder(Every::Interval(interval))
    }

    /// A schedule that ticks when the cron expression `expr` matches, in UTC.
    pub fn cron(expr: impl Into<String>) -> ScheduleBuilder {
        Self::builder(Every::Cron(expr.into()))
    }

    fn builder(every: Every) -> ScheduleBuilder {
        ScheduleBuilder {
            schedule: Schedule {
                every,
                missed: Missed::Skip,
                task: NewTask::new(Vec::new()),
            },
        }
    }

    /// When it ticks.
    pub fn ticks(&self) -> &Every {
        &self.every
    }

    /// What a missed tick gets.
    pub fn missed(&self) -> Missed {
        self.missed
    }

    /// The task each tick enqueues.
    pub fn task(&self) -> &NewTask {
        &self.task
    }

    /// Checks everything; the error names the setter at fault.
    pub(crate) fn validate(&self) -> Result<()> {
        match &self.every {
            Every::Interval(d) => {
                if !(1..=MAX_DURATION_MS).contains(&duration_ms(*d)) {
                    return Err(CoreError::invalid_config(
                        "every",
                        format!("the interval must be 1 ms to 2^35 ms, got {d:?}"),
                    )
                    .into());
                }
            }
            Every::Cron(expr) => {
                if expr.len() > MAX_CRON_BYTES {
                    return Err(CoreError::invalid_config(
                        "cron",
                        format!("at most {MAX_CRON_BYTES} bytes, got {}", expr.len()),
                    )
                    .into());
                }
                ticks::parse(expr)?;
            }
        }
        let options = &self.task.options;
        options.validate()?;
        if options.idempotency.is_some() {
            return Err(CoreError::invalid_config(
                "task",
                "a schedule's task takes no idempotency key: each tick fires once already, and \
                 a key would drop the ticks within its TTL",
            )
            .into());
        }
        Ok(())
    }
}

impl ScheduleBuilder {
    /// What a missed tick gets (default [`Missed::Skip`]).
    pub fn missed(mut self, missed: Missed) -> Self {
        self.schedule.missed = missed;
        self
    }

    /// The task each tick enqueues: its payload and options (default: an empty payload with
    /// [`TaskOptions::default`]). Its options' delay delays each task from its tick's firing;
    /// an idempotency key is refused.
    pub fn task(mut self, task: NewTask) -> Self {
        self.schedule.task = task;
        self
    }

    /// The task's payload as JSON, with `options`.
    pub fn task_json<T: serde::Serialize + ?Sized>(
        self,
        value: &T,
        options: TaskOptions,
    ) -> Result<Self> {
        Ok(self.task(NewTask::json(value)?.options(options)))
    }

    /// Validates the schedule: an interval out of range is
    /// [`Error::InvalidConfig`](coordkit_core::Error::InvalidConfig) naming `every`, a cron
    /// expression that does not parse or never fires names `cron`, the task's options name
    /// theirs (an idempotency key names `task`).
    pub fn build(self) -> Result<Schedule> {
        self.schedule.validate()?;
        Ok(self.schedule)
    }
}

/// What [`Scheduler::upsert`](crate::Scheduler::upsert) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// A new schedule, first due at `next_ms`.
    Created {
        /// Its first tick (server time, ms).
        next_ms: u64,
    },
    /// Its ticks changed (or its stored record did not decode): armed again from the first
    /// tick after now.
    Rescheduled {
        /// Its next tick.
        next_ms: u64,
    },
    /// Its ticks are the same: its next tick and counters are kept, its task and missed-tick
    /// policy replaced.
    Updated {
        /// Its next tick.
        next_ms: u64,
    },
}

impl Upserted {
    /// The schedule's next tick (server time, ms).
    pub fn next_ms(&self) -> u64 {
        match self {
            Upserted::Created { next_ms }
            | Upserted::Rescheduled { next_ms }
            | Upserted::Updated { next_ms } => *next_ms,
        }
    }
}

/// One schedule as [`Scheduler::list`](crate::Scheduler::list) reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleInfo {
    /// Its name.
    pub name: String,
    /// Its definition; `None` when the stored record does not decode (`raw_record` holds it).
    pub schedule: Option<Schedule>,
    /// Its next tick (server time, ms); `None`: it fires no more (a cron expression without
    /// further matches, or a record that did not decode, parked until upserted again).
    pub next_ms: Option<u64>,
    /// The latest tick it fired.
    pub last_fired_ms: Option<u64>,
    /// Tasks it enqueued (catch-ups included).
    pub fired: u64,
    /// Ticks that were not fired on time: skipped, or folded into a catch-up.
    pub missed: u64,
    /// The stored record's bytes when they do not decode.
    pub raw_record: Option<Vec<u8>>,
}

/// What one [`Scheduler::tick`](crate::Scheduler::tick) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    /// The server time of the firing.
    pub now_ms: u64,
    /// The schedules this call fired.
    pub fired: Vec<Fired>,
    /// Schedules whose stored record (or tick) does not decode: parked, out of the due index,
    /// their record kept in the schedules key for an operator; upserting one re-arms it.
    pub parked: Vec<Parked>,
    /// When to tick next (server time, ms): the earliest next tick of any schedule, or `now_ms`
    /// when this call left work (more due schedules than one call fires, a firing to retry).
    /// `None`: the queue has no armed schedule.
    pub next_ms: Option<u64>,
}

/// One schedule fired by a [`Tick`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// The schedule's name.
    pub schedule: String,
    /// The tick fired (the latest one due).
    pub tick_ms: u64,
    /// The tasks enqueued: the catch-up first when there is one, then the tick's.
    pub tasks: Vec<String>,
    /// Ticks before `tick_ms` that no one fired on time (skipped, or folded into the
    /// catch-up).
    pub missed: u64,
}

/// A schedule whose stored data does not decode, parked by a [`Tick`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    /// The schedule's name.
    pub schedule: String,
    /// The key that holds its record.
    pub key: String,
}
