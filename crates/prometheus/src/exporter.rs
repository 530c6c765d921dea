//! [`Exporter`] and its builder: which instances to watch, validated once.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use coordkit_circuit_breaker::CircuitBreaker;
use coordkit_context::{AgentRegistry, ContextStore};
use coordkit_core::{Error, Keyspace, Pool, Result};
use coordkit_errors::ErrorTracker;
use coordkit_retry_queue::{Queue, WorkerStatsHandle};

/// The default number of error signatures exported per tracker.
pub const DEFAULT_TOP_SIGNATURES: u32 = 10;
/// The most error signatures a tracker may export (each is one series).
pub const MAX_TOP_SIGNATURES: u32 = 100;
/// The default window the top signatures are counted over.
pub const DEFAULT_SIGNATURE_WINDOW: Duration = Duration::from_secs(3600);
/// The longest window the top signatures may be counted over.
pub const MAX_SIGNATURE_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// The most workers one exporter may watch (each worker is a few series).
pub const MAX_WORKERS: usize = 1_000;

/// A Prometheus exporter of coordkit's primitives: each [`render`](Self::render) (each
/// scrape) reads every watched instance through its public API and encodes the text format.
/// Cheap to clone (an `Arc` inside); see the [crate docs](crate) for the metrics.
#[derive(Clone)]
pub struct Exporter {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: Pool,
    pub(crate) keyspace: Keyspace,
    pub(crate) queues: Vec<Queue>,
    pub(crate) breakers: Vec<CircuitBreaker>,
    pub(crate) trackers: Vec<ErrorTracker>,
    pub(crate) registries: Vec<AgentRegistry>,
    pub(crate) workers: Vec<(String, WorkerStatsHandle)>,
    pub(crate) top_signatures: u32,
    pub(crate) signature_window: Duration,
    pub(crate) discover: bool,
}

impl fmt::Debug for Exporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Exporter")
            .field("namespace", &i.keyspace.namespace())
            .field(
                "queues",
                &i.queues.iter().map(Queue::name).collect::<Vec<_>>(),
            )
            .field(
                "breakers",
                &i.breakers
                    .iter()
                    .map(CircuitBreaker::name)
                    .collect::<Vec<_>>(),
            )
            .field(
                "error_trackers",
                &i.trackers
                    .iter()
                    .map(ErrorTracker::name)
                    .collect::<Vec<_>>(),
            )
            .field(
                "agent_registries",
                &i.registries
                    .iter()
                    .map(AgentRegistry::name)
                    .collect::<Vec<_>>(),
            )
            .field(
                "workers",
                &i.workers
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("top_signatures", &i.top_signatures)
            .field("signature_window", &i.signature_window)
            .finish()
    }
}

impl Exporter {
    /// A builder of an exporter of the instances of `keyspace`'s namespace, read over `pool`.
    pub fn builder(pool: &Pool, keyspace: &Keyspace) -> ExporterBuilder {
        ExporterBuilder {
            pool: pool.clone(),
            keyspace: keyspace.clone(),
            queues: Vec::new(),
            breakers: Vec::new(),
            trackers: Vec::new(),
            registries: Vec::new(),
            workers: Vec::new(),
            top_signatures: DEFAULT_TOP_SIGNATURES,
            signature_window: DEFAULT_SIGNATURE_WINDOW,
            discover: false,
        }
    }

    /// The namespace it exports.
    pub fn namespace(&self) -> &str {
        self.inner.keyspace.namespace()
    }
}

/// Builds an [`Exporter`]: which instances to watch, and how many error signatures to export.
/// Instances are named, or discovered at each scrape from the namespace's index
/// ([`discover`](Self::discover)); `build` validates every name and option.
pub struct ExporterBuilder {
    pool: Pool,
    keyspace: Keyspace,
    queues: Vec<String>,
    breakers: Vec<String>,
    trackers: Vec<String>,
    registries: Vec<String>,
    workers: Vec<(String, WorkerStatsHandle)>,
    top_signatures: u32,
    signature_window: Duration,
    discover: bool,
}

impl fmt::Debug for ExporterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExporterBuilder")
            .field("namespace", &self.keyspace.namespace())
            .field("queues", &self.queues)
            .field("breakers", &self.breakers)
            .field("error_trackers", &self.trackers)
            .field("agent_registries", &self.registries)
            .field("top_signatures", &self.top_signatures)
            .field("signature_window", &self.signature_window)
            .finish_non_exhaustive()
    }
}

impl ExporterBuilder {
    /// Watch the retry queue `name`: its depth per state, totals, oldest ready age, pause.
    pub fn queue(mut self, name: impl Into<String>) -> Self {
        self.queues.push(name.into());
        self
    }

