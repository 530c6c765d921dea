//! [`Worker`]: runs a handler on a queue's tasks with bounded concurrency.
//!
//! One claimer task leases as many tasks as there are free slots (one script per batch); each
//! task runs in its own Tokio task, its lease renewed at half-time while the handler runs; the
//! outcomes go to one settler task that settles whatever has finished in one script. While there
//! is no work the claimer blocks on a wake-up: a message on the queue's wake channel (the
//! scripts publish one when work becomes ready or an earlier retry is scheduled), a resubscribe
//! after the pub/sub connection dropped, or a timer armed to the time the claim script said the
//! next delayed task is due (or the next lease runs out). There is no polling interval.

use std::any::Any;
use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use coordkit_core::time::{RetryDelay, duration_ms};
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::error::{QueueError, Result};
use crate::health::{Health, WorkerHealth};
use crate::queue::{Claim, Queue, Settle, Settled, Task};

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

fn to_settle<E: Display + Send + 'static>(result: std::result::Result<(), E>) -> Settle {
    match result {
        Ok(()) => Settle::Ack,
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

/// Looks up the circuit breaker of a task's component (`None`: run it unguarded).
#[cfg(feature = "circuit-breaker")]
pub type BreakerLookup =
    Arc<dyn Fn(&str) -> Option<coordkit_circuit_breaker::CircuitBreaker> + Send + Sync>;

/// How a [`Worker`] runs: what its [`WorkerBuilder`] holds.
#[derive(Clone)]
pub(crate) struct WorkerConfig {
    concurrency: usize,
    batch: usize,
    shutdown_timeout: Duration,
    renew_leases: bool,
    on_settled: Option<SettledHook>,
    #[cfg(feature = "circuit-breaker")]
    breakers: Option<BreakerLookup>,
    #[cfg(feature = "agents")]
    agent: Option<crate::agent::AgentBinding>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 10,
            batch: 10,
            shutdown_timeout: Duration::from_secs(30),
            renew_leases: true,
            on_settled: None,
            #[cfg(feature = "circuit-breaker")]
            breakers: None,
            #[cfg(feature = "agents")]
            agent: None,
        }
    }
}

impl WorkerConfig {
    fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: &str| {
            Err(coordkit_core::Error::invalid_config(field, reason).into())
        };
        if !(1..=10_000).contains(&self.concurrency) {
            return bad("concurrency", "must be 1 to 10000");
        }
        if !(1..=crate::queue::MAX_BATCH).contains(&self.batch) {
            return bad("batch", "must be 1 to 500");
        }
        if duration_ms(self.shutdown_timeout) > crate::options::MAX_DURATION_MS {
            return bad("shutdown_timeout", "must be at most 2^35 ms");
        }
        Ok(())
    }
}

/// Builds and starts a [`Worker`]: from [`Worker::builder`] or [`Worker::builder_json`],
/// setters, then [`WorkerBuilder::start`], which validates every setting.
pub struct WorkerBuilder {
    queue: Queue,
    handler: Handler,
    config: WorkerConfig,
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.config;
        f.debug_struct("WorkerBuilder")
            .field("queue", &self.queue.name())
            .field("concurrency", &c.concurrency)
            .field("batch", &c.batch)
            .field("shutdown_timeout", &c.shutdown_timeout)
            .field("renew_leases", &c.renew_leases)
            .finish_non_exhaustive()
    }
}

impl WorkerBuilder {
    fn new(queue: &Queue, handler: Handler) -> Self {
        Self {
            queue: queue.clone(),
            handler,
            config: WorkerConfig::default(),
        }
    }

