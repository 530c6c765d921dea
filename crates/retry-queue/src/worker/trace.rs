//! The span of one attempt of a task in a worker (`coordkit.task`, target `coordkit::task`;
//! every target and field is listed in `coordkit_core::trace`).

use std::time::Instant;

use coordkit_core::trace::TASK_TARGET;
use tracing::Span;
use tracing::field::Empty;

use crate::types::{Settle, Task};

/// How the worker words a handler's panic in the failure it settles.
pub(super) const PANICKED: &str = "the handler panicked";

/// One attempt's span, and when it started (`None` when nobody listens).
pub(super) struct TaskSpan {
    span: Span,
    started: Option<Instant>,
}

impl TaskSpan {
    /// Opens the span of `task`'s current attempt on `queue`.
    pub(super) fn new(queue: &str, task: &Task) -> Self {
        let span = tracing::info_span!(
            target: TASK_TARGET,
            "coordkit.task",
            queue,
            task_id = %task.id,
            attempt = task.attempt,
            outcome = Empty,
            duration_us = Empty,
        );
        let started = (!span.is_disabled()).then(Instant::now);
        TaskSpan { span, started }
    }

    /// The span, to run the attempt in.
    pub(super) fn span(&self) -> &Span {
        &self.span
    }

    /// Records how the attempt ended.
    pub(super) fn finish(&self, settle: &Settle) {
        let Some(started) = self.started else { return };
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.span.record("duration_us", us);
        self.span.record("outcome", outcome(settle));
    }
}

/// The `outcome` of an attempt that ended with `settle`.
fn outcome(settle: &Settle) -> &'static str {
    match settle {
        Settle::Ack | Settle::AckWith(_) => "completed",
        Settle::Fail(e) | Settle::FailInPlace(e) if e.starts_with(PANICKED) => "panicked",
        Settle::Fail(_) | Settle::FailInPlace(_) => "failed",
        Settle::Defer(_) => "deferred",
        Settle::DeadLetter { .. } => "dead_lettered",
    }
}
