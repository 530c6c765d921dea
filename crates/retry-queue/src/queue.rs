//! [`Queue`]: every operation of one named queue, each one EVALSHA of `lua/queue.lua`.

use std::sync::Arc;
use std::time::Duration;

use coordkit_core::redis::Value;
use coordkit_core::time::duration_ms;
use coordkit_core::wire::{Packed, Reply};
use coordkit_core::{Invocation, Key, KeyKind, Keyspace, Pool, Script};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::code;
use crate::config::QueueConfig;
use crate::error::{QueueError, Result, bad_answer};
use crate::options::TaskOptions;

static QUEUE: Script = Script::new("retry-queue", include_str!("../lua/queue.lua"));

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
}

/// A task leased to the caller by [`Queue::claim`]: settle it with its token before
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

/// The answer to [`Queue::claim`].
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
}

impl Claim {
    /// How long until a claim may find work that is not ready now (a delayed task falls due or
    /// a lease runs out): what a worker waits for when nothing else wakes it.
    pub fn next_wakeup(&self) -> Option<Duration> {
        let at = match (self.next_due_ms, self.next_deadline_ms) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(Duration::from_millis(at.saturating_sub(self.now_ms)))
    }
}

/// How to settle a leased task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// It succeeded: remove it.
    Ack,
    /// It failed with this error: retry after the backoff, or dead-letter it after its last
    /// attempt.
    Fail(String),
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

/// One settle operation with its jitter draw, as the script takes it.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSettle {
    pub id: String,
    pub token: u64,
    pub settle: Settle,
    pub draw: u32,
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

/// A dead-lettered task, as [`Queue::dead_letters`] lists it.
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

/// Everything about one task, from [`Queue::inspect`].
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

/// A task's stored record, decoded (see `lua/queue.lua`: a fixed 48-byte head, of which the
/// script writes the first 32 bytes and Rust the other 16, then the policy, the component and
/// the payload). Decoding checks the lengths only; the script also
/// bounds the numbers it uses.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Failures so far.
    pub attempts: u32,
    /// Lost leases so far.
    pub stalls: u32,
    /// The last backoff delay chosen (ms).
    pub prev: u64,
    /// When it became (or becomes) ready, or was dead-lettered.
    pub since: u64,
    /// When it was enqueued.
    pub enqueued: u64,
    /// Its attempt budget.
    pub max: u32,
    /// Its lease length (ms).
    pub lease: u64,
    /// Its backoff policy as the script reads it.
    pub policy: Vec<u8>,
    /// Its component.
    pub component: Option<String>,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// The length of a record's fixed head (`HDR` in `lua/queue.lua`).
const HEAD: usize = 48;
/// The part of the head the script writes, from offset 0: attempts, stalls, last delay,
/// since, enqueued. Rust writes the rest, from offset 32 (see [`tail`]).
const SCRIPT_HEAD: usize = 32;

fn le_u64(b: &[u8], at: usize, len: usize) -> u64 {
    let mut v = [0u8; 8];
    v[..len].copy_from_slice(&b[at..at + len]);
    u64::from_le_bytes(v)
}

impl Record {
    /// Decodes a stored record.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < HEAD {
            return None;
        }
        let plen = le_u64(b, SCRIPT_HEAD + 12, 2) as usize;
        let clen = le_u64(b, SCRIPT_HEAD + 14, 2) as usize;
        if b.len() < HEAD + plen + clen {
            return None;
        }
        let component = String::from_utf8_lossy(&b[HEAD + plen..HEAD + plen + clen]);
        Some(Self {
            attempts: le_u64(b, 0, 4) as u32,
            stalls: le_u64(b, 4, 4) as u32,
            prev: le_u64(b, 8, 8),
            since: le_u64(b, 16, 8),
            enqueued: le_u64(b, 24, 8),
            max: le_u64(b, SCRIPT_HEAD, 4) as u32,
            lease: le_u64(b, SCRIPT_HEAD + 4, 8),
            policy: b[HEAD..HEAD + plen].to_vec(),
            component: (clen > 0).then(|| component.into_owned()),
            payload: b[HEAD + plen + clen..].to_vec(),
        })
    }
}

