//! [`Admission`] and [`Permit`]: the permission for one call, and its report.

use std::time::{Duration, Instant};

use coordkit_core::time::duration_ms;

use crate::breaker::CircuitBreaker;
use crate::state::{Outcome, PermitKind, Rejection};

/// The answer to [`CircuitBreaker::acquire`].
#[derive(Debug)]
pub enum Admission {
    /// Go ahead; report the outcome with [`CircuitBreaker::record`] (or drop the permit).
    Admitted(Permit),
    /// Do not call now.
    Rejected(Rejection),
}

/// Permission for one call. Report its outcome with [`CircuitBreaker::record`] or
/// [`Permit::record_in_background`]; a permit dropped without a report releases itself.
#[derive(Debug)]
pub struct Permit {
    pub(crate) breaker: CircuitBreaker,
    pub(crate) id: String,
    pub(crate) epoch: u64,
    pub(crate) kind: PermitKind,
    pub(crate) local: bool,
    pub(crate) started: Instant,
    pub(crate) reported: bool,
}

impl Permit {
    /// The breaker's epoch when the permit was given.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// What kind of permit it is.
    pub fn kind(&self) -> PermitKind {
        self.kind
    }

    /// Time since it was given.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Reports the outcome without waiting for Redis: the caller pays no round trip. The
    /// report goes out ahead of this handle's next acquire, on the same connection in the same
    /// round trip, so the server counts it before that acquire; if no acquire comes within
    /// about 2 ms, a background task sends it (then an acquire on another connection may reach
    /// the server just before it). Failures to send show in [`CircuitBreaker::stats`]; the
    /// server's answer is not read. Background reports are sent at most once: one that rides
    /// with an acquire that fails, or whose caller stops waiting before it is sent, is lost
    /// rather than risk being counted twice. Use [`CircuitBreaker::record`] to know it counted.
    pub fn record_in_background(mut self, outcome: Outcome) {
        self.reported = true;
        let report = self.report(outcome);
        self.breaker.defer(report);
    }

    /// The report of this permit's outcome (it takes the permit's id: one report per permit).
    pub(crate) fn report(&mut self, outcome: Outcome) -> Report {
        Report {
            id: std::mem::take(&mut self.id),
            epoch: self.epoch,
            kind: self.kind,
            local: self.local,
            outcome,
            duration_ms: duration_ms(self.started.elapsed()),
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.reported || self.kind != PermitKind::Probe {
            return;
        }
        // Release the probe slot now rather than when its lease runs out.
        let breaker = self.breaker.clone();
        let report = self.report(Outcome::Ignored);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = breaker.send_report(report).await;
            });
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) id: String,
    pub(crate) epoch: u64,
    pub(crate) kind: PermitKind,
    pub(crate) local: bool,
    pub(crate) outcome: Outcome,
    pub(crate) duration_ms: u64,
}
