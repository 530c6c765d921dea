//! The worker's runtime: the wake-up listener, the claim loop, and each task's run (breaker
//! guard, lease renewal, panic catching).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use coordkit_core::time::RetryDelay;
use coordkit_core::trace::WORKER_TARGET;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::builder::WorkerConfig;
use super::health::Health;
use super::settle::Outcome;
use super::stats::Counters;
use super::trace::{PANICKED, TaskSpan};
use super::{BoxFuture, Handler};
use crate::error::Result;
use crate::queue::Queue;
use crate::types::{Claim, Settle, Settled, Task};

pub(super) struct Shared {
    pub(super) queue: Queue,
    pub(super) handler: Handler,
    pub(super) config: WorkerConfig,
    pub(super) settle_tx: mpsc::UnboundedSender<Outcome>,
    pub(super) counters: Arc<Counters>,
    pub(super) health: Arc<Health>,
    pub(super) running: Running,
    /// With breakers: the deferred tasks to make due when their breaker closes.
    #[cfg(feature = "circuit-breaker")]
    pub(super) resume: Option<Arc<super::resume::Resume>>,
}

/// How many tasks run; with an agent record (feature `agents`), the task that started a busy
/// spell, or none once idle.
#[derive(Default)]
pub(super) struct Running {
    count: std::sync::atomic::AtomicUsize,
    #[cfg(feature = "agents")]
    pub(super) task: Option<watch::Sender<Option<String>>>,
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

/// How often an idle worker looks for work once its wake-up subscription is gone.
const POLL_WITHOUT_WAKEUPS: Duration = Duration::from_secs(1);

pub(super) async fn wake_loop(
    subscriber: coordkit_core::Subscriber<serde_json::Value>,
    wake: watch::Sender<u64>,
    counters: Arc<Counters>,
    health: Arc<Health>,
) {
    coordkit_core::wake::run(
        subscriber,
        wake,
        POLL_WITHOUT_WAKEUPS,
        move || {
            counters.wakeups.fetch_add(1, Ordering::Relaxed);
        },
        // Without a subscription nothing would wake an idle claimer: look for work on a timer
        // instead, and say so.
        move || {
            tracing::warn!(
                target: WORKER_TARGET,
                "the wake-up subscription ended; polling every {POLL_WITHOUT_WAKEUPS:?}"
            );
            health.failed(
                "wake-ups",
                format!("the wake-up subscription ended; polling every {POLL_WITHOUT_WAKEUPS:?}"),
            );
        },
    )
    .await;
}

/// Sleeps for `d`, or forever when there is nothing to wait for.
async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

pub(super) async fn claim_loop(
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
        match claim_caught(&shared.queue, asked, shared.config.capabilities.clone()).await {
            Err(e) => {
                shared.counters.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: WORKER_TARGET, queue = shared.queue.name(), error = %e, "claim failed");
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
async fn claim_caught(
    queue: &Queue,
    asked: usize,
    capabilities: Option<Vec<String>>,
) -> std::result::Result<Claim, String> {
    let queue = queue.clone();
    let claim: BoxFuture<Result<Claim>> = Box::pin(async move {
        let caps: Option<Vec<&str>> = capabilities
            .as_ref()
            .map(|c| c.iter().map(String::as_str).collect());
        queue.claim_from(asked, caps.as_deref()).await
    });
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
                Poll::Ready(Err(text))
            }
        }
    }
}

/// Runs a claimed task and hands its outcome to the settle loop. A failure, when the queue
/// retries in place, waits for its settle's answer: retried in place, the task runs again here
/// after its backoff (its lease extended by the settle), on the same slot and token.
async fn run_task(
    shared: Arc<Shared>,
    mut task: Task,
    claim_now: u64,
    permit: OwnedSemaphorePermit,
) {
    shared.running.started(&task.id);
    let in_place = !shared.queue.config().retry_in_place_below.is_zero();
    loop {
        let traced = TaskSpan::new(shared.queue.name(), &task);
        let settle = guarded(&shared, &task, claim_now)
            .instrument(traced.span().clone())
            .await;
        traced.finish(&settle);
        let settle = match settle {
            Settle::Fail(error) if in_place => Settle::FailInPlace(error),
            settle => {
                shared.running.finished();
                let _ = shared.settle_tx.send((task, settle, None));
                break;
            }
        };
        // The backoff runs from the failure: the settle's round trip is part of it.
        let failed_at = std::time::Instant::now();
        let (tx, rx) = oneshot::channel();
        if shared
            .settle_tx
            .send((task.clone(), settle, Some(tx)))
            .is_err()
        {
            break;
        }
        match rx.await {
            Ok(Settled::RetryingInPlace { attempts, delay_ms }) => {
                backoff_until(failed_at + Duration::from_millis(delay_ms)).await;
                task.attempt = attempts.saturating_add(1);
            }
            // Settled otherwise (or its settle failed for good: the lease runs out).
            _ => {
                shared.running.finished();
                break;
            }
        }
    }
    drop(permit);
}

/// Sleeps until `deadline`, within tens of microseconds. tokio's timer rounds a sleep up to its
/// next millisecond tick and waits in whole milliseconds: a 1 ms backoff lasted about 2.1 ms,
/// nearly doubling the time of a task retried twice in place. async-io's timer waits on a
/// timerfd (its reactor thread starts with the first backoff).
async fn backoff_until(deadline: std::time::Instant) {
    async_io::Timer::at(deadline).await;
}

/// The longest a task waits for a breaker that rejected it (and its component is held).
#[cfg(feature = "circuit-breaker")]
const MAX_BREAKER_WAIT: Duration = Duration::from_secs(60);

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
            if let Some(resume) = &shared.resume {
                resume.rejected(task, &breaker);
            }
            // Back when the breaker may admit calls again, at most a minute (or as soon as it
            // closes). Forced open it tells no end (zero): a minute, not at once, so that the
            // task is looked at again now and then without a claim-and-reject loop.
            let wait = match rejection.retry_after {
                Duration::ZERO => MAX_BREAKER_WAIT,
                d => d.min(MAX_BREAKER_WAIT),
            };
            // No claim hands out the component's other tasks while its breaker is open: they
            // wait in the delayed set instead of being claimed and rejected one by one.
            if let Some(component) = &task.component
                && let Err(e) = shared.queue.hold_component(component, wait).await
            {
                shared.health.failed("hold", e.to_string());
            }
            Settle::Defer(wait)
        }
        Ok(Admission::Admitted(permit)) => {
            let settle = execute(shared, task, claim_now).await;
            let outcome = match settle {
                Settle::Ack | Settle::AckWith(_) => Outcome::Success,
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
    let started = std::time::Instant::now();
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
                        tracing::warn!(target: WORKER_TARGET, queue = shared.queue.name(), task_id = %task.id, error = %e, "lease renewal failed");
                        shared.health.failed("lease renewal", e.to_string());
                    }
                }
            }
        }
    };
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    shared.counters.handler_runs.fetch_add(1, Ordering::Relaxed);
    shared
        .counters
        .handler_micros
        .fetch_add(micros, Ordering::Relaxed);
    match result {
        Ok(settle) => settle,
        Err(panic) => {
            shared.counters.panics.fetch_add(1, Ordering::Relaxed);
            Settle::Fail(format!("{PANICKED}: {panic}"))
        }
    }
}
