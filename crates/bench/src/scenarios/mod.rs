//! The scenarios. Each one is a module with a `prepare` function that returns its
//! [`Workload`]; add a variant to [`Scenario`] and an arm to [`Scenario::prepare`] for a new one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use clap::ValueEnum;
use coordkit_core::{Keyspace, Pool, Result};

mod raw;

/// A boxed future, so workloads can be trait objects.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One kind of operation, repeated by the workers.
pub(crate) trait Workload: Send + Sync {
    /// Runs operation number `i` (numbers are unique within one measured run).
    fn op<'a>(&'a self, pool: &'a Pool, i: u64) -> BoxFuture<'a, Result<()>>;

    /// Scenario-specific figures added to the report (memory per instance, …).
    fn report<'a>(
        &'a self,
        _pool: &'a Pool,
    ) -> BoxFuture<'a, Result<serde_json::Map<String, serde_json::Value>>> {
        Box::pin(async { Ok(serde_json::Map::new()) })
    }
}

/// The scenarios, by the name given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scenario {
    /// One-key HINCRBY+HGET script through the pool: the baseline.
    RawEvalsha,
}

impl Scenario {
    /// The name printed in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::RawEvalsha => "raw-evalsha",
        }
    }

    /// Sets the scenario up (keys, instances) and returns its workload.
    pub(crate) async fn prepare(
        self,
        pool: &Pool,
        keyspace: &Keyspace,
    ) -> Result<Arc<dyn Workload>> {
        match self {
            Scenario::RawEvalsha => raw::prepare(pool, keyspace).await,
        }
    }
}
