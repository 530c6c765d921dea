//! `mesh-request-reply` and `mesh-dispatch`: coordkit-mesh's request/reply and capability
//! routing.
//!
//! - `mesh-request-reply`: each operation is one `ask` to an agent that serves (a handler that
//!   answers the number it was asked), the answer awaited: the request's send script, the
//!   responder's take, its reply's send script (which wakes the asker), the asker's take of
//!   the reply, and the responder's ack. Each worker asks from an agent of its own (C askers,
//!   one responder), as agents in a fleet do.
//! - `mesh-dispatch`: each operation dispatches one message to a capability and waits until a
//!   member has received it and its ack has been applied. Four members take the capability's
//!   messages in batches as their wake-ups come and ack each one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coordkit_core::{Keyspace, Pool};
use coordkit_mesh::{Delivery, MeshAgent, Reply, SendOptions, Server};
use tokio::sync::{oneshot, watch};

use super::{BoxFuture, Result, Workload};

/// How long one operation may take before it counts as an error (catches hangs only).
const OP_TIMEOUT: Duration = Duration::from_secs(60);

struct RequestReply {
    /// Idle askers: an operation borrows one and gives it back.
    askers: Mutex<Vec<MeshAgent>>,
    target: String,
    _server: Server,
}

impl Workload for RequestReply {
    fn op<'a>(&'a self, _pool: &'a Pool, i: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let asker = self
                .askers
                .lock()
                .map_err(|_| "poisoned")?
                .pop()
                .ok_or("more operations at once than askers")?;
            let reply = asker.ask::<u64, u64>(&self.target, &i, OP_TIMEOUT).await;
            self.askers.lock().map_err(|_| "poisoned")?.push(asker);
            match reply? {
                Reply::Answer(n) if n == i => Ok(()),
                other => Err(format!("ask {i}: {other:?}").into()),
            }
        })
    }
}

pub(crate) async fn prepare_request_reply(
    pool: &Pool,
    keyspace: &Keyspace,
    concurrency: usize,
) -> Result<Arc<dyn Workload>> {
    let target = "responder".to_owned();
    let responder = MeshAgent::builder(pool, keyspace, &target).build()?;
    let server = responder
        .serve(|n: u64| async move { Ok::<u64, String>(n) })
        .await?;
    let askers = (0..concurrency)
        .map(|k| MeshAgent::builder(pool, keyspace, &format!("asker-{k}")).build())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Arc::new(RequestReply {
        askers: Mutex::new(askers),
        target,
        _server: server,
    }))
}

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>;

/// The capability the dispatch bench routes to.
const CAPABILITY: &str = "bench-work";
/// Members of the capability.
const MEMBERS: usize = 4;
/// How many messages a member takes at once.
const BATCH: usize = 64;

struct Dispatch {
    sender: MeshAgent,
    waiters: Waiters,
    next: AtomicU64,
    acked: Arc<AtomicU64>,
    receives: Arc<AtomicU64>,
    members: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Dispatch {
    fn drop(&mut self) {
        for member in &self.members {
            member.abort();
        }
    }
}

impl Workload for Dispatch {
    fn op<'a>(&'a self, _pool: &'a Pool, _i: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            self.waiters.lock().map_err(|_| "poisoned")?.insert(n, tx);
            self.sender
                .dispatch(CAPABILITY, &n, SendOptions::default())
                .await?;
            tokio::time::timeout(OP_TIMEOUT, rx)
                .await
                .map_err(|_| format!("message {n} not acked within {OP_TIMEOUT:?}"))?
                .map_err(|_| "the members stopped")?;
            Ok(())
        })
    }

    fn report<'a>(
        &'a self,
        _pool: &'a Pool,
    ) -> BoxFuture<'a, Result<serde_json::Map<String, serde_json::Value>>> {
        Box::pin(async move {
            let mut extra = serde_json::Map::new();
            let acked = self.acked.load(Ordering::Relaxed).max(1) as f64;
            let per = |x: u64| ((x as f64 / acked) * 1000.0).round() / 1000.0;
            extra.insert("members".into(), MEMBERS.into());
            extra.insert(
                "receives_per_message".into(),
                per(self.receives.load(Ordering::Relaxed)).into(),
            );
            Ok(extra)
        })
    }
}

/// One member: takes a batch when woken, acks each message on a task of its own, and tells
/// the operation that dispatched it.
async fn member(
    agent: MeshAgent,
    mut wake: watch::Receiver<u64>,
    waiters: Waiters,
    acked: Arc<AtomicU64>,
    receives: Arc<AtomicU64>,
) {
    loop {
        wake.borrow_and_update();
        receives.fetch_add(1, Ordering::Relaxed);
        let batch: Vec<Delivery<u64>> = match agent.receive_dispatched(CAPABILITY, BATCH).await {
            Ok(batch) => batch,
            Err(e) => {
                eprintln!("coordkit-bench: a member's receive failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let full = batch.len() == BATCH;
        for delivery in batch {
            let (waiters, acked) = (waiters.clone(), acked.clone());
            tokio::spawn(async move {
                match delivery.ack().await {
                    Ok(_) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                        if let Some(tx) = waiters
                            .lock()
                            .ok()
                            .and_then(|mut m| m.remove(&delivery.payload))
                        {
                            let _ = tx.send(());
                        }
                    }
                    Err(e) => eprintln!("coordkit-bench: an ack failed: {e}"),
                }
            });
        }
        if !full {
            // Wait for the next dispatch's wake-up (or look again after a while, in case one
            // was missed: the operation's timeout would count it as an error otherwise).
            let _ = tokio::time::timeout(Duration::from_millis(100), wake.changed()).await;
        }
    }
}

pub(crate) async fn prepare_dispatch(
    pool: &Pool,
    keyspace: &Keyspace,
) -> Result<Arc<dyn Workload>> {
    let sender = MeshAgent::builder(pool, keyspace, "dispatcher").build()?;
    let waiters: Waiters = Arc::default();
    let acked = Arc::new(AtomicU64::new(0));
    let receives = Arc::new(AtomicU64::new(0));
    let channel = sender.capability_wake_channel(CAPABILITY)?;
    let mut members = Vec::new();
    for k in 0..MEMBERS {
        let agent = MeshAgent::builder(pool, keyspace, &format!("member-{k}")).build()?;
        agent.join(CAPABILITY).await?;
        let subscriber = pool
            .subscriber()
            .shard_channel(&channel)
            .subscribe::<serde_json::Value>()
            .await?;
        let (tx, wake) = watch::channel(0u64);
        members.push(tokio::spawn(coordkit_core::wake::run(
            subscriber,
            tx,
            Duration::from_secs(1),
            || {},
            || eprintln!("coordkit-bench: a member's wake-ups ended"),
        )));
        members.push(tokio::spawn(member(
            agent,
            wake,
            waiters.clone(),
            acked.clone(),
            receives.clone(),
        )));
    }
    Ok(Arc::new(Dispatch {
        sender,
        waiters,
        next: AtomicU64::new(0),
        acked,
        receives,
        members,
    }))
}
