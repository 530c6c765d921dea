//! The tracker's error: a [`coordkit_core::Error`] (server unavailable, timeout, invalid name,
//! wrong key type, undecodable data), or an outcome of this crate.

/// What can go wrong with an error-tracker operation. Bad *input* never is: a record with an
/// over-long message, invalid UTF-8 or missing fields is cleaned and recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrackerError {
    /// Anything from the foundation: unavailable server, timeout, invalid name, wrong type, …
    #[error(transparent)]
    Core(#[from] coordkit_core::Error),
}

impl TrackerError {
    /// Whether a retry of the same call may succeed (the server was unavailable or slow).
    pub fn is_retryable(&self) -> bool {
        matches!(self, TrackerError::Core(e) if e.is_retryable())
    }
}

/// The result type of this crate.
pub type Result<T, E = TrackerError> = std::result::Result<T, E>;