/// The part of a record Rust writes: from offset [`SCRIPT_HEAD`] (32) to the end of the
/// [`HEAD`] (max I4, lease I8, policy length I2, component length I2), then the policy, the
/// component and the payload.
fn tail(max: u32, lease: u64, policy: &[u8], component: &str, payload: &[u8]) -> Vec<u8> {
    Packed::new()
        .bytes(&max.to_le_bytes())
        .u64_le(lease)
        .bytes(&(policy.len() as u16).to_le_bytes())
        .bytes(&(component.len() as u16).to_le_bytes())
        .bytes(policy)
        .bytes(component.as_bytes())
        .bytes(payload)
        .into_bytes()
}

/// Decodes a stored error history (oldest first).
#[doc(hidden)]
pub fn decode_errors(b: &[u8]) -> Option<Vec<Failure>> {
    let Some((&count, mut rest)) = b.split_first() else {
        return Some(Vec::new());
    };
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        if rest.len() < 14 {
            return None;
        }
        let len = le_u64(rest, 12, 2) as usize;
        let text = rest.get(14..14 + len)?;
        out.push(Failure {
            attempt: le_u64(rest, 0, 4) as u32,
            at_ms: le_u64(rest, 4, 8),
            error: String::from_utf8_lossy(text).into_owned(),
        });
        rest = &rest[14 + len..];
    }
    rest.is_empty().then_some(out)
}

/// The largest integer the scripts' numbers hold exactly (ids and tokens beyond it are none of
/// this queue's).
const EXACT: u64 = 1 << 53;

/// A task id as the scripts number it (`None`: not an id this queue hands out).
fn id_number(id: &str) -> Option<u64> {
    let n: u64 = id.parse().ok()?;
    (n < EXACT && n.to_string() == id).then_some(n)
}

struct Inner {
    pool: Pool,
    name: String,
    keys: Vec<Key>,
    config: QueueConfig,
    settings: Vec<u8>,
    wake_channel: String,
    channel_prefix: String,
}

/// One named queue, built by [`Queue::builder`]. Cheap to clone (an `Arc` inside); every
/// operation is one script call on one hash tag.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Queue {
    /// The name and keys (never the pool's address or credentials).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.inner.keys.iter().map(|k| k.as_str()).collect();
        f.debug_struct("Queue")
            .field("name", &self.inner.name)
            .field("keys", &keys)
            .finish()
    }
}

/// The suffixes of a queue's keys, in the scripts' `KEYS` order.
const KEYS: [(&str, KeyKind); 11] = [
    ("tasks", KeyKind::Hash),
    ("ready", KeyKind::List),
    ("delayed", KeyKind::ZSet),
    ("leased", KeyKind::ZSet),
    ("leases", KeyKind::Hash),
    ("dlq", KeyKind::ZSet),
    ("errors", KeyKind::Hash),
    ("dead", KeyKind::Hash),
    ("idem", KeyKind::Hash),
    ("idem_exp", KeyKind::ZSet),
    ("info", KeyKind::Hash),
];

