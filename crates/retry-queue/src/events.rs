//! [`QueueEvents`]: a typed subscription to one queue's events, from [`Queue::events`].

use coordkit_core::{Event, EventStream, Selected};
use serde::Deserialize;

use crate::error::Result;
use crate::queue::Queue;

/// The kinds of event a queue's scripts publish (each on `<ns>:events:queue:<kind>`).
const KINDS: [&str; 11] = [
    "retry_scheduled",
    "dead_lettered",
    "stalled",
    "requeued",
    "succeeded",
    "paused",
    "resumed",
    "scheduled",
    "unscheduled",
    "fired",
    "progress",
];

/// One event of a queue, published by the script that made the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEvent {
    /// When it happened (server time, ms).
    pub at_ms: u64,
    /// What happened.
    pub kind: QueueEventKind,
}

/// What happened to a task, or to the queue.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum QueueEventKind {
    /// It failed and will run again at `due_ms`.
    RetryScheduled {
        /// The task's id.
        task: String,
        /// Failures so far.
        attempt: u32,
        /// The backoff chosen.
        delay_ms: u64,
        /// When it is due again.
        due_ms: u64,
        /// Whether it stays leased to the worker that failed it, which runs it again at
        /// `due_ms` (a retry in place), rather than waiting in the delayed set.
        #[serde(default)]
        in_place: bool,
    },
    /// It went to the dead-letter queue (`exhausted`, `stalled`, `malformed`, or a handler's
    /// reason).
    DeadLettered {
        /// The task's id.
        task: String,
        /// Why.
        reason: String,
        /// Failures so far.
        attempts: u32,
        /// Lost leases so far.
        stalls: u32,
    },
    /// Its lease ran out and it was handed back (a stall).
    Stalled {
        /// The task's id.
        task: String,
        /// Lost leases so far.
        stalls: u32,
    },
    /// An operator put it back from the dead-letter queue.
    Requeued {
        /// The task's id.
        task: String,
        /// Whether its attempts were reset.
        reset: bool,
    },
    /// It was acknowledged: every task, with
    /// [`succeeded_events`](crate::QueueBuilder::succeeded_events) on; a task acknowledged
    /// with a result, always (what wakes [`TaskHandle::wait`](crate::TaskHandle::wait)).
    Succeeded {
        /// The task's id.
        task: String,
        /// The attempt that succeeded.
        attempt: u32,
    },
    /// A handler reported progress ([`Queue::progress`](crate::Queue::progress)).
    Progress {
        /// The task's id.
        task: String,
        /// What the handler reported.
        progress: serde_json::Value,
    },
    /// An operator paused the queue: no task of it is claimed until it resumes.
    Paused {},
    /// An operator resumed the queue.
    Resumed {},
    /// A schedule was created or updated ([`Scheduler::upsert`](crate::Scheduler::upsert)).
    Scheduled {
        /// The schedule's name.
        schedule: String,
        /// Its next tick (server time, ms).
        next_ms: u64,
    },
    /// A schedule was removed.
    Unscheduled {
        /// The schedule's name.
        schedule: String,
    },
    /// A schedule's tick enqueued a task.
    Fired {
        /// The schedule's name.
        schedule: String,
        /// The tick (for a catch-up, the first missed tick).
        tick_ms: u64,
        /// The task enqueued.
        task: String,
        /// Whether it is the catch-up for missed ticks.
        catch_up: bool,
    },
}

/// A subscription to one queue's events, on its own connection; it resubscribes after the
/// connection drops (events published meanwhile are missed: the queue's state is the truth,
/// [`Queue::stats`] and [`Queue::inspect`] read it). Every queue of a namespace publishes on
/// the same channels; this one keeps its own queue's events. Each kind has its own channel, so
/// on a cluster events of different kinds may arrive out of order (`at_ms` tells).
pub type QueueEvents = EventStream<QueueEvent>;

/// The queue `name`'s event, typed.
fn typed(name: &str, event: Event<serde_json::Value>) -> Selected<QueueEvent> {
    if !event.is_from(crate::code::SOURCE, name) {
        return Selected::Other;
    }
    // The kind is the envelope's; the payload holds the fields.
    let mut payload = event.payload;
    let tagged = serde_json::json!({ event.kind.clone(): payload.take() });
    match serde_json::from_value::<QueueEventKind>(tagged) {
        Ok(kind) => Selected::Event(QueueEvent {
            at_ms: event.ts_ms,
            kind,
        }),
        Err(_) => Selected::Undecodable,
    }
}

impl Queue {
    /// Subscribes to this queue's events: retries scheduled, dead letters, stalls, requeues,
    /// progress reports and successes (see [`QueueEventKind::Succeeded`]), typed. Subscribe before the work whose events you want.
    pub async fn events(&self) -> Result<QueueEvents> {
        let mut builder = self.pool().subscriber();
        for kind in KINDS {
            builder = builder.channel(self.channel(kind));
        }
        let subscriber = builder.subscribe().await?;
        let name = self.name().to_owned();
        Ok(EventStream::new(subscriber, move |received| {
            typed(&name, received.event)
        }))
    }
}
