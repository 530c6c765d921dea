//! [`Worker`]: runs a handler on a queue's tasks with bounded concurrency.
//!
//! One claimer task leases as many tasks as there are free slots (one script per batch); each
//! task runs in its own Tokio task, its lease renewed at half-time while the handler runs; the
//! outcomes go to one settler task that settles whatever has finished in one script. While there
//! is no work the claimer blocks on a wake-up: a message on the queue's wake channel (the
//! scripts publish one when work becomes ready or an earlier retry is scheduled), a resubscribe
//! after the pub/sub connection dropped, or a timer armed to the time the claim script said the
//! next delayed task is due (or the next lease runs out). There is no polling interval.

mod builder;
mod health;
#[cfg(feature = "circuit-breaker")]
mod resume;
mod runtime;
mod settle;
mod stats;
mod trace;

use std::any::{Any, TypeId};
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

#[cfg(feature = "circuit-breaker")]
pub use builder::BreakerLookup;
pub use builder::WorkerBuilder;
pub(crate) use health::Health;
pub use health::{LastError, WorkerHealth};
pub use stats::{ShutdownReport, WorkerStats, WorkerStatsHandle};

use crate::error::{QueueError, Result};
use crate::queue::Queue;
use crate::types::{Settle, Settled, Task};
use builder::WorkerConfig;
use runtime::{Running, Shared, claim_loop, wake_loop};
use settle::settle_loop;
use stats::Counters;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
type Handler = Arc<dyn Fn(Task) -> BoxFuture<Settle> + Send + Sync>;
type SettledHook = Arc<dyn Fn(&Task, &Settled) + Send + Sync>;

/// What a handler answers when a task should not simply be retried after its backoff. Any other
/// error type counts as a failure ([`Settle::Fail`] with its text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// Failed: retry after the backoff (or dead-letter after the last attempt).
    #[error("{0}")]
    Retry(String),
    /// Not now: put it back for this long without spending an attempt.
    #[error("deferred for {0:?}")]
    Defer(Duration),
    /// Never: dead-letter it now.
    #[error("{reason}: {error}")]
    DeadLetter {
        /// Why (`malformed`, …).
        reason: String,
        /// The error text.
        error: String,
    },
}

/// What a handler's value settles: `()` a plain ack (nothing stored, nothing more published),
/// any other value an ack with its JSON as the task's result, unless it is larger than `max`
/// (the queue's `max_payload_bytes`) or does not encode: then the task is dead-lettered
/// (`result_too_large`, `result_not_json`), as running it again would not help.
fn ack<R: Serialize + 'static>(value: &R, max: usize) -> Settle {
    if TypeId::of::<R>() == TypeId::of::<()>() {
        return Settle::Ack;
    }
    match serde_json::to_vec(value) {
        Ok(bytes) if bytes.len() <= max => Settle::AckWith(bytes),
        Ok(bytes) => Settle::DeadLetter {
            reason: "result_too_large".into(),
            error: format!(
                "the result has {} bytes as JSON; the queue's limit is {max} (max_payload_bytes)",
                bytes.len()
            ),
        },
        Err(e) => Settle::DeadLetter {
            reason: "result_not_json".into(),
            error: format!("the result does not encode as JSON: {e}"),
        },
    }
}

fn to_settle<R: Serialize + 'static, E: Display + Send + 'static>(
    result: std::result::Result<R, E>,
    max: usize,
) -> Settle {
    match result {
        Ok(value) => ack(&value, max),
        Err(e) => match (&e as &dyn Any).downcast_ref::<TaskError>() {
            Some(TaskError::Retry(text)) => Settle::Fail(text.clone()),
            Some(TaskError::Defer(d)) => Settle::Defer(*d),
            Some(TaskError::DeadLetter { reason, error }) => Settle::DeadLetter {
                reason: reason.clone(),
                error: error.clone(),
            },
            None => Settle::Fail(e.to_string()),
        },
    }
}

