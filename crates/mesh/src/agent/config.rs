//! [`MeshAgentBuilder`]: an agent's settings, each validated by [`MeshAgentBuilder::build`].

use std::time::Duration;

use coordkit_core::time::duration_ms;
use coordkit_core::{Clock, Error as CoreError, Keyspace, Pool};

use super::MeshAgent;
use super::error::Result;

/// The default of [`MeshAgentBuilder::max_payload_bytes`]: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// The longest duration a setting (or an ask's timeout) takes: 2^35 ms (about a year).
const MAX_DURATION_MS: u64 = 1 << 35;

/// An ask's `timeout` in ms, checked: 1 ms to 2^35 ms.
pub(super) fn timeout_ms(timeout: Duration) -> Result<u64> {
    let ms = duration_ms(timeout);
    if !(1..=MAX_DURATION_MS).contains(&ms) {
        return Err(CoreError::invalid_config("timeout", "must be 1 ms to 2^35 ms").into());
    }
    Ok(ms)
}

/// An agent's settings, as its builder validated them ([`MeshAgent::config`]).
/// [`AgentConfig::default`] holds every setter's default.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub(crate) clock: Clock,
    pub(crate) max_messages: u64,
    pub(crate) max_age: Duration,
    pub(crate) presence_ttl: Duration,
    pub(crate) visibility_timeout: Duration,
    pub(crate) max_payload_bytes: usize,
    pub(crate) fallback_wake: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            clock: Clock::Server,
            max_messages: 10_000,
            max_age: Duration::from_secs(24 * 3600),
            presence_ttl: Duration::from_secs(10),
            visibility_timeout: Duration::from_secs(30),
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            fallback_wake: Duration::from_secs(5),
        }
    }
}

impl AgentConfig {
    /// At most this many messages (and as many requests) wait in the inbox.
    pub fn max_messages(&self) -> u64 {
        self.max_messages
    }

    /// Messages older than this are dropped (zero: no age cap).
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// How long one heartbeat keeps the agent alive.
    pub fn presence_ttl(&self) -> Duration {
        self.presence_ttl
    }

    /// How long a delivery stays invisible to other receives until it is acknowledged.
    pub fn visibility_timeout(&self) -> Duration {
        self.visibility_timeout
    }

    /// The largest payload a send accepts, in bytes.
    pub fn max_payload_bytes(&self) -> usize {
        self.max_payload_bytes
    }

    fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: &str| {
            Err(CoreError::invalid_config(field, reason).into())
        };
        if !(1..=1_000_000).contains(&self.max_messages) {
            return bad("max_messages", "must be 1 to 1000000");
        }
        if duration_ms(self.max_age) > MAX_DURATION_MS {
            return bad("max_age", "must be at most 2^35 ms");
        }
        let ttl = duration_ms(self.presence_ttl);
        if !(10..=MAX_DURATION_MS).contains(&ttl) {
            return bad("presence_ttl", "must be 10 ms to 2^35 ms");
        }
        let vis = duration_ms(self.visibility_timeout);
        if !(1..=MAX_DURATION_MS).contains(&vis) {
            return bad("visibility_timeout", "must be 1 ms to 2^35 ms");
        }
        if !(1..=512 << 20).contains(&self.max_payload_bytes) {
            return bad("max_payload_bytes", "must be 1 to 536870912 (512 MiB)");
        }
        let wake = duration_ms(self.fallback_wake);
        if !(10..=3_600_000).contains(&wake) {
            return bad("fallback_wake", "must be 10 ms to 1 hour");
        }
        Ok(())
    }
}

/// Builds a [`MeshAgent`]: from [`MeshAgent::builder`], setters, then
/// [`MeshAgentBuilder::build`], which validates every setting and the name.
#[derive(Debug, Clone)]
pub struct MeshAgentBuilder {
    pool: Pool,
    keyspace: Keyspace,
    name: String,
    config: AgentConfig,
}

impl MeshAgent {
    /// A builder for the agent `name` under `keyspace` (its inbox's keys are
    /// `<ns>:{inbox:<name>}:*`), with every setting at its default.
    pub fn builder(pool: &Pool, keyspace: &Keyspace, name: &str) -> MeshAgentBuilder {
        MeshAgentBuilder {
            pool: pool.clone(),
            keyspace: keyspace.clone(),
            name: name.to_owned(),
            config: AgentConfig::default(),
        }
    }
}

impl MeshAgentBuilder {
    /// The clock of the scripts (default: the server's; a manual clock in tests).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.config.clock = clock;
        self
    }

    /// At most this many messages wait in the inbox, and as many requests (1 to 1,000,000;
    /// default 10,000): a send to a full inbox drops the oldest waiting one to make room
    /// (counted `trimmed`). Delivered, unacknowledged messages do not count.
    pub fn max_messages(mut self, n: u64) -> Self {
        self.config.max_messages = n;
        self
    }

    /// Messages older than this are dropped, never delivered (zero = no age cap, at most
    /// 2^35 ms; default 24 hours). Applied to this agent's sends into other inboxes and to its
    /// own receives, on the scripts' clock.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.config.max_age = age;
        self
    }

    /// How long one heartbeat keeps the agent alive for asks (10 ms to 2^35 ms; default 10 s).
    /// A serving agent beats at a third of it.
    pub fn presence_ttl(mut self, ttl: Duration) -> Self {
        self.config.presence_ttl = ttl;
        self
    }

    /// How long a delivered message stays invisible until it is acknowledged; after that it is
    /// delivered again (1 ms to 2^35 ms; default 30 s).
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.config.visibility_timeout = timeout;
        self
    }

    /// The largest payload a send, ask or reply accepts, in encoded bytes (1 to 512 MiB;
    /// default 1 MiB): a larger one fails with
    /// [`AgentError::PayloadTooLarge`](crate::AgentError::PayloadTooLarge), nothing sent.
    pub fn max_payload_bytes(mut self, n: usize) -> Self {
        self.config.max_payload_bytes = n;
        self
    }

    /// How long a waiting receive or ask sleeps at most without a wake-up before it looks
    /// again, in case a wake-up was missed (10 ms to 1 hour; default 5 s).
    pub fn fallback_wake(mut self, every: Duration) -> Self {
        self.config.fallback_wake = every;
        self
    }

    /// Validates every setting (an error is
    /// [`Error::InvalidConfig`](coordkit_core::Error::InvalidConfig) naming its setter) and the
    /// name ([`Error::InvalidName`](coordkit_core::Error::InvalidName)), and builds the agent.
    pub fn build(self) -> Result<MeshAgent> {
        self.config.validate()?;
        MeshAgent::from_config(self.pool, self.keyspace, &self.name, self.config)
    }
}
