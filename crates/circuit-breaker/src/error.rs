//! The breaker's error type.

/// What can go wrong with a breaker operation (a rejection is not an error: see
/// [`Admission`](crate::Admission)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BreakerError {
    /// The breaker's state hash holds garbage (a field that is not what coordkit wrote).
    #[error("corrupt breaker state: {0}")]
    Corrupt(String),
    /// Anything from the foundation: unavailable, timeout, invalid name or configuration,
    /// a key of the wrong type.
    #[error(transparent)]
    Core(#[from] coordkit_core::Error),
}

/// The result type of this crate.
pub type Result<T, E = BreakerError> = std::result::Result<T, E>;
