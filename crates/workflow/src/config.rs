//! [`WorkflowStoreBuilder`]: a store's settings, each validated by
//! [`WorkflowStoreBuilder::build`].

use std::time::Duration;

use coordkit_core::time::duration_ms;
use coordkit_core::{Clock, Error as CoreError, Keyspace, Pool};

use crate::error::Result;
use crate::store::WorkflowStore;

/// The default limit of an input, a checkpoint's output, a result or an error: 1 MiB.
pub const DEFAULT_MAX_BYTES: usize = 1 << 20;

/// The largest size limit: Redis's limit for one string, 512 MiB.
const MAX_BYTES: usize = 512 << 20;

/// The longest TTL or lease: 2^40 ms (about 35 years).
pub(crate) const MAX_DURATION_MS: u64 = 1 << 40;

/// A store's settings, as its builder validated them ([`WorkflowStore::config`]).
/// [`StoreConfig::default`] holds every setter's default.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub(crate) clock: Clock,
    pub(crate) owner: String,
    pub(crate) lease: Duration,
    pub(crate) active_ttl: Duration,
    pub(crate) finished_ttl: Duration,
    pub(crate) keep_finished: u64,
    pub(crate) sweep_limit: u32,
    pub(crate) max_input_bytes: usize,
    pub(crate) max_checkpoint_bytes: usize,
    pub(crate) max_result_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            clock: Clock::Server,
            owner: format!("{}-{:08x}", std::process::id(), rand::random::<u32>()),
            lease: Duration::from_secs(30),
            active_ttl: Duration::from_secs(24 * 3600),
            finished_ttl: Duration::from_secs(7 * 24 * 3600),
            keep_finished: 100,
            sweep_limit: 20,
            max_input_bytes: DEFAULT_MAX_BYTES,
            max_checkpoint_bytes: DEFAULT_MAX_BYTES,
            max_result_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

impl StoreConfig {
    /// The owner this store's claims are made for.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The length of a lease.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Checks every setting; the error names the setter at fault.
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: &str| {
            Err(CoreError::invalid_config(field, reason).into())
        };
        crate::store::validate_text("owner", &self.owner)?;
        for (field, d) in [
            ("lease", self.lease),
            ("active_ttl", self.active_ttl),
            ("finished_ttl", self.finished_ttl),
        ] {
            let ms = duration_ms(d);
            if ms == 0 || ms > MAX_DURATION_MS {
                return bad(field, "must be 1 ms to 2^40 ms");
            }
        }
        // A live holder must not outlive its record (the TTL is refreshed by its writes).
        if self.lease >= self.active_ttl {
            return bad("lease", "must be shorter than active_ttl");
        }
        if !(1..=1_000_000).contains(&self.keep_finished) {
            return bad("keep_finished", "must be 1 to 1000000");
        }
        if !(1..=10_000).contains(&self.sweep_limit) {
            return bad("sweep_limit", "must be 1 to 10000");
        }
        for (field, n) in [
            ("max_input_bytes", self.max_input_bytes),
            ("max_checkpoint_bytes", self.max_checkpoint_bytes),
            ("max_result_bytes", self.max_result_bytes),
        ] {
            if !(1..=MAX_BYTES).contains(&n) {
                return bad(field, "must be 1 to 536870912 (512 MiB)");
            }
        }
        Ok(())
    }
}

/// Where a store keeps its workflows, chosen when it is built: never a silent fallback.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Redis(Pool, Keyspace),
    Memory,
}

/// Builds a [`WorkflowStore`]: from [`WorkflowStore::builder`] (Redis, or
/// `Coordkit::workflows`) or [`WorkflowStore::in_memory`], setters, then
/// [`WorkflowStoreBuilder::build`], which validates every setting.
#[derive(Debug, Clone)]
pub struct WorkflowStoreBuilder {
    target: Target,
    name: String,
    config: StoreConfig,
}

