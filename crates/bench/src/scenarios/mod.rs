//! The scenarios. Each one is a module with a `prepare` function that returns its
//! [`Workload`]; add a variant to [`Scenario`] and an arm to [`Scenario::prepare`] for a new one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use clap::ValueEnum;
use coordkit_core::{Keyspace, Pool};

mod breaker;
mod context;
mod errors;
mod mesh;
mod mesh_floor;
mod metrics;
pub(crate) mod rate;
mod raw;
mod retry;
mod retry_floor;
mod retry_steps;
mod workflow;

/// Any scenario's error (each primitive has its own error type).
pub(crate) type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// The result of a scenario's step.
pub(crate) type Result<T> = std::result::Result<T, BenchError>;

/// Redis memory used by `keys` (exact: `MEMORY USAGE … SAMPLES 0`; a missing key counts 0).
pub(crate) async fn memory_usage<'k>(
    pool: &Pool,
    keys: impl IntoIterator<Item = &'k coordkit_core::Key>,
) -> Result<u64> {
    let mut bytes = 0;
    for key in keys {
        let used: Option<u64> = pool
            .query(
                redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(key)
                    .arg("SAMPLES")
                    .arg(0),
            )
            .await?;
        bytes += used.unwrap_or(0);
    }
    Ok(bytes)
}

/// The command line's options that scenarios read (each scenario reads only its own).
/// `retry-lifecycle --group-limit`: which of a group's limits the variant sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum GroupLimit {
    /// At most 1,000,000 leased and 1,000,000 starts per second.
    Both,
    /// At most 1,000,000 leased at once.
    Leased,
    /// At most 1,000,000 starts per second.
    Rate,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Params {
    /// Operations at once; for `rate-limited`, each worker's concurrency.
    pub(crate) concurrency: usize,
    /// retry-lifecycle: failures before each task succeeds.
    pub(crate) fails: u32,
    /// retry-lifecycle: the fixed backoff between attempts.
    pub(crate) backoff: Duration,
    /// retry-lifecycle: the queue's `retry_in_place_below`.
    pub(crate) in_place_below: Duration,
    /// retry-lifecycle: every task's priority (a variant run).
    pub(crate) priority: Option<u8>,
    /// retry-lifecycle: a group's limits that never bind (a variant run).
    pub(crate) group_limit: Option<GroupLimit>,
    /// retry-lifecycle: a variant run without its plain run.
    pub(crate) variant_only: bool,
    /// retry-steps: tasks per script call.
    pub(crate) batch: usize,
    /// rate-limited: starts allowed per window.
    pub(crate) rate: u32,
    /// rate-limited: the window.
    pub(crate) per: Duration,
    /// rate-limited: workers sharing the limit.
    pub(crate) workers: usize,
    /// rate-limited: seconds of starts in the backlog.
    pub(crate) seconds: u64,
}

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

    /// How many script calls one operation makes, when it makes several: the report then
    /// also gives the rate and the ratios per call.
    fn calls_per_op(&self) -> Option<u32> {
        None
    }

    /// For a variant of a scenario (options that should cost nothing): the scenario's plain
    /// run, measured in the same rounds so the report can compare the two.
    fn plain(&self) -> Option<Arc<dyn Workload>> {
        None
    }
}

/// The scenarios, by the name given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scenario {
    /// One-key HINCRBY+HGET script through the pool: the baseline.
    RawEvalsha,
    /// A single-field partial update of a context entity (version, stamps, history, event).
    ContextUpdate,
    /// A whole-entity read (10 fields) of a context entity.
    ContextRead,
    /// A circuit breaker's acquire (closed breaker): one EVALSHA.
    BreakerAcquire,
    /// A guarded call: acquire, an instant call, its outcome recorded in the background.
    BreakerGuardedCall,
    /// One gauge sample (server time, retention by count) per call: one round trip.
    MetricsRecord,
    /// 100 gauge samples per call; reports samples/s.
    MetricsRecordBatch,
    /// Count, sum, min, max and p50/p95/p99 of a window of 1,000 samples.
    MetricsAggregate,
    /// One error occurrence (signature, counters, log, task, correlation, event) per call.
    ErrorsRecord,
    /// The floor under `errors-record`: the client's signature and JSON for the same events,
    /// and a script making only the three calls a record needs (HMGET, XADD, HSET) with
    /// arguments of the same size, computing nothing.
    ErrorsRecordFloor,
    /// Enqueue + process + ack of one task by a worker (concurrency C), failing `--fails` times
    /// first (`--backoff-ms`, default 1 ms fixed, retried in place below `--in-place-below-ms`);
    /// reports tasks completed per second and memory per queued task. `--priority N` and
    /// `--group-limit` make a variant run, compared with the plain run in the same rounds.
    RetryLifecycle,
    /// The floor under `retry-lifecycle --fails F` set by the backoff alone: an operation
    /// sleeps `--backoff-ms` F times and calls nothing, so the closed loop of C operations
    /// shows the most any retry queue that honours the backoff can complete.
    RetryBackoffFloor,
    /// A task's steps in fixed batches and no worker (`--batch` tasks enqueued, claimed,
    /// failed `--fails` times in place and acked, one script call each): for counting the
    /// server's instructions per task repeatably. Run it at concurrency 1.
    RetrySteps,
    /// A backlog drained by `--workers` workers (each of `--concurrency` slots) under a rate
    /// limit of `--rate` starts per `--per-ms`; reports the achieved starts/s against the
    /// configured rate and the most starts seen in any window of the limit's length.
    RateLimited,
    /// One `ask` of an agent that serves, the answer awaited (C askers, one responder):
    /// request and reply are two trips through Redis.
    MeshRequestReply,
    /// The floor under `mesh-request-reply`: a script that publishes the request, the
    /// responder's script that publishes the reply, both received by subscribers; nothing
    /// stored, nothing computed.
    MeshRequestReplyFloor,
    /// The floor with the least storage a request/reply that loses nothing needs: the request
    /// stored and pending (the receiver's presence read), the reply stored, the request
    /// acknowledged by the reply's script; no validation, no counters.
    MeshRequestReplyStoredFloor,
    /// Dispatch of one message to a capability, until a member (of four) has received and
    /// acked it.
    MeshDispatch,
    /// Create + claim + 3 checkpoints + complete of a fresh workflow: six script calls; the
    /// report adds calls/s and the ratios per call.
    WorkflowLifecycle,
    /// One `restore()` of a store holding 10,000 active workflows (half running) and 100
    /// finished; reports the calls it takes (run it with `--no-baseline` and a few ops).
    WorkflowRestore,
    /// Create + claim + complete under the default retention settings; reports the server's
    /// memory, the store's bytes and its records and index entries after 1,000, 10,000,
    /// 100,000, 300,000 and 1,000,000 finished workflows and at the end.
    WorkflowRetention,
}

