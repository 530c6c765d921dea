//! The settle loop: whatever tasks have finished are settled together, one script per batch,
//! retried while Redis is away.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use coordkit_core::time::RetryDelay;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

use super::SettledHook;
use super::health::Health;
use super::stats::Counters;
use crate::queue::Queue;
use crate::types::{Settle, Settled, Task};

/// How many settle scripts one worker keeps in flight. What finishes while they run waits for
/// the next: under load the batches grow and the server runs fewer scripts for the same
/// tasks (a settle's cost is mostly per call). Two, not one, so that a batch retried while
/// Redis is away does not hold up every other.
const SETTLES_IN_FLIGHT: usize = 2;

/// A finished run's outcome for the settle loop, and where to send its answer when the run's
/// task waits for it (a failure that may be retried in place).
pub(super) type Outcome = (Task, Settle, Option<oneshot::Sender<Settled>>);

pub(super) async fn settle_loop(
    queue: Queue,
    mut rx: mpsc::UnboundedReceiver<Outcome>,
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
        while batch.len() < crate::types::MAX_BATCH {
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
    batch: Vec<Outcome>,
    (counters, health): (Arc<Counters>, Arc<Health>),
    hook: Option<SettledHook>,
    _slot: OwnedSemaphorePermit,
) {
    let items: Vec<(&Task, Settle)> = batch.iter().map(|(t, s, _)| (t, s.clone())).collect();
    let mut wait = RetryDelay::new(Duration::from_millis(10), Duration::from_secs(1));
    let mut tries = 0;
    loop {
        counters.settles.fetch_add(1, Ordering::Relaxed);
        match queue.settle(&items).await {
            Ok(answers) => {
                if let Some(hook) = &hook {
                    for ((task, _, _), answer) in batch.iter().zip(&answers) {
                        hook(task, answer);
                    }
                }
                for ((_, _, reply), answer) in batch.into_iter().zip(answers) {
                    if let Some(reply) = reply {
                        let _ = reply.send(answer);
                    }
                    let counter = match answer {
                        Settled::Acked => &counters.acked,
                        Settled::RetryScheduled { .. } => &counters.retried,
                        Settled::RetryingInPlace { .. } => &counters.retried_in_place,
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
                    tracing::warn!(target: coordkit_core::trace::WORKER_TARGET, queue = queue.name(), error = %e, tasks = batch.len(), "settle failed; the leases will run out");
                    health.unsettled(batch.len() as u64, e.to_string());
                    return;
                }
                health.failed("settle", e.to_string());
                tokio::time::sleep(wait.next_delay()).await;
            }
        }
    }
}
