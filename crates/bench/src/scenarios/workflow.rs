//! `workflow-lifecycle` (create + claim + 3 checkpoints + complete of a fresh workflow: six
//! script calls), `workflow-restore` (one `restore()` of a store holding 10,000 active
//! workflows) and `workflow-retention` (create + claim + complete under the default retention
//! settings, with the server's memory sampled as the finished workflows pile up), each on one
//! store with the default settings.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use coordkit_core::{Keyspace, Pool};
use coordkit_workflow::{Claim, NewWorkflow, Outcome, WorkflowStore};

use super::{BoxFuture, Result, Workload, memory_usage};

/// Script calls in one `workflow-lifecycle` operation.
const LIFECYCLE_CALLS: u32 = 6;
/// Active workflows `workflow-restore` restores.
const RESTORE_ACTIVE: usize = 10_000;
/// How many finished workflows `workflow-retention` samples the memory after.
const MILESTONES: [u64; 5] = [1_000, 10_000, 100_000, 300_000, 1_000_000];

/// A JSON map of scenario figures.
type Extra = serde_json::Map<String, serde_json::Value>;

fn store(pool: &Pool, keyspace: &Keyspace, name: &str) -> Result<WorkflowStore> {
    Ok(WorkflowStore::builder(pool, keyspace, name)
        .owner("bench")
        .build()?)
}

/// Creates and claims a fresh workflow.
async fn start(store: &WorkflowStore, id: &str) -> Result<coordkit_workflow::Lease> {
    store
        .create(NewWorkflow::new("report", "topic: tides").id(id))
        .await?;
    match store.claim(id).await? {
        Claim::Claimed(lease) => Ok(lease),
        other => Err(format!("{id} not claimed: {other:?}").into()),
    }
}

fn done(what: &str, o: Outcome) -> Result<()> {
    if o == Outcome::Done {
        Ok(())
    } else {
        Err(format!("{what}: {o:?}").into())
    }
}

struct Lifecycle {
    store: WorkflowStore,
    next: AtomicU64,
}

impl Workload for Lifecycle {
    fn op<'a>(&'a self, _pool: &'a Pool, _i: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let id = format!("wf-{}", self.next.fetch_add(1, Ordering::Relaxed));
            let mut lease = start(&self.store, &id).await?;
            done("step 1", lease.checkpoint(1, "sources: 12").await?)?;
            done("step 2", lease.checkpoint(2, "outline: 5 parts").await?)?;
            done("step 3", lease.checkpoint(3, "draft: 2,400 words").await?)?;
            done("complete", lease.complete("report: tides").await?)
        })
    }

    fn calls_per_op(&self) -> Option<u32> {
        Some(LIFECYCLE_CALLS)
    }
}

pub(crate) async fn prepare_lifecycle(
    pool: &Pool,
    keyspace: &Keyspace,
) -> Result<Arc<dyn Workload>> {
    Ok(Arc::new(Lifecycle {
        store: store(pool, keyspace, "lifecycle")?,
        next: AtomicU64::new(0),
    }))
}

/// Every INFO text the server (or each node of a cluster) answers for `section`.
async fn info(pool: &Pool, section: &str) -> Result<Vec<String>> {
    fn collect(value: &redis::Value, out: &mut Vec<String>) {
        match value {
            redis::Value::BulkString(b) => out.push(String::from_utf8_lossy(b).into_owned()),
            redis::Value::VerbatimString { text, .. } | redis::Value::SimpleString(text) => {
                out.push(text.clone());
            }
            redis::Value::Array(items) | redis::Value::Set(items) => {
                items.iter().for_each(|v| collect(v, out));
            }
            redis::Value::Map(pairs) => pairs.iter().for_each(|(_, v)| collect(v, out)),
            _ => {}
        }
    }
    let value: redis::Value = pool.query(redis::cmd("INFO").arg(section)).await?;
    let mut out = Vec::new();
    collect(&value, &mut out);
    Ok(out)
}

/// The sum over the nodes of an INFO field `name:<n>`.
async fn info_sum(pool: &Pool, section: &str, name: &str) -> Result<u64> {
    let prefix = format!("{name}:");
    Ok(info(pool, section)
        .await?
        .iter()
        .flat_map(|t| t.lines())
        .filter_map(|l| l.strip_prefix(&prefix)?.trim().parse::<u64>().ok())
        .sum())
}

/// Calls per command from `INFO commandstats` (summed over the nodes): script calls
/// (`evalsha`, `eval`) and the commands the scripts made, `info` left out.
async fn command_calls(pool: &Pool) -> Result<(u64, u64)> {
    let (mut scripts, mut commands) = (0, 0);
    for text in info(pool, "commandstats").await? {
        for line in text.lines() {
            let Some((name, rest)) = line
                .strip_prefix("cmdstat_")
                .and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            let calls = rest
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            match name {
                "evalsha" | "eval" | "evalsha_ro" | "eval_ro" => scripts += calls,
                "info" => {}
                _ => commands += calls,
            }
        }
    }
    Ok((scripts, commands))
}

struct Restore {
    store: WorkflowStore,
}