impl Scenario {
    /// The name printed in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::RawEvalsha => "raw-evalsha",
            Scenario::ContextUpdate => "context-update",
            Scenario::ContextRead => "context-read",
            Scenario::BreakerAcquire => "breaker-acquire",
            Scenario::BreakerGuardedCall => "breaker-guarded-call",
            Scenario::MetricsRecord => "metrics-record",
            Scenario::MetricsRecordBatch => "metrics-record-batch",
            Scenario::MetricsAggregate => "metrics-aggregate",
            Scenario::ErrorsRecord => "errors-record",
            Scenario::ErrorsRecordFloor => "errors-record-floor",
            Scenario::RetryLifecycle => "retry-lifecycle",
            Scenario::RetryBackoffFloor => "retry-backoff-floor",
            Scenario::RetrySteps => "retry-steps",
            Scenario::RateLimited => "rate-limited",
            Scenario::MeshRequestReply => "mesh-request-reply",
            Scenario::MeshRequestReplyFloor => "mesh-request-reply-floor",
            Scenario::MeshRequestReplyStoredFloor => "mesh-request-reply-stored-floor",
            Scenario::MeshDispatch => "mesh-dispatch",
            Scenario::WorkflowLifecycle => "workflow-lifecycle",
            Scenario::WorkflowRestore => "workflow-restore",
            Scenario::WorkflowRetention => "workflow-retention",
        }
    }

    /// Sets the scenario up (keys, instances) and returns its workload (`rate-limited` is run
    /// by [`rate::run`] instead).
    pub(crate) async fn prepare(
        self,
        pool: &Pool,
        keyspace: &Keyspace,
        params: &Params,
    ) -> Result<Arc<dyn Workload>> {
        let concurrency = params.concurrency;
        match self {
            Scenario::RawEvalsha => raw::prepare(pool, keyspace).await,
            Scenario::ContextUpdate => context::prepare_update(pool, keyspace).await,
            Scenario::ContextRead => context::prepare_read(pool, keyspace).await,
            Scenario::BreakerAcquire => breaker::prepare(pool, keyspace, false).await,
            Scenario::BreakerGuardedCall => breaker::prepare(pool, keyspace, true).await,
            Scenario::MetricsRecord => metrics::prepare_record(pool, keyspace).await,
            Scenario::MetricsRecordBatch => metrics::prepare_record_batch(pool, keyspace).await,
            Scenario::MetricsAggregate => metrics::prepare_aggregate(pool, keyspace).await,
            Scenario::ErrorsRecord => errors::prepare_record(pool, keyspace).await,
            Scenario::ErrorsRecordFloor => errors::prepare_floor(pool, keyspace).await,
            Scenario::RetryLifecycle => retry::prepare(pool, keyspace, params).await,
            Scenario::RetryBackoffFloor => retry_floor::prepare(params),
            Scenario::RetrySteps => retry_steps::prepare(pool, keyspace, params).await,
            Scenario::RateLimited => Err("rate-limited drains a backlog: see rate::run".into()),
            Scenario::MeshRequestReply => {
                mesh::prepare_request_reply(pool, keyspace, concurrency).await
            }
            Scenario::MeshRequestReplyFloor => mesh_floor::prepare(pool, keyspace, false).await,
            Scenario::MeshRequestReplyStoredFloor => {
                mesh_floor::prepare(pool, keyspace, true).await
            }
            Scenario::MeshDispatch => mesh::prepare_dispatch(pool, keyspace).await,
            Scenario::WorkflowLifecycle => workflow::prepare_lifecycle(pool, keyspace).await,
            Scenario::WorkflowRestore => workflow::prepare_restore(pool, keyspace).await,
            Scenario::WorkflowRetention => workflow::prepare_retention(pool, keyspace).await,
        }
    }
}
