//! What a worker has done: its counters, and what its shutdown reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A cheap, cloneable handle on a worker's counters
/// ([`Worker::stats_handle`](super::Worker::stats_handle)): each [`get`](Self::get) reads them
/// as they are now. Worth one `Arc` clone; reading is a few relaxed atomic loads.
#[derive(Clone)]
pub struct WorkerStatsHandle {
    pub(super) queue: Arc<str>,
    pub(super) counters: Arc<Counters>,
}

impl WorkerStatsHandle {
    /// The counters now.
    pub fn get(&self) -> WorkerStats {
        self.counters.snapshot()
    }

    /// The name of the worker's queue.
    pub fn queue(&self) -> &str {
        &self.queue
    }
}

impl std::fmt::Debug for WorkerStatsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerStatsHandle")
            .field("queue", &self.queue)
            .field("stats", &self.get())
            .finish()
    }
}

impl Counters {
    pub(super) fn snapshot(&self) -> WorkerStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WorkerStats {
            claimed: l(&self.claimed),
            acked: l(&self.acked),
            retried: l(&self.retried),
            retried_in_place: l(&self.retried_in_place),
            dead_lettered: l(&self.dead_lettered),
            deferred: l(&self.deferred),
            lease_lost: l(&self.lease_lost),
            already_settled: l(&self.already_settled),
            panics: l(&self.panics),
            store_errors: l(&self.store_errors),
            claims: l(&self.claims),
            settles: l(&self.settles),
            wakeups: l(&self.wakeups),
            handler_runs: l(&self.handler_runs),
            handler_micros: l(&self.handler_micros),
        }
    }
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) claimed: AtomicU64,
    pub(super) acked: AtomicU64,
    pub(super) retried: AtomicU64,
    pub(super) retried_in_place: AtomicU64,
    pub(super) dead_lettered: AtomicU64,
    pub(super) deferred: AtomicU64,
    pub(super) lease_lost: AtomicU64,
    pub(super) already_settled: AtomicU64,
    pub(super) panics: AtomicU64,
    pub(super) store_errors: AtomicU64,
    pub(super) claims: AtomicU64,
    pub(super) settles: AtomicU64,
    pub(super) wakeups: AtomicU64,
    pub(super) handler_runs: AtomicU64,
    pub(super) handler_micros: AtomicU64,
}

/// What a worker has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkerStats {
    /// Tasks leased.
    pub claimed: u64,
    /// Tasks acknowledged.
    pub acked: u64,
    /// Failures scheduled for a retry through the delayed set (another claim runs them).
    pub retried: u64,
    /// Failures retried in place: run again by this worker after their backoff (each such run
    /// is part of the same claim).
    pub retried_in_place: u64,
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
    /// Handler runs finished (each attempt, a panic included).
    pub handler_runs: u64,
    /// Their time in all, in microseconds (its mean: `handler_micros / handler_runs`).
    pub handler_micros: u64,
}

/// What [`Worker::shutdown`](super::Worker::shutdown) reports.
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
