//! `retry-lifecycle`: each operation enqueues one task and waits until a worker (concurrency =
//! the bench's concurrency) has processed it and its acknowledgement has been applied; the task
//! fails `--fails` times first, with a fixed backoff without jitter (`--backoff-ms`, default
//! 1 ms: what a transient LLM or API error is retried after), retried in place by the worker
//! when the backoff is below `--in-place-below-ms` (default 500, the queue's default).
//! `ops_per_sec` is tasks completed per second. Enqueues from concurrent operations are
//! group-committed (whatever is waiting goes in one enqueue script, as the worker does for
//! claims and settles). The report adds the Redis memory per queued task and the scripts run
//! per task.
//!
//! `--priority N` and `--group-limit` make a variant run: every task has priority N, and the
//! queue has limits that never bind. The plain run (its own queue and worker) is measured in
//! the same rounds, so the report tells what the options cost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coordkit_core::{Keyspace, Pool};
use coordkit_retry_queue::{
    Backoff, Jitter, Limits, MAX_LIMIT, NewTask, Queue, Rate, Settled, TaskOptions, Worker,
};
use tokio::sync::oneshot;

use super::{BoxFuture, GroupLimit, Params, Result, Workload, memory_usage};

/// `--group-limit`'s group.
const GROUP: &str = "llm";

/// `--group-limit`'s limits: as high as a group allows, so they never bind and a run shows
/// only what applying them costs.
fn never_binding(kind: GroupLimit) -> Limits {
    let leased = Some(MAX_LIMIT);
    let rate = Some(Rate {
        starts: MAX_LIMIT,
        per: Duration::from_secs(1),
    });
    match kind {
        GroupLimit::Both => Limits {
            max_leased: leased,
            rate,
        },
        GroupLimit::Leased => Limits {
            max_leased: leased,
            rate: None,
        },
        GroupLimit::Rate => Limits {
            max_leased: None,
            rate,
        },
    }
}

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>;
type Enqueue = (NewTask, oneshot::Sender<std::result::Result<(), String>>);

struct Lifecycle {
    queue: Queue,
    keyspace: Keyspace,
    options: TaskOptions,
    waiters: Waiters,
    next: AtomicU64,
    params: Params,
    plain: Option<Arc<dyn Workload>>,
    enqueue: tokio::sync::mpsc::UnboundedSender<Enqueue>,
    enqueues: Arc<AtomicU64>,
    worker: Worker,
}

fn number(payload: &[u8]) -> Option<u64> {
    std::str::from_utf8(payload).ok()?.parse().ok()
}

impl Workload for Lifecycle {
    fn op<'a>(&'a self, _pool: &'a Pool, _i: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            self.waiters.lock().map_err(|_| "poisoned")?.insert(n, tx);
            let task = NewTask::new(n.to_string()).options(self.options.clone());
            let (done, enqueued) = oneshot::channel();
            self.enqueue
                .send((task, done))
                .map_err(|_| "the enqueuer stopped")?;
            enqueued.await.map_err(|_| "the enqueuer stopped")??;
            tokio::time::timeout(Duration::from_secs(60), rx)
                .await
                .map_err(|_| format!("task {n} not completed within 60 s"))?
                .map_err(|_| "the worker stopped")?;
            Ok(())
        })
    }

    fn plain(&self) -> Option<Arc<dyn Workload>> {
        self.plain.clone()
    }

    fn report<'a>(
        &'a self,
        pool: &'a Pool,
    ) -> BoxFuture<'a, Result<serde_json::Map<String, serde_json::Value>>> {
        Box::pin(async move {
            let mut extra = serde_json::Map::new();
            let stats = self.queue.stats().await?;
            let p = &self.params;
            insert_backoff(&mut extra, p.fails, p.backoff);
            extra.insert(
                "retry_in_place_below_ms".into(),
                u64::try_from(p.in_place_below.as_millis())
                    .unwrap_or(u64::MAX)
                    .into(),
            );
            if let Some(priority) = p.priority {
                extra.insert("priority".into(), priority.into());
            }
            if let Some(kind) = p.group_limit {
                let limits = never_binding(kind);
                let leased = limits
                    .max_leased
                    .map(|k| format!(" max_leased {k}"))
                    .unwrap_or_default();
                let rate = limits
                    .rate
                    .map(|r| format!(" rate {} per {} ms", r.starts, r.per.as_millis()))
                    .unwrap_or_default();
                extra.insert(
                    "limits".into(),
                    format!("every task in group {GROUP}, never binding:{leased}{rate}").into(),
                );
            }
            extra.insert("tasks_completed".into(), stats.completed.into());
            extra.insert("tasks_dead".into(), stats.dead.into());
            let w = self.worker.stats();
            let per_task = |x: u64| ((x as f64 / w.acked.max(1) as f64) * 1000.0).round() / 1000.0;
            extra.insert("claims_per_task".into(), per_task(w.claims).into());
            extra.insert("settles_per_task".into(), per_task(w.settles).into());
            extra.insert(
                "retries_in_place_per_task".into(),
                per_task(w.retried_in_place).into(),
            );
            extra.insert(
                "retries_delayed_per_task".into(),
                per_task(w.retried).into(),
            );
            extra.insert("wakeups_per_task".into(), per_task(w.wakeups).into());
            extra.insert(
                "enqueue_scripts_per_task".into(),
                per_task(self.enqueues.load(Ordering::Relaxed)).into(),
            );
            // Memory: 10,000 queued tasks with a 64-byte payload in a queue without workers.
            let idle = Queue::builder(pool, &self.keyspace, "retry-memory").build()?;
            const N: usize = 10_000;
            let payload = vec![b'x'; 64];
            for _ in 0..N / 500 {
                let batch: Vec<NewTask> = (0..500)
                    .map(|_| NewTask::new(payload.clone()).options(self.options.clone()))
                    .collect();
                idle.enqueue_batch(&batch).await?;
            }
            let bytes = memory_usage(pool, idle.keys()).await?;
            extra.insert("payload_bytes".into(), 64.into());
            extra.insert(
                "bytes_per_queued_task".into(),
                ((bytes as f64 / N as f64 * 10.0).round() / 10.0).into(),
            );
            Ok(extra)
        })
    }
}

