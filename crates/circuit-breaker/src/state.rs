//! The breaker's states and the answers of its operations.

use std::time::Duration;

use crate::wire::code;

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls pass; outcomes are counted.
    Closed,
    /// Calls are rejected until the open period ends.
    Open,
    /// A few probe calls (at most K at once, across all processes) decide.
    HalfOpen,
    /// Rejects every call until an operator clears it.
    ForcedOpen,
    /// Admits every call and counts nothing, until cleared.
    Disabled,
    /// Counts outcomes but never rejects, until cleared.
    MetricsOnly,
}

impl State {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::Disabled => "disabled",
            State::MetricsOnly => "metrics_only",
        }
    }

    /// The script's code of the state (see [`code`]).
    pub(crate) fn code(self) -> u64 {
        match self {
            State::Closed => code::CLOSED,
            State::Open => code::OPEN,
            State::HalfOpen => code::HALF_OPEN,
            State::ForcedOpen => code::FORCED_OPEN,
            State::Disabled => code::DISABLED,
            State::MetricsOnly => code::METRICS_ONLY,
        }
    }

    /// The state with the script's code.
    pub(crate) fn from_code(n: u64) -> Option<Self> {
        Some(match n {
            code::CLOSED => State::Closed,
            code::OPEN => State::Open,
            code::HALF_OPEN => State::HalfOpen,
            code::FORCED_OPEN => State::ForcedOpen,
            code::DISABLED => State::Disabled,
            code::METRICS_ONLY => State::MetricsOnly,
            _ => return None,
        })
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "closed" => State::Closed,
            "open" => State::Open,
            "half_open" => State::HalfOpen,
            "forced_open" => State::ForcedOpen,
            "disabled" => State::Disabled,
            "metrics_only" => State::MetricsOnly,
            _ => return None,
        })
    }
}

/// The operator states, which stay until [`CircuitBreaker::clear`](crate::CircuitBreaker::clear).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forced {
    /// Reject everything.
    Open,
    /// Admit everything, count nothing.
    Disabled,
    /// Count, never reject.
    MetricsOnly,
}

impl Forced {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Forced::Open => "forced_open",
            Forced::Disabled => "disabled",
            Forced::MetricsOnly => "metrics_only",
        }
    }
}

/// What kind of permission a permit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermitKind {
    /// A call while closed.
    Normal,
    /// A probe in half-open: a lease on one of the K probe slots.
    Probe,
    /// A call while metrics-only.
    MetricsOnly,
    /// A call while disabled (nothing is counted).
    Bypass,
    /// Redis was unreachable and the store policy admitted the call; nothing is recorded.
    Unrecorded,
}

impl PermitKind {
    /// The script's code of the kind (an unrecorded permit is never sent).
    pub(crate) fn code(self) -> u64 {
        match self {
            PermitKind::Normal => code::KIND_NORMAL,
            PermitKind::Probe => code::KIND_PROBE,
            PermitKind::MetricsOnly => code::KIND_METRICS_ONLY,
            PermitKind::Bypass => code::KIND_BYPASS,
            PermitKind::Unrecorded => code::KIND_NONE,
        }
    }

    /// The kind with the script's code (not [`code::KIND_NONE`]).
    pub(crate) fn from_code(n: u64) -> Option<Self> {
        Some(match n {
            code::KIND_NORMAL => PermitKind::Normal,
            code::KIND_PROBE => PermitKind::Probe,
            code::KIND_METRICS_ONLY => PermitKind::MetricsOnly,
            code::KIND_BYPASS => PermitKind::Bypass,
            _ => return None,
        })
    }
}

/// How a protected call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It worked (it may still count as slow).
    Success,
    /// It failed.
    Failure,
    /// It does not count either way (a cancelled call, a caller's mistake).
    Ignored,
}

/// The answer to an acquire, as the script gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    not(any(feature = "model", feature = "testing")),
    allow(unreachable_pub)
)]
pub struct AcquireAnswer {
    /// Whether the call may go ahead.
    pub admitted: bool,
    /// The state after the acquire.
    pub state: State,
    /// The epoch after the acquire.
    pub epoch: u64,
    /// When rejected: how long until it is worth asking again (ms).
    pub retry_after_ms: u64,
    /// When admitted: what kind of permit.
    pub kind: Option<PermitKind>,
}

/// What happened to a recorded outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordStatus {
    /// Counted.
    Recorded,
    /// The breaker moved on since the permit was given (another epoch): not counted.
    Stale,
    /// The outcome was [`Outcome::Ignored`].
    Ignored,
    /// The breaker's state does not count outcomes (disabled, forced open).
    NotCounted,
}

impl RecordStatus {
    /// The status with the script's code.
    pub(crate) fn from_code(n: u64) -> Option<Self> {
        Some(match n {
            code::RECORDED => RecordStatus::Recorded,
            code::STALE => RecordStatus::Stale,
            code::IGNORED => RecordStatus::Ignored,
            code::NOT_COUNTED => RecordStatus::NotCounted,
            _ => return None,
        })
    }
}

/// The answer to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordAnswer {
    /// What happened to the outcome.
    pub status: RecordStatus,
    /// The state after it.
    pub state: State,
    /// The epoch after it.
    pub epoch: u64,
}

/// A breaker's state and figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The state.
    pub state: State,
    /// The epoch (bumped at every transition).
    pub epoch: u64,
    /// Calls in the window.
    pub calls: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Slow calls in the window.
    pub slow_calls: u64,
    /// Failures in a row.
    pub consecutive_failures: u64,
    /// When it last opened (ms; 0 if never).
    pub opened_at_ms: u64,
    /// When the current or last open period ends (ms).
    pub open_until_ms: u64,
    /// Successful probes in this half-open period.
    pub half_open_successes: u64,
    /// Probe permits held now.
    pub probes_in_flight: u64,
    /// Consecutive re-openings (drives the exponential open duration).
    pub reopenings: u64,
}

impl Snapshot {
    /// Failed share of the window's calls (0 when empty).
    pub fn failure_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.failures as f64 / self.calls as f64
        }
    }

    /// Slow share of the window's calls (0 when empty).
    pub fn slow_call_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.slow_calls as f64 / self.calls as f64
        }
    }
}

/// The longest [`Rejection::retry_after`] of a half-open breaker whose probe permits are all
/// taken.
pub const HALF_OPEN_RETRY_CAP: Duration = Duration::from_secs(2);

/// Why a call was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The state that rejected it.
    pub state: State,
    /// How long until it is worth asking again:
    /// - **open**: the rest of the open period (then it goes half-open);
    /// - **half-open, every probe permit taken**: about as long as the probes should take —
    ///   the base open duration, at most [`HALF_OPEN_RETRY_CAP`] (2 s), and no longer than
    ///   until the first probe lease runs out; at least 1 ms. Never the whole permit lease:
    ///   the probes usually decide well before it, and a caller that waited it would stall
    ///   long after the breaker closed. A caller may be rejected again (the probes are still
    ///   running); it then waits again.
    /// - **forced open**: zero (no end is known; ask an operator);
    /// - **Redis unreachable with [`StorePolicy::FailClosed`](crate::StorePolicy::FailClosed)**:
    ///   1 s.
    pub retry_after: Duration,
}
