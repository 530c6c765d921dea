//! # coordkit-prometheus
//!
//! A Prometheus exporter for [coordkit](https://docs.rs/coordkit)'s primitives: what is
//! backing up, what is dead-lettered, which breaker is open, which error signature is
//! exploding, how many agents are alive. Each scrape reads the watched instances through their
//! public APIs (`Queue::stats`, `CircuitBreaker::snapshot`, `ErrorTracker::counts` and `top`,
//! `AgentRegistry::all`), so the figures are Redis's at that moment, not a copy kept in the
//! process; the workers of the process are read in-process.
//!
//! ```no_run
//! # async fn run(pool: coordkit_core::Pool, keyspace: coordkit_core::Keyspace,
//! #              worker: coordkit_retry_queue::Worker) -> Result<(), Box<dyn std::error::Error>> {
//! use coordkit_prometheus::Exporter;
//!
//! let exporter = Exporter::builder(&pool, &keyspace)
//!     .queues(["emails", "reports"])
//!     .breaker("llm-api")
//!     .error_tracker("agents")
//!     .agent_registry("fleet")
//!     .worker("mailer", worker.stats_handle())
//!     .build()?;
//! // Serve GET /metrics (or nest `exporter.router()` in an axum app, or call
//! // `exporter.render().await?` from any server).
//! exporter.serve("127.0.0.1:9464").await?;
//! # Ok(()) }
//! ```
//!
//! The `coordkit serve-metrics` command of `coordkit-cli` runs this exporter.
//!
//! ## Metrics
//!
//! Every name starts with `coordkit_` and carries its unit; counters end in `_total`.
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `coordkit_queue_tasks` | gauge | `queue`, `state` (`ready`, `delayed`, `leased`, `dead`) |
//! | `coordkit_queue_completed_tasks_total` | counter | `queue` |
//! | `coordkit_queue_dead_lettered_tasks_total` | counter | `queue` |
//! | `coordkit_queue_oldest_ready_age_seconds` | gauge | `queue` |
//! | `coordkit_queue_paused` | gauge (0/1) | `queue` |
//! | `coordkit_breaker_state` | gauge (1 for the current state) | `breaker`, `state` (`closed`, `open`, `half_open`, `forced_open`, `disabled`, `metrics_only`) |
//! | `coordkit_breaker_transitions_total` | counter (the breaker's epoch) | `breaker` |
//! | `coordkit_breaker_reopenings` | gauge | `breaker` |
//! | `coordkit_breaker_window_calls`, `…_failures`, `…_slow_calls` | gauge | `breaker` |
//! | `coordkit_errors_occurrences_total` | counter | `tracker` |
//! | `coordkit_errors_signature_window_occurrences` | gauge | `tracker`, `signature` (top N) |
//! | `coordkit_errors_signature_occurrences_total` | counter | `tracker`, `signature` (top N) |
//! | `coordkit_agents_alive` | gauge | `registry` |
//! | `coordkit_agents` | gauge | `registry`, `status` (`idle`, `busy`, `failed`, `other`) |
//! | `coordkit_worker_claimed_tasks_total` | counter | `queue`, `worker` |
//! | `coordkit_worker_settled_tasks_total` | counter | `queue`, `worker`, `outcome` (`acked`, `retried`, `retried_in_place`, `dead_lettered`, `deferred`, `lease_lost`, `already_settled`) |
//! | `coordkit_worker_panics_total`, `coordkit_worker_store_errors_total` | counter | `queue`, `worker` |
//! | `coordkit_worker_handler_runs_total`, `coordkit_worker_handler_seconds_total` | counter | `queue`, `worker`: the mean handler latency is the rate of the seconds over the rate of the runs |
//! | `coordkit_exporter_instance_up` | gauge (0/1) | `primitive`, `name` |
//! | `coordkit_exporter_scrape_duration_seconds` | gauge | |
//!
//! **Labels are bounded**: instance names (the ones given to the builder), fixed state,
//! status and outcome names, the worker names the application gives, and for error
//! signatures only the [`top_signatures`](ExporterBuilder::top_signatures) most frequent
//! (default 10) per tracker within the window, by their signature id (what
//! `coordkit errors show` takes). No task id, agent name or error text is ever a label, so
//! the number of series does not grow with the traffic.
//!
//! **Breakers** are read under the rules their state was last written with
//! (`CircuitBreaker::stored_config`), as the `coordkit` command reads them: the breaker's
//! script applies the reader's rules when it moves a breaker on by its deadlines, so the
//! default rules would misread another window.
//!
//! **Failures.** An instance whose read fails is left out of the page, with
//! `coordkit_exporter_instance_up{primitive, name}` 0 and a `warn` event; the others are
//! exported (200). When every read fails (the store is down), the server answers 503 with
//! one line, `coordkit: cannot read the store: …`, so Prometheus's own `up` goes to 0.
//!
//! **Discovery.** [`ExporterBuilder::discover`] also watches every queue, breaker and error
//! tracker the namespace's instance index lists, found again at each scrape.
//!
//! **Not exported**: handler latency percentiles (a worker keeps its runs' count and total
//! time, `coordkit_worker_handler_runs_total` and `…_handler_seconds_total`, so the mean),
//! breaker transitions per kind (the breaker stores only its epoch).
//!
//! The encoding is `prometheus-client`'s (the Prometheus project's own Rust client: typed
//! families, no global registry, no protobuf), in the OpenMetrics 1.0 text format.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod exporter;
mod render;
mod series;
mod serve;

pub use exporter::{
    DEFAULT_SIGNATURE_WINDOW, DEFAULT_TOP_SIGNATURES, Exporter, ExporterBuilder,
    MAX_SIGNATURE_WINDOW, MAX_TOP_SIGNATURES, MAX_WORKERS,
};
pub use render::{AGENT_STATUSES, BREAKER_STATES};
pub use serve::CONTENT_TYPE;