/// The report's `fails` and `backoff` (also `retry-backoff-floor`'s).
pub(super) fn insert_backoff(
    extra: &mut serde_json::Map<String, serde_json::Value>,
    fails: u32,
    backoff: Duration,
) {
    let backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX);
    extra.insert("fails".into(), fails.into());
    extra.insert(
        "backoff".into(),
        format!("fixed {backoff_ms} ms, no jitter").into(),
    );
}

pub(crate) async fn prepare(
    pool: &Pool,
    keyspace: &Keyspace,
    params: &Params,
) -> Result<Arc<dyn Workload>> {
    let variant = params.priority.is_some() || params.group_limit.is_some();
    let plain = if variant && !params.variant_only {
        let params = Params {
            priority: None,
            group_limit: None,
            ..*params
        };
        let plain = start(pool, keyspace, "retry-lifecycle-plain", params, None).await?;
        Some(Arc::new(plain) as Arc<dyn Workload>)
    } else {
        None
    };
    Ok(Arc::new(
        start(pool, keyspace, "retry-lifecycle", *params, plain).await?,
    ))
}

/// The variant's task options and queue settings (nothing for a plain run).
pub(crate) async fn variant(
    queue: &Queue,
    options: TaskOptions,
    params: &Params,
) -> Result<TaskOptions> {
    let mut options = options;
    if let Some(priority) = params.priority {
        options = options.priority(priority);
    }
    if let Some(kind) = params.group_limit {
        // Every task in one group whose limits never bind: its own lane, its lease count and
        // its log of starts, on every claim and settle.
        options = options.group(GROUP);
        queue.set_group_limits(GROUP, never_binding(kind)).await?;
    }
    Ok(options)
}

/// Starts one queue's worker and enqueuer.
async fn start(
    pool: &Pool,
    keyspace: &Keyspace,
    name: &str,
    params: Params,
    plain: Option<Arc<dyn Workload>>,
) -> Result<Lifecycle> {
    let (concurrency, fails) = (params.concurrency, params.fails);
    let queue = Queue::builder(pool, keyspace, name)
        .retry_in_place_below(params.in_place_below)
        .build()?;
    let options = TaskOptions::default()
        .max_attempts(fails + 1)
        .backoff(Backoff::Fixed(params.backoff))
        .jitter(Jitter::None);
    let options = variant(&queue, options, &params).await?;
    let waiters: Waiters = Arc::default();
    let w = waiters.clone();
    let worker = Worker::builder(&queue, move |task| async move {
        if task.attempt <= fails {
            Err(format!("planned failure {}", task.attempt))
        } else {
            Ok(())
        }
    })
    .concurrency(concurrency.clamp(1, 10_000))
    .on_settled(move |task, settled| {
        if *settled == Settled::Acked
            && let Some(n) = number(&task.payload)
            && let Some(tx) = w.lock().ok().and_then(|mut m| m.remove(&n))
        {
            let _ = tx.send(());
        }
    })
    .start()
    .await?;
    let (enqueue, mut pending) = tokio::sync::mpsc::unbounded_channel::<Enqueue>();
    let enqueues = Arc::new(AtomicU64::new(0));
    let (q, count) = (queue.clone(), enqueues.clone());
    tokio::spawn(async move {
        while let Some(first) = pending.recv().await {
            let mut batch = vec![first];
            while let Ok(more) = pending.try_recv() {
                batch.push(more);
                if batch.len() == coordkit_retry_queue::MAX_BATCH {
                    break;
                }
            }
            let (tasks, replies): (Vec<NewTask>, Vec<_>) = batch.into_iter().unzip();
            count.fetch_add(1, Ordering::Relaxed);
            let answer = q
                .enqueue_batch(&tasks)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
            for reply in replies {
                let _ = reply.send(answer.clone());
            }
        }
    });
    Ok(Lifecycle {
        enqueue,
        enqueues,
        queue,
        keyspace: keyspace.clone(),
        options,
        waiters,
        next: AtomicU64::new(0),
        params,
        plain,
        worker,
    })
}
