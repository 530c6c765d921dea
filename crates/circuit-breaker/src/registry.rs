//! [`BreakerRegistry`]: breakers handed out by name, configured from templates.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use coordkit_core::{Keyspace, Pool, Result};

use crate::breaker::CircuitBreaker;
use crate::config::BreakerConfig;

/// Hands out one [`CircuitBreaker`] per name (`<template>:<key>`, e.g. `llm:gpt-4` or
/// `host:api.example.com`), configured from the template's [`BreakerConfig`]. Built with
/// [`BreakerRegistry::builder`]. Cheap to clone; every clone hands out the same breakers.
#[derive(Debug, Clone)]
pub struct BreakerRegistry {
    pool: Pool,
    keyspace: Keyspace,
    default: BreakerConfig,
    templates: Arc<Mutex<HashMap<String, BreakerConfig>>>,
    breakers: Arc<Mutex<HashMap<String, CircuitBreaker>>>,
}

/// Builds a [`BreakerRegistry`]: the default template, templates by name, then
/// [`build`](Self::build).
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct BreakerRegistryBuilder {
    pool: Pool,
    keyspace: Keyspace,
    default: BreakerConfig,
    templates: Vec<(String, BreakerConfig)>,
}

impl BreakerRegistry {
    /// A builder for a registry of breakers under `keyspace`.
    pub fn builder(pool: &Pool, keyspace: &Keyspace) -> BreakerRegistryBuilder {
        BreakerRegistryBuilder {
            pool: pool.clone(),
            keyspace: keyspace.clone(),
            default: BreakerConfig::default(),
            templates: Vec::new(),
        }
    }

    /// Sets the configuration of every breaker made from `template` (breakers already handed
    /// out keep theirs).
    pub fn template(&self, template: &str, config: BreakerConfig) -> Result<()> {
        coordkit_core::validate_name("breaker template", template)?;
        self.templates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(template.to_owned(), config);
        Ok(())
    }

    /// The breaker for `key` under `template` (named `<template>:<key>`).
    pub fn get(&self, template: &str, key: &str) -> Result<CircuitBreaker> {
        coordkit_core::validate_name("breaker template", template)?;
        coordkit_core::validate_name("breaker key", key)?;
        let name = format!("{template}:{key}");
        // A panic elsewhere while holding the lock leaves the map whole: go on with it.
        let mut breakers = self.breakers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(breaker) = breakers.get(&name) {
            return Ok(breaker.clone());
        }
        let config = self
            .templates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(template)
            .cloned()
            .unwrap_or_else(|| self.default.clone());
        let breaker = CircuitBreaker::builder(&self.pool, &self.keyspace, &name)
            .config(config)
            .build()?;
        breakers.insert(name, breaker.clone());
        Ok(breaker)
    }
}

impl BreakerRegistryBuilder {
    /// The rules of breakers whose template has none of its own. Default:
    /// [`BreakerConfig::default`] (each rule's default is on its
    /// [`BreakerConfigBuilder`](crate::BreakerConfigBuilder) setter).
    pub fn default_config(mut self, config: BreakerConfig) -> Self {
        self.default = config;
        self
    }

    /// The rules of breakers made from `template` (a name a key can hold, checked by
    /// [`build`](Self::build)). Default: none, every template uses the default.
    pub fn template(mut self, template: &str, config: BreakerConfig) -> Self {
        self.templates.push((template.to_owned(), config));
        self
    }

    /// The registry, once every template name is valid: otherwise
    /// [`Error::InvalidName`](coordkit_core::Error::InvalidName).
    pub fn build(self) -> Result<BreakerRegistry> {
        let mut templates = HashMap::with_capacity(self.templates.len());
        for (name, config) in self.templates {
            coordkit_core::validate_name("breaker template", &name)?;
            templates.insert(name, config);
        }
        Ok(BreakerRegistry {
            pool: self.pool,
            keyspace: self.keyspace,
            default: self.default,
            templates: Arc::new(Mutex::new(templates)),
            breakers: Arc::default(),
        })
    }
}
