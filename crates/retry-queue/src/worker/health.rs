//! [`WorkerHealth`]: whether a worker's claim loop runs, when it last claimed, and the last
//! error it met, for liveness probes and dashboards.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A snapshot of a worker's health, from [`Worker::health`](super::Worker::health)(crate::Worker::health).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerHealth {
    /// Whether the claim loop is running. It ends only at shutdown (or when the worker is
    /// dropped); an error or a panic inside it is counted and retried, never the end of it.
    pub running: bool,
    /// How long ago a claim last answered (with or without tasks); `None` before the first.
    pub last_claim_ago: Option<Duration>,
    /// Claims that failed in a row (0 once one succeeds).
    pub failing_claims: u64,
    /// The last error met by the claim loop, a settle or a lease renewal.
    pub last_error: Option<LastError>,
    /// Tasks whose outcome could not be recorded (the settle failed for good): they are handed
    /// out again when their leases run out.
    pub unsettled: u64,
}

impl WorkerHealth {
    /// Running, and the last claim did not fail.
    pub fn is_healthy(&self) -> bool {
        self.running && self.failing_claims == 0
    }
}

/// One error a worker met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    /// What the worker was doing: `claim`, `settle`, `lease renewal`, `wake-ups` (its
    /// subscription ended: it polls every second instead), `agent record`, or `breaker resume`
    /// (following a breaker, or making the tasks it deferred due once it closed).
    pub during: &'static str,
    /// The error's text (it names the key when stored data was at fault).
    pub message: String,
    /// How long ago.
    pub ago: Duration,
}

#[derive(Debug, Default)]
struct State {
    running: bool,
    last_claim: Option<Instant>,
    failing_claims: u64,
    last_error: Option<(&'static str, String, Instant)>,
    unsettled: u64,
}

/// The worker's side: updated by its tasks, read by [`Health::snapshot`].
#[derive(Debug, Default)]
pub(crate) struct Health(Mutex<State>);

impl Health {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock still holds the last state written: keep using it.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn running(&self, on: bool) {
        self.lock().running = on;
    }

    pub(crate) fn claimed(&self) {
        let mut s = self.lock();
        s.last_claim = Some(Instant::now());
        s.failing_claims = 0;
    }

    pub(crate) fn claim_failed(&self, message: String) {
        let mut s = self.lock();
        s.failing_claims += 1;
        s.last_error = Some(("claim", message, Instant::now()));
    }

    pub(crate) fn failed(&self, during: &'static str, message: String) {
        self.lock().last_error = Some((during, message, Instant::now()));
    }

    pub(crate) fn unsettled(&self, tasks: u64, message: String) {
        let mut s = self.lock();
        s.unsettled += tasks;
        s.last_error = Some(("settle", message, Instant::now()));
    }

    pub(crate) fn snapshot(&self) -> WorkerHealth {
        let s = self.lock();
        WorkerHealth {
            running: s.running,
            last_claim_ago: s.last_claim.map(|at| at.elapsed()),
            failing_claims: s.failing_claims,
            last_error: s
                .last_error
                .as_ref()
                .map(|(during, message, at)| LastError {
                    during,
                    message: message.clone(),
                    ago: at.elapsed(),
                }),
            unsettled: s.unsettled,
        }
    }
}
