//! One scrape: read every watched instance, encode the text format.

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use coordkit_context::Status;
use coordkit_core::{Error, Result};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::exporter::{Exporter, context_error, core_error};

/// The labels of a series: fixed names, bounded values (instance names, fixed states).
type Labels = Vec<(&'static str, String)>;
type IntGauge = Family<Labels, Gauge>;
type FloatGauge = Family<Labels, Gauge<f64, AtomicU64>>;
type IntCounter = Family<Labels, Counter>;

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
#[derive(Default)]
struct Families {
    queue_tasks: IntGauge,
    queue_completed: IntCounter,
    queue_dead_lettered: IntCounter,
    queue_oldest_ready_age: FloatGauge,
    queue_paused: IntGauge,
    breaker_state: IntGauge,
    breaker_transitions: IntCounter,
    breaker_reopenings: IntGauge,
    breaker_window_calls: IntGauge,
    breaker_window_failures: IntGauge,
    breaker_window_slow_calls: IntGauge,
    errors_occurrences: IntCounter,
    errors_signature_window: IntGauge,
    errors_signature_occurrences: IntCounter,
    agents_alive: IntGauge,
    agents: IntGauge,
    worker_claimed: IntCounter,
    worker_settled: IntCounter,
    worker_panics: IntCounter,
    worker_store_errors: IntCounter,
    instance_up: IntGauge,
    scrape_duration: Gauge<f64, AtomicU64>,
}

impl Families {
    fn register(&self, window_secs: u64, top: u32) -> Registry {
        let mut r = Registry::with_prefix("coordkit");
        r.register(
            "queue_tasks",
            "Tasks of a retry queue by state (ready, delayed, leased, dead: the dead-letter queue).",
            self.queue_tasks.clone(),
        );
        r.register(
            "queue_completed_tasks",
            "Tasks of a retry queue acknowledged since it was created.",
            self.queue_completed.clone(),
        );
        r.register(
            "queue_dead_lettered_tasks",
            "Tasks of a retry queue dead-lettered since it was created.",
            self.queue_dead_lettered.clone(),
        );
        r.register_with_unit(
            "queue_oldest_ready_age",
            "How long the oldest ready task of a retry queue has waited (0 when none is ready).",
            Unit::Seconds,
            self.queue_oldest_ready_age.clone(),
        );
        r.register(
            "queue_paused",
            "1 when a retry queue's claims are paused.",
            self.queue_paused.clone(),
        );
        r.register(
            "breaker_state",
            "1 for a circuit breaker's current state, 0 for the others.",
            self.breaker_state.clone(),
        );
        r.register(
            "breaker_transitions",
            "State transitions of a circuit breaker (its epoch; restarts from 0 when its idle \
             state expired).",
            self.breaker_transitions.clone(),
        );
        r.register(
            "breaker_reopenings",
            "Consecutive re-openings of a circuit breaker (they lengthen its open periods).",
            self.breaker_reopenings.clone(),
        );
        r.register(
            "breaker_window_calls",
            "Calls in a circuit breaker's window.",
            self.breaker_window_calls.clone(),
        );
        r.register(
            "breaker_window_failures",
            "Failed calls in a circuit breaker's window.",
            self.breaker_window_failures.clone(),
        );
        r.register(
            "breaker_window_slow_calls",
            "Slow calls in a circuit breaker's window.",
            self.breaker_window_slow_calls.clone(),
        );
        r.register(
            "errors_occurrences",
            "Errors an error tracker has counted.",
            self.errors_occurrences.clone(),
        );
        r.register(
            "errors_signature_window_occurrences",
            format!(
                "Occurrences of an error signature in the last {window_secs} s, for the \
                 {top} most frequent signatures of a tracker."
            ),
            self.errors_signature_window.clone(),
        );
        r.register(
            "errors_signature_occurrences",
            format!(
                "Occurrences of an error signature since it was first seen, for the {top} \
                 most frequent signatures of a tracker in the window."
            ),
            self.errors_signature_occurrences.clone(),
        );
        r.register(
            "agents_alive",
            "Live agents of an agent registry (heartbeat not expired).",
            self.agents_alive.clone(),
        );
        r.register(
            "agents",
            "Live agents of an agent registry by status (idle, busy, failed, other).",
            self.agents.clone(),
        );
        r.register(
            "worker_claimed_tasks",
            "Tasks this process's worker leased.",
            self.worker_claimed.clone(),
        );
        r.register(
            "worker_settled_tasks",
            "Outcomes this process's worker recorded: acked, retried, retried_in_place, \
             dead_lettered, deferred, lease_lost, already_settled.",
            self.worker_settled.clone(),
        );
        r.register(
            "worker_panics",
            "Handlers of this process's worker that panicked.",
            self.worker_panics.clone(),
        );
        r.register(
            "worker_store_errors",
            "Calls to Redis of this process's worker that failed (and were retried).",
            self.worker_store_errors.clone(),
        );
        r.register(
            "exporter_instance_up",
            "1 when the last scrape read an instance, 0 when the read failed.",
            self.instance_up.clone(),
        );
        r.register_with_unit(
            "exporter_scrape_duration",
            "How long the scrape's reads took.",
            Unit::Seconds,
            self.scrape_duration.clone(),
        );
        r
    }
}

fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What one scrape read: the text, and the reads that failed.
pub(crate) struct Scrape {
    pub(crate) text: String,
    pub(crate) reads: usize,
    pub(crate) failures: Vec<(&'static str, String, Error)>,
}

impl Exporter {
    /// The text format (OpenMetrics 1.0, which Prometheus scrapes) of every watched instance,
    /// each read now through its public API, one round trip per queue, breaker and agent
    /// registry and two per error tracker, in turn.
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
        let f = Families::default();
        let mut reads = 0;
        let mut failures = Vec::new();
        let mut outcome = |primitive: &'static str, name: &str, result: Result<()>| {
            reads += 1;
            let up = match result {
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
            f.instance_up
                .get_or_create(&labels([("primitive", primitive), ("name", name)]))
                .set(up);
        };

        for queue in &inner.queues {
            let result = queue.stats().await.map_err(core_error).map(|s| {
                let name = queue.name();
                for (state, n) in [
                    ("ready", s.ready),
                    ("delayed", s.delayed),
                    ("leased", s.leased),
                    ("dead", s.dead),
                ] {
                    f.queue_tasks
                        .get_or_create(&labels([("queue", name), ("state", state)]))
                        .set(int(n));
                }
                let l = labels([("queue", name)]);
                f.queue_completed.get_or_create(&l).inc_by(s.completed);
                f.queue_dead_lettered
                    .get_or_create(&l)
                    .inc_by(s.dead_lettered_total);
                f.queue_oldest_ready_age
                    .get_or_create(&l)
                    .set(s.oldest_ready_age.map_or(0.0, |d| d.as_secs_f64()));
                f.queue_paused.get_or_create(&l).set(i64::from(s.paused));
            });
            outcome("queue", queue.name(), result);
        }

        for breaker in &inner.breakers {
            let result = breaker.snapshot().await.map(|s| {
                let name = breaker.name();
                for state in BREAKER_STATES {
                    f.breaker_state
                        .get_or_create(&labels([("breaker", name), ("state", state)]))
                        .set(i64::from(s.state.as_str() == state));
                }
                let l = labels([("breaker", name)]);
                f.breaker_transitions.get_or_create(&l).inc_by(s.epoch);
                f.breaker_reopenings
                    .get_or_create(&l)
                    .set(int(s.reopenings));
                f.breaker_window_calls.get_or_create(&l).set(int(s.calls));
                f.breaker_window_failures
                    .get_or_create(&l)
                    .set(int(s.failures));
                f.breaker_window_slow_calls
                    .get_or_create(&l)
                    .set(int(s.slow_calls));
            });
            outcome("breaker", breaker.name(), result);
        }

        for tracker in &inner.trackers {
            let result = async {
                let counts = tracker.counts().await?;
                let top = tracker
                    .top(inner.signature_window, inner.top_signatures)
                    .await?;
                Ok::<_, Error>((counts, top))
            }
            .await
            .map(|(counts, top)| {
                let name = tracker.name();
                f.errors_occurrences
                    .get_or_create(&labels([("tracker", name)]))
                    .inc_by(counts.total());
                // The script answers at most `top_signatures`; the bound holds here too.
                for s in top.signatures.iter().take(inner.top_signatures as usize) {
                    let l = labels([("tracker", name), ("signature", &s.signature)]);
                    f.errors_signature_window
                        .get_or_create(&l)
                        .set(int(s.in_window));
                    f.errors_signature_occurrences
                        .get_or_create(&l)
                        .inc_by(s.total);
                }
            });
            outcome("error_tracker", tracker.name(), result);
        }

        for registry in &inner.registries {
            let result = registry.all().await.map_err(context_error).map(|agents| {
                let name = registry.name();
                f.agents_alive
                    .get_or_create(&labels([("registry", name)]))
                    .set(int(agents.len() as u64));
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
                        .get_or_create(&labels([("registry", name), ("status", status)]))
                        .set(int(n));
                }
            });
            outcome("agent_registry", registry.name(), result);
        }

        for (worker, handle) in &inner.workers {
            let s = handle.get();
            let queue = handle.queue();
            let l = labels([("queue", queue), ("worker", worker)]);
            f.worker_claimed.get_or_create(&l).inc_by(s.claimed);
            f.worker_panics.get_or_create(&l).inc_by(s.panics);
            f.worker_store_errors
                .get_or_create(&l)
                .inc_by(s.store_errors);
            for (outcome, n) in [
                ("acked", s.acked),
                ("retried", s.retried),
                ("retried_in_place", s.retried_in_place),
                ("dead_lettered", s.dead_lettered),
                ("deferred", s.deferred),
                ("lease_lost", s.lease_lost),
                ("already_settled", s.already_settled),
            ] {
                f.worker_settled
                    .get_or_create(&labels([
                        ("queue", queue),
                        ("worker", worker),
                        ("outcome", outcome),
                    ]))
                    .inc_by(n);
            }
        }

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
}
