//! `retry-steps`: a task's steps in fixed batches, with no worker, so that the server's
//! instructions per task (`scripts/server-instructions.sh`) do not move with how the worker's
//! batches happen to form. An operation enqueues `--batch` tasks in one script call, claims
//! them in one, settles each failure retried in place (`--fails F`: F settles of the batch) and
//! acks them in one. `--priority N` and `--group-limit` set the variant as in
//! `retry-lifecycle`. Run it at concurrency 1: concurrent operations would claim each other's
//! tasks.

use std::sync::Arc;
use std::time::Duration;

use coordkit_core::{Keyspace, Pool};
use coordkit_retry_queue::{Backoff, Jitter, NewTask, Queue, Settle, Settled, TaskOptions};

use super::{BoxFuture, Params, Result, Workload};

struct Steps {
    queue: Queue,
    options: TaskOptions,
    batch: usize,
    fails: u32,
    backoff: Duration,
}

impl Workload for Steps {
    fn op<'a>(&'a self, _pool: &'a Pool, _i: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let tasks: Vec<NewTask> = (0..self.batch)
                .map(|_| NewTask::new(vec![b'x'; 64]).options(self.options.clone()))
                .collect();
            self.queue.enqueue_batch(&tasks).await?;
            let mut tasks = self.queue.claim(self.batch).await?.tasks;
            for _ in 0..self.fails {
                let fails: Vec<_> = tasks
                    .iter()
                    .map(|t| (t, Settle::FailInPlace("planned failure".into())))
                    .collect();
                let answers = self.queue.settle(&fails).await?;
                // The next run is the next attempt, as the worker counts it: a failure of the
                // same attempt again would be answered as a replay, writing nothing.
                for (task, answer) in tasks.iter_mut().zip(answers) {
                    let Settled::RetryingInPlace { attempts, .. } = answer else {
                        return Err(format!("a failure settled as {answer:?}").into());
                    };
                    task.attempt = attempts + 1;
                }
            }
            let acks: Vec<_> = tasks.iter().map(|t| (t, Settle::Ack)).collect();
            self.queue.settle(&acks).await?;
            Ok(())
        })
    }

    fn report<'a>(
        &'a self,
        _pool: &'a Pool,
    ) -> BoxFuture<'a, Result<serde_json::Map<String, serde_json::Value>>> {
        Box::pin(async move {
            let mut extra = serde_json::Map::new();
            extra.insert("tasks_per_op".into(), self.batch.into());
            super::retry::insert_backoff(&mut extra, self.fails, self.backoff);
            Ok(extra)
        })
    }
}

pub(crate) async fn prepare(
    pool: &Pool,
    keyspace: &Keyspace,
    params: &Params,
) -> Result<Arc<dyn Workload>> {
    let queue = Queue::builder(pool, keyspace, "retry-steps").build()?;
    // Below the queue's retry-in-place threshold: every failure stays leased.
    let backoff = Duration::from_millis(1);
    let options = TaskOptions::default()
        .max_attempts(params.fails + 1)
        .backoff(Backoff::Fixed(backoff))
        .jitter(Jitter::None);
    let options = super::retry::variant(&queue, options, params).await?;
    Ok(Arc::new(Steps {
        queue,
        options,
        batch: params.batch.clamp(1, 500),
        fails: params.fails,
        backoff,
    }))
}
