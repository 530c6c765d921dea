//! [`SchedulerRunner`]: a background task that ticks a [`Scheduler`] whenever its next tick is
//! due. It sleeps until the time the last tick answered (server time, as a delta on the local
//! timer, at most `max_sleep`), or until an upsert's `scheduled` event wakes it: never a
//! polling loop. Several runners, in one process or many, may run on one queue: each tick
//! still fires once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coordkit_core::time::RetryDelay;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Scheduler;
use crate::error::Result;

/// A running scheduler, from [`Scheduler::start`]; stop it with
/// [`SchedulerRunner::shutdown`] (dropping it stops it too).
pub struct SchedulerRunner {
    scheduler: Scheduler,
    stop: watch::Sender<bool>,
    ticks: Arc<AtomicU64>,
    task: Option<JoinHandle<()>>,
    wake: JoinHandle<()>,
}

impl std::fmt::Debug for SchedulerRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerRunner")
            .field("scheduler", &self.scheduler)
            .field("ticks", &self.ticks())
            .finish()
    }
}

impl SchedulerRunner {
    /// How many ticks it ran (each one script call or two).
    pub fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// Stops it: a tick under way finishes first (so its firing is recorded or not at all).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.wake.abort();
    }
}

impl Drop for SchedulerRunner {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.wake.abort();
    }
}

impl Scheduler {
    /// Starts a runner that fires this queue's schedules as their ticks fall due. It
    /// subscribes to the queue's `scheduled` events first (an upsert wakes it), then ticks at
    /// once. Tick failures (Redis unreachable, bad stored data) are logged with `tracing` and
    /// retried with backoff; a schedule whose record does not decode is parked and logged,
    /// naming its key.
    pub async fn start(&self) -> Result<SchedulerRunner> {
        let subscriber = self
            .queue()
            .pool()
            .subscriber()
            .channel(self.queue().channel("scheduled"))
            .subscribe::<serde_json::Value>()
            .await?;
        let (wake_tx, wake_rx) = watch::channel(0u64);
        let max_sleep = self.inner.max_sleep;
        let wake = tokio::spawn(coordkit_core::wake::run(
            subscriber,
            wake_tx,
            max_sleep,
            || {},
            || tracing::warn!("the scheduler's wake-up subscription ended; ticking on a timer"),
        ));
        let (stop, stop_rx) = watch::channel(false);
        let ticks = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(self.clone(), wake_rx, stop_rx, ticks.clone()));
        Ok(SchedulerRunner {
            scheduler: self.clone(),
            stop,
            ticks,
            task: Some(task),
            wake,
        })
    }
}

async fn run(
    scheduler: Scheduler,
    mut wake: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
    ticks: Arc<AtomicU64>,
) {
    let max_sleep = scheduler.inner.max_sleep;
    let mut error_wait = RetryDelay::new(Duration::from_millis(10), Duration::from_secs(5));
    loop {
        if *stop.borrow() {
            return;
        }
        // An upsert from here on wakes the wait below.
        wake.borrow_and_update();
        let sleep = match scheduler.tick().await {
            Ok(tick) => {
                ticks.fetch_add(1, Ordering::Relaxed);
                error_wait.reset();
                for p in &tick.parked {
                    tracing::warn!(key = %p.key, schedule = %p.schedule,
                        "a schedule's record or tick does not decode; parked until upserted again");
                }
                tick.next_ms
                    .map_or(max_sleep, |n| {
                        Duration::from_millis(n.saturating_sub(tick.now_ms))
                    })
                    .min(max_sleep)
            }
            Err(e) => {
                tracing::warn!(queue = scheduler.queue().name(), error = %e, "scheduler tick failed");
                error_wait.next_delay()
            }
        };
        if sleep.is_zero() {
            continue;
        }
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            woke = wake.changed() => {
                // The wake-up task is gone (it never ends by itself): the timer alone wakes.
                if woke.is_err() {
                    tokio::time::sleep(sleep).await;
                }
            }
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}
