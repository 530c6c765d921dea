//! [`Coordkit`]: one pool and one namespace, handing out every primitive.

use coordkit_core::{Keyspace, Pool, PoolConfig, Result};

/// A connection to Redis and a namespace; every primitive it hands out shares the one pool.
/// Cheap to clone and to pass into agent code.
#[derive(Debug, Clone)]
pub struct Coordkit {
    pool: Pool,
    keyspace: Keyspace,
}

impl Coordkit {
    /// Connects to `url` (`redis://`, `rediss://`, `redis+cluster://…`) and checks that the
    /// server answers; every key and channel goes under `namespace`.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        Self::connect_with(PoolConfig::from_url(url)?, namespace).await
    }

    /// Connects to the server the environment names and checks that it answers: `REDIS_URL`,
    /// else `REDIS_HOST` / `REDIS_PORT` / `REDIS_PASSWORD` / `REDIS_DB` (see
    /// [`PoolConfig::from_env_with`]), else `redis://127.0.0.1:6379`. A malformed variable is
    /// [`Error::InvalidConfig`](coordkit_core::Error::InvalidConfig) naming it.
    ///
    /// ```no_run
    /// use coordkit::Coordkit;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // REDIS_HOST=redis.internal REDIS_PASSWORD=… REDIS_DB=2 ./agent
    /// let kit = Coordkit::from_env("fleet").await?;
    /// let _shown_in_errors = kit.pool().address();
    /// # Ok(()) }
    /// ```
    pub async fn from_env(namespace: &str) -> Result<Self> {
        Self::connect_with(PoolConfig::from_env()?, namespace).await
    }

    /// Connects with a full [`PoolConfig`] (pool size, timeouts, cluster seeds).
    pub async fn connect_with(config: PoolConfig, namespace: &str) -> Result<Self> {
        let keyspace = Keyspace::new(namespace)?;
        let pool = Pool::connect(config).await?;
        Ok(Self { pool, keyspace })
    }

    /// Uses an existing pool.
    pub fn from_pool(pool: Pool, namespace: &str) -> Result<Self> {
        Ok(Self {
            pool,
            keyspace: Keyspace::new(namespace)?,
        })
    }

    /// The shared pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The namespace.
    pub fn keyspace(&self) -> &Keyspace {
        &self.keyspace
    }

    /// A builder for the circuit breaker `name` (see
    /// [`CircuitBreaker::builder`](crate::circuit_breaker::CircuitBreaker::builder)).
    #[cfg(feature = "circuit-breaker")]
    #[cfg_attr(docsrs, doc(cfg(feature = "circuit-breaker")))]
    pub fn breaker(&self, name: &str) -> crate::circuit_breaker::CircuitBreakerBuilder {
        crate::circuit_breaker::CircuitBreaker::builder(&self.pool, &self.keyspace, name)
    }

    /// A builder for a registry handing out breakers by template and key (see
    /// [`BreakerRegistry::builder`](crate::circuit_breaker::BreakerRegistry::builder)).
    #[cfg(feature = "circuit-breaker")]
    #[cfg_attr(docsrs, doc(cfg(feature = "circuit-breaker")))]
    pub fn breakers(&self) -> crate::circuit_breaker::BreakerRegistryBuilder {
        crate::circuit_breaker::BreakerRegistry::builder(&self.pool, &self.keyspace)
    }

    /// A builder for the context store of this namespace (actor, idle expiry, history): set
    /// what differs from the defaults, then
    /// [`build`](crate::context::ContextStoreBuilder::build).
    #[cfg(feature = "context")]
    #[cfg_attr(docsrs, doc(cfg(feature = "context")))]
    pub fn context(&self) -> crate::context::ContextStoreBuilder {
        crate::context::ContextStore::builder(&self.pool, &self.keyspace)
    }

    /// A builder for the error tracker `name` (see
    /// [`ErrorTracker::builder`](crate::errors::ErrorTracker::builder)).
    #[cfg(feature = "errors")]
    #[cfg_attr(docsrs, doc(cfg(feature = "errors")))]
    pub fn error_tracker(&self, name: &str) -> crate::errors::ErrorTrackerBuilder {
        crate::errors::ErrorTracker::builder(&self.pool, &self.keyspace, name)
    }

    /// A builder for the retry queue `name`: set what differs from the defaults, then
    /// [`build`](crate::retry_queue::QueueBuilder::build).
    #[cfg(feature = "retry-queue")]
    #[cfg_attr(docsrs, doc(cfg(feature = "retry-queue")))]
    pub fn queue(&self, name: &str) -> crate::retry_queue::QueueBuilder {
        crate::retry_queue::Queue::builder(&self.pool, &self.keyspace, name)
    }

    /// A builder for the metrics (gauges, counters, histograms) of this namespace, on the
    /// server's clock unless set otherwise; then
    /// [`build`](crate::metrics::MetricsBuilder::build).
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics(&self) -> crate::metrics::MetricsBuilder {
        crate::metrics::Metrics::builder(&self.pool, &self.keyspace)
    }

    /// A builder for the workflow store `name`: durable workflow state with fenced leases,
    /// checkpoints and resume; then
    /// [`build`](crate::workflow::WorkflowStoreBuilder::build).
    #[cfg(feature = "workflow")]
    #[cfg_attr(docsrs, doc(cfg(feature = "workflow")))]
    pub fn workflows(&self, name: &str) -> crate::workflow::WorkflowStoreBuilder {
        crate::workflow::WorkflowStore::builder(&self.pool, &self.keyspace, name)
    }

    /// A builder for the mesh agent `name`: its durable inbox, its sends, request/reply and
    /// capabilities (see [`MeshAgent::builder`](crate::mesh::MeshAgent::builder)).
    #[cfg(feature = "mesh")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mesh")))]
    pub fn agent(&self, name: &str) -> crate::mesh::MeshAgentBuilder {
        crate::mesh::MeshAgent::builder(&self.pool, &self.keyspace, name)
    }

    /// A builder for the typed channel `name`, carrying values of `T` (see
    /// [`Channel::builder`](crate::mesh::Channel::builder)).
    #[cfg(feature = "mesh")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mesh")))]
    pub fn channel<T>(&self, name: &str) -> crate::mesh::ChannelBuilder<T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        crate::mesh::Channel::builder(&self.pool, &self.keyspace, name)
    }
}
