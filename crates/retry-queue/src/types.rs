//! The values a queue takes and answers: tasks to enqueue, leased tasks, claims, settle
//! operations and their outcomes, stats, dead letters, a task's full state.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{QueueError, Result};
use crate::options::TaskOptions;

/// The longest error text kept per failure, in bytes (longer ones are cut).
pub const MAX_ERROR_BYTES: usize = 2_000;

/// Most tasks one enqueue, claim or settle script handles; larger batches are split.
pub const MAX_BATCH: usize = 500;

/// A task to enqueue: its payload and [`TaskOptions`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub(crate) payload: Vec<u8>,
    pub(crate) options: TaskOptions,
}

impl NewTask {
    /// A task with these payload bytes and the default options.
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        Self {
            payload: payload.into(),
            options: TaskOptions::default(),
        }
    }

    /// A task whose payload is `value` as JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        let payload = serde_json::to_vec(value).map_err(QueueError::Encode)?;
        Ok(Self::new(payload))
    }

    /// Sets its options.
    pub fn options(mut self, options: TaskOptions) -> Self {
        self.options = options;
        self
    }

    /// Its payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
}

/// The answer to one enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Enqueued under this id.
    New(String),
    /// Not enqueued: a task with the same idempotency key was enqueued within its TTL; its id.
    Duplicate(String),
}

impl Enqueued {
    /// The task's id (the new one, or the one already enqueued).
    pub fn id(&self) -> &str {
        match self {
            Enqueued::New(id) | Enqueued::Duplicate(id) => id,
        }
    }

    /// Whether it was a duplicate.
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Enqueued::Duplicate(_))
    }

    /// A handle on the task in `queue`, to [`wait`](crate::TaskHandle::wait) for its result
    /// or its final failure (a duplicate's handle follows the task enqueued first).
    pub fn handle(&self, queue: &crate::Queue) -> crate::TaskHandle {
        queue.task(self.id())
    }
}

/// A task leased to the caller by [`Queue::claim`](crate::Queue::claim): settle it with its token before
/// `deadline_ms` (or extend the lease).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The task's id within its queue.
    pub id: String,
    /// The fencing token of this lease: settling with any other token answers
    /// [`Settled::LeaseLost`]. Tokens only grow.
    pub token: u64,
    /// When the lease runs out (server time, ms).
    pub deadline_ms: u64,
    /// Which attempt this is (1 for the first run; failures so far + 1).
    pub attempt: u32,
    /// How many times a lease on it ran out before.
    pub stalls: u32,
    /// The component it calls, if it names one.
    pub component: Option<String>,
    /// Its priority (0 to [`MAX_PRIORITY`](crate::MAX_PRIORITY)).
    pub priority: u8,
    /// Its group, if it names one.
    pub group: Option<String>,
    /// The payload.
    pub payload: Vec<u8>,
    /// When it was enqueued (server time, ms).
    pub enqueued_ms: u64,
}

impl Task {
    /// The payload decoded from JSON.
    pub fn json<T: DeserializeOwned>(&self) -> std::result::Result<T, serde_json::Error> {
        serde_json::from_slice(&self.payload)
    }
}

/// The answer to [`Queue::claim`](crate::Queue::claim).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The tasks leased (possibly none).
    pub tasks: Vec<Task>,
    /// The server time of the claim.
    pub now_ms: u64,
    /// When the earliest delayed task is due, if any.
    pub next_due_ms: Option<u64>,
    /// The earliest lease deadline, if any lease is held (when a stalled lease can be reclaimed).
    pub next_deadline_ms: Option<u64>,
    /// When the queue's rate limit lets the next task start, if this claim was held back by it.
    pub next_start_ms: Option<u64>,
}

impl Claim {
    /// How long until a claim may find work that is not ready now (a delayed task falls due, a
    /// lease runs out, the rate limit lets the next task start): what a worker waits for when
    /// nothing else wakes it.
    pub fn next_wakeup(&self) -> Option<Duration> {
        let at = [self.next_due_ms, self.next_deadline_ms, self.next_start_ms]
            .into_iter()
            .flatten()
            .min()?;
        Some(Duration::from_millis(at.saturating_sub(self.now_ms)))
    }
}

/// How to settle a leased task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// It succeeded: remove it.
    Ack,
    /// It succeeded with this result (the worker stores its handler's value as JSON): remove
    /// it, and keep the result for the queue's
    /// [`result_ttl`](crate::QueueBuilder::result_ttl) for
    /// [`TaskHandle::wait`](crate::TaskHandle::wait). At most the queue's
    /// [`max_payload_bytes`](crate::QueueBuilder::max_payload_bytes).
    AckWith(Vec<u8>),
    /// It failed with this error: retry after the backoff, or dead-letter it after its last
    /// attempt.
    Fail(String),
    /// Like [`Settle::Fail`], from a holder that can run the task again itself (the
    /// [`Worker`](crate::Worker) settles failures so): when the backoff is shorter than the
    /// queue's [`retry_in_place_below`](crate::QueueBuilder::retry_in_place_below), the task
    /// stays leased to this token and the answer is [`Settled::RetryingInPlace`]: run it again
    /// after its delay, then settle it again.
    FailInPlace(String),
    /// Put it back for this long without spending an attempt (a breaker is open, a rate limit).
    Defer(Duration),
    /// Dead-letter it now with this reason (`malformed`, …) and error.
    DeadLetter {
        /// Why (`malformed` for a payload that cannot be decoded).
        reason: String,
        /// The error text.
        error: String,
    },
}

