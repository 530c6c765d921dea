//! Resuming what a circuit breaker deferred (feature `circuit-breaker`): a task deferred
//! because its component's breaker rejected it waits for the breaker's `retry_after`; once
//! that breaker reports it is closed again, the worker makes the tasks it deferred due at once
//! ([`Queue::make_due`]) instead of letting them wait out their deferral.
//!
//! One watch per breaker, started by its first rejection: it subscribes to the breaker's
//! events, then reads its state, so a close between the rejection and the subscription is not
//! missed (and reads it again after each reconnection). A task is handed to its breaker's
//! watch once its deferral is settled; if the breaker closed since the rejection, it is made
//! due at once, else when the breaker next closes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use coordkit_circuit_breaker::{CircuitBreaker, State};
use coordkit_core::time::RetryDelay;
use tokio::sync::watch;

use super::health::Health;
use crate::queue::Queue;
use crate::types::{Settled, Task};

/// How many times making deferred tasks due is tried before they are left to their deferral.
const MAKE_DUE_TRIES: usize = 10;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock still holds the last state written: keep using it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One breaker's closings seen so far, and the deferred tasks waiting for the next.
#[derive(Default)]
struct BreakerWatch {
    state: Mutex<WatchState>,
}

#[derive(Default)]
struct WatchState {
    closings: u64,
    pending: Vec<String>,
    /// The components whose tasks it rejected: held (`Queue::hold_component`) until it closes.
    components: std::collections::BTreeSet<String>,
}

#[derive(Default)]
struct Registry {
    /// By breaker (its state key).
    watches: HashMap<String, Arc<BreakerWatch>>,
    /// Tasks rejected (by id and token) whose deferral is not settled yet: their breaker's
    /// watch and its closings when they were rejected.
    rejected: HashMap<(String, u64), (Arc<BreakerWatch>, u64)>,
}

/// The worker's side: told of rejections and settles, it makes deferred tasks due when their
/// breaker closes.
pub(super) struct Resume {
    queue: Queue,
    health: Arc<Health>,
    stop: watch::Receiver<bool>,
    registry: Mutex<Registry>,
}

impl Resume {
    pub(super) fn new(queue: Queue, health: Arc<Health>, stop: watch::Receiver<bool>) -> Self {
        Self {
            queue,
            health,
            stop,
            registry: Mutex::new(Registry::default()),
        }
    }

    /// `breaker` rejected `task`, which is about to be deferred.
    pub(super) fn rejected(self: &Arc<Self>, task: &Task, breaker: &CircuitBreaker) {
        let mut registry = lock(&self.registry);
        let key = breaker.state_key().as_str().to_owned();
        let watch = match registry.watches.get(&key) {
            Some(watch) => watch.clone(),
            None => {
                let watch = Arc::new(BreakerWatch::default());
                registry.watches.insert(key, watch.clone());
                tokio::spawn(self.clone().watch(breaker.clone(), watch.clone()));
                watch
            }
        };
        let seen = {
            let mut state = lock(&watch.state);
            if let Some(c) = &task.component {
                state.components.insert(c.clone());
            }
            state.closings
        };
        registry
            .rejected
            .insert((task.id.clone(), task.token), (watch, seen));
    }

    /// Settling `task` did `settled`: a deferral of a rejected task goes to its breaker's watch.
    pub(super) fn settled(self: &Arc<Self>, task: &Task, settled: &Settled) {
        let entry = lock(&self.registry)
            .rejected
            .remove(&(task.id.clone(), task.token));
        let Some((watch, seen)) = entry else { return };
        if !matches!(settled, Settled::Deferred { .. }) {
            return;
        }
        let mut state = lock(&watch.state);
        if state.closings > seen {
            // It closed while the deferral was on its way.
            drop(state);
            tokio::spawn(self.clone().make_due(vec![task.id.clone()]));
        } else {
            state.pending.push(task.id.clone());
        }
    }

    /// The breaker of `watch` is closed: its components' holds end and its deferred tasks are
    /// due now.
    fn closed(self: &Arc<Self>, watch: &BreakerWatch) {
        let (ids, components) = {
            let mut state = lock(&watch.state);
            state.closings += 1;
            (
                std::mem::take(&mut state.pending),
                std::mem::take(&mut state.components),
            )
        };
        if !components.is_empty() {
            let this = self.clone();
            tokio::spawn(async move {
                // The holds end first: due before that, a task would be held again.
                for c in components {
                    if let Err(e) = this.queue.release_component(&c).await {
                        this.health.failed("breaker resume", e.to_string());
                    }
                }
                this.make_due(ids).await;
            });
        } else if !ids.is_empty() {
            tokio::spawn(self.clone().make_due(ids));
        }
    }

    async fn make_due(self: Arc<Self>, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut wait = RetryDelay::new(Duration::from_millis(10), Duration::from_secs(1));
        for _ in 0..MAKE_DUE_TRIES {
            match self.queue.make_due(&ids).await {
                Ok(_) => return,
                Err(e) => {
                    self.health.failed("breaker resume", e.to_string());
                    tokio::time::sleep(wait.next_delay()).await;
                }
            }
        }
        // Left to their deferral: they run when it ends.
        tracing::warn!(
            queue = self.queue.name(),
            tasks = ids.len(),
            "could not make deferred tasks due"
        );
    }

    /// Follows one breaker until the worker stops.
    async fn watch(self: Arc<Self>, breaker: CircuitBreaker, watch: Arc<BreakerWatch>) {
        let mut stop = self.stop.clone();
        let mut wait = RetryDelay::new(Duration::from_millis(10), Duration::from_secs(1));
        loop {
            let mut events = match breaker.events().await {
                Ok(events) => events,
                Err(e) => {
                    self.health.failed("breaker resume", e.to_string());
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = tokio::time::sleep(wait.next_delay()) => continue,
                    }
                }
            };
            wait.reset();
            let mut reconnections = events.reconnections();
            // Subscribed: a close before this is in the state.
            self.check(&breaker, &watch).await;
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    event = events.recv() => match event {
                        Some(event) if event.state == State::Closed => self.closed(&watch),
                        Some(_) => {}
                        None => break,
                    },
                    changed = reconnections.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        // Events published while it was away are lost.
                        self.check(&breaker, &watch).await;
                    }
                }
            }
        }
    }

    async fn check(self: &Arc<Self>, breaker: &CircuitBreaker, watch: &BreakerWatch) {
        match breaker.snapshot().await {
            Ok(snapshot) if snapshot.state == State::Closed => self.closed(watch),
            Ok(_) => {}
            Err(e) => self.health.failed("breaker resume", e.to_string()),
        }
    }
}
