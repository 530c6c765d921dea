//! [`GroupCommit`]: concurrent operations share one script call.
//!
//! A primitive whose operations each cost one EVALSHA can let the operations that arrive while
//! earlier ones are on the wire go together in the next call: the server pays the call's fixed
//! cost (reading, dispatching, writing the reply) once per batch instead of once per operation,
//! and each caller still waits for exactly one round trip. A lone caller is sent at once, from
//! its own task, so group commit adds nothing to the latency of a quiet process.
//!
//! Batches form per *lane*: a script may only touch the keys of one hash slot on a cluster, so
//! the lane is the hash tag there; on a standalone server every operation shares one lane (see
//! [`GroupCommit::lane`]). At most `max_in_flight` calls per lane are on the wire at once; what
//! arrives meanwhile waits, then goes in one call of at most `max_batch` operations.
//!
//! The flush function (given the group commit's pool) sends one batch and answers one result
//! per operation, in order. It must
//! apply each operation exactly once (the script runs them one after the other, atomically) and
//! hand a failure of the whole call to every operation of the batch.
//!
//! ```
//! use coordkit_core::{GroupCommit, Keyspace, Pool, PoolConfig, Script};
//!
//! static ADD: Script = Script::new(
//!     "add-many",
//!     "-- KEYS[1] a counter; ARGV: one increment per operation; returns each new value\n\
//!      local out = {}\n\
//!      for i = 1, #ARGV do out[i] = redis.call('INCRBY', KEYS[1], ARGV[i]) end\n\
//!      return out",
//! );
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
//! # let server = coordkit_testkit::RedisServer::start()?;
//! let pool = Pool::connect(PoolConfig::from_url(&server.url())?).await?;
//! let counter = Keyspace::new("doc")?.instance("counter", "a")?.key("n");
//! let key = counter.clone();
//! let adds: GroupCommit<u64, u64> = GroupCommit::new(&pool, 4, 256, move |pool, increments| {
//!     let key = key.clone();
//!     Box::pin(async move {
//!         let mut call = ADD.prepare();
//!         call.key(&key);
//!         for n in &increments {
//!             call.arg(*n);
//!         }
//!         call.invoke::<Vec<u64>>(&pool).await
//!     })
//! });
//! let (a, b) = tokio::join!(adds.submit(&counter, 1), adds.submit(&counter, 2));
//! // Applied one after the other, alone or together: 1 then 3, or 2 then 3.
//! assert_eq!(a?.max(b?), 3);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use redis::FromRedisValue;

use crate::{Error, Invocation, Key, Pool, Result, Topology, redis_hash_tag};

/// A boxed, sendable future: what a flush function returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

type FlushFn<Op, Out> = dyn Fn(Pool, Vec<Op>) -> BoxFuture<'static, Result<Vec<Out>>> + Send + Sync;

/// Operations of one kind that go to the server together when they arrive together.
///
/// `Op` is what a caller submits, `Out` what it gets back (often a `Result` of its own: one
/// operation of a batch may fail while the others succeed). Cheap to clone; clones share the
/// queues.
pub struct GroupCommit<Op, Out> {
    inner: Arc<Inner<Op, Out>>,
}

impl<Op, Out> Clone for GroupCommit<Op, Out> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<Op, Out> std::fmt::Debug for GroupCommit<Op, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("per_slot", &self.inner.per_slot)
            .field("max_in_flight", &self.inner.max_in_flight)
            .field("max_batch", &self.inner.max_batch)
            .finish_non_exhaustive()
    }
}

struct Inner<Op, Out> {
    flush: Box<FlushFn<Op, Out>>,
    /// Handed to `flush` with each batch.
    pool: Pool,
    per_slot: bool,
    max_in_flight: usize,
    max_batch: usize,
    lanes: Mutex<HashMap<Box<str>, Lane<Op, Out>>>,
}

struct Lane<Op, Out> {
    in_flight: usize,
    queue: Vec<Pending<Op, Out>>,
}