/// What settling did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Acknowledged and removed.
    Acked,
    /// It failed and will be retried.
    RetryScheduled {
        /// Failures so far.
        attempts: u32,
        /// When it is due again (server time, ms).
        due_ms: u64,
    },
    /// It failed, and its backoff is shorter than the queue's
    /// [`retry_in_place_below`](crate::QueueBuilder::retry_in_place_below): it stays leased to
    /// the same token, its lease extended by the backoff, to be run again by the same holder
    /// after `delay_ms` (settle it again with the same task). If the holder dies, the lease
    /// runs out and the task is reclaimed with its attempts.
    RetryingInPlace {
        /// Failures so far.
        attempts: u32,
        /// How long to wait before running it again (ms).
        delay_ms: u64,
    },
    /// It went to the dead-letter queue.
    DeadLettered {
        /// Failures so far.
        attempts: u32,
    },
    /// Put back without spending an attempt.
    Deferred {
        /// When it is due again (server time, ms).
        due_ms: u64,
    },
    /// The token does not hold the lease: it ran out, and the task went back to the queue or
    /// to another holder. Nothing changed; the task will run (or runs) again.
    LeaseLost,
    /// The task was settled already: by this same lease (a second ack, fail, defer or
    /// dead-letter), or it is gone (acknowledged, by this or a later holder, or purged).
    /// Nothing changed.
    AlreadySettled,
}

/// Counts per state and the age of the oldest ready task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Tasks ready to be claimed.
    pub ready: u64,
    /// Tasks waiting for their due time (initial delay, retry backoff, deferral).
    pub delayed: u64,
    /// Tasks leased to a worker.
    pub leased: u64,
    /// Tasks in the dead-letter queue.
    pub dead: u64,
    /// Tasks acknowledged since the queue was created.
    pub completed: u64,
    /// Tasks dead-lettered since the queue was created.
    pub dead_lettered_total: u64,
    /// How long the oldest ready task has been ready (by server time).
    pub oldest_ready_age: Option<Duration>,
    /// When the earliest delayed task is due.
    pub next_due_ms: Option<u64>,
    /// The server time of the reading.
    pub now_ms: u64,
    /// Whether claims are paused ([`Queue::pause`](crate::Queue::pause)).
    pub paused: bool,
    /// The limits every worker's claims obey ([`Queue::set_limits`](crate::Queue::set_limits)).
    pub limits: crate::Limits,
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Ready to be claimed.
    Ready,
    /// Waiting for its due time.
    Delayed,
    /// Leased to a worker.
    Leased,
    /// In the dead-letter queue.
    Dead,
}

/// One recorded failure.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Failure {
    /// The attempt that failed.
    pub attempt: u32,
    /// When (server time, ms).
    #[serde(rename = "at")]
    pub at_ms: u64,
    /// The error text.
    pub error: String,
}

/// A dead-lettered task, as [`Queue::dead_letters`](crate::Queue::dead_letters) lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The task's id.
    pub id: String,
    /// When it was dead-lettered (server time, ms).
    pub dead_at_ms: u64,
    /// Why: `exhausted` (out of attempts), `stalled` (too many lost leases), `malformed`
    /// (undecodable payload), or the reason a caller gave.
    pub reason: String,
    /// Failures.
    pub attempts: u32,
    /// Lost leases.
    pub stalls: u32,
    /// When it was enqueued.
    pub enqueued_ms: u64,
    /// Its component.
    pub component: Option<String>,
    /// The stored record's bytes when they do not decode (it was dead-lettered as
    /// `malformed`, and the fields above are zero); `None` for a record that decodes.
    pub raw_record: Option<Vec<u8>>,
}

/// Everything about one task, from [`Queue::inspect`](crate::Queue::inspect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// The task's id.
    pub id: String,
    /// Where it is.
    pub state: TaskState,
    /// Due time (delayed), lease deadline (leased) or dead-letter time (dead).
    pub at_ms: Option<u64>,
    /// Failures so far.
    pub attempts: u32,
    /// Lost leases so far.
    pub stalls: u32,
    /// Its attempt budget.
    pub max_attempts: u32,
    /// When it was enqueued.
    pub enqueued_ms: u64,
    /// Its component.
    pub component: Option<String>,
    /// Its priority.
    pub priority: u8,
    /// Its group.
    pub group: Option<String>,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Its latest errors, oldest first.
    pub errors: Vec<Failure>,
    /// Why it was dead-lettered (dead tasks only).
    pub reason: Option<String>,
    /// The stored record's bytes when they do not decode (the fields above from the record
    /// are then zero or empty): such a task is dead-lettered as `malformed` when claimed.
    pub raw_record: Option<Vec<u8>>,
}
