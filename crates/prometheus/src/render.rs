//! One scrape: read every watched instance, encode the text format.

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use coordkit_circuit_breaker::{CircuitBreaker, Snapshot};
use coordkit_context::Status;
use coordkit_core::{Error, Result};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use coordkit_errors::ErrorTracker;
use coordkit_retry_queue::Queue;

use crate::exporter::{Exporter, context_error, core_error};
use crate::series::{Labels, Series};

/// The fixed names of a breaker's states (`coordkit_breaker_state{state=…}`).
pub const BREAKER_STATES: [&str; 6] = [
    "closed",
    "open",
    "half_open",
    "forced_open",
    "disabled",
    "metrics_only",
];

/// The fixed names of an agent's status (`coordkit_agents{status=…}`); a custom status
/// counts as `other`.
pub const AGENT_STATUSES: [&str; 4] = ["idle", "busy", "failed", "other"];

/// The families of one scrape, registered under the `coordkit_` prefix.
struct Families {
    queue_tasks: Series,
    queue_completed: Series,
    queue_dead_lettered: Series,
    queue_oldest_ready_age: Series,
    queue_paused: Series,
    breaker_state: Series,
    breaker_transitions: Series,
    breaker_reopenings: Series,
    breaker_window_calls: Series,
    breaker_window_failures: Series,
    breaker_window_slow_calls: Series,
    errors_occurrences: Series,
    errors_signature_window: Series,
    errors_signature_occurrences: Series,
    agents_alive: Series,
    agents: Series,
    worker_claimed: Series,
    worker_settled: Series,
    worker_panics: Series,
    worker_store_errors: Series,
    worker_handler_runs: Series,
    worker_handler_seconds: Series,
    instance_up: Series,
    scrape_duration: Gauge<f64, AtomicU64>,
}

impl Default for Families {
    fn default() -> Self {
        Self {
            queue_tasks: Series::gauge(),
            queue_completed: Series::counter(),
            queue_dead_lettered: Series::counter(),
            queue_oldest_ready_age: Series::gauge(),
            queue_paused: Series::gauge(),
            breaker_state: Series::gauge(),
            breaker_transitions: Series::counter(),
            breaker_reopenings: Series::gauge(),
            breaker_window_calls: Series::gauge(),
            breaker_window_failures: Series::gauge(),
            breaker_window_slow_calls: Series::gauge(),
            errors_occurrences: Series::counter(),
            errors_signature_window: Series::gauge(),
            errors_signature_occurrences: Series::counter(),
            agents_alive: Series::gauge(),
            agents: Series::gauge(),
            worker_claimed: Series::counter(),
            worker_settled: Series::counter(),
            worker_panics: Series::counter(),
            worker_store_errors: Series::counter(),
            worker_handler_runs: Series::counter(),
            worker_handler_seconds: Series::counter(),
            instance_up: Series::gauge(),
            scrape_duration: Gauge::default(),
        }
    }
}