impl WorkflowStore {
    /// A builder for the store `name` under `keyspace` on Redis (keys `<ns>:{wf:<name>}:*`),
    /// with every setting at its default.
    pub fn builder(pool: &Pool, keyspace: &Keyspace, name: &str) -> WorkflowStoreBuilder {
        WorkflowStoreBuilder {
            target: Target::Redis(pool.clone(), keyspace.clone()),
            name: name.to_owned(),
            config: StoreConfig::default(),
        }
    }

    /// A builder for a store `name` kept in this process's memory, with the same API and the
    /// same behaviour (it runs the reference model): for tests and Redis-less development.
    /// Nothing is shared with other processes and nothing survives this one; it publishes no
    /// events. Chosen explicitly: a Redis store never falls back to it.
    pub fn in_memory(name: &str) -> WorkflowStoreBuilder {
        WorkflowStoreBuilder {
            target: Target::Memory,
            name: name.to_owned(),
            config: StoreConfig::default(),
        }
    }
}

impl WorkflowStoreBuilder {
    /// The clock of the scripts (default: the server's; a manual clock in tests). An
    /// in-memory store reads this process's clock, or the manual one.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.config.clock = clock;
        self
    }

    /// Who this store's claims are for (a name without whitespace, braces, quotes or
    /// backslashes, at most 200 bytes; default: the process id and a random number).
    pub fn owner(mut self, owner: &str) -> Self {
        owner.clone_into(&mut self.config.owner);
        self
    }

    /// How long a claim's lease lasts; checkpoints and extends renew it (1 ms to 2^40 ms,
    /// shorter than [`active_ttl`](Self::active_ttl); default 30 s).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.config.lease = lease;
        self
    }

    /// A pending or running workflow without activity (create, claim, checkpoint, extend) for
    /// this long is deleted (1 ms to 2^40 ms; default 24 h).
    pub fn active_ttl(mut self, ttl: Duration) -> Self {
        self.config.active_ttl = ttl;
        self
    }

    /// A finished workflow is kept this long after it finished (1 ms to 2^40 ms; default 7
    /// days).
    pub fn finished_ttl(mut self, ttl: Duration) -> Self {
        self.config.finished_ttl = ttl;
        self
    }

    /// Of each finished status (completed, failed, cancelled), the newest this many are kept;
    /// older ones are deleted by the call that finishes one more (1 to 1,000,000; default 100).
    pub fn keep_finished(mut self, n: u64) -> Self {
        self.config.keep_finished = n;
        self
    }

    /// How many records whose TTL ran out one create deletes at most (1 to 10,000; default
    /// 20). Reads never show such records, deleted or not.
    pub fn sweep_limit(mut self, n: u32) -> Self {
        self.config.sweep_limit = n;
        self
    }

    /// The largest input a create accepts, in bytes (1 to 512 MiB; default 1 MiB).
    pub fn max_input_bytes(mut self, n: usize) -> Self {
        self.config.max_input_bytes = n;
        self
    }

    /// The largest output a checkpoint accepts, in bytes (1 to 512 MiB; default 1 MiB).
    pub fn max_checkpoint_bytes(mut self, n: usize) -> Self {
        self.config.max_checkpoint_bytes = n;
        self
    }

    /// The largest result or error a complete or fail accepts, in bytes (1 to 512 MiB;
    /// default 1 MiB).
    pub fn max_result_bytes(mut self, n: usize) -> Self {
        self.config.max_result_bytes = n;
        self
    }

    /// Validates every setting and the name, and builds the store. A setting out of range is
    /// [`Error::InvalidConfig`](coordkit_core::Error::InvalidConfig) naming its setter; a bad
    /// name is [`Error::InvalidName`](coordkit_core::Error::InvalidName).
    pub fn build(self) -> Result<WorkflowStore> {
        self.config.validate()?;
        WorkflowStore::from_config(self.target, &self.name, self.config)
    }
}
