//! [`CircuitBreaker::call`]: a guarded call, acquire to report.

use std::future::Future;

use crate::breaker::CircuitBreaker;
use crate::permit::Admission;
use crate::state::{Outcome, Rejection};

/// The error of a guarded call: rejected by the breaker, or the call's own error.
#[derive(Debug, thiserror::Error)]
pub enum CallError<E> {
    /// The breaker did not admit the call; it was not made.
    #[error("rejected by the circuit breaker ({:?}, retry after {:?})", .0.state, .0.retry_after)]
    Rejected(Rejection),
    /// The call was made and failed.
    #[error("the call failed: {0}")]
    Failed(E),
    /// The breaker's store failed in a way no policy covers: a breaker key of the wrong type
    /// or with corrupt data ([`Error::WrongType`](coordkit_core::Error::WrongType),
    /// [`Error::Corrupt`](coordkit_core::Error::Corrupt)), an answer that does not decode.
    #[error(transparent)]
    Core(#[from] coordkit_core::Error),
}

impl CircuitBreaker {
    /// Runs `call` if the breaker admits it, and records its outcome in the background:
    /// `Ok` is a success, `Err` a failure. One blocking round trip.
    pub async fn call<F, T, E>(&self, call: F) -> std::result::Result<T, CallError<E>>
    where
        F: Future<Output = std::result::Result<T, E>>,
    {
        self.call_classified(call, |result: &std::result::Result<T, E>| {
            if result.is_ok() {
                Outcome::Success
            } else {
                Outcome::Failure
            }
        })
        .await
    }

    /// Like [`CircuitBreaker::call`], with a classifier that decides what counts as a failure
    /// (a 404 may be a success for the breaker, a cancellation [`Outcome::Ignored`]).
    pub async fn call_classified<F, T, E, C>(
        &self,
        call: F,
        classify: C,
    ) -> std::result::Result<T, CallError<E>>
    where
        F: Future<Output = std::result::Result<T, E>>,
        C: FnOnce(&std::result::Result<T, E>) -> Outcome,
    {
        let permit = match self.acquire().await {
            Ok(Admission::Admitted(permit)) => permit,
            Ok(Admission::Rejected(rejection)) => return Err(CallError::Rejected(rejection)),
            Err(e) => return Err(CallError::Core(e)),
        };
        let result = call.await;
        permit.record_in_background(classify(&result));
        result.map_err(CallError::Failed)
    }
}