impl Families {
    fn register(self, window_secs: u64, top: u32) -> Registry {
        let mut r = Registry::with_prefix("coordkit");
        r.register(
            "queue_tasks",
            "Tasks of a retry queue by state (ready, delayed, leased, dead: the dead-letter queue)",
            self.queue_tasks,
        );
        r.register(
            "queue_completed_tasks",
            "Tasks of a retry queue acknowledged since it was created",
            self.queue_completed,
        );
        r.register(
            "queue_dead_lettered_tasks",
            "Tasks of a retry queue dead-lettered since it was created",
            self.queue_dead_lettered,
        );
        r.register_with_unit(
            "queue_oldest_ready_age",
            "How long the oldest ready task of a retry queue has waited (0 when none is ready)",
            Unit::Seconds,
            self.queue_oldest_ready_age,
        );
        r.register(
            "queue_paused",
            "1 when a retry queue's claims are paused",
            self.queue_paused,
        );
        r.register(
            "breaker_state",
            "1 for a circuit breaker's current state, 0 for the others",
            self.breaker_state,
        );
        r.register(
            "breaker_transitions",
            "State transitions of a circuit breaker (its epoch; restarts from 0 when its idle \
             state expired)",
            self.breaker_transitions,
        );
        r.register(
            "breaker_reopenings",
            "Consecutive re-openings of a circuit breaker (they lengthen its open periods)",
            self.breaker_reopenings,
        );
        r.register(
            "breaker_window_calls",
            "Calls in a circuit breaker's window",
            self.breaker_window_calls,
        );
        r.register(
            "breaker_window_failures",
            "Failed calls in a circuit breaker's window",
            self.breaker_window_failures,
        );
        r.register(
            "breaker_window_slow_calls",
            "Slow calls in a circuit breaker's window",
            self.breaker_window_slow_calls,
        );
        r.register(
            "errors_occurrences",
            "Errors an error tracker has counted",
            self.errors_occurrences,
        );
        r.register(
            "errors_signature_window_occurrences",
            format!(
                "Occurrences of an error signature in the last {window_secs} s, for the \
                 {top} most frequent signatures of a tracker"
            ),
            self.errors_signature_window,
        );
        r.register(
            "errors_signature_occurrences",
            format!(
                "Occurrences of an error signature since it was first seen, for the {top} \
                 most frequent signatures of a tracker in the window"
            ),
            self.errors_signature_occurrences,
        );
        r.register(
            "agents_alive",
            "Live agents of an agent registry (heartbeat not expired)",
            self.agents_alive,
        );
        r.register(
            "agents",
            "Live agents of an agent registry by status (idle, busy, failed, other)",
            self.agents,
        );
        r.register(
            "worker_claimed_tasks",
            "Tasks this process's worker leased",
            self.worker_claimed,
        );
        r.register(
            "worker_settled_tasks",
            "Outcomes this process's worker recorded: acked, retried, retried_in_place, \
             dead_lettered, deferred, lease_lost, already_settled",
            self.worker_settled,
        );
        r.register(
            "worker_panics",
            "Handlers of this process's worker that panicked",
            self.worker_panics,
        );
        r.register(
            "worker_store_errors",
            "Calls to Redis of this process's worker that failed (and were retried)",
            self.worker_store_errors,
        );
        r.register(
            "worker_handler_runs",
            "Handler runs this process's worker finished (each attempt, panics included)",
            self.worker_handler_runs,
        );
        r.register_with_unit(
            "worker_handler",
            "Time spent in those handler runs (mean latency: its rate over the runs' rate)",
            Unit::Seconds,
            self.worker_handler_seconds,
        );
        r.register(
            "exporter_instance_up",
            "1 when the last scrape read an instance, 0 when the read failed",
            self.instance_up,
        );
        r.register_with_unit(
            "exporter_scrape_duration",
            "How long the scrape's reads took",
            Unit::Seconds,
            self.scrape_duration,
        );
        r
    }
}

fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

/// What one scrape read: the text, and the reads that failed.
pub(crate) struct Scrape {
    pub(crate) text: String,
    pub(crate) reads: usize,
    pub(crate) failures: Vec<(&'static str, String, Error)>,
}

impl Exporter {
    /// The text format (OpenMetrics 1.0, which Prometheus scrapes) of every watched instance,
    /// each read now through its public API, one round trip per queue and agent registry, two
    /// per breaker (its stored rules, then its snapshot under them) and error tracker, in turn.
    ///
    /// An instance whose read fails is left out, with `coordkit_exporter_instance_up` 0 for
    /// it and a `warn` event (target `coordkit::prometheus`), and the others are exported.
    /// When every read failed (the store is down), the answer is the first failure's error
    /// instead (the server answers 503): a page of only in-process worker counters would hide
    /// that nothing else could be read.
    pub async fn render(&self) -> Result<String> {
        let scrape = self.scrape().await;
        if scrape.reads > 0
            && scrape.failures.len() == scrape.reads
            && let Some((_, _, first)) = scrape.failures.into_iter().next()
        {
            return Err(first);
        }
        Ok(scrape.text)
    }