    /// How many tasks run at once (1 to 10,000; default 10). Also sets the claim batch to the
    /// same number (at most 500); change it after with [`WorkerBuilder::batch`].
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n;
        self.config.batch = n.clamp(1, crate::queue::MAX_BATCH);
        self
    }

    /// The most tasks one claim leases (1 to 500; default 10, or the concurrency).
    pub fn batch(mut self, n: usize) -> Self {
        self.config.batch = n;
        self
    }

    /// On shutdown, how long in-flight tasks may take to finish and their outcomes to be
    /// written (at most 2^35 ms; default 30 s). Tasks still running then are abandoned, and
    /// outcomes not written by then (Redis down: settles retry until the deadline) are counted
    /// in [`ShutdownReport::unsettled`]; both kinds of task are handed out again when their
    /// leases run out.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// Whether leases are extended at half-time while a handler runs (default on).
    pub fn renew_leases(mut self, on: bool) -> Self {
        self.config.renew_leases = on;
        self
    }

    /// Called with each task and what settling it did, once the settle script has answered
    /// (for metrics, or to wait for a task's acknowledgement; default none). Keep it quick: it
    /// runs on the settler task.
    pub fn on_settled(mut self, hook: impl Fn(&Task, &Settled) + Send + Sync + 'static) -> Self {
        self.config.on_settled = Some(Arc::new(hook));
        self
    }

    /// Guards tasks that name a component with that component's circuit breaker (default:
    /// none): while it is open the task is deferred until the breaker may admit calls again (no
    /// attempt spent), and when the breaker publishes `closed` the tasks it deferred are made
    /// due at once; otherwise the outcome is recorded with the breaker.
    #[cfg(feature = "circuit-breaker")]
    pub fn breakers(
        mut self,
        lookup: impl Fn(&str) -> Option<coordkit_circuit_breaker::CircuitBreaker>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.config.breakers = Some(Arc::new(lookup));
        self
    }

    /// Keeps an agent record for this worker in coordkit-context's registry (feature
    /// `agents`; default none): registered idle when the worker starts (the start fails when
    /// it cannot be), kept alive by heartbeats at a third of the registry's TTL, busy with the
    /// task that started a busy spell and idle when no task runs, registered again when it
    /// expired during an outage, removed at shutdown. Failures to update it are in
    /// [`Worker::health`].
    #[cfg(feature = "agents")]
    pub fn agent(mut self, agent: crate::agent::AgentBinding) -> Self {
        self.config.agent = Some(agent);
        self
    }

    /// Validates every setting (an error is
    /// [`Error::InvalidConfig`](coordkit_core::Error::InvalidConfig) naming its setter) and
    /// starts the worker.
    pub async fn start(self) -> Result<Worker> {
        Worker::start_erased(self.queue, self.config, self.handler).await
    }
}

impl Counters {
    fn snapshot(&self) -> WorkerStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WorkerStats {
            claimed: l(&self.claimed),
            acked: l(&self.acked),
            retried: l(&self.retried),
            dead_lettered: l(&self.dead_lettered),
            deferred: l(&self.deferred),
            lease_lost: l(&self.lease_lost),
            already_settled: l(&self.already_settled),
            panics: l(&self.panics),
            store_errors: l(&self.store_errors),
            claims: l(&self.claims),
            settles: l(&self.settles),
            wakeups: l(&self.wakeups),
        }
    }
}

#[derive(Default)]
struct Counters {
    claimed: AtomicU64,
    acked: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    deferred: AtomicU64,
    lease_lost: AtomicU64,
    already_settled: AtomicU64,
    panics: AtomicU64,
    store_errors: AtomicU64,
    claims: AtomicU64,
    settles: AtomicU64,
    wakeups: AtomicU64,
}

/// What a worker has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkerStats {
    /// Tasks leased.
    pub claimed: u64,
    /// Tasks acknowledged.
    pub acked: u64,
    /// Failures scheduled for a retry.
    pub retried: u64,
    /// Tasks dead-lettered (out of attempts, malformed, or by the handler).
    pub dead_lettered: u64,
    /// Tasks deferred.
    pub deferred: u64,
    /// Outcomes refused because the lease had been lost.
    pub lease_lost: u64,
    /// Outcomes found settled already (a settle retried after its first try was applied).
    pub already_settled: u64,
    /// Handlers that panicked (counted as failures).
    pub panics: u64,
    /// Calls to Redis that failed (retried with backoff).
    pub store_errors: u64,
    /// Claim scripts run.
    pub claims: u64,
    /// Settle scripts run.
    pub settles: u64,
    /// Wake-up messages received.
    pub wakeups: u64,
}

/// What [`Worker::shutdown`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Whether every task this worker claimed was settled (its outcome recorded) and its claim
    /// loop ended only because it was asked to.
    pub clean: bool,
    /// Tasks still running at the deadline, abandoned (their leases run out and they are
    /// handed out again).
    pub abandoned: usize,
    /// Tasks claimed whose outcome was not recorded: abandoned, their settle failed for good,
    /// or it was still waiting at the deadline. They stay leased until their leases run out,
    /// then are handed out again.
    pub unsettled: u64,
    /// Whether the claim loop ended by itself (a bug: it is built never to), not by shutdown.
    pub claim_loop_failed: bool,
    /// The final counters.
    pub stats: WorkerStats,
}

