//! A tower [`Layer`] that guards a service with a [`CircuitBreaker`] (feature `tower`).
//!
//! Each request first asks the breaker for a permit (one round trip). A rejected request never
//! reaches the inner service and fails with [`CallError::Rejected`]; an admitted one is passed
//! on, and its outcome, classified by a [`Classify`], is recorded in the background (no second
//! blocking round trip), with the call's duration. Errors of the inner service come back as
//! [`CallError::Failed`].
//!
//! ```
//! use coordkit_circuit_breaker::{CallError, CircuitBreaker, CircuitBreakerLayer};
//! use coordkit_core::{Keyspace, Pool, PoolConfig};
//! use tower::{Layer, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = coordkit_testkit::RedisServer::start()?;
//! # let url = server.url();
//! let pool = Pool::connect(PoolConfig::from_url(&url)?).await?;
//! let breaker =
//!     CircuitBreaker::builder(&pool, &Keyspace::new("demo")?, "search-api").build()?;
//! let search = tower::service_fn(|query: String| async move {
//!     Ok::<_, std::io::Error>(format!("results for {query}"))
//! });
//! let mut guarded = CircuitBreakerLayer::new(breaker).layer(search);
//! let answer = guarded.ready().await?.call("rust".to_owned()).await;
//! assert_eq!(answer.unwrap(), "results for rust");
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use crate::breaker::CircuitBreaker;
use crate::call::CallError;
use crate::permit::Admission;
use crate::state::Outcome;

/// Decides what a service's result counts as for the breaker.
pub trait Classify<T, E> {
    /// The outcome to record for `result`.
    fn classify(&self, result: &Result<T, E>) -> Outcome;
}

/// The default [`Classify`]: `Ok` is a success, `Err` a failure.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorsAreFailures;

impl<T, E> Classify<T, E> for ErrorsAreFailures {
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        if result.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        }
    }
}

/// A [`Classify`] made from a closure (see [`CircuitBreakerLayer::classify_with`]).
#[derive(Debug, Clone, Copy)]
pub struct ClassifyFn<F>(F);

impl<T, E, F> Classify<T, E> for ClassifyFn<F>
where
    F: Fn(&Result<T, E>) -> Outcome,
{
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        (self.0)(result)
    }
}

/// Guards the services it wraps with one [`CircuitBreaker`].
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = ErrorsAreFailures> {
    breaker: CircuitBreaker,
    classify: C,
}

impl CircuitBreakerLayer {
    /// A layer whose services count an `Err` as a failure and an `Ok` as a success.
    pub fn new(breaker: CircuitBreaker) -> Self {
        Self {
            breaker,
            classify: ErrorsAreFailures,
        }
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// The same layer with another classifier: for instance a 404 that counts as a success,
    /// or a cancellation that is [`Outcome::Ignored`].
    pub fn classify_with<T, E, F>(self, classify: F) -> CircuitBreakerLayer<ClassifyFn<F>>
    where
        F: Fn(&Result<T, E>) -> Outcome,
    {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classify: ClassifyFn(classify),
        }
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService {
            inner,
            breaker: self.breaker.clone(),
            classify: self.classify.clone(),
        }
    }
}

/// A service guarded by a [`CircuitBreaker`]; made by [`CircuitBreakerLayer`].
#[derive(Debug, Clone)]
pub struct CircuitBreakerService<S, C = ErrorsAreFailures> {
    inner: S,
    breaker: CircuitBreaker,
    classify: C,
}

impl<S, C> CircuitBreakerService<S, C> {
    /// The breaker that guards this service.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl<S, C, Req> Service<Req> for CircuitBreakerService<S, C>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: Send,
    Req: Send + 'static,
    C: Classify<S::Response, S::Error> + Clone + Send + 'static,
{
    type Response = S::Response;
    type Error = CallError<S::Error>;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(CallError::Failed)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        // The service made ready by `poll_ready` goes with this call; a clone stays for the next.
        let fresh = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, fresh);
        let breaker = self.breaker.clone();
        let classify = self.classify.clone();
        Box::pin(async move {
            // The permit first: the inner service is called only once the breaker admits it.
            let permit = match breaker.acquire().await {
                Ok(Admission::Admitted(permit)) => permit,
                Ok(Admission::Rejected(rejection)) => return Err(CallError::Rejected(rejection)),
                Err(e) => return Err(CallError::Core(e)),
            };
            let result = ready.call(request).await;
            permit.record_in_background(classify.classify(&result));
            result.map_err(CallError::Failed)
        })
    }
}