    pub(crate) async fn scrape(&self) -> Scrape {
        let started = Instant::now();
        let inner = &self.inner;
        let (found, index_failures) = self.discovered().await;
        let mut f = Families::default();
        let mut reads = 0;
        let mut failures = Vec::new();
        let mut up = Series::gauge();
        let mut outcome = |primitive: &'static str, name: &str, result: Result<()>| {
            reads += 1;
            let ok = match result {
                Ok(()) => 1,
                Err(e) => {
                    tracing::warn!(
                        target: "coordkit::prometheus",
                        primitive,
                        instance = name,
                        error = %e,
                        "scrape: read failed"
                    );
                    failures.push((primitive, name.to_owned(), e));
                    0
                }
            };
            up.push(labels([("primitive", primitive), ("name", name)]), ok);
        };

        for (kind, e) in index_failures {
            outcome("index", kind, Err(e));
        }

        for queue in inner.queues.iter().chain(&found.queues) {
            let name = queue.name();
            let result = queue.stats().await.map_err(core_error).map(|s| {
                for (state, n) in [
                    ("ready", s.ready),
                    ("delayed", s.delayed),
                    ("leased", s.leased),
                    ("dead", s.dead),
                ] {
                    f.queue_tasks
                        .push(labels([("queue", name), ("state", state)]), n);
                }
                let l = || labels([("queue", name)]);
                f.queue_completed.push(l(), s.completed);
                f.queue_dead_lettered.push(l(), s.dead_lettered_total);
                f.queue_oldest_ready_age
                    .push_f64(l(), s.oldest_ready_age.map_or(0.0, |d| d.as_secs_f64()));
                f.queue_paused.push(l(), u64::from(s.paused));
            });
            outcome("queue", name, result);
        }

        for breaker in inner.breakers.iter().chain(&found.breakers) {
            let name = breaker.name();
            let result = self.breaker_snapshot(breaker).await.map(|s| {
                for state in BREAKER_STATES {
                    f.breaker_state.push(
                        labels([("breaker", name), ("state", state)]),
                        u64::from(s.state.as_str() == state),
                    );
                }
                let l = || labels([("breaker", name)]);
                f.breaker_transitions.push(l(), s.epoch);
                f.breaker_reopenings.push(l(), s.reopenings);
                f.breaker_window_calls.push(l(), s.calls);
                f.breaker_window_failures.push(l(), s.failures);
                f.breaker_window_slow_calls.push(l(), s.slow_calls);
            });
            outcome("breaker", name, result);
        }

        for tracker in inner.trackers.iter().chain(&found.trackers) {
            let name = tracker.name();
            let result = async {
                let counts = tracker.counts().await?;
                let top = tracker
                    .top(inner.signature_window, inner.top_signatures)
                    .await?;
                Ok::<_, Error>((counts, top))
            }
            .await
            .map(|(counts, top)| {
                f.errors_occurrences
                    .push(labels([("tracker", name)]), counts.total());
                // The script answers at most `top_signatures`; the bound holds here too.
                for s in top.signatures.iter().take(inner.top_signatures as usize) {
                    let l = || labels([("tracker", name), ("signature", &s.signature)]);
                    f.errors_signature_window.push(l(), s.in_window);
                    f.errors_signature_occurrences.push(l(), s.total);
                }
            });
            outcome("error_tracker", name, result);
        }

        for registry in &inner.registries {
            let name = registry.name();
            let result = registry.all().await.map_err(context_error).map(|agents| {
                f.agents_alive
                    .push(labels([("registry", name)]), agents.len() as u64);
                let mut by_status = [0u64; 4];
                for a in &agents {
                    let at = match a.status.status {
                        Status::Idle => 0,
                        Status::Busy => 1,
                        Status::Failed => 2,
                        Status::Custom(_) => 3,
                    };
                    by_status[at] += 1;
                }
                for (status, n) in AGENT_STATUSES.iter().zip(by_status) {
                    f.agents
                        .push(labels([("registry", name), ("status", status)]), n);
                }
            });
            outcome("agent_registry", name, result);
        }

