//! `mesh-request-reply-floor`: not a primitive, the least a request and its reply can cost
//! through Redis: the asker's script publishes the request, the responder (subscribed to it)
//! runs a script that publishes the reply, the asker (subscribed to that) receives it. Two
//! script calls and two pub/sub deliveries, over the same pool and subscriber as the mesh,
//! with no storage, no Lua work and a 16-byte message: what `mesh-request-reply` is compared
//! with to tell its own cost from the floor's.
//!
//! `mesh-request-reply-stored-floor`: the same, with the least storage a request/reply that
//! loses nothing needs: the request's script reads the receiver's presence, stores the request
//! and marks it pending; the reply's script acknowledges the request and stores the reply.
//! No validation, no counters, no expiry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coordkit_core::{Key, Keyspace, Pool, Script};
use tokio::sync::oneshot;

use super::{BoxFuture, Result, Workload};

static PUBLISH: Script = Script::bare("publish-floor", include_str!("../../lua/publish_floor.lua"));
static REQUEST_STORED: Script = Script::bare(
    "request-stored-floor",
    include_str!("../../lua/request_stored_floor.lua"),
);
static REPLY_STORED: Script = Script::bare(
    "reply-stored-floor",
    include_str!("../../lua/reply_stored_floor.lua"),
);

/// How long one operation may take before it counts as an error (catches hangs only).
const OP_TIMEOUT: Duration = Duration::from_secs(60);

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>;

/// The keys the stored floor writes: messages, pending, presence, replies.
#[derive(Clone)]
struct Stored {
    msgs: Key,
    pending: Key,
    alive: Key,
    replies: Key,
}

struct Floor {
    key: Key,
    stored: Option<Stored>,
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

/// A script of the stored floor on `keys`; the message is the request's id.
async fn call_stored(
    pool: &Pool,
    script: &Script,
    keys: [&Key; 3],
    channel: &str,
    message: &[u8],
) -> Result<()> {
    let id = u64::from_le_bytes(message.try_into().map_err(|_| "an 8-byte message")?);
    let mut call = script.prepare();
    for key in keys {
        call.key(key);
    }
    let _: i64 = call.arg(channel).arg(message).arg(id).invoke(pool).await?;
    Ok(())
}

impl Workload for Floor {
    fn op<'a>(&'a self, pool: &'a Pool, i: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.waiters.lock().map_err(|_| "poisoned")?.insert(i, tx);
            match &self.stored {
                None => publish(pool, &self.key, &self.requests, &i.to_le_bytes()).await?,
                Some(k) => {
                    let keys = [&k.msgs, &k.pending, &k.alive];
                    call_stored(
                        pool,
                        &REQUEST_STORED,
                        keys,
                        &self.requests,
                        &i.to_le_bytes(),
                    )
                    .await?
                }
            }
            tokio::time::timeout(OP_TIMEOUT, rx)
                .await
                .map_err(|_| format!("no reply to {i} within {OP_TIMEOUT:?}"))?
                .map_err(|_| "the asker's subscriber stopped")?;
            Ok(())
        })
    }
}

/// The floor; with `stored`, the stored floor.
pub(crate) async fn prepare(
    pool: &Pool,
    keyspace: &Keyspace,
    stored: bool,
) -> Result<Arc<dyn Workload>> {
    let instance = keyspace.instance("bench", "floor")?;
    let key = instance.key("k");
    let stored = stored.then(|| Stored {
        msgs: instance.key("msgs"),
        pending: instance.key("pending"),
        alive: instance.key("alive"),
        replies: instance.key("replies"),
    });
    let requests = instance.key("requests").as_str().to_owned();
    let replies = instance.key("replies").as_str().to_owned();
    let waiters: Waiters = Arc::default();
    // The responder: each request answered by a script of its own, as a server's would be.
    let mut asked = pool.subscriber().channel(&requests).subscribe_raw().await?;
    let responder = tokio::spawn({
        let (pool, key, replies, stored) =
            (pool.clone(), key.clone(), replies.clone(), stored.clone());
        async move {
            while let Some(message) = asked.recv().await {
                let (pool, key, replies, stored) =
                    (pool.clone(), key.clone(), replies.clone(), stored.clone());
                tokio::spawn(async move {
                    let sent = match &stored {
                        None => publish(&pool, &key, &replies, &message.payload).await,
                        Some(k) => {
                            let keys = [&k.msgs, &k.pending, &k.replies];
                            call_stored(&pool, &REPLY_STORED, keys, &replies, &message.payload)
                                .await
                        }
                    };
                    if let Err(e) = sent {
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
        stored,
        requests,
        waiters,
        tasks: vec![responder, asker],
    }))
}