/// A running worker; see the [module docs](self). Dropping it stops claiming (in-flight tasks
/// still finish and are settled); [`Worker::shutdown`] also waits for them.
pub struct Worker {
    shutdown: watch::Sender<bool>,
    claimer: tokio::task::JoinHandle<JoinSet<()>>,
    settler: tokio::task::JoinHandle<()>,
    waker: tokio::task::JoinHandle<()>,
    agent: Option<tokio::task::JoinHandle<()>>,
    counters: Arc<Counters>,
    health: Arc<Health>,
    timeout: Duration,
    queue_name: Arc<str>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Worker {
    /// A builder for a worker on `queue` running `handler` for each task. `Ok(value)`
    /// acknowledges the task: `Ok(())` stores nothing (the plain, cheapest ack); any other
    /// value is stored as JSON as the task's result, for the queue's
    /// [`result_ttl`](crate::QueueBuilder::result_ttl), and wakes whoever
    /// [waits](crate::TaskHandle::wait) for it (a result larger than the queue's
    /// [`max_payload_bytes`](crate::QueueBuilder::max_payload_bytes) dead-letters the task as
    /// `result_too_large`). An error fails it (with its text), unless it is a [`TaskError`],
    /// which can also defer or dead-letter it. A panic counts as a failure.
    pub fn builder<F, Fut, R, E>(queue: &Queue, handler: F) -> WorkerBuilder
    where
        F: Fn(Task) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<R, E>> + Send + 'static,
        R: Serialize + Send + 'static,
        E: Display + Send + 'static,
    {
        let max = queue.inner_config().max_payload_bytes;
        let handler: Handler = Arc::new(move |task| {
            let fut = handler(task);
            Box::pin(async move { to_settle(fut.await, max) })
        });
        WorkerBuilder::new(queue, handler)
    }

    /// Like [`Worker::builder`] (results included), for JSON payloads: each payload is decoded
    /// into `T` first. A payload that does not decode is dead-lettered as `malformed` with an
    /// error naming `T` and serde's reason (the handler does not run, and no other task is
    /// affected).
    pub fn builder_json<T, F, Fut, R, E>(queue: &Queue, handler: F) -> WorkerBuilder
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Task, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<R, E>> + Send + 'static,
        R: Serialize + Send + 'static,
        E: Display + Send + 'static,
    {
        let max = queue.inner_config().max_payload_bytes;
        let handler: Handler = Arc::new(move |task: Task| match task.json::<T>() {
            Ok(value) => {
                let fut = handler(task, value);
                Box::pin(async move { to_settle(fut.await, max) }) as BoxFuture<Settle>
            }
            Err(e) => Box::pin(std::future::ready(Settle::DeadLetter {
                reason: "malformed".into(),
                error: format!(
                    "the payload does not decode as JSON of {}: {e}",
                    std::any::type_name::<T>()
                ),
            })),
        });
        WorkerBuilder::new(queue, handler)
    }

    async fn start_erased(queue: Queue, config: WorkerConfig, handler: Handler) -> Result<Self> {
        config.validate()?;
        let queue_name: Arc<str> = queue.name().into();
        let counters = Arc::new(Counters::default());
        // Subscribe before the first claim, so no wake-up after it can be missed.
        let subscriber = queue
            .pool()
            .subscriber()
            .channel(queue.wake_channel())
            .subscribe::<serde_json::Value>()
            .await
            .map_err(QueueError::from)?;
        let (wake_tx, wake_rx) = watch::channel(0u64);
        let health = Arc::new(Health::default());
        health.running(true);
        let waker = tokio::spawn(wake_loop(
            subscriber,
            wake_tx,
            counters.clone(),
            health.clone(),
        ));
        let (shutdown, shutdown_rx) = watch::channel(false);
        #[allow(unused_mut)]
        let mut hook = config.on_settled.clone();
        #[cfg(feature = "circuit-breaker")]
        let resume = config.breakers.is_some().then(|| {
            Arc::new(resume::Resume::new(
                queue.clone(),
                health.clone(),
                shutdown_rx.clone(),
            ))
        });
        #[cfg(feature = "circuit-breaker")]
        if let Some(resume) = resume.clone() {
            let user = hook.take();
            hook = Some(Arc::new(move |task: &Task, settled: &Settled| {
                resume.settled(task, settled);
                if let Some(user) = &user {
                    user(task, settled);
                }
            }));
        }
        let (settle_tx, settle_rx) = mpsc::unbounded_channel();
        let settler = tokio::spawn(settle_loop(
            queue.clone(),
            settle_rx,
            counters.clone(),
            health.clone(),
            hook,
        ));
        let timeout = config.shutdown_timeout;
        #[allow(unused_mut)]
        let mut running = Running::default();
        #[allow(unused_mut)]
        let mut agent = None;
        #[cfg(feature = "agents")]
        if let Some(binding) = config.agent.clone() {
            // Boxed: the registry's future nests deep enough to overflow the layout query of
            // `start`'s own future.
            Box::pin(binding.register()).await?;
            let (tx, rx) = watch::channel(None);
            running.task = Some(tx);
            agent = Some(tokio::spawn(binding.keep(
                rx,
                shutdown_rx.clone(),
                health.clone(),
            )));
        }
        let shared = Arc::new(Shared {
            queue,
            handler,
            config,
            settle_tx,
            counters: counters.clone(),
            health: health.clone(),
            running,
            #[cfg(feature = "circuit-breaker")]
            resume,
        });
        let claimer = tokio::spawn(claim_loop(shared, wake_rx, shutdown_rx));
        Ok(Self {
            shutdown,
            claimer,
            settler,
            waker,
            agent,
            counters,
            health,
            timeout,
            queue_name,
        })
    }

    /// The counters so far.
    pub fn stats(&self) -> WorkerStats {
        self.counters.snapshot()
    }

    /// A cheap, cloneable handle on this worker's counters, for a metrics exporter (such as
    /// `coordkit-prometheus`) to read at each scrape: [`WorkerStatsHandle::get`] answers what
    /// [`stats`](Self::stats) would. It keeps reading the final counters after the worker is
    /// shut down or dropped.
    pub fn stats_handle(&self) -> WorkerStatsHandle {
        WorkerStatsHandle {
            queue: self.queue_name.clone(),
            counters: self.counters.clone(),
        }
    }

    /// Whether the claim loop runs, when it last claimed, how many claims failed in a row and
    /// the last error met (a key holding bad data is named there).
    pub fn health(&self) -> WorkerHealth {
        self.health.snapshot()
    }

    /// Graceful shutdown: asks for no more claims from the moment this is called (not when the
    /// returned future is first polled; a claim already on the wire completes and its tasks
    /// run), lets in-flight tasks finish and settles them, within the configured timeout;
    /// tasks still running then are abandoned.
    pub fn shutdown(self) -> impl Future<Output = ShutdownReport> + Send + 'static {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let _ = self.shutdown.send(true);
        self.finish(deadline)
    }

