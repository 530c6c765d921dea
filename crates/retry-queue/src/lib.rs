//! # coordkit-retry-queue
//!
//! A named queue of tasks that may fail and must be retried later — calls to a model API, a
//! flaky downstream, anything an agent must not lose — with backoff, a dead-letter queue for
//! what cannot succeed, and a worker runtime. Each step is **one Lua script** on one hash tag,
//! on the **server's clock**: no client clock, no read-then-write race, no polling loop.
//!
//! Build a queue with [`Queue::builder`] and a worker with [`Worker::builder`] (or
//! [`Worker::builder_json`] for JSON payloads); every setter documents its range and default,
//! and `build()` / `start()` check them all.
//!
//! ```
//! use std::time::Duration;
//! use coordkit_core::{Keyspace, Pool, PoolConfig};
//! use coordkit_retry_queue::{Backoff, Queue, TaskOptions, Worker};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Email { to: String }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = coordkit_testkit::RedisServer::start()?;
//! # let url = server.url(); // e.g. "redis://127.0.0.1:6379"
//! let pool = Pool::connect(PoolConfig::from_url(&url)?).await?;
//! let queue = Queue::builder(&pool, &Keyspace::new("demo")?, "emails")
//!     .max_payload_bytes(64 * 1024) // larger payloads fail the enqueue (default 1 MiB)
//!     .build()?;
//!
//! let options = TaskOptions::default()
//!     .max_attempts(3)
//!     .backoff(Backoff::Fixed(Duration::from_millis(10)));
//! queue.enqueue_json(&Email { to: "ada@example.com".into() }, options.clone()).await?;
//! queue.enqueue_json(&Email { to: "flaky@example.com".into() }, options).await?;
//!
//! let worker = Worker::builder_json(&queue, |task, email: Email| async move {
//!     if email.to.starts_with("flaky") && task.attempt < 2 {
//!         return Err("smtp timeout".to_string()); // retried after the backoff
//!     }
//!     Ok(())
//! })
//! .concurrency(4)
//! .shutdown_timeout(Duration::from_secs(5))
//! .start()
//! .await?;
//! # while queue.stats().await?.completed < 2 { tokio::time::sleep(Duration::from_millis(5)).await; }
//! let report = worker.shutdown().await;
//! assert!(report.clean);
//! assert_eq!(queue.stats().await?.completed, 2);
//! # Ok(()) }
//! ```
//!
//! ## What it does
//!
//! - **Enqueue** one task or a batch: payload bytes (or JSON via serde), max attempts, a backoff
//!   policy stored with the task ([`Backoff`]: exponential with cap, fixed, explicit schedule;
//!   [`Jitter`]: full, equal, decorrelated — drawn in Rust with `rand`, applied by the script),
//!   an initial delay, a lease length, an idempotency key (a duplicate within its TTL is not
//!   enqueued and the caller gets [`Enqueued::Duplicate`]) and a component name.
//! - **Claim** a batch: due delayed tasks are promoted and expired leases reclaimed (both bounded
//!   per call), then ready tasks are leased with a **fencing token** and a deadline.
//! - **Settle** with the token: ack, fail (the script computes the backoff and schedules the
//!   retry, or dead-letters the task after its last attempt with reason `exhausted` and its error
//!   history), defer (no attempt spent), dead-letter, extend. A token that lost its lease
//!   answers [`Settled::LeaseLost`], one whose task was settled already (a second ack, a retried
//!   settle) [`Settled::AlreadySettled`]; neither changes anything.
//! - **Crash recovery**: a lease that runs out is reclaimed by the next claim as a *stall*,
//!   counted apart from failures; a task that stalls more than
//!   [`max_stalls`](QueueBuilder::max_stalls) times is dead-lettered as `stalled`.
//! - **Poison tolerance**: a payload that does not decode ([`Worker::builder_json`]) or a task
//!   whose stored record is unreadable is dead-lettered as `malformed`; the rest of the batch and
//!   the worker carry on. A panicking handler counts as a failure.
//! - **Bad stored data** (a key of another type, a counter that is no number, a record or error
//!   history written by something else): every script reads or type-checks the keys it may
//!   write and decodes what it uses *before its first write*, so a call either applies whole
//!   or fails with [`Error::WrongType`](coordkit_core::Error::WrongType) /
//!   [`Error::Corrupt`](coordkit_core::Error::Corrupt) naming the key, with nothing written.
//!   A task whose record (or history) cannot be used is dead-lettered as `malformed` alone,
//!   its bytes kept ([`DeadLetter::raw_record`]); once the key is repaired or deleted the queue
//!   carries on.
//! - **Worker health**: nothing ends a worker's claim loop; failures are counted, logged
//!   (`tracing`) and retried with backoff, and [`Worker::health`] tells whether the loop runs,
//!   when it last claimed and the last error. [`ShutdownReport`] counts the tasks whose outcome
//!   was not recorded.
//! - **Dead-letter queue**: [`Queue::dead_letters`], [`Queue::inspect`], [`Queue::requeue`] /
//!   [`Queue::requeue_all`] (optionally with a fresh attempt budget), [`Queue::purge`] /
//!   [`Queue::purge_all`]; count and age caps on by default (100,000 tasks, 7 days; the age
//!   cap is applied by every claim, the count cap whenever a task is dead-lettered).
//! - **Events** from the scripts on `<ns>:events:queue:<kind>` (source `retry-queue`, entity
//!   the queue's name; [`Queue::events`] follows one queue's, typed): `retry_scheduled`,
//!   `dead_lettered`, `stalled`, `requeued`, `paused`, `resumed`, `progress`, the schedules'
//!   `scheduled`, `unscheduled` and `fired`, and `succeeded` (opt-in, and always for a task
//!   acknowledged with a result).
//!   **Stats**: counts per state, totals, age of the oldest ready task, whether the queue is
//!   paused ([`Queue::stats`]).
//! - **Priorities** ([`TaskOptions::priority`], 0 to [`MAX_PRIORITY`]): claims take the ready
//!   tasks of the highest priority first, first in first out within a priority; a task that
//!   comes back to ready (retry, stall, requeue) goes behind those of its priority ready then.
//!   Tasks of priority 0 cost what they did before priorities.
//! - **Retry in place** ([`QueueBuilder::retry_in_place_below`], default 500 ms): a failure
//!   whose backoff is shorter stays leased to the worker that failed it, which runs it again
//!   after the backoff — one settle per retry instead of a settle, a promotion and a claim. The
//!   attempt, error and `retry_scheduled` event (`in_place: true`) are recorded as for any
//!   retry; if the worker dies, the lease runs out and the task is reclaimed with its attempts.
//! - **Pause and resume**: [`Queue::pause`] stops every worker's claims at once (in the claim
//!   script, so no worker needs to hear of it); tasks already leased run to their settle, and
//!   [`Queue::resume`] wakes the idle workers.
//! - **Limits shared by every worker** ([`Queue::set_limits`]): at most K tasks leased at once
//!   and at most R starts in any interval, decided inside the claim script on server time (a
//!   sliding log of the starts: exact). A task over the limit stays ready and spends no
//!   attempt; the claim answers when the next start is allowed and the worker sleeps until
//!   then, or until a settle frees a slot and wakes it.
//! - **Groups** ([`TaskOptions::group`], [`Queue::set_group_limits`]): a task may name a group
//!   (the API key or downstream it uses, a tenant); a group's limits — at most K of its tasks
//!   leased at once, at most R starts in any interval — hold across every worker, decided in
//!   the claim script on server time, and hold back only that group's tasks, which wait in the
//!   group's own lanes (by priority, then first in first out) and spend no attempt. A claim
//!   serves the urgent lane, then the groups that may start a task (the longest waiting
//!   first), then the ready list; it answers when the next waiting group may start, and a
//!   settle that frees a group's slot wakes the idle workers. [`Queue::group_stats`] reads one
//!   back.
//! - **Capabilities**: a task names the capability it needs as its group; a worker that can
//!   run only some groups claims those, in its order of preference, and the tasks of no group
//!   ([`Queue::claim_capable`], [`WorkerBuilder::capabilities`]), in one call. **Blocking
//!   claims** ([`Queue::claim_blocking`], [`Queue::claim_capable_blocking`]) wait, up to a
//!   timeout, on a wake-up or the time the claim answered, never on a polling interval.
//! - **Worker runtime** ([`Worker`]): concurrency N, a handler closure, batched claims and
//!   settles, lease renewal while a handler runs, graceful shutdown (stop claiming, finish
//!   in-flight tasks within a deadline). An idle worker blocks on a wake-up — a pub/sub message
//!   the scripts publish when work becomes ready, or a timer armed to the due time the claim
//!   script returned — never on a polling interval. With the `circuit-breaker` feature, a task whose
//!   component's breaker is open is deferred (not failed) and the component held
//!   ([`Queue::hold_component`]): until the breaker may half-open (at most a minute), claims
//!   move its other tasks to the delayed set instead of handing them out, so no worker claims
//!   and is rejected by them again and again; when the breaker closes, the hold ends and the
//!   tasks the worker deferred are due at once.
//! - **Schedules** ([`Scheduler`], [`Schedule`]): repeatable tasks by a fixed interval or a
//!   cron expression (UTC), stored with the queue; each tick enqueues its task once however
//!   many schedulers run (below).
//! - **Results and progress** (below): a handler's value is stored with the ack and
//!   [`TaskHandle::wait`] returns it, or the task's final failure.
//!
//! ## Schedules
//!
//! A [`Schedule`] says when (an interval, on a grid from the Unix epoch, or a cron expression
//! read by [croner](https://docs.rs/croner), in UTC), what (a payload and [`TaskOptions`]) and
//! what a missed tick gets ([`Missed`]). [`Scheduler::upsert`] stores it with the queue;
//! upserting the same ticks again keeps its next tick, so every process may declare its
//! schedules when it starts. [`Scheduler::start`] runs a [`SchedulerRunner`] that fires each
//! tick as it falls due: it sleeps until the next tick the script answered (or until an upsert
//! wakes it), never on a polling interval; [`Scheduler::tick`] is one firing, for your own
//! loop.
//!
//! ```
//! use std::time::Duration;
//! use coordkit_core::{Keyspace, Pool, PoolConfig};
//! use coordkit_retry_queue::{Missed, Queue, Schedule, Scheduler, TaskOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = coordkit_testkit::RedisServer::start()?;
//! # let url = server.url(); // e.g. "redis://127.0.0.1:6379"
//! let pool = Pool::connect(PoolConfig::from_url(&url)?).await?;
//! let queue = Queue::builder(&pool, &Keyspace::new("demo")?, "reports").build()?;
//! let scheduler = Scheduler::builder(&queue).build()?;
//!
//! // Weekdays at 09:00 UTC; after an outage, one catch-up task stands for the missed days.
//! let daily = Schedule::cron("0 9 * * MON-FRI")
//!     .missed(Missed::CatchUp)
//!     .task_json(&"daily-report", TaskOptions::default().max_attempts(3))?
//!     .build()?;
//! scheduler.upsert("daily-report", &daily).await?;
//! let heartbeat = Schedule::every(Duration::from_millis(100)).build()?;
//! let first = scheduler.upsert("heartbeat", &heartbeat).await?.next_ms();
//!
//! // In every process that should fire them: each tick still enqueues once.
//! let runner = scheduler.start().await?;
//! # while queue.stats().await?.ready < 2 { tokio::time::sleep(Duration::from_millis(10)).await; }
//! runner.shutdown().await;
//! let info = scheduler.list().await?;
//! assert_eq!(info[1].name, "heartbeat");
//! assert!(info[1].last_fired_ms.unwrap() >= first + 100);
//! assert_eq!(queue.stats().await?.ready, info[1].fired);
//! # Ok(()) }
//! ```
//!
//! - **Once per tick.** A tick reads the due schedules, computes where their ticks fall (in
//!   Rust: a cron expression needs a parser), and fires them with one script that compares
//!   each schedule's next tick with the one it read and moves it on in the same call, on the
//!   server's clock. Of several schedulers that read the same tick one fires it; a late or
//!   retried call fires nothing.
//! - **Missed ticks** — ticks no scheduler fired before the next one fell due (none ran, or
//!   all were stalled, for a whole period): [`Missed::Skip`] (the default) fires only the
//!   latest due tick; [`Missed::CatchUp`] also enqueues one task, just before it, for all the
//!   missed ones. Either way they are counted ([`ScheduleInfo::missed`]) and the schedule goes
//!   on from the next tick after now.
//! - **Events** `scheduled`, `unscheduled` and `fired` (one per task, the catch-up marked).
//! - **Bad stored data**: a schedule whose record or next tick does not decode is parked alone
//!   (out of the due index, its bytes kept and listed, [`Tick::parked`] naming its key) and
//!   re-armed by upserting it again; a key of the wrong type fails the call naming it.
//!
//! ## Results and progress
//!
//! A handler's `Ok(value)` is its task's result: the settle script stores it (as JSON) in the
//! same call that acknowledges the task, in a key of its own that expires after the queue's
//! [`result_ttl`](QueueBuilder::result_ttl) (default 1 hour). `Ok(())` stores nothing and
//! costs nothing more than before. [`Enqueued::handle`] (or [`Queue::task`]) gives a
//! [`TaskHandle`] whose [`wait`](TaskHandle::wait) / [`wait_json`](TaskHandle::wait_json)
//! resolves with the result ([`TaskOutcome::Succeeded`]) or the dead letter
//! ([`TaskOutcome::Failed`]: reason, attempts, last error) — retries keep it waiting — or
//! answers [`TaskOutcome::TimedOut`]. It is woken by the `succeeded` / `dead_lettered` event,
//! not by polling, and reads the stored state after subscribing, after each reconnection and
//! at the deadline, so it misses nothing. A handler reports progress with
//! [`Queue::progress`], which checks the task's lease and publishes a `progress` event.
//!
//! ```
//! use std::time::Duration;
//! use coordkit_core::{Keyspace, Pool, PoolConfig};
//! use coordkit_retry_queue::{Queue, TaskOptions, TaskOutcome, Worker};
//!
//! #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
//! struct Answer { chars: usize }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = coordkit_testkit::RedisServer::start()?;
//! # let url = server.url(); // e.g. "redis://127.0.0.1:6379"
//! let pool = Pool::connect(PoolConfig::from_url(&url)?).await?;
//! let queue = Queue::builder(&pool, &Keyspace::new("demo")?, "prompts")
//!     .result_ttl(Duration::from_secs(600)) // results kept 10 minutes
//!     .build()?;
//! let reporter = queue.clone();
//! let worker = Worker::builder_json(&queue, move |task, prompt: String| {
//!     let queue = reporter.clone();
//!     async move {
//!         queue.progress(&task, &"calling the model").await.map_err(|e| e.to_string())?;
//!         Ok::<_, String>(Answer { chars: prompt.len() }) // stored as the task's result
//!     }
//! })
//! .start()
//! .await?;
//!
//! let handle = queue.enqueue_json("hello", TaskOptions::default()).await?.handle(&queue);
//! match handle.wait_json::<Answer>(Duration::from_secs(30)).await? {
//!     TaskOutcome::Succeeded(answer) => assert_eq!(answer, Answer { chars: 5 }),
//!     TaskOutcome::Failed(failure) => panic!("dead-lettered: {failure:?}"),
//!     other => panic!("{other:?}"), // TimedOut, or Gone (expired, purged)
//! }
//! assert!(worker.shutdown().await.clean);
//! # Ok(()) }
//! ```
//!
//! ## Guarantees
//!
//! - **At-least-once delivery.** A task leaves the queue only when acknowledged with its
//!   current token, dead-lettered, or purged from the dead-letter queue. A handler may run more
//!   than once (after a lost lease); handlers should be idempotent.
//! - **Each task is in exactly one state** — ready, delayed, leased or dead — because every
//!   transition is one script that moves its id from one structure to another.
//! - **At most one valid lease per task.** A lease is reclaimed only after its deadline, and the
//!   reclaim changes the fencing token, so a late holder's ack, fail or extend is refused.
//! - **No acknowledged enqueue is lost** across a Redis crash and restart when the server runs
//!   with AOF `appendfsync always`: the script's writes are in the AOF before the reply.
//! - **Works on Redis Cluster**: one queue is one hash tag (`<ns>:{queue:<name>}:*`), so every
//!   script touches one slot.
//!
//!
//! ## Cargo features
//!
//! - `circuit-breaker`: guard tasks that name a component with its breaker
//!   (`WorkerBuilder::breakers`).
//! - `agents`: tie a worker to an agent record of coordkit-context's registry
//!   (`WorkerBuilder::agent`).
//! - `model`: the reference model of the queue's state machine, for your own property tests.
//! - `testing`: hooks for this crate's own tests; not part of the API.
//!
//! Throughput and the server time each step costs are measured by `coordkit-bench
//! retry-lifecycle`; the method and current figures are in `docs/benchmarks.md`.
//!
//! ## Keys (one hash tag per queue)
//!
//! `tasks` (hash id → one binary record: attempts, stalls, last delay, since, enqueued, max
//! attempts, lease, policy, component, then the payload), `ready` (list), `delayed` (zset by due
//! time), `leased` (zset by deadline), `leases` (hash id → fencing token, leased tasks only),
//! `dlq` (zset by dead-letter time), `errors` (hash id → binary history), `dead` (hash id →
//! reason), `idem` / `idem_exp` (idempotency keys), `info` (counters, pause flag, limits),
//! `starts` (the rate limit's log of starts), `urgent` (the ready tasks with a priority), one
//! `result:<id>` string per stored result (expiring by itself), and for schedules `schedules` (hash name → binary record: missed-tick policy, counters, the
//! ticks' spec, the task) and `sched_due` (zset name → next tick). Claims and settles of a
//! batch cost a fixed number of Redis calls per batch, not per task, apart from the failure
//! paths; the numbers of a batch travel packed in one argument, and a claim or an ack neither
//! parses nor rewrites a record in Lua (Rust decodes the records a claim returns).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod admin;
#[cfg(feature = "agents")]
mod agent;
mod blocking;
mod code;
mod config;
mod error;
mod events;
mod groups;
mod holds;
mod limits;
#[cfg(feature = "model")]
pub mod model;
mod ops;
mod options;
mod queue;
mod record;
mod results;
mod schedule;
mod scheduler;
mod scripts;
mod types;
pub mod worker;