impl Queue {
    /// The queue `name` under `keyspace` with validated settings.
    pub(crate) fn from_config(
        pool: Pool,
        keyspace: &Keyspace,
        name: &str,
        config: QueueConfig,
    ) -> Result<Self> {
        let instance = keyspace.instance("queue", name)?;
        let keys = KEYS
            .iter()
            .map(|(suffix, kind)| instance.typed_key(suffix, *kind))
            .collect();
        let any = keyspace.channel("queue", "x")?;
        let channel_prefix = any[..any.len() - 1].to_owned();
        let wake_channel = format!("{channel_prefix}wake:{name}");
        // The script's settings, one argument (see `lua/queue.lua`).
        let mut settings = Packed::new()
            .bytes(&[u8::from(config.succeeded_events)])
            .bytes(&config.max_stalls.to_le_bytes())
            .u64_le(config.dlq_max_count)
            .u64_le(duration_ms(config.dlq_max_age))
            .bytes(&[config.errors_kept as u8]);
        for s in [name, &channel_prefix, &wake_channel] {
            let len = u16::try_from(s.len()).map_err(|_| {
                coordkit_core::Error::invalid_config("name", "too long for the queue's channels")
            })?;
            settings = settings.bytes(&len.to_le_bytes()).bytes(s.as_bytes());
        }
        let settings = settings.into_bytes();
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                name: name.to_owned(),
                keys,
                config,
                settings,
                wake_channel,
                channel_prefix,
            }),
        })
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Its settings.
    pub fn config(&self) -> &QueueConfig {
        &self.inner.config
    }

    /// The pool it runs on.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The channel of one kind of its events (`retry_scheduled`, `dead_lettered`, `stalled`,
    /// `requeued`, `succeeded`); every queue of the namespace publishes there, the envelope's
    /// `entity` is the queue's name and `payload.task` the task's id.
    pub fn channel(&self, kind: &str) -> String {
        format!("{}{kind}", self.inner.channel_prefix)
    }

    /// The channel on which the scripts wake idle workers of this queue up (work became ready,
    /// or an earlier delayed task was scheduled).
    pub fn wake_channel(&self) -> &str {
        &self.inner.wake_channel
    }

    /// The queue's keys, in the scripts' `KEYS` order (for operators and tests): tasks, ready,
    /// delayed, leased, leases, dlq, errors, dead, idem, idem_exp, info.
    pub fn keys(&self) -> &[Key] {
        &self.inner.keys
    }

    fn call(&self, op: &str) -> Invocation<'static> {
        let mut call = QUEUE.prepare();
        for key in &self.inner.keys {
            call.key(key);
        }
        call.arg(op)
            .arg(self.inner.config.clock.arg())
            .arg(self.inner.settings.as_slice());
        call
    }

    /// Enqueues one task.
    pub async fn enqueue(&self, task: NewTask) -> Result<Enqueued> {
        let mut out = self.enqueue_batch(std::slice::from_ref(&task)).await?;
        out.pop().ok_or_else(|| bad_answer("enqueue", "no answer"))
    }

    /// Enqueues `value` as JSON with `options`.
    pub async fn enqueue_json<T: Serialize + ?Sized>(
        &self,
        value: &T,
        options: TaskOptions,
    ) -> Result<Enqueued> {
        self.enqueue(NewTask::json(value)?.options(options)).await
    }

    /// Enqueues a batch: one script per [`MAX_BATCH`] tasks, each batch all or nothing. The
    /// answers are in the tasks' order. Every task is checked first (its options, its payload
    /// against the queue's limit): one that fails the check fails the call with nothing
    /// enqueued.
    pub async fn enqueue_batch(&self, tasks: &[NewTask]) -> Result<Vec<Enqueued>> {
        let max = self.inner.config.max_payload_bytes;
        for (index, task) in tasks.iter().enumerate() {
            task.options.validate()?;
            if task.payload.len() > max {
                return Err(QueueError::PayloadTooLarge {
                    index,
                    len: task.payload.len(),
                    max,
                });
            }
        }
        let mut out = Vec::with_capacity(tasks.len());
        for chunk in tasks.chunks(MAX_BATCH) {
            let mut call = self.call("enqueue");
            let mut nums = Packed::new();
            let mut keys = Vec::new();
            for task in chunk {
                let o = &task.options;
                let ttl = match &o.idempotency {
                    Some((key, ttl)) => {
                        keys.push(key.as_str());
                        duration_ms(*ttl).max(1)
                    }
                    None => 0,
                };
                nums = nums.u64_le(duration_ms(o.delay)).u64_le(ttl);
            }
            call.arg(chunk.len()).arg(nums.into_bytes());
            for task in chunk {
                let o = &task.options;
                call.arg(tail(
                    o.max_attempts,
                    duration_ms(o.lease),
                    &o.policy(),
                    o.component.as_deref().unwrap_or(""),
                    &task.payload,
                ));
            }
            for key in keys {
                call.arg(key);
            }
            let answer: Value = call.invoke(&self.inner.pool).await?;
            out.extend(decode_enqueue(&answer, chunk.len())?);
        }
        Ok(out)
    }

    /// Leases up to `max` ready tasks (at most [`MAX_BATCH`]), after reclaiming expired leases
    /// and promoting due delayed tasks (each bounded per call).
    pub async fn claim(&self, max: usize) -> Result<Claim> {
        let c = &self.inner.config;
        let mut call = self.call("claim");
        call.arg(max.min(MAX_BATCH))
            .arg(c.promote_limit)
            .arg(c.reclaim_limit);
        let answer: Value = call.invoke(&self.inner.pool).await?;
        decode_claim(&answer, &self.inner.keys[0])
    }

    /// Settles leased tasks in one script; the answers are in the same order.
    pub async fn settle(&self, items: &[(&Task, Settle)]) -> Result<Vec<Settled>> {
        let ops: Vec<RawSettle> = items
            .iter()
            .map(|(task, settle)| RawSettle {
                id: task.id.clone(),
                token: task.token,
                settle: settle.clone(),
                draw: rand::random::<u32>() >> 16,
            })
            .collect();
        self.settle_raw(&ops).await
    }

    /// [`Queue::settle`] with given jitter draws (for the model tests).
    #[doc(hidden)]
    pub async fn settle_raw(&self, ops: &[RawSettle]) -> Result<Vec<Settled>> {
        let mut out = Vec::with_capacity(ops.len());
        for chunk in ops.chunks(MAX_BATCH) {
            // Ops on ids or tokens this queue never hands out hold no lease: not sent.
            let sent: Vec<(&RawSettle, u64)> = chunk
                .iter()
                .filter_map(|op| Some((op, id_number(&op.id)?)))
                .filter(|(op, _)| op.token < EXACT)
                .collect();
            let mut answers = Vec::new();
            if !sent.is_empty() {
                let mut call = self.call("settle");
                let mut packed = Packed::new();
                let mut texts: Vec<&str> = Vec::new();
                for (op, id) in &sent {
                    let (op_code, x) = match &op.settle {
                        Settle::Ack => (code::OP_ACK, 0),
                        Settle::Fail(error) => {
                            texts.push(cut(error));
                            (code::OP_FAIL, u64::from(op.draw.min(65_535)))
                        }
                        Settle::Defer(d) => (
                            code::OP_DEFER,
                            duration_ms(*d).min(crate::options::MAX_DURATION_MS),
                        ),
                        Settle::DeadLetter { reason, error } => {
                            texts.push(reason);
                            texts.push(cut(error));
                            (code::OP_DEAD_LETTER, 0)
                        }
                    };
                    packed = packed
                        .bytes(&[op_code])
                        .u64_le(*id)
                        .u64_le(op.token)
                        .u64_le(x);
                }
                call.arg(sent.len()).arg(packed.into_bytes());
                for text in texts {
                    call.arg(text);
                }
                let answer: Value = call.invoke(&self.inner.pool).await?;
                let reply = Reply::array("retry-queue", &answer)?;
                if reply.len() != sent.len() * 3 {
                    return Err(bad_answer(
                        "settle",
                        format!("{} numbers for {} ops", reply.len(), sent.len()),
                    ));
                }
                answers = (0..reply.len())
                    .map(|i| reply.u64(i, "status, attempts or due time"))
                    .collect::<coordkit_core::Result<_>>()?;
            }
            let mut answers = answers.chunks(3);
            let mut sent = sent.iter().peekable();
            for op in chunk {
                let mine = sent.peek().is_some_and(|(s, _)| std::ptr::eq(*s, op));
                if !mine {
                    out.push(Settled::LeaseLost);
                    continue;
                }
                sent.next();
                let a = answers.next().unwrap_or(&[code::SETTLED_LOST, 0, 0]);
                let (attempts, due_ms) = (u32::try_from(a[1]).unwrap_or(u32::MAX), a[2]);
                out.push(match a[0] {
                    code::SETTLED_ACKED => Settled::Acked,
                    code::SETTLED_RETRYING => Settled::RetryScheduled { attempts, due_ms },
                    code::SETTLED_DEAD_LETTERED => Settled::DeadLettered { attempts },
                    code::SETTLED_DEFERRED => Settled::Deferred { due_ms },
                    code::SETTLED_ALREADY => Settled::AlreadySettled,
                    _ => Settled::LeaseLost,
                });
            }
        }
        Ok(out)
    }

    async fn settle_one(&self, task: &Task, settle: Settle) -> Result<Settled> {
        let mut out = self.settle(&[(task, settle)]).await?;
        out.pop().ok_or_else(|| bad_answer("settle", "no answer"))
    }

    /// Acknowledges a task: it succeeded and is removed.
    pub async fn ack(&self, task: &Task) -> Result<Settled> {
        self.settle_one(task, Settle::Ack).await
    }

    /// Reports a failure: the task is retried after its backoff, or dead-lettered (reason
    /// `exhausted`) after its last attempt, with its error history.
    pub async fn fail(&self, task: &Task, error: impl Into<String>) -> Result<Settled> {
        self.settle_one(task, Settle::Fail(error.into())).await
    }

    /// Puts a task back for `delay` without spending an attempt.
    pub async fn defer(&self, task: &Task, delay: Duration) -> Result<Settled> {
        self.settle_one(task, Settle::Defer(delay)).await
    }

    /// Dead-letters a task now (for instance `malformed`, for a payload that cannot be decoded).
    pub async fn dead_letter(
        &self,
        task: &Task,
        reason: impl Into<String>,
        error: impl Into<String>,
    ) -> Result<Settled> {
        let settle = Settle::DeadLetter {
            reason: reason.into(),
            error: error.into(),
        };
        self.settle_one(task, settle).await
    }

    /// Extends a lease to `by` from now (`None`: the task's own lease length; at most
    /// [`MAX_DURATION_MS`](crate::MAX_DURATION_MS)). Answers the new deadline, or `None` when the
    /// lease is lost.
    pub async fn extend(&self, task: &Task, by: Option<Duration>) -> Result<Option<u64>> {
        let mut call = self.call("extend");
        let by = by.map(|d| {
            duration_ms(d)
                .clamp(1, crate::options::MAX_DURATION_MS)
                .to_string()
        });
        call.arg(&task.id)
            .arg(task.token)
            .arg(by.unwrap_or_default());
        let deadline: i64 = call.invoke(&self.inner.pool).await?;
        Ok(some(deadline))
    }

    /// Counts per state, totals, and the age of the oldest ready task.
    pub async fn stats(&self) -> Result<Stats> {
        let answer: Value = self.call("stats").invoke(&self.inner.pool).await?;
        let r = Reply::array("retry-queue", &answer)?;
        let now = r.u64(7, "now")?;
        let oldest_ready = some(r.i64(6, "oldest ready since")?);
        Ok(Stats {
            ready: r.u64(0, "ready")?,
            delayed: r.u64(1, "delayed")?,
            leased: r.u64(2, "leased")?,
            dead: r.u64(3, "dead")?,
            completed: r.u64(4, "completed")?,
            dead_lettered_total: r.u64(5, "dead-lettered total")?,
            oldest_ready_age: oldest_ready
                .map(|since| Duration::from_millis(now.saturating_sub(since))),
            next_due_ms: some(r.i64(8, "next due")?),
            now_ms: now,
        })
    }

    /// A page of the dead-letter queue, oldest first.
    pub async fn dead_letters(&self, offset: usize, limit: usize) -> Result<Vec<DeadLetter>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut call = self.call("dlq_list");
        call.arg(offset).arg(limit.min(10_000));
        let answer: Value = call.invoke(&self.inner.pool).await?;
        let r = Reply::array("retry-queue", &answer)?;
        if !r.len().is_multiple_of(4) {
            return Err(bad_answer("dlq_list", format!("{} items", r.len())));
        }
        (0..r.len() / 4)
            .map(|row| {
                let i = row * 4;
                let raw = r.bytes(i + 3, "record")?;
                let (m, raw_record) = match Record::decode(raw) {
                    Some(m) => (m, None),
                    None => (Record::default(), Some(raw.to_vec())),
                };
                Ok(DeadLetter {
                    id: lossy(r.bytes(i, "id")?),
                    dead_at_ms: r.u64(i + 1, "dead-letter time")?,
                    reason: lossy(r.bytes(i + 2, "reason")?),
                    attempts: m.attempts,
                    stalls: m.stalls,
                    enqueued_ms: m.enqueued,
                    component: m.component,
                    raw_record,
                })
            })
            .collect()
    }

    /// Everything about one task (in any state), or `None` when there is no such task (it was
    /// acknowledged or purged).
    pub async fn inspect(&self, id: &str) -> Result<Option<TaskInfo>> {
        let mut call = self.call("inspect");
        call.arg(id);
        let answer: Value = call.invoke(&self.inner.pool).await?;
        let r = Reply::array("retry-queue", &answer)?;
        if r.is_empty() {
            return Ok(None);
        }
        let state = match r.text(0, "state")? {
            "ready" => TaskState::Ready,
            "delayed" => TaskState::Delayed,
            "leased" => TaskState::Leased,
            "dead" => TaskState::Dead,
            other => return Err(bad_answer("inspect", format!("no state {other:?}"))),
        };
        let at = r.i64(1, "score")?;
        let raw = r.bytes(2, "record")?;
        let (record, raw_record) = match Record::decode(raw) {
            Some(record) => (record, None),
            None => (Record::default(), Some(raw.to_vec())),
        };
        // A history that does not decode is no reason to hide the task.
        let errors = decode_errors(r.bytes(3, "errors")?).unwrap_or_default();
        let reason = lossy(r.bytes(4, "reason")?);
        Ok(Some(TaskInfo {
            id: id.to_owned(),
            state,
            at_ms: some(at),
            attempts: record.attempts,
            stalls: record.stalls,
            max_attempts: record.max,
            enqueued_ms: record.enqueued,
            component: record.component,
            payload: record.payload,
            errors,
            reason: (!reason.is_empty()).then_some(reason),
            raw_record,
        }))
    }

    /// Puts these dead-lettered tasks back in the ready queue (`reset_attempts`: with a fresh
    /// attempt budget and no error history; otherwise an exhausted task gets one more attempt,
    /// and its stall count starts again). Answers the ids requeued (ids not in the DLQ are
    /// skipped).
    pub async fn requeue(&self, ids: &[&str], reset_attempts: bool) -> Result<Vec<String>> {
        let mut out = Vec::new();
        // (An empty id list would mean "the oldest" to the script.)
        for chunk in ids.chunks(MAX_BATCH) {
            let mut call = self.call("requeue");
            call.arg(if reset_attempts { "1" } else { "0" }).arg(0);
            for id in chunk {
                call.arg(*id);
            }
            let done: Vec<String> = call.invoke(&self.inner.pool).await?;
            out.extend(done);
        }
        Ok(out)
    }

    /// Requeues every dead-lettered task, oldest first, [`MAX_BATCH`] per script. Answers how
    /// many.
    pub async fn requeue_all(&self, reset_attempts: bool) -> Result<u64> {
        let mut total = 0;
        loop {
            let mut call = self.call("requeue");
            call.arg(if reset_attempts { "1" } else { "0" })
                .arg(MAX_BATCH);
            let done: Vec<String> = call.invoke(&self.inner.pool).await?;
            if done.is_empty() {
                return Ok(total);
            }
            total += done.len() as u64;
        }
    }

    /// Deletes these dead-lettered tasks for good. Answers how many were deleted.
    pub async fn purge(&self, ids: &[&str]) -> Result<u64> {
        let mut total = 0;
        // `chunks` yields nothing for an empty list (which would mean "the oldest" to the script).
        for chunk in ids.chunks(MAX_BATCH) {
            let mut call = self.call("purge");
            call.arg(0);
            for id in chunk {
                call.arg(*id);
            }
            let n: u64 = call.invoke(&self.inner.pool).await?;
            total += n;
        }
        Ok(total)
    }

    /// Deletes every dead-lettered task, [`MAX_BATCH`] per script. Answers how many.
    pub async fn purge_all(&self) -> Result<u64> {
        let mut total = 0;
        loop {
            let mut call = self.call("purge");
            call.arg(MAX_BATCH);
            let n: u64 = call.invoke(&self.inner.pool).await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }
}

