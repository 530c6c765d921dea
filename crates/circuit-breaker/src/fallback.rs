//! The [`StorePolicy::Local`] fallback: deciding in-process while Redis is unreachable, and
//! the probe that notices when it answers again.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use coordkit_core::time::RetryDelay;

use crate::breaker::CircuitBreaker;
use crate::config::StorePolicy;
use crate::model::BreakerModel;
use crate::permit::Admission;
use crate::state::{AcquireAnswer, PermitKind, State};
use crate::wire::unpack_state;

/// The store probe's first wait after an outage began, and its longest (it doubles).
const STORE_PROBE_FIRST: Duration = Duration::from_millis(100);
const STORE_PROBE_MAX: Duration = Duration::from_secs(2);
/// How long a fail-closed rejection tells the caller to wait.
const FAIL_CLOSED_RETRY_MS: u64 = 1000;

impl CircuitBreaker {
    /// The local fallback at the start of an outage: the last shared state seen (see
    /// [`StorePolicy::Local`]).
    fn resumed_model(&self, now: u64) -> BreakerModel {
        let config = self.inner.config.clone();
        let (state, epoch) = unpack_state(self.inner.seen.load(Ordering::Relaxed));
        let Some(state) = state.filter(|_| epoch > 0) else {
            return BreakerModel::new(config);
        };
        let open_until = match state {
            State::Open => match *self
                .inner
                .seen_open
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
            {
                (seen, until) if seen == epoch => until,
                // Seen open without its deadline: at least the first open period.
                _ => now.saturating_add(config.open_ms().0),
            },
            _ => 0,
        };
        BreakerModel::resume(config, state, epoch, now, open_until)
    }

    pub(crate) fn acquire_without_store(
        &self,
        id: String,
        error: &coordkit_core::Error,
    ) -> Admission {
        self.note_store_error(&error.to_string());
        match self.inner.config.store_policy {
            StorePolicy::FailOpen => self.admission(
                id,
                AcquireAnswer {
                    admitted: true,
                    state: State::Closed,
                    epoch: 0,
                    retry_after_ms: 0,
                    kind: Some(PermitKind::Unrecorded),
                },
                true,
            ),
            StorePolicy::FailClosed => self.admission(
                id,
                AcquireAnswer {
                    admitted: false,
                    state: State::ForcedOpen,
                    epoch: 0,
                    retry_after_ms: FAIL_CLOSED_RETRY_MS,
                    kind: None,
                },
                true,
            ),
            StorePolicy::Local => self.decide_locally(id),
        }
    }

    /// The [`StorePolicy::Local`] fallback's decision. The first one of an outage seeds it
    /// from the last shared state seen and starts the store probe.
    pub(crate) fn decide_locally(&self, id: String) -> Admission {
        let inner = &self.inner;
        inner.stats.local_decisions.fetch_add(1, Ordering::Relaxed);
        let now = self.local_now();
        let answer = {
            let mut model = inner.local.lock().unwrap_or_else(PoisonError::into_inner);
            if !inner.outage.swap(true, Ordering::AcqRel) {
                *model = self.resumed_model(now);
                self.start_store_probe();
            }
            model.acquire(now, &id)
        };
        self.admission(id, answer, true)
    }

    /// Starts the task that asks Redis, with backoff, whether it answers again, and ends the
    /// outage when it does (the next acquire asks Redis and the shared state rules again). It
    /// holds the breaker weakly and stops when the outage ends by other means.
    fn start_store_probe(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            // No runtime to probe on: end the outage, so the next acquire asks Redis again.
            self.inner.outage.store(false, Ordering::Relaxed);
            return;
        };
        if self.inner.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        handle.spawn(async move {
            let mut delay = RetryDelay::new(STORE_PROBE_FIRST, STORE_PROBE_MAX);
            loop {
                tokio::time::sleep(delay.next_delay()).await;
                let Some(inner) = weak.upgrade() else { return };
                if inner.outage.load(Ordering::Acquire) {
                    inner.stats.store_probes.fetch_add(1, Ordering::Relaxed);
                    let key = inner.state_key.clone();
                    let mut exists = coordkit_core::redis::cmd("EXISTS");
                    exists.arg(&key);
                    match inner.pool.query_keys::<i64>(&exists, &[key]).await {
                        Err(e) if e.is_retryable() => continue,
                        // Redis answers (an error of another kind is the next acquire's).
                        _ => inner.outage.store(false, Ordering::Release),
                    }
                }
                inner.probing.store(false, Ordering::Release);
                // An outage that began again just before (its start saw this task running and
                // started none): keep probing it.
                let again = inner.outage.load(Ordering::Acquire)
                    && !inner.probing.swap(true, Ordering::AcqRel);
                if !again {
                    return;
                }
                delay.reset();
            }
        });
    }
}