    /// Watch each of these retry queues.
    pub fn queues<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.queues.extend(names.into_iter().map(Into::into));
        self
    }

    /// Watch the circuit breaker `name`: its state, transitions and window.
    pub fn breaker(mut self, name: impl Into<String>) -> Self {
        self.breakers.push(name.into());
        self
    }

    /// Watch each of these circuit breakers.
    pub fn breakers<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.breakers.extend(names.into_iter().map(Into::into));
        self
    }

    /// Watch the error tracker `name`: its occurrences and its top signatures.
    pub fn error_tracker(mut self, name: impl Into<String>) -> Self {
        self.trackers.push(name.into());
        self
    }

    /// Watch each of these error trackers.
    pub fn error_trackers<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.trackers.extend(names.into_iter().map(Into::into));
        self
    }

    /// Watch the agent registry `name` (coordkit-context's): its live agents by status.
    pub fn agent_registry(mut self, name: impl Into<String>) -> Self {
        self.registries.push(name.into());
        self
    }

    /// Watch each of these agent registries.
    pub fn agent_registries<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.registries.extend(names.into_iter().map(Into::into));
        self
    }

    /// Export a worker of this process under the label `worker="name"` (its queue is the
    /// `queue` label): its claims and outcomes, read in-process from
    /// [`Worker::stats_handle`](coordkit_retry_queue::Worker::stats_handle). `name` is a
    /// label value: keep it to a bounded set (a role, not a task or request id). At most
    /// [`MAX_WORKERS`] workers; a (queue, name) pair given twice fails `build`.
    pub fn worker(mut self, name: impl Into<String>, stats: WorkerStatsHandle) -> Self {
        self.workers.push((name.into(), stats));
        self
    }

    /// Also watch every queue, breaker and error tracker the namespace's index lists, read
    /// again at each scrape (three calls), so instances created later appear without a
    /// restart. Default off: only the named instances. Agent registries are not indexed: name
    /// them.
    pub fn discover(mut self, on: bool) -> Self {
        self.discover = on;
        self
    }

    /// How many error signatures each tracker exports, the most frequent within the
    /// [`signature_window`](Self::signature_window): `1..=`[`MAX_TOP_SIGNATURES`], default
    /// [`DEFAULT_TOP_SIGNATURES`]. Bounds the series an exploding error can create.
    pub fn top_signatures(mut self, n: u32) -> Self {
        self.top_signatures = n;
        self
    }

    /// The window the top signatures are counted over: 1 s to [`MAX_SIGNATURE_WINDOW`]
    /// (7 days), default [`DEFAULT_SIGNATURE_WINDOW`] (1 hour).
    pub fn signature_window(mut self, window: Duration) -> Self {
        self.signature_window = window;
        self
    }

    /// The exporter, or [`Error::InvalidName`] for a bad instance name and
    /// [`Error::InvalidConfig`] naming the setter (`queue`, `breaker`, `error_tracker`,
    /// `agent_registry`: a name given twice; `worker`: a pair given twice or too many;
    /// `top_signatures`, `signature_window`: out of range).
    pub fn build(self) -> Result<Exporter> {
        if !(1..=MAX_TOP_SIGNATURES).contains(&self.top_signatures) {
            return Err(invalid(
                "top_signatures",
                format!(
                    "{} signatures; allowed 1..={MAX_TOP_SIGNATURES}",
                    self.top_signatures
                ),
            ));
        }
        if self.signature_window < Duration::from_secs(1)
            || self.signature_window > MAX_SIGNATURE_WINDOW
        {
            return Err(invalid(
                "signature_window",
                format!(
                    "{:?}; allowed 1s to {:?}",
                    self.signature_window, MAX_SIGNATURE_WINDOW
                ),
            ));
        }
        unique("queue", &self.queues)?;
        unique("breaker", &self.breakers)?;
        unique("error_tracker", &self.trackers)?;
        unique("agent_registry", &self.registries)?;
        if self.workers.len() > MAX_WORKERS {
            return Err(invalid(
                "worker",
                format!("{} workers; at most {MAX_WORKERS}", self.workers.len()),
            ));
        }
        let mut pairs = BTreeSet::new();
        for (name, stats) in &self.workers {
            if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
                return Err(invalid(
                    "worker",
                    format!("name {name:?}: 1 to 128 bytes, no control characters"),
                ));
            }
            if !pairs.insert((stats.queue().to_owned(), name.clone())) {
                return Err(invalid(
                    "worker",
                    format!("worker {name:?} of queue {:?} given twice", stats.queue()),
                ));
            }
        }
        let pool = &self.pool;
        let keyspace = &self.keyspace;
        let queues = self
            .queues
            .iter()
            .map(|name| {
                Queue::builder(pool, keyspace, name)
                    .build()
                    .map_err(core_error)
            })
            .collect::<Result<Vec<_>>>()?;
        let breakers = self
            .breakers
            .iter()
            .map(|name| CircuitBreaker::builder(pool, keyspace, name).build())
            .collect::<Result<Vec<_>>>()?;
        let trackers = self
            .trackers
            .iter()
            .map(|name| ErrorTracker::builder(pool, keyspace, name).build())
            .collect::<Result<Vec<_>>>()?;
        let registries = if self.registries.is_empty() {
            Vec::new()
        } else {
            let store = ContextStore::builder(pool, keyspace)
                .build()
                .map_err(context_error)?;
            self.registries
                .iter()
                .map(|name| store.agents(name).map_err(context_error))
                .collect::<Result<Vec<_>>>()?
        };
        Ok(Exporter {
            inner: Arc::new(Inner {
                pool: self.pool,
                keyspace: self.keyspace,
                queues,
                breakers,
                trackers,
                registries,
                workers: self.workers,
                top_signatures: self.top_signatures,
                signature_window: self.signature_window,
                discover: self.discover,
            }),
        })
    }
}

fn invalid(field: &'static str, reason: String) -> Error {
    Error::InvalidConfig { field, reason }
}

fn unique(field: &'static str, names: &[String]) -> Result<()> {
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name.as_str()) {
            return Err(invalid(field, format!("{name:?} given twice")));
        }
    }
    Ok(())
}

/// A queue's error as core's: the reads and builders used here fail only with core's.
pub(crate) fn core_error(e: coordkit_retry_queue::QueueError) -> Error {
    match e {
        coordkit_retry_queue::QueueError::Core(core) => core,
        other => Error::Decode {
            what: "a retry queue's answer".into(),
            reason: other.to_string(),
        },
    }
}

/// A context error as core's (the same reasoning).
pub(crate) fn context_error(e: coordkit_context::ContextError) -> Error {
    match e {
        coordkit_context::ContextError::Core(core) => core,
        other => Error::Decode {
            what: "an agent registry's answer".into(),
            reason: other.to_string(),
        },
    }
}