fn cut(error: &str) -> &str {
    if error.len() <= MAX_ERROR_BYTES {
        return error;
    }
    let mut end = MAX_ERROR_BYTES;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    &error[..end]
}

/// A number of an answer that may be [`code::NONE`] (or any other negative number).
fn some(n: i64) -> Option<u64> {
    if n == code::NONE {
        return None;
    }
    u64::try_from(n).ok()
}

/// Text a script stored from a caller (a reason), with invalid UTF-8 replaced.
fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The enqueue answer: the first id, then (index, id of the original) per duplicate.
fn decode_enqueue(answer: &Value, n: usize) -> Result<Vec<Enqueued>> {
    let r = Reply::array("retry-queue", answer)?;
    let first = r.u64(0, "first id")?;
    let mut ids = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let id = first
            .checked_add(i)
            .ok_or_else(|| bad_answer("enqueue", format!("first id {first}")))?;
        ids.push(Enqueued::New(id.to_string()));
    }
    if r.len().is_multiple_of(2) {
        return Err(bad_answer("enqueue", format!("{} items", r.len())));
    }
    for pair in (1..r.len()).step_by(2) {
        let i = r.u64(pair, "duplicate index")?;
        let original = r.u64(pair + 1, "duplicate's original")?;
        let slot = usize::try_from(i)
            .ok()
            .and_then(|i| ids.get_mut(i.wrapping_sub(1)))
            .ok_or_else(|| bad_answer("enqueue", format!("duplicate index {i}")))?;
        *slot = Enqueued::Duplicate(original.to_string());
    }
    Ok(ids)
}

