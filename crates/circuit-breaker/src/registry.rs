//! [`BreakerRegistry`]: breakers handed out by name, configured from templates.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use coordkit_core::{Keyspace, Pool};

use crate::breaker::CircuitBreaker;
use crate::config::BreakerConfig;
use crate::error::Result;

/// Hands out one [`CircuitBreaker`] per name (`<template>:<key>`, e.g. `llm:gpt-4` or
/// `host:api.example.com`), configured from the template's [`BreakerConfig`]. Cheap to clone;
/// every clone hands out the same breakers.
#[derive(Debug, Clone)]
pub struct BreakerRegistry {
    pool: Pool,
    keyspace: Keyspace,
    default: BreakerConfig,
    templates: Arc<Mutex<HashMap<String, BreakerConfig>>>,
    breakers: Arc<Mutex<HashMap<String, CircuitBreaker>>>,
}

impl BreakerRegistry {
    /// A registry whose templates fall back to `default`.
    pub fn new(pool: Pool, keyspace: Keyspace, default: BreakerConfig) -> Self {
        Self {
            pool,
            keyspace,
            default,
            templates: Arc::default(),
            breakers: Arc::default(),
        }
    }

    /// Sets the configuration of every breaker made from `template` (breakers already handed
    /// out keep theirs).
    pub fn template(&self, template: &str, config: BreakerConfig) -> Result<()> {
        coordkit_core::validate_name("breaker template", template)?;
        if let Ok(mut templates) = self.templates.lock() {
            templates.insert(template.to_owned(), config);
        }
        Ok(())
    }

    /// The breaker for `key` under `template` (named `<template>:<key>`).
    pub fn get(&self, template: &str, key: &str) -> Result<CircuitBreaker> {
        coordkit_core::validate_name("breaker template", template)?;
        coordkit_core::validate_name("breaker key", key)?;
        let name = format!("{template}:{key}");
        // A panic elsewhere while holding the lock leaves the map whole: go on with it.
        let mut breakers = self
            .breakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(breaker) = breakers.get(&name) {
            return Ok(breaker.clone());
        }
        let config = self
            .templates
            .lock()
            .ok()
            .and_then(|t| t.get(template).cloned())
            .unwrap_or_else(|| self.default.clone());
        let breaker = CircuitBreaker::new(self.pool.clone(), &self.keyspace, &name, config)?;
        breakers.insert(name, breaker.clone());
        Ok(breaker)
    }
}