        for (worker, handle) in &inner.workers {
            let s = handle.get();
            let queue = handle.queue();
            let l = || labels([("queue", queue), ("worker", worker)]);
            f.worker_claimed.push(l(), s.claimed);
            f.worker_panics.push(l(), s.panics);
            f.worker_store_errors.push(l(), s.store_errors);
            f.worker_handler_runs.push(l(), s.handler_runs);
            f.worker_handler_seconds
                .push_f64(l(), s.handler_micros as f64 / 1_000_000.0);
            for (outcome, n) in [
                ("acked", s.acked),
                ("retried", s.retried),
                ("retried_in_place", s.retried_in_place),
                ("dead_lettered", s.dead_lettered),
                ("deferred", s.deferred),
                ("lease_lost", s.lease_lost),
                ("already_settled", s.already_settled),
            ] {
                f.worker_settled.push(
                    labels([("queue", queue), ("worker", worker), ("outcome", outcome)]),
                    n,
                );
            }
        }

        f.instance_up = up;
        f.scrape_duration.set(started.elapsed().as_secs_f64());
        let registry = f.register(inner.signature_window.as_secs(), inner.top_signatures);
        let mut text = String::new();
        // Writing to a String cannot fail, and every name and label here encodes.
        encode(&mut text, &registry).expect("encoding to a String");
        Scrape {
            text,
            reads,
            failures,
        }
    }

    /// A breaker's snapshot read under the rules its state was last written with (as the
    /// `coordkit` command reads it): the breaker's script applies the caller's rules when it
    /// moves a breaker on by its deadlines, so a reader with other rules would misread the
    /// window and could move the breaker differently from its own processes. Without stored
    /// rules (no state yet, or a state written before breakers kept them) the default rules
    /// read it: a breaker with no state is closed under any.
    /// With discovery on, the indexed queues, breakers and trackers not named already (one
    /// call per kind), and the kinds whose index could not be read.
    async fn discovered(&self) -> (Found, Vec<(&'static str, Error)>) {
        let inner = &self.inner;
        let mut found = Found::default();
        let mut failures = Vec::new();
        if !inner.discover {
            return (found, failures);
        }
        let (pool, ks) = (&inner.pool, &inner.keyspace);
        let fresh = |names: Vec<String>, named: &[&str]| -> Vec<String> {
            names
                .into_iter()
                .filter(|n| !named.contains(&n.as_str()))
                .collect()
        };
        match Queue::list(pool, ks).await {
            Ok(listing) => {
                let named: Vec<&str> = inner.queues.iter().map(Queue::name).collect();
                for name in fresh(listing.names, &named) {
                    match Queue::builder(pool, ks, &name).build() {
                        Ok(q) => found.queues.push(q),
                        Err(e) => failures.push(("queue", core_error(e))),
                    }
                }
            }
            Err(e) => failures.push(("queue", core_error(e))),
        }
        match CircuitBreaker::list(pool, ks).await {
            Ok(listing) => {
                let named: Vec<&str> = inner.breakers.iter().map(CircuitBreaker::name).collect();
                for name in fresh(listing.names, &named) {
                    match CircuitBreaker::builder(pool, ks, &name).build() {
                        Ok(b) => found.breakers.push(b),
                        Err(e) => failures.push(("breaker", e)),
                    }
                }
            }
            Err(e) => failures.push(("breaker", e)),
        }
        match ErrorTracker::list(pool, ks).await {
            Ok(listing) => {
                let named: Vec<&str> = inner.trackers.iter().map(ErrorTracker::name).collect();
                for name in fresh(listing.names, &named) {
                    match ErrorTracker::builder(pool, ks, &name).build() {
                        Ok(t) => found.trackers.push(t),
                        Err(e) => failures.push(("error_tracker", e)),
                    }
                }
            }
            Err(e) => failures.push(("error_tracker", e)),
        }
        (found, failures)
    }

    async fn breaker_snapshot(&self, breaker: &CircuitBreaker) -> Result<Snapshot> {
        let inner = &self.inner;
        match breaker.stored_config().await? {
            Some(rules) => {
                CircuitBreaker::builder(&inner.pool, &inner.keyspace, breaker.name())
                    .config(rules)
                    .build()?
                    .snapshot()
                    .await
            }
            None => breaker.snapshot().await,
        }
    }
}

/// The instances discovery found at one scrape.
#[derive(Default)]
struct Found {
    queues: Vec<Queue>,
    breakers: Vec<CircuitBreaker>,
    trackers: Vec<ErrorTracker>,
}