fn decode_claim(answer: &Value, tasks_key: &Key) -> Result<Claim> {
    let r = Reply::array("retry-queue", answer)?;
    if r.len() < 4 || !r.len().is_multiple_of(2) {
        return Err(bad_answer("claim", format!("{} items", r.len())));
    }
    let now = r.u64(0, "now")?;
    let due = r.i64(1, "next due")?;
    let deadline = r.i64(2, "next deadline")?;
    let first = r.u64(3, "first token")?;
    let mut tasks = Vec::with_capacity(r.len() / 2 - 2);
    for k in 0..(r.len() - 4) / 2 {
        let i = 4 + 2 * k;
        let id = lossy(r.bytes(i, "id")?);
        let rec = r.bytes(i + 1, "record")?;
        let token = first
            .checked_add(k as u64)
            .ok_or_else(|| bad_answer("claim", format!("first token {first}")))?;
        // The script leases only records that decode with a lease in bounds; should the two
        // ever disagree, the task is left to its lease (then reclaimed, and dead-lettered as
        // `stalled` if it keeps coming back), not the whole claim failed.
        let Some(rec) = Record::decode(rec)
            .filter(|r| (1..=crate::options::MAX_DURATION_MS).contains(&r.lease))
        else {
            tracing::warn!(key = %tasks_key, task = %id, "a leased record does not decode; left to its lease");
            continue;
        };
        tasks.push(Task {
            token,
            deadline_ms: now.saturating_add(rec.lease),
            id,
            attempt: rec.attempts.saturating_add(1),
            stalls: rec.stalls,
            component: rec.component,
            payload: rec.payload,
            enqueued_ms: rec.enqueued,
        });
    }
    Ok(Claim {
        tasks,
        now_ms: now,
        next_due_ms: some(due),
        next_deadline_ms: some(deadline),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_head_and_the_rust_tail_make_the_documented_48_byte_head() {
        let tail = tail(7, 30_000, b"pp", "db", b"payload");
        assert_eq!(tail.len(), HEAD - SCRIPT_HEAD + 2 + 2 + 7);
        // What the enqueue script writes before it: attempts, stalls, last delay, since,
        // enqueued.
        let mut rec = Packed::new()
            .bytes(&1u32.to_le_bytes())
            .bytes(&2u32.to_le_bytes())
            .u64_le(3)
            .u64_le(4)
            .u64_le(5)
            .into_bytes();
        assert_eq!(rec.len(), SCRIPT_HEAD);
        rec.extend_from_slice(&tail);
        let r = Record::decode(&rec).unwrap();
        assert_eq!(
            (
                r.attempts, r.stalls, r.prev, r.since, r.enqueued, r.max, r.lease
            ),
            (1, 2, 3, 4, 5, 7, 30_000)
        );
        assert_eq!(
            (r.policy.as_slice(), r.component.as_deref()),
            (&b"pp"[..], Some("db"))
        );
        assert_eq!(r.payload, b"payload");
    }
}