#[cfg(feature = "agents")]
pub use agent::AgentBinding;
pub use config::{DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_RESULT_TTL, QueueBuilder, QueueConfig};
pub use coordkit_core;
pub use error::{QueueError, Result};
pub use events::{QueueEvent, QueueEventKind, QueueEvents};
pub use groups::GroupStats;
pub use limits::{Limits, MAX_LIMIT, Rate};
#[cfg(any(feature = "testing", feature = "model"))]
pub use ops::RawSettle;
pub use options::{Backoff, Jitter, MAX_DURATION_MS, MAX_PRIORITY, TaskOptions, backoff_delay_ms};
pub use queue::Queue;
pub use results::{MAX_PROGRESS_BYTES, TaskFailure, TaskHandle, TaskOutcome};
pub use schedule::{
    Every, Fired, MAX_CRON_BYTES, Missed, Parked, Schedule, ScheduleBuilder, ScheduleInfo, Tick,
    Upserted,
};
#[cfg(any(feature = "testing", feature = "model"))]
pub use schedule::{RawDue, RawFire};
pub use scheduler::{Scheduler, SchedulerBuilder, SchedulerRunner};
pub use types::{
    Claim, DeadLetter, Enqueued, Failure, MAX_BATCH, MAX_ERROR_BYTES, NewTask, Settle, Settled,
    Stats, Task, TaskInfo, TaskState,
};
pub use worker::{LastError, WorkerHealth};
pub use worker::{
    ShutdownReport, TaskError, Worker, WorkerBuilder, WorkerStats, WorkerStatsHandle,
};
