//! [`WorkerBuilder`]: a worker's settings, validated when it starts.

use std::sync::Arc;
use std::time::Duration;

use coordkit_core::time::duration_ms;

use super::{Handler, SettledHook, Worker};
use crate::error::Result;
use crate::queue::Queue;
use crate::types::{Settled, Task};

/// Looks up the circuit breaker of a task's component (`None`: run it unguarded).
#[cfg(feature = "circuit-breaker")]
pub type BreakerLookup =
    Arc<dyn Fn(&str) -> Option<coordkit_circuit_breaker::CircuitBreaker> + Send + Sync>;

/// How a [`Worker`] runs: what its [`WorkerBuilder`] holds.
#[derive(Clone)]
pub(crate) struct WorkerConfig {
    pub(super) concurrency: usize,
    pub(super) batch: usize,
    pub(super) shutdown_timeout: Duration,
    pub(super) renew_leases: bool,
    pub(super) on_settled: Option<SettledHook>,
    /// The groups it can run the tasks of (none: every group).
    pub(super) capabilities: Option<Vec<String>>,
    #[cfg(feature = "circuit-breaker")]
    pub(super) breakers: Option<BreakerLookup>,
    #[cfg(feature = "agents")]
    pub(super) agent: Option<crate::agent::AgentBinding>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 10,
            batch: 10,
            shutdown_timeout: Duration::from_secs(30),
            renew_leases: true,
            on_settled: None,
            capabilities: None,
            #[cfg(feature = "circuit-breaker")]
            breakers: None,
            #[cfg(feature = "agents")]
            agent: None,
        }
    }
}

impl WorkerConfig {
    pub(super) fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: &str| {
            Err(coordkit_core::Error::invalid_config(field, reason).into())
        };
        if !(1..=10_000).contains(&self.concurrency) {
            return bad("concurrency", "must be 1 to 10000");
        }
        if !(1..=crate::types::MAX_BATCH).contains(&self.batch) {
            return bad("batch", "must be 1 to 500");
        }
        if duration_ms(self.shutdown_timeout) > crate::options::MAX_DURATION_MS {
            return bad("shutdown_timeout", "must be at most 2^35 ms");
        }
        if let Some(caps) = &self.capabilities {
            let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
            crate::ops::check_capabilities(&caps)?;
        }
        Ok(())
    }
}

/// Builds and starts a [`Worker`]: from [`Worker::builder`] or [`Worker::builder_json`],
/// setters, then [`WorkerBuilder::start`], which validates every setting.
pub struct WorkerBuilder {
    queue: Queue,
    handler: Handler,
    config: WorkerConfig,
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.config;
        f.debug_struct("WorkerBuilder")
            .field("queue", &self.queue.name())
            .field("concurrency", &c.concurrency)
            .field("batch", &c.batch)
            .field("shutdown_timeout", &c.shutdown_timeout)
            .field("renew_leases", &c.renew_leases)
            .finish_non_exhaustive()
    }
}

impl WorkerBuilder {
    pub(super) fn new(queue: &Queue, handler: Handler) -> Self {
        Self {
            queue: queue.clone(),
            handler,
            config: WorkerConfig::default(),
        }
    }

    /// How many tasks run at once (1 to 10,000; default 10). Also sets the claim batch to the
    /// same number (at most 500); change it after with [`WorkerBuilder::batch`].
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n;
        self.config.batch = n.clamp(1, crate::types::MAX_BATCH);
        self
    }

    /// The groups this worker can run the tasks of, in its order of preference (1 to 100
    /// groups; default: every group): its claims serve only these groups, then the tasks of no
    /// group ([`Queue::claim_capable`]). For a fleet whose workers differ in what they can do:
    /// a task names the capability it needs as its [group](crate::TaskOptions::group).
    pub fn capabilities<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.capabilities = Some(groups.into_iter().map(Into::into).collect());
        self
    }

    /// The most tasks one claim leases (1 to 500; default 10, or the concurrency).
    pub fn batch(mut self, n: usize) -> Self {
        self.config.batch = n;
        self
    }

    /// On shutdown, how long in-flight tasks may take to finish and their outcomes to be
    /// written (at most 2^35 ms; default 30 s). Tasks still running then are abandoned, and
    /// outcomes not written by then (Redis down: settles retry until the deadline) are counted
    /// in [`ShutdownReport::unsettled`](super::ShutdownReport::unsettled); both kinds of task are handed out again when their
    /// leases run out.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// Whether leases are extended at half-time while a handler runs (default on).
    pub fn renew_leases(mut self, on: bool) -> Self {
        self.config.renew_leases = on;
        self
    }

    /// Called with each task and what settling it did, once the settle script has answered
    /// (for metrics, or to wait for a task's acknowledgement; default none). Keep it quick: it
    /// runs on the settler task.
    pub fn on_settled(mut self, hook: impl Fn(&Task, &Settled) + Send + Sync + 'static) -> Self {
        self.config.on_settled = Some(Arc::new(hook));
        self
    }

    /// Guards tasks that name a component with that component's circuit breaker (default:
    /// none): while it is open the task is deferred until the breaker may admit calls again (no
    /// attempt spent), and when the breaker publishes `closed` the tasks it deferred are made
    /// due at once; otherwise the outcome is recorded with the breaker.
    #[cfg(feature = "circuit-breaker")]
    pub fn breakers(
        mut self,
        lookup: impl Fn(&str) -> Option<coordkit_circuit_breaker::CircuitBreaker>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.config.breakers = Some(Arc::new(lookup));
        self
    }

    /// Keeps an agent record for this worker in coordkit-context's registry (feature
    /// `agents`; default none): registered idle when the worker starts (the start fails when
    /// it cannot be), kept alive by heartbeats at a third of the registry's TTL, busy with the
    /// task that started a busy spell and idle when no task runs, registered again when it
    /// expired during an outage, removed at shutdown. Failures to update it are in
    /// [`Worker::health`].
    #[cfg(feature = "agents")]
    pub fn agent(mut self, agent: crate::agent::AgentBinding) -> Self {
        self.config.agent = Some(agent);
        self
    }

    /// Validates every setting (an error is
    /// [`Error::InvalidConfig`](coordkit_core::Error::InvalidConfig) naming its setter) and
    /// starts the worker.
    pub async fn start(self) -> Result<Worker> {
        Worker::start_erased(self.queue, self.config, self.handler).await
    }
}
