//! # coordkit
//!
//! Coordination primitives for multi-agent systems over Redis: shared context, error tracking,
//! circuit breakers, retry queues, metrics, agent messaging and workflow state, each one atomic
//! Lua script per state change over one shared connection pool, correct on Redis Cluster. This
//! umbrella crate re-exports every primitive behind a feature named after it (all on by
//! default) and offers [`Coordkit`]: connect once, then ask for a breaker, a queue, a context
//! store, an error tracker, metrics, a mesh agent, a typed channel or a workflow store, all
//! sharing the one pool.
//!
//! | feature | module | crate |
//! |---|---|---|
//! | (always) | [`core`] | `coordkit-core`: pool, keyspace, scripts, clock, events |
//! | `context` | [`context`] | `coordkit-context` |
//! | `errors` | [`errors`] | `coordkit-errors` |
//! | `circuit-breaker` | [`circuit_breaker`] | `coordkit-circuit-breaker` |
//! | `retry-queue` | [`retry_queue`] | `coordkit-retry-queue` |
//! | `metrics` | [`metrics`] | `coordkit-metrics` |
//! | `mesh` | [`mesh`] | `coordkit-mesh`: typed channels, inboxes, request/reply, capabilities |
//! | `workflow` | [`workflow`] | `coordkit-workflow`: durable workflow state, checkpoints, resume |
//!
//! ```
//! use coordkit::Coordkit;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = coordkit_testkit::RedisServer::start()?;
//! # let url = server.url(); // e.g. "redis://127.0.0.1:6379"
//! let kit = Coordkit::connect(&url, "fleet").await?;
//!
//! let breaker = kit.breaker("llm-api").failure_rate(0.5).build()?;
//! let answer = breaker.call(async { Ok::<_, std::io::Error>("ok") }).await?;
//! assert_eq!(answer, "ok");
//!
//! let project = kit.context().build()?.entity("project", "p1")?;
//! assert_eq!(project.set([("status", "\"running\"")]).await?, 1); // fields hold JSON
//!
//! let loss = kit.metrics().build()?.gauge("loss", &[("run", "r1")])?;
//! loss.record(0.25).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use coordkit_core as core;

/// Shared context: entities with versions, compare-and-set, history, watch, agent status.
#[cfg(feature = "context")]
#[cfg_attr(docsrs, doc(cfg(feature = "context")))]
pub use coordkit_context as context;

/// Error tracking with signature deduplication, regressions and cascade correlation.
#[cfg(feature = "errors")]
#[cfg_attr(docsrs, doc(cfg(feature = "errors")))]
pub use coordkit_errors as errors;

/// Distributed circuit breakers that every process agrees on.
#[cfg(feature = "circuit-breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "circuit-breaker")))]
pub use coordkit_circuit_breaker as circuit_breaker;

/// Retry queues with backoff, leases, dead letters and a worker runtime.
#[cfg(feature = "retry-queue")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry-queue")))]
pub use coordkit_retry_queue as retry_queue;

/// Trimmed time-series metrics: gauges, counters, histograms, aggregations, rollups.
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use coordkit_metrics as metrics;

/// Agent messaging: typed channels, durable inboxes, request/reply and capability routing.
#[cfg(feature = "mesh")]
#[cfg_attr(docsrs, doc(cfg(feature = "mesh")))]
pub use coordkit_mesh as mesh;

/// Durable workflow state: fenced leases, per-step checkpoints, crash-safe resume, retention.
#[cfg(feature = "workflow")]
#[cfg_attr(docsrs, doc(cfg(feature = "workflow")))]
pub use coordkit_workflow as workflow;

mod facade;

pub use facade::Coordkit;