impl Workload for Restore {
    fn op<'a>(&'a self, _pool: &'a Pool, _i: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let restored = self.store.restore().await?;
            if restored.active.len() != RESTORE_ACTIVE {
                return Err(format!("restored {} active", restored.active.len()).into());
            }
            Ok(())
        })
    }

    fn report<'a>(&'a self, pool: &'a Pool) -> BoxFuture<'a, Result<Extra>> {
        Box::pin(async move {
            let (scripts0, commands0) = command_calls(pool).await?;
            let restored = self.store.restore().await?;
            let (scripts1, commands1) = command_calls(pool).await?;
            let running = restored
                .active
                .iter()
                .filter(|i| i.status == coordkit_workflow::Status::Running)
                .count();
            let mut extra = Extra::new();
            extra.insert("active_workflows".into(), restored.active.len().into());
            extra.insert("running_workflows".into(), running.into());
            extra.insert("finished_workflows".into(), restored.finished.len().into());
            extra.insert("restore_calls".into(), restored.calls.into());
            extra.insert("server_script_calls".into(), (scripts1 - scripts0).into());
            extra.insert(
                "server_commands_in_scripts".into(),
                (commands1 - commands0).into(),
            );
            Ok(extra)
        })
    }
}

pub(crate) async fn prepare_restore(pool: &Pool, keyspace: &Keyspace) -> Result<Arc<dyn Workload>> {
    let store = store(pool, keyspace, "restore")?;
    // 10,100 created.
    let mut next = 0;
    while next < RESTORE_ACTIVE + 100 {
        let batch: Vec<_> = (next..(next + 100).min(RESTORE_ACTIVE + 100))
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .create(NewWorkflow::new("report", "topic: tides").id(&format!("wf-{i}")))
                        .await
                })
            })
            .collect();
        for task in batch {
            task.await??;
        }
        next += 100;
    }
    // The oldest 100 finish, the next 5,000 are claimed (running).
    for mut lease in store.claim_next(100).await?.leases {
        done("complete", lease.complete("done").await?)?;
    }
    for _ in 0..RESTORE_ACTIVE / 2 / 1_000 {
        store.claim_next(1_000).await?;
    }
    Ok(Arc::new(Restore { store }))
}

/// One memory sample of `workflow-retention`.
struct Sample {
    finished: u64,
    used_memory: u64,
    store_bytes: u64,
    records: u64,
    hash_fields: u64,
    index_entries: u64,
}

struct Retention {
    store: WorkflowStore,
    pool: Pool,
    next: AtomicU64,
    finished: AtomicU64,
    used_before: u64,
    samples: Mutex<Vec<Sample>>,
}

impl Retention {
    async fn sample(&self, finished: u64) -> Result<Sample> {
        let keys = self.store.keys();
        let mut index_entries = 0;
        for key in &keys[1..] {
            let n: u64 = self.pool.query(redis::cmd("ZCARD").arg(key)).await?;
            index_entries += n;
        }
        let hash_fields: u64 = self.pool.query(redis::cmd("HLEN").arg(&keys[0])).await?;
        // Every record has one entry in `expiry`, the last key.
        let records: u64 = self.pool.query(redis::cmd("ZCARD").arg(&keys[8])).await?;
        Ok(Sample {
            finished,
            used_memory: info_sum(&self.pool, "memory", "used_memory").await?,
            store_bytes: memory_usage(&self.pool, keys).await?,
            records,
            hash_fields,
            index_entries,
        })
    }
}

impl Workload for Retention {
    fn op<'a>(&'a self, _pool: &'a Pool, _i: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let id = format!("wf-{}", self.next.fetch_add(1, Ordering::Relaxed));
            let mut lease = start(&self.store, &id).await?;
            done("complete", lease.complete("report: tides").await?)?;
            let n = self.finished.fetch_add(1, Ordering::Relaxed) + 1;
            if MILESTONES.contains(&n) {
                let s = self.sample(n).await?;
                self.samples.lock().map_err(|_| "poisoned")?.push(s);
            }
            Ok(())
        })
    }

    fn report<'a>(&'a self, _pool: &'a Pool) -> BoxFuture<'a, Result<Extra>> {
        Box::pin(async move {
            let n = self.finished.load(Ordering::Relaxed);
            let last = self.sample(n).await?;
            let mut samples = std::mem::take(&mut *self.samples.lock().map_err(|_| "poisoned")?);
            if samples.last().is_none_or(|s| s.finished != n) {
                samples.push(last);
            }
            let curve: Vec<serde_json::Value> = samples
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "finished": s.finished,
                        "used_memory_delta": s.used_memory as i64 - self.used_before as i64,
                        "store_bytes": s.store_bytes,
                        "records": s.records,
                        "record_fields": s.hash_fields,
                        "index_entries": s.index_entries,
                    })
                })
                .collect();
            let mut extra = Extra::new();
            extra.insert("finished_workflows".into(), n.into());
            extra.insert("used_memory_before".into(), self.used_before.into());
            extra.insert("memory".into(), curve.into());
            Ok(extra)
        })
    }
}

pub(crate) async fn prepare_retention(
    pool: &Pool,
    keyspace: &Keyspace,
) -> Result<Arc<dyn Workload>> {
    Ok(Arc::new(Retention {
        store: store(pool, keyspace, "retention")?,
        pool: pool.clone(),
        next: AtomicU64::new(0),
        finished: AtomicU64::new(0),
        used_before: info_sum(pool, "memory", "used_memory").await?,
        samples: Mutex::default(),
    }))
}
