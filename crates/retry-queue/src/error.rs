//! The queue's error type: core's [`Error`](coordkit_core::Error), plus what only a queue can
//! tell.

/// What can go wrong with a queue operation. Expected outcomes (an empty queue, a lost lease, a
/// duplicate enqueue) are values, not errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// A payload could not be encoded as JSON (the serde convenience).
    #[error("could not encode the payload as JSON: {0}")]
    Encode(#[source] serde_json::Error),
    /// A task's payload is larger than the queue's
    /// [`max_payload_bytes`](crate::QueueBuilder::max_payload_bytes). Nothing of its batch
    /// was enqueued.
    #[error(
        "task {index} of the enqueue has a payload of {len} bytes; the queue's limit is {max} (QueueBuilder::max_payload_bytes)"
    )]
    PayloadTooLarge {
        /// The task's position in the enqueued batch (0 for a single enqueue).
        index: usize,
        /// Its payload's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A task's result is larger than the queue's
    /// [`max_payload_bytes`](crate::QueueBuilder::max_payload_bytes). Nothing of the settle
    /// was applied. (A worker dead-letters such a task as `result_too_large` instead.)
    #[error(
        "the result of task {id} has {len} bytes; the queue's limit is {max} (QueueBuilder::max_payload_bytes)"
    )]
    ResultTooLarge {
        /// The task's id.
        id: String,
        /// The result's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A progress report is larger than
    /// [`MAX_PROGRESS_BYTES`](crate::MAX_PROGRESS_BYTES) as JSON. Nothing was published.
    #[error("a progress report of {len} bytes; the limit is {max}")]
    ProgressTooLarge {
        /// Its length in bytes, as JSON.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The worker's agent record (feature `agents`) could not be written for a reason of the
    /// context store's own (a store that cannot be reached is [`QueueError::Core`]).
    #[cfg(feature = "agents")]
    #[error("the worker's agent record: {0}")]
    Agent(#[source] coordkit_context::ContextError),
    /// Anything from the foundation: unavailable, timeout, invalid name or configuration, a
    /// key of the wrong type or holding data coordkit did not write, an answer this version
    /// cannot read.
    #[error(transparent)]
    Core(#[from] coordkit_core::Error),
}

impl QueueError {
    /// Whether retrying the same call later may succeed (Redis was unavailable or slow).
    pub fn is_retryable(&self) -> bool {
        matches!(self, QueueError::Core(e) if e.is_retryable())
    }
}

/// The result type of this crate.
pub type Result<T, E = QueueError> = std::result::Result<T, E>;

/// An answer of the queue script this version cannot read (`op` names the operation).
pub(crate) fn bad_answer(op: &str, reason: impl Into<String>) -> QueueError {
    coordkit_core::Error::Decode {
        what: format!("the `retry-queue` script's {op} answer"),
        reason: reason.into(),
    }
    .into()
}
