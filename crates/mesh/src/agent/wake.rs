//! An inbox's subscription: its wake channel (sends of messages) and its push channel
//! (requests and replies delivered whole by their sends), on one connection, sharded on a
//! cluster.
//!
//! - A wake-up changes a counter per lane (the lane its `{"lane":n}` payload names) that the
//!   loops waiting on that lane watch: they then look in Redis. A resubscription after the
//!   connection dropped (what was published meanwhile reached nobody) or, once the
//!   subscription has ended for good, a slow timer changes every lane's. Replies publish no
//!   wake-up (they are pushed): an ask's counter changes only when a push may have been lost.
//! - A pushed reply completes the ask waiting for its correlation id; a pushed request goes to
//!   the server registered on this subscription. One nobody waits for is dropped here: the
//!   reply stays stored until a take or its expiry, the request is redelivered by a receive
//!   after its visibility timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use coordkit_core::{Pool, RawSubscriber};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::error::Result;
use super::wire::{Body, Push, RawDelivery, code};

/// The lanes, as indices of the wake-up counters.
const LANES: usize = code::LANE_REPLY as usize + 1;

/// Waiting asks by correlation id, and the server taking pushed requests.
#[derive(Default)]
pub(crate) struct Routes {
    replies: Mutex<HashMap<String, oneshot::Sender<Body>>>,
    requests: Mutex<Option<mpsc::UnboundedSender<RawDelivery>>>,
}

impl Routes {
    fn reply(&self, body: &[u8]) {
        let Ok(body) = Body::decode(body) else {
            // The stored copy is dead-lettered by the take that finds it.
            return;
        };
        let waiter = self
            .replies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&body.corr);
        if let Some(waiter) = waiter {
            let _ = waiter.send(body);
        }
    }

    fn request(&self, delivery: RawDelivery) {
        let requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = requests.as_ref() {
            let _ = tx.send(delivery);
        }
    }
}

pub(crate) struct Wake {
    signals: [watch::Receiver<u64>; LANES],
    routes: Arc<Routes>,
    task: JoinHandle<()>,
}

impl Wake {
    /// Subscribes to `wake` and, when given, `push` (sharded channels on a cluster, plain
    /// ones on a standalone server: what `shard_channel` subscribes to).
    pub(crate) async fn start(
        pool: &Pool,
        wake: &str,
        push: Option<&str>,
        fallback: Duration,
    ) -> Result<Self> {
        let mut builder = pool.subscriber().shard_channel(wake);
        if let Some(push) = push {
            builder = builder.shard_channel(push);
        }
        let subscriber = builder.subscribe_raw().await?;
        let counters: [_; LANES] = std::array::from_fn(|_| watch::channel(0u64));
        let signals = std::array::from_fn(|lane| counters[lane].1.clone());
        let senders = counters.map(|(tx, _)| tx);
        let routes = Arc::new(Routes::default());
        let task = tokio::spawn(run(
            subscriber,
            push.map(str::to_owned),
            senders,
            routes.clone(),
            fallback,
        ));
        Ok(Self {
            signals,
            routes,
            task,
        })
    }

    /// The counter of `lane` (`LANE_*`).
    pub(crate) fn signal(&self, lane: u8) -> watch::Receiver<u64> {
        self.signals[usize::from(lane)].clone()
    }

    /// Routes the reply pushed for `corr` to the returned receiver until the guard drops.
    pub(crate) fn expect_reply(&self, corr: &str) -> (ReplyGuard, oneshot::Receiver<Body>) {
        let (tx, rx) = oneshot::channel();
        self.routes
            .replies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(corr.to_owned(), tx);
        let guard = ReplyGuard {
            routes: self.routes.clone(),
            corr: corr.to_owned(),
        };
        (guard, rx)
    }

    /// Sends the requests pushed on this subscription to the returned receiver (the server's),
    /// until it is dropped or another one is taken.
    pub(crate) fn take_requests(&self) -> mpsc::UnboundedReceiver<RawDelivery> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self
            .routes
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tx);
        rx
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Stops routing a correlation id's reply when the ask ends, however it ends.
pub(crate) struct ReplyGuard {
    routes: Arc<Routes>,
    corr: String,
}

impl Drop for ReplyGuard {
    fn drop(&mut self) {
        self.routes
            .replies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.corr);
    }
}

/// What a wake-up says: the lane it was sent to.
#[derive(serde::Deserialize)]
struct WakeUp {
    payload: WakeLane,
}

#[derive(serde::Deserialize)]
struct WakeLane {
    lane: usize,
}

async fn run(
    mut subscriber: RawSubscriber,
    push: Option<String>,
    lanes: [watch::Sender<u64>; LANES],
    routes: Arc<Routes>,
    fallback: Duration,
) {
    let bump = |lane: &watch::Sender<u64>| lane.send_modify(|g| *g += 1);
    let mut reconnections = subscriber.reconnections();
    loop {
        tokio::select! {
            got = subscriber.recv() => {
                let Some(message) = got else { break };
                if push.as_deref() != Some(message.channel.as_str()) {
                    // A wake-up of one lane; one that does not say which wakes them all.
                    match serde_json::from_slice::<WakeUp>(&message.payload) {
                        Ok(w) if w.payload.lane < LANES => bump(&lanes[w.payload.lane]),
                        _ => lanes.iter().for_each(bump),
                    }
                    continue;
                }
                match Push::decode(&message.payload) {
                    Ok(Push::Reply(body)) => routes.reply(body),
                    Ok(Push::Request(delivery)) => routes.request(delivery),
                    Err(reason) => {
                        tracing::warn!(channel = ?push, "an undecodable push: {reason}");
                    }
                }
            }
            changed = reconnections.changed() => {
                if changed.is_err() {
                    break;
                }
                // What was published while it was down reached nobody: look again.
                lanes.iter().for_each(bump);
            }
        }
    }
    tracing::warn!(channel = ?push, "an inbox's subscription ended; looking every {fallback:?}");
    loop {
        lanes.iter().for_each(bump);
        tokio::time::sleep(fallback).await;
    }
}