    async fn finish(self, deadline: tokio::time::Instant) -> ShutdownReport {
        let (mut running, claim_loop_failed) = match self.claimer.await {
            Ok(set) => (set, false),
            Err(e) => {
                self.health
                    .failed("claim", format!("the claim loop ended: {e}"));
                (JoinSet::new(), true)
            }
        };
        let finished = tokio::time::timeout_at(deadline, async {
            while running.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        let abandoned = running.len();
        running.abort_all();
        while running.join_next().await.is_some() {}
        // Every sender is gone now: the settler drains what is left and ends.
        let settled = tokio::time::timeout_at(deadline, self.settler)
            .await
            .is_ok();
        self.waker.abort();
        if let Some(agent) = self.agent {
            // It removes the record once it sees the shutdown.
            let _ = tokio::time::timeout_at(deadline, agent).await;
        }
        self.health.running(false);
        let stats = self.counters.snapshot();
        let recorded = stats.acked
            + stats.retried
            + stats.dead_lettered
            + stats.deferred
            + stats.lease_lost
            + stats.already_settled;
        let unsettled = stats.claimed.saturating_sub(recorded);
        ShutdownReport {
            clean: finished && settled && abandoned == 0 && unsettled == 0 && !claim_loop_failed,
            abandoned,
            unsettled,
            claim_loop_failed,
            stats,
        }
    }
}
