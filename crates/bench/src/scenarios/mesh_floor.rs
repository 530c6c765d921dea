//! `mesh-request-reply-floor`: not a primitive, the least a request and its reply can cost
//! through Redis: the asker's script publishes the request, the responder (subscribed to it)
//! runs a script that publishes the reply, the asker (subscribed to that) receives it. Two
//! script calls and two pub/sub deliveries, over the same pool and subscriber as the mesh,
//! with no storage, no Lua work and a 16-byte message: what `mesh-request-reply` is compared
//! with to tell its own cost from the floor's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coordkit_core::{Key, Keyspace, Pool, Script};
use tokio::sync::oneshot;

use super::{BoxFuture, Result, Workload};

static PUBLISH: Script = Script::bare("publish-floor", include_str!("../../lua/publish_floor.lua"));

/// How long one operation may take before it counts as an error (catches hangs only).
const OP_TIMEOUT: Duration = Duration::from_secs(60);

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>;

struct Floor {
    key: Key,
    requests: String,
    waiters: Waiters,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Floor {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn publish(pool: &Pool, key: &Key, channel: &str, message: &[u8]) -> Result<()> {
    let _: i64 = PUBLISH
        .prepare()
        .key(key)
        .arg(channel)
        .arg(message)
        .invoke(pool)
        .await?;
    Ok(())
}

impl Workload for Floor {
    fn op<'a>(&'a self, pool: &'a Pool, i: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.waiters.lock().map_err(|_| "poisoned")?.insert(i, tx);
            publish(pool, &self.key, &self.requests, &i.to_le_bytes()).await?;
            tokio::time::timeout(OP_TIMEOUT, rx)
                .await
                .map_err(|_| format!("no reply to {i} within {OP_TIMEOUT:?}"))?
                .map_err(|_| "the asker's subscriber stopped")?;
            Ok(())
        })
    }
}

pub(crate) async fn prepare(pool: &Pool, keyspace: &Keyspace) -> Result<Arc<dyn Workload>> {
    let instance = keyspace.instance("bench", "floor")?;
    let key = instance.key("k");
    let requests = instance.key("requests").as_str().to_owned();
    let replies = instance.key("replies").as_str().to_owned();
    let waiters: Waiters = Arc::default();
    // The responder: each request answered by a script of its own, as a server's would be.
    let mut asked = pool.subscriber().channel(&requests).subscribe_raw().await?;
    let responder = tokio::spawn({
        let (pool, key, replies) = (pool.clone(), key.clone(), replies.clone());
        async move {
            while let Some(message) = asked.recv().await {
                let (pool, key, replies) = (pool.clone(), key.clone(), replies.clone());
                tokio::spawn(async move {
                    if let Err(e) = publish(&pool, &key, &replies, &message.payload).await {
                        eprintln!("coordkit-bench: a floor reply failed: {e}");
                    }
                });
            }
        }
    });
    // The asker's subscription: each reply ends the operation waiting for its number.
    let mut answered = pool.subscriber().channel(&replies).subscribe_raw().await?;
    let asker = tokio::spawn({
        let waiters = waiters.clone();
        async move {
            while let Some(message) = answered.recv().await {
                let Ok(bytes) = <[u8; 8]>::try_from(message.payload.as_slice()) else {
                    continue;
                };
                let waiter = waiters
                    .lock()
                    .ok()
                    .and_then(|mut w| w.remove(&u64::from_le_bytes(bytes)));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(());
                }
            }
        }
    });
    Ok(Arc::new(Floor {
        key,
        requests,
        waiters,
        tasks: vec![responder, asker],
    }))
}