struct Shared {
    queue: Queue,
    handler: Handler,
    config: WorkerConfig,
    settle_tx: mpsc::UnboundedSender<(Task, Settle)>,
    counters: Arc<Counters>,
    health: Arc<Health>,
    running: Running,
}

/// How many tasks run; with an agent record (feature `agents`), the task that started a busy
/// spell, or none once idle.
#[derive(Default)]
struct Running {
    count: std::sync::atomic::AtomicUsize,
    #[cfg(feature = "agents")]
    task: Option<watch::Sender<Option<String>>>,
}

impl Running {
    fn started(&self, _id: &str) {
        if self.count.fetch_add(1, Ordering::AcqRel) == 0 {
            #[cfg(feature = "agents")]
            if let Some(tx) = &self.task {
                tx.send_replace(Some(_id.to_owned()));
            }
        }
    }

    fn finished(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            #[cfg(feature = "agents")]
            if let Some(tx) = &self.task {
                tx.send_replace(None);
            }
        }
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
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Worker {
    /// A builder for a worker on `queue` running `handler` for each task. `Ok(())`
    /// acknowledges the task; an error fails it (with its text), unless it is a [`TaskError`],
    /// which can also defer or dead-letter it. A panic counts as a failure.
    pub fn builder<F, Fut, E>(queue: &Queue, handler: F) -> WorkerBuilder
    where
        F: Fn(Task) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let handler: Handler = Arc::new(move |task| {
            let fut = handler(task);
            Box::pin(async move { to_settle(fut.await) })
        });
        WorkerBuilder::new(queue, handler)
    }

    /// Like [`Worker::builder`], for JSON payloads: each payload is decoded into `T` first. A
    /// payload that does not decode is dead-lettered as `malformed` with an error naming `T`
    /// and serde's reason (the handler does not run, and no other task is affected).
    pub fn builder_json<T, F, Fut, E>(queue: &Queue, handler: F) -> WorkerBuilder
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Task, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let handler: Handler = Arc::new(move |task: Task| match task.json::<T>() {
            Ok(value) => {
                let fut = handler(task, value);
                Box::pin(async move { to_settle(fut.await) }) as BoxFuture<Settle>
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
        let (settle_tx, settle_rx) = mpsc::unbounded_channel();
        let settler = tokio::spawn(settle_loop(
            queue.clone(),
            settle_rx,
            counters.clone(),
            health.clone(),
            config.on_settled.clone(),
        ));
        let (shutdown, shutdown_rx) = watch::channel(false);
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
        })
    }

