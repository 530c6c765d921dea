//! # coordkit-circuit-breaker
//!
//! A circuit breaker per downstream component (an LLM API, a host, a tool), shared by every
//! agent and process that uses the same Redis, namespace and name: when the component fails,
//! every caller stops calling it at once, and a few probes, not the whole fleet, find out
//! when it is back.
//!
//! Build one with [`CircuitBreaker::builder`] (or `Coordkit::breaker(name)` in the `coordkit`
//! crate): every rule has a setter documenting its range and default, and `build()` rejects
//! a rule out of range with [`Error::InvalidConfig`](coordkit_core::Error::InvalidConfig)
//! naming the setter. Guard a call with [`CircuitBreaker::call`], or take a [`Permit`] with
//! [`CircuitBreaker::acquire`] and report its [`Outcome`]. Many breakers of one kind (one per
//! model, per host) come from a [`BreakerRegistry`] and its templates; with the `tower`
//! feature, `CircuitBreakerLayer` guards any tower service.
//!
//! ```
//! use coordkit_circuit_breaker::{Admission, CallError, CircuitBreaker, Outcome, State, Window};
//! use coordkit_core::{Keyspace, Pool, PoolConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = coordkit_testkit::RedisServer::start()?;
//! # let url = server.url(); // e.g. "redis://127.0.0.1:6379"
//! let pool = Pool::connect(PoolConfig::from_url(&url)?).await?;
//! let llm = CircuitBreaker::builder(&pool, &Keyspace::new("demo")?, "llm-api")
//!     .window(Window::Count(20)) // the rates are over the last 20 calls,
//!     .minimum_calls(5) // once there are 5,
//!     .failure_rate(0.5) // and half of them failing opens it
//!     .build()?;
//!
//! // A guarded call: admitted, run, its outcome recorded without a second blocking round trip.
//! let answer: Result<&str, CallError<String>> = llm.call(async { Ok("hello") }).await;
//! assert_eq!(answer.unwrap(), "hello");
//!
//! // Five failures (here acquired and recorded by hand, each report awaited) open it for
//! // every process sharing the breaker.
//! for _ in 0..5 {
//!     if let Admission::Admitted(permit) = llm.acquire().await? {
//!         llm.record(permit, Outcome::Failure).await?;
//!     }
//! }
//! match llm.call(async { Ok::<_, String>(()) }).await {
//!     Err(CallError::Rejected(rejection)) => assert_eq!(rejection.state, State::Open),
//!     other => panic!("expected a rejection, got {other:?}"),
//! }
//! assert_eq!(llm.snapshot().await?.state, State::Open);
//! # Ok(()) }
//! ```
//!
//! ## Guarantees
//!
//! - **One state for every process.** Every decision and transition is one Lua script on one
//!   hash-tagged key, on the server's clock; no lock is held while the protected call runs.
//!   Open → half-open happens lazily on server time (no timers to lose).
//! - **States**: closed, open, half-open, and operator states that stay until cleared
//!   ([`CircuitBreaker::force`], [`CircuitBreaker::clear`]): forced-open, disabled (always
//!   admit), metrics-only (count, never reject).
//! - **Trip rules**, evaluated in the script: failure rate over a sliding window (the last N
//!   calls, or the last T seconds in buckets with running totals) once a minimum number of
//!   calls is reached; consecutive failures; slow-call rate. The open period is fixed, or
//!   exponential with a cap across consecutive re-openings.
//! - **At most K probes** in half-open across all processes, as leases that expire on server
//!   time: a process that dies holding one does not wedge the breaker. A success threshold
//!   closes it, a failure re-opens it, a maximum wait bounds the stay. A caller rejected
//!   because every probe is taken is told a short wait ([`Rejection::retry_after`]), not the
//!   whole lease.
//! - **Epochs**: every permit carries the breaker's epoch; an outcome from an older epoch is
//!   ignored, so a slow call from before a transition cannot reopen or close it.
//! - **Events** from the transition script itself, exactly once per transition: `opened`,
//!   `half_opened`, `closed`, `forced`, `cleared`, with the reason and the window's figures;
//!   [`CircuitBreaker::events`] delivers one breaker's, typed ([`BreakerEvent`]).
//! - **Redis unreachable** is not an error: fail-open, fail-closed, or the same rules
//!   in-process from the last shared state this process saw ([`StorePolicy`], local by
//!   default); after the first failed call the rest are decided at once until Redis answers
//!   again. [`BreakerStats`] shows it.
//! - **One blocking round trip** per guarded call: the acquire. The outcome rides ahead of the
//!   next acquire, or is sent in the background ([`Permit::record_in_background`]).
//! - **Bad stored data is an error, never a guess**: a breaker key of another Redis type is
//!   [`Error::WrongType`](coordkit_core::Error::WrongType), one holding values coordkit did not
//!   write is [`Error::Corrupt`](coordkit_core::Error::Corrupt) naming the key and field, and
//!   the operation wrote nothing. Delete (or repair) the key and the breaker starts again,
//!   closed.
//! - **Idle closed breakers expire**, so per-key breakers cannot leak memory.
//!
//! ## Features
//!
//! - `tower`: `CircuitBreakerLayer`, a tower layer that guards a service with a breaker.
//! - `model`: `model::BreakerModel`, the reference model of the script (the same state machine,
//!   on a clock you pass in), for your own property tests.
//! - `testing`: hooks this crate's own tests drive the script with; not part of the API.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod acquire;
mod admin;
mod breaker;
mod builder;
mod call;
mod config;
mod events;
mod fallback;
#[cfg(feature = "tower")]
mod layer;
#[cfg(feature = "model")]
pub mod model;
// Without the feature, the model serves the local fallback alone: its public API is unused.
#[cfg(not(feature = "model"))]
#[allow(unreachable_pub, dead_code)]
mod model;
mod permit;
mod record;
mod registry;
mod state;
mod stats;
#[cfg(feature = "testing")]
mod testing;
mod wire;

pub use breaker::CircuitBreaker;
pub use builder::CircuitBreakerBuilder;
pub use call::CallError;
pub use config::{BreakerConfig, BreakerConfigBuilder, OpenDuration, StorePolicy, Window};
/// The result of this crate's operations: errors are core's [`Error`](coordkit_core::Error).
pub use coordkit_core::Result;
pub use events::{BreakerEvent, BreakerEventKind, BreakerEvents, TripFigures};
#[cfg(feature = "tower")]
pub use layer::{
    CircuitBreakerLayer, CircuitBreakerService, Classify, ClassifyFn, ErrorsAreFailures,
};
pub use permit::{Admission, Permit};
pub use registry::{BreakerRegistry, BreakerRegistryBuilder};
/// What the acquire script answers, as the model and the test hooks return it.
#[cfg(any(feature = "model", feature = "testing"))]
pub use state::AcquireAnswer;
pub use state::{
    Forced, HALF_OPEN_RETRY_CAP, Outcome, PermitKind, RecordAnswer, RecordStatus, Rejection,
    Snapshot, State,
};
pub use stats::BreakerStats;
