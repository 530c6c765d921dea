//! [`CircuitBreakerBuilder`]: how a breaker is made.

use coordkit_core::{Keyspace, Pool, Result};

use crate::breaker::CircuitBreaker;
use crate::config::{BreakerConfig, rule_setters};

/// Builds a [`CircuitBreaker`]: from [`CircuitBreaker::builder`] (or `Coordkit::breaker`), the
/// rules set one by one or taken from a template ([`config`](Self::config)), then
/// [`build`](Self::build), which checks every rule.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct CircuitBreakerBuilder {
    pool: Pool,
    keyspace: Keyspace,
    name: String,
    config: BreakerConfig,
}

impl CircuitBreaker {
    /// A builder for the breaker `name` under `keyspace`: every process that builds one with
    /// the same Redis, namespace and name shares it. The rules start from their defaults (see
    /// each setter).
    pub fn builder(pool: &Pool, keyspace: &Keyspace, name: &str) -> CircuitBreakerBuilder {
        CircuitBreakerBuilder {
            pool: pool.clone(),
            keyspace: keyspace.clone(),
            name: name.to_owned(),
            config: BreakerConfig::default(),
        }
    }
}

impl CircuitBreakerBuilder {
    /// Every rule at once, from a template (a [`BreakerConfig`], as a
    /// [`BreakerRegistry`](crate::BreakerRegistry) holds them); setters called after it
    /// change single rules.
    pub fn config(mut self, config: BreakerConfig) -> Self {
        self.config = config;
        self
    }

    rule_setters!(config);

    /// The breaker, once every rule is in range: otherwise
    /// [`Error::InvalidConfig`](coordkit_core::Error::InvalidConfig) naming the setter, or
    /// [`Error::InvalidName`](coordkit_core::Error::InvalidName) for a name a key cannot hold.
    pub fn build(self) -> Result<CircuitBreaker> {
        let config = self.config.validate()?;
        CircuitBreaker::with_config(self.pool, &self.keyspace, &self.name, config)
    }
}