    /// The counters so far.
    pub fn stats(&self) -> WorkerStats {
        self.counters.snapshot()
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

/// How often an idle worker looks for work once its wake-up subscription is gone.
const POLL_WITHOUT_WAKEUPS: Duration = Duration::from_secs(1);

async fn wake_loop(
    mut subscriber: coordkit_core::Subscriber<serde_json::Value>,
    wake: watch::Sender<u64>,
    counters: Arc<Counters>,
    health: Arc<Health>,
) {
    let mut reconnections = subscriber.reconnections();
    loop {
        tokio::select! {
            got = subscriber.recv() => {
                if got.is_none() {
                    break;
                }
                while subscriber.try_recv().is_some() {}
                counters.wakeups.fetch_add(1, Ordering::Relaxed);
                wake.send_modify(|g| *g += 1);
            }
            changed = reconnections.changed() => {
                if changed.is_err() {
                    break;
                }
                // Messages published while it was down are lost: look again.
                wake.send_modify(|g| *g += 1);
            }
        }
    }
    // Without a subscription nothing would wake an idle claimer: look for work on a timer
    // instead, and say so.
    tracing::warn!("the wake-up subscription ended; polling every {POLL_WITHOUT_WAKEUPS:?}");
    health.failed(
        "wake-ups",
        format!("the wake-up subscription ended; polling every {POLL_WITHOUT_WAKEUPS:?}"),
    );
    loop {
        wake.send_modify(|g| *g += 1);
        tokio::time::sleep(POLL_WITHOUT_WAKEUPS).await;
    }
}

/// Sleeps for `d`, or forever when there is nothing to wait for.
async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

async fn claim_loop(
    shared: Arc<Shared>,
    mut wake: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinSet<()> {
    let semaphore = Arc::new(Semaphore::new(shared.config.concurrency));
    let mut running = JoinSet::new();
    let mut error_wait = RetryDelay::new(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        while running.try_join_next().is_some() {}
        if *shutdown.borrow() {
            break;
        }
        let first = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            permit = semaphore.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let mut permits = vec![first];
        while permits.len() < shared.config.batch {
            match semaphore.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        // Anything published from here on wakes the wait below.
        wake.borrow_and_update();
        let asked = permits.len();
        shared.counters.claims.fetch_add(1, Ordering::Relaxed);
        match claim_caught(&shared.queue, asked).await {
            Err(e) => {
                shared.counters.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(queue = shared.queue.name(), error = %e, "claim failed");
                shared.health.claim_failed(e);
                drop(permits);
                tokio::select! {
                    biased;
                    _ = shutdown.changed() => break,
                    _ = tokio::time::sleep(error_wait.next_delay()) => {}
                }
            }
            Ok(claim) => {
                shared.health.claimed();
                error_wait.reset();
                let got = claim.tasks.len();
                let wakeup = claim.next_wakeup();
                shared
                    .counters
                    .claimed
                    .fetch_add(got as u64, Ordering::Relaxed);
                for task in claim.tasks {
                    let Some(permit) = permits.pop() else { break };
                    running.spawn(run_task(shared.clone(), task, claim.now_ms, permit));
                }
                drop(permits);
                // Claim until a claim comes back empty: while work flows, the next claim finds
                // what arrived during this one. Only an empty claim waits for a wake-up.
                if got == 0 {
                    tokio::select! {
                        biased;
                        _ = shutdown.changed() => break,
                        _ = wake.changed() => {}
                        _ = sleep_opt(wakeup) => {}
                    }
                }
            }
        }
    }
    shared.health.running(false);
    running
}

/// One claim, its error or a panic inside it (a bug) as text: nothing ends the claim loop.
async fn claim_caught(queue: &Queue, asked: usize) -> std::result::Result<Claim, String> {
    let queue = queue.clone();
    let claim: BoxFuture<Result<Claim>> = Box::pin(async move { queue.claim(asked).await });
    match CatchUnwind(claim).await {
        Ok(Ok(claim)) => Ok(claim),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(panic),
    }
}

/// Polls a future, turning a panic into an error text.
struct CatchUnwind<T>(BoxFuture<T>);

impl<T> Future for CatchUnwind<T> {
    type Output = std::result::Result<T, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Ready(s)) => Poll::Ready(Ok(s)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => {
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned());
                Poll::Ready(Err(format!("panicked: {text}")))
            }
        }
    }
}

async fn run_task(shared: Arc<Shared>, task: Task, claim_now: u64, permit: OwnedSemaphorePermit) {
    shared.running.started(&task.id);
    let settle = guarded(&shared, &task, claim_now).await;
    shared.running.finished();
    let _ = shared.settle_tx.send((task, settle));
    drop(permit);
}

#[cfg(feature = "circuit-breaker")]
async fn guarded(shared: &Shared, task: &Task, claim_now: u64) -> Settle {
    use coordkit_circuit_breaker::{Admission, Outcome};
    let breaker = match (&task.component, &shared.config.breakers) {
        (Some(component), Some(lookup)) => lookup(component),
        _ => None,
    };
    let Some(breaker) = breaker else {
        return execute(shared, task, claim_now).await;
    };
    match breaker.acquire().await {
        Ok(Admission::Rejected(rejection)) => {
            // Back when the breaker may admit calls again (at most a minute: it may be forced
            // open with no end, and the task should be looked at again now and then).
            Settle::Defer(
                rejection
                    .retry_after
                    .clamp(Duration::from_millis(1), Duration::from_secs(60)),
            )
        }
        Ok(Admission::Admitted(permit)) => {
            let settle = execute(shared, task, claim_now).await;
            let outcome = match settle {
                Settle::Ack => Outcome::Success,
                Settle::Fail(_) => Outcome::Failure,
                _ => Outcome::Ignored,
            };
            permit.record_in_background(outcome);
            settle
        }
        Err(_) => execute(shared, task, claim_now).await,
    }
}

#[cfg(not(feature = "circuit-breaker"))]
async fn guarded(shared: &Shared, task: &Task, claim_now: u64) -> Settle {
    execute(shared, task, claim_now).await
}

async fn execute(shared: &Shared, task: &Task, claim_now: u64) -> Settle {
    let mut run = CatchUnwind((shared.handler)(task.clone()));
    let lease = Duration::from_millis(task.deadline_ms.saturating_sub(claim_now));
    let renew =
        (shared.config.renew_leases && lease >= Duration::from_millis(2)).then(|| lease / 2);
    let result = loop {
        tokio::select! {
            result = &mut run => break result,
            _ = sleep_opt(renew) => {
                match shared.queue.extend(task, None).await {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        // Lost (reclaimed after a long pause): finish, the settle will say so.
                    }
                    Err(e) => {
                        shared.counters.store_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(queue = shared.queue.name(), task = %task.id, error = %e, "lease renewal failed");
                        shared.health.failed("lease renewal", e.to_string());
                    }
                }
            }
        }
    };
    match result {
        Ok(settle) => settle,
        Err(panic) => {
            shared.counters.panics.fetch_add(1, Ordering::Relaxed);
            Settle::Fail(format!("the handler {panic}"))
        }
    }
}

