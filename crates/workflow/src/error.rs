//! The store's error type: core's [`Error`](coordkit_core::Error), plus what only a workflow
//! store can tell.

/// What can go wrong with a workflow operation. Expected outcomes (a lost lease, a workflow
/// already finished, a claim that found nothing) are values, not errors.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WorkflowError {
    /// An input, checkpoint output, result or error is larger than the store's limit for it.
    /// Nothing was written.
    #[error("the workflow's {what} is {len} bytes; the store's limit is {max} ({setter})")]
    TooLarge {
        /// What was too large: `input`, `checkpoint`, `result` or `error`.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
        /// The builder setter of the limit.
        setter: &'static str,
    },
    /// The workflow holds the most checkpoints one may hold. Nothing was written.
    #[error("the workflow holds {max} checkpoints, the most one may hold")]
    TooManyCheckpoints {
        /// The limit.
        max: u32,
    },
    /// A checkpoint's step is 0 (steps count from 1).
    #[error("checkpoint steps count from 1; step 0 was given")]
    StepZero,
    /// Anything from the foundation: unavailable, timeout, invalid name or configuration, a
    /// key of the wrong type or holding data coordkit did not write, an answer this version
    /// cannot read.
    #[error(transparent)]
    Core(#[from] coordkit_core::Error),
}

impl WorkflowError {
    /// Whether retrying the same call later may succeed (Redis was unavailable or slow).
    pub fn is_retryable(&self) -> bool {
        matches!(self, WorkflowError::Core(e) if e.is_retryable())
    }
}

/// The result type of this crate.
pub type Result<T, E = WorkflowError> = std::result::Result<T, E>;
