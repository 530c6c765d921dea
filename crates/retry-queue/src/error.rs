//! The queue's error type.

/// What can go wrong with a queue operation. Expected outcomes (an empty queue, a lost lease, a
/// duplicate enqueue) are values, not errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// A payload could not be encoded (the serde convenience).
    #[error("could not encode the payload: {0}")]
    Encode(String),
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
    /// The queue's keys hold something coordkit did not write.
    #[error("corrupt queue state: {0}")]
    Corrupt(String),
    /// Anything from the foundation: unavailable, timeout, invalid name or configuration,
    /// a key of the wrong type.
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
