//! The breaker's error type.

/// What can go wrong with a breaker operation (a rejection is not an error: see
/// [`Admission`](crate::Admission)).
///
/// Bad stored data is a [`coordkit_core::Error`] naming the key, and the operation wrote
/// nothing: [`Error::WrongType`](coordkit_core::Error::WrongType) when a breaker key holds
/// another Redis type, [`Error::Corrupt`](coordkit_core::Error::Corrupt) (the field in its
/// `detail`) when the state hash or the probe leases hold values coordkit did not write. Delete
/// (or repair) the key and the breaker starts again, closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BreakerError {
    /// Anything from the foundation: unavailable, timeout, invalid name or configuration, a
    /// key of the wrong type or with corrupt data, an answer that does not decode.
    #[error(transparent)]
    Core(#[from] coordkit_core::Error),
}

/// The result type of this crate.
pub type Result<T, E = BreakerError> = std::result::Result<T, E>;