struct Pending<Op, Out> {
    op: Op,
    reply: oneshot::Sender<Result<Out>>,
}

type Batch<Op, Out> = Vec<Pending<Op, Out>>;

impl<Op: Send + 'static, Out: Send + 'static> GroupCommit<Op, Out> {
    /// Group commit over `flush`, for operations on `pool`'s server(s). `flush`, given the pool
    /// (a clone), sends one batch
    /// (of at most `max_batch` operations, at least 1; on a cluster all of one hash tag) and
    /// answers one result per operation, in order; at most `max_in_flight` batches per lane (at
    /// least 1) are on the wire at once.
    ///
    /// An `Err` from `flush` (the call failed as a whole) is handed to every operation of the
    /// batch; an answer with fewer results than operations fails the ones left without one.
    pub fn new<F>(pool: &Pool, max_in_flight: usize, max_batch: usize, flush: F) -> Self
    where
        F: Fn(Pool, Vec<Op>) -> BoxFuture<'static, Result<Vec<Out>>> + Send + Sync + 'static,
    {
        Self {
            inner: Arc::new(Inner {
                flush: Box::new(flush),
                pool: pool.clone(),
                per_slot: pool.topology() == Topology::Cluster,
                max_in_flight: max_in_flight.max(1),
                max_batch: max_batch.max(1),
                lanes: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Applies `op` (whose keys share `key`'s hash tag), alone or with the other operations
    /// of its lane that wait at the same time: one round trip from the caller's point of view.
    ///
    /// If the caller stops waiting, an operation that went in a batch of several is still
    /// applied (the batch is sent by a task of its own); a lone operation, sent from the
    /// caller's task, may or may not have been sent, and its slot is handed on.
    pub async fn submit(&self, key: &Key, op: Op) -> Result<Out> {
        let lane = if self.inner.per_slot {
            redis_hash_tag(key.as_str())
        } else {
            ""
        };
        let batch = {
            let mut lanes = self.inner.lanes.lock().unwrap_or_else(|e| e.into_inner());
            let state = match lanes.get_mut(lane) {
                Some(state) => state,
                None => lanes.entry(lane.into()).or_insert_with(|| Lane {
                    in_flight: 0,
                    queue: Vec::new(),
                }),
            };
            if state.queue.is_empty() && state.in_flight < self.inner.max_in_flight {
                // Nobody waits: the caller sends its operation itself, with no channel.
                state.in_flight += 1;
                Err(op)
            } else {
                let (tx, rx) = oneshot::channel();
                state.queue.push(Pending { op, reply: tx });
                if state.in_flight < self.inner.max_in_flight {
                    state.in_flight += 1;
                    Ok((rx, Some(take(&mut state.queue, self.inner.max_batch))))
                } else {
                    Ok((rx, None))
                }
            }
        };
        let (rx, batch) = match batch {
            Err(alone) => return self.send_alone(lane, alone).await,
            Ok(queued) => queued,
        };
        if let Some(batch) = batch {
            if batch.len() == 1 {
                // Only this operation: sent from here, without a hop to another task. The guard
                // hands the in-flight slot on (to what queued meanwhile) even if this future is
                // dropped mid-call.
                let guard = SlotGuard {
                    inner: self.inner.clone(),
                    lane: lane.into(),
                };
                send(&self.inner, batch).await;
                drop(guard);
            } else {
                // Others' operations too: a task of its own, so a caller that gives up waiting
                // cannot strand them.
                tokio::spawn(flush_lane(self.inner.clone(), lane.into(), batch));
            }
        }
        match rx.await {
            Ok(result) => result,
            Err(_) => Err(lost()),
        }
    }

    /// Sends a lone operation from the caller's task, holding one of its lane's slots (handed
    /// on to whatever queued meanwhile, even if the caller stops waiting).
    async fn send_alone(&self, lane: &str, op: Op) -> Result<Out> {
        let guard = SlotGuard {
            inner: self.inner.clone(),
            lane: lane.into(),
        };
        let result = match (self.inner.flush)(self.inner.pool.clone(), vec![op]).await {
            Ok(outs) => outs.into_iter().next().ok_or_else(lost),
            Err(e) => Err(e),
        };
        drop(guard);
        result
    }
}

impl<T: FromRedisValue + Send + 'static> GroupCommit<Invocation<'static>, Result<T>> {
    /// Group commit by pipelining: concurrent invocations (of one script, on one lane) go in
    /// one pipeline ([`Invocation::invoke_each`]). Each is still its own EVALSHA with its own
    /// answer; what the batch saves is the round trips and the system calls on both sides.
    pub fn pipelined(pool: &Pool, max_in_flight: usize, max_batch: usize) -> Self {
        Self::new(pool, max_in_flight, max_batch, |pool, calls| {
            Box::pin(async move {
                match calls.as_slice() {
                    // A lone call: the plain path, without a pipeline's bookkeeping.
                    [call] => call.invoke::<T>(&pool).await.map(|t| vec![Ok(t)]),
                    _ => Invocation::invoke_each::<T>(&pool, &calls).await,
                }
            })
        })
    }
}

fn lost() -> Error {
    Error::Unavailable {
        addr: "group commit".into(),
        reason: "the batch ended without an answer for this operation (it may have been applied)"
            .into(),
    }
}

fn take<Op, Out>(queue: &mut Batch<Op, Out>, max: usize) -> Batch<Op, Out> {
    if queue.len() <= max {
        std::mem::take(queue)
    } else {
        queue.drain(..max).collect()
    }
}

/// Sends one batch and hands each caller its answer.
async fn send<Op, Out>(inner: &Inner<Op, Out>, batch: Batch<Op, Out>) {
    let (ops, replies): (Vec<Op>, Vec<_>) = batch.into_iter().map(|p| (p.op, p.reply)).unzip();
    match (inner.flush)(inner.pool.clone(), ops).await {
        Ok(outs) => {
            let mut outs = outs.into_iter();
            for reply in replies {
                let _ = reply.send(outs.next().ok_or_else(lost));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// The next batch for the holder of one of `lane`'s in-flight slots, or `None` after giving
/// the slot back.
fn next_batch<Op, Out>(inner: &Inner<Op, Out>, lane: &str) -> Option<Batch<Op, Out>> {
    let mut lanes = inner.lanes.lock().unwrap_or_else(|e| e.into_inner());
    let state = lanes.get_mut(lane)?;
    if state.queue.is_empty() {
        state.in_flight -= 1;
        if state.in_flight == 0 && inner.per_slot {
            // A cluster may see many hash tags: an idle lane is not kept.
            lanes.remove(lane);
        }
        None
    } else {
        Some(take(&mut state.queue, inner.max_batch))
    }
}

/// Sends batches until the lane's queue is empty, then gives the in-flight slot back.
async fn flush_lane<Op: Send + 'static, Out: Send + 'static>(
    inner: Arc<Inner<Op, Out>>,
    lane: Box<str>,
    mut batch: Batch<Op, Out>,
) {
    loop {
        send(&inner, batch).await;
        match next_batch(&inner, &lane) {
            Some(next) => batch = next,
            None => return,
        }
    }
}

/// Hands an in-flight slot on when dropped: to a task that sends what queued meanwhile, or
/// back.
struct SlotGuard<Op: Send + 'static, Out: Send + 'static> {
    inner: Arc<Inner<Op, Out>>,
    lane: Box<str>,
}

impl<Op: Send + 'static, Out: Send + 'static> Drop for SlotGuard<Op, Out> {
    fn drop(&mut self) {
        if let Some(batch) = next_batch(&self.inner, &self.lane) {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(flush_lane(
                        self.inner.clone(),
                        std::mem::take(&mut self.lane),
                        batch,
                    ));
                }
                Err(_) => {
                    // No runtime left to send them: their callers see `lost`.
                    let mut lanes = self.inner.lanes.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(state) = lanes.get_mut(&*self.lane) {
                        state.in_flight -= 1;
                    }
                }
            }
        }
    }
}
