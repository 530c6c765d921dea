//! [`BreakerStats`]: what a handle has seen.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::breaker::CircuitBreaker;

#[derive(Debug, Default)]
pub(crate) struct StatsCell {
    pub(crate) admitted: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) store_calls: AtomicU64,
    pub(crate) store_errors: AtomicU64,
    pub(crate) store_probes: AtomicU64,
    pub(crate) local_decisions: AtomicU64,
    pub(crate) last_store_error: Mutex<Option<String>>,
}

/// What this handle has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BreakerStats {
    /// Permits given.
    pub admitted: u64,
    /// Calls rejected.
    pub rejected: u64,
    /// Script calls sent to Redis: acquires, reports (each carried report counts), snapshots,
    /// forces and clears. Not the store probes.
    pub store_calls: u64,
    /// Operations that could not reach Redis (handled by the store policy).
    pub store_errors: u64,
    /// Store probes sent while the local fallback decided
    /// ([`StorePolicy::Local`](crate::StorePolicy::Local)): one at a time, 100 ms after the
    /// outage began, then backing off to one every 2 s.
    pub store_probes: u64,
    /// Decisions made by the in-process fallback.
    pub local_decisions: u64,
    /// Whether acquires are decided by the local fallback now, without asking Redis: from the
    /// first acquire that cannot reach it until Redis answers again
    /// ([`StorePolicy::Local`](crate::StorePolicy::Local)).
    pub deciding_locally: bool,
    /// The last store error.
    pub last_store_error: Option<String>,
}

impl CircuitBreaker {
    /// What this handle has seen.
    pub fn stats(&self) -> BreakerStats {
        let s = &self.inner.stats;
        BreakerStats {
            admitted: s.admitted.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
            store_calls: s.store_calls.load(Ordering::Relaxed),
            store_errors: s.store_errors.load(Ordering::Relaxed),
            store_probes: s.store_probes.load(Ordering::Relaxed),
            local_decisions: s.local_decisions.load(Ordering::Relaxed),
            deciding_locally: self.inner.outage.load(Ordering::Relaxed),
            last_store_error: s.last_store_error.lock().ok().and_then(|e| e.clone()),
        }
    }

    pub(crate) fn note_store_error(&self, error: &str) {
        self.inner
            .stats
            .store_errors
            .fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.inner.stats.last_store_error.lock() {
            *last = Some(error.to_owned());
        }
    }
}