/// How many settle scripts one worker keeps in flight.
const SETTLES_IN_FLIGHT: usize = 4;

async fn settle_loop(
    queue: Queue,
    mut rx: mpsc::UnboundedReceiver<(Task, Settle)>,
    counters: Arc<Counters>,
    health: Arc<Health>,
    hook: Option<SettledHook>,
) {
    let slots = Arc::new(Semaphore::new(SETTLES_IN_FLIGHT));
    let mut in_flight = JoinSet::new();
    while let Some(first) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        while in_flight.try_join_next().is_some() {}
        // Whatever finished while waiting for a slot joins this batch.
        let mut batch = vec![first];
        while batch.len() < crate::queue::MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        in_flight.spawn(settle_batch(
            queue.clone(),
            batch,
            (counters.clone(), health.clone()),
            hook.clone(),
            slot,
        ));
    }
    while in_flight.join_next().await.is_some() {}
}

async fn settle_batch(
    queue: Queue,
    batch: Vec<(Task, Settle)>,
    (counters, health): (Arc<Counters>, Arc<Health>),
    hook: Option<SettledHook>,
    _slot: OwnedSemaphorePermit,
) {
    let items: Vec<(&Task, Settle)> = batch.iter().map(|(t, s)| (t, s.clone())).collect();
    let mut wait = RetryDelay::new(Duration::from_millis(10), Duration::from_secs(1));
    let mut tries = 0;
    loop {
        counters.settles.fetch_add(1, Ordering::Relaxed);
        match queue.settle(&items).await {
            Ok(answers) => {
                if let Some(hook) = &hook {
                    for ((task, _), answer) in batch.iter().zip(&answers) {
                        hook(task, answer);
                    }
                }
                for answer in answers {
                    let counter = match answer {
                        Settled::Acked => &counters.acked,
                        Settled::RetryScheduled { .. } => &counters.retried,
                        Settled::DeadLettered { .. } => &counters.dead_lettered,
                        Settled::Deferred { .. } => &counters.deferred,
                        Settled::LeaseLost => &counters.lease_lost,
                        Settled::AlreadySettled => &counters.already_settled,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            Err(e) => {
                counters.store_errors.fetch_add(1, Ordering::Relaxed);
                tries += 1;
                // Redis unavailable, or a key holding bad data that an operator may repair:
                // keep trying for a while (a retried settle that had been applied answers
                // "lease lost", which changes nothing). Past that, the leases run out and the
                // tasks are handed out again: at least once, never lost.
                if tries > 15 {
                    tracing::warn!(queue = queue.name(), error = %e, tasks = batch.len(), "settle failed; the leases will run out");
                    health.unsettled(batch.len() as u64, e.to_string());
                    return;
                }
                health.failed("settle", e.to_string());
                tokio::time::sleep(wait.next_delay()).await;
            }
        }
    }
}
