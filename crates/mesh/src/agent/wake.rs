//! An inbox's subscription: its wake channel (sends of messages) and its push channel
//! (requests and replies delivered whole by their sends), on one connection, sharded on a
//! cluster.
//!
//! - A wake-up, a resubscription after the connection dropped (what was published meanwhile
//!   reached nobody), or, once the subscription has ended for good, a slow timer, change a
//!   counter that waiting loops watch: they then look in Redis.
//! - A pushed reply completes the ask waiting for its correlation id; a pushed request goes to
//!   the server registered on this subscription. One nobody waits for is dropped here: the
//!   reply stays stored until a take or its expiry, the request is redelivered by a receive
//!   after its visibility timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use coordkit_core::{Pool, RawSubscriber, Topology};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::error::Result;
use super::wire::{Body, Push, RawDelivery};

/// Waiting asks by correlation id, and the server taking pushed requests.
#[derive(Default)]
pub(crate) struct Routes {
    replies: Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>,
    requests: Mutex<Option<mpsc::UnboundedSender<RawDelivery>>>,
}

impl Routes {
    fn reply(&self, body: Vec<u8>) {
        let Ok(decoded) = Body::decode(&body) else {
            // The stored copy is dead-lettered by the take that finds it.
            return;
        };
        let waiter = self
            .replies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&decoded.corr);
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
    signal: watch::Receiver<u64>,
    routes: Arc<Routes>,
    task: JoinHandle<()>,
}

impl Wake {
    /// Subscribes to `wake` and `push`.
    pub(crate) async fn start(
        pool: &Pool,
        wake: &str,
        push: &str,
        fallback: Duration,
    ) -> Result<Self> {
        let builder = match pool.topology() {
            Topology::Cluster => pool.subscriber().shard_channel(wake).shard_channel(push),
            Topology::Standalone => pool.subscriber().channel(wake).channel(push),
        };
        let subscriber = builder.subscribe_raw().await?;
        let (tx, signal) = watch::channel(0u64);
        let routes = Arc::new(Routes::default());
        let task = tokio::spawn(run(
            subscriber,
            push.to_owned(),
            tx,
            routes.clone(),
            fallback,
        ));
        Ok(Self {
            signal,
            routes,
            task,
        })
    }

    pub(crate) fn signal(&self) -> watch::Receiver<u64> {
        self.signal.clone()
    }

    /// Routes the reply pushed for `corr` to the returned receiver until the guard drops.
    pub(crate) fn expect_reply(&self, corr: &str) -> (ReplyGuard, oneshot::Receiver<Vec<u8>>) {
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

async fn run(
    mut subscriber: RawSubscriber,
    push: String,
    wake: watch::Sender<u64>,
    routes: Arc<Routes>,
    fallback: Duration,
) {
    let mut reconnections = subscriber.reconnections();
    loop {
        tokio::select! {
            got = subscriber.recv() => {
                let Some(message) = got else { break };
                if message.channel != push {
                    wake.send_modify(|g| *g += 1);
                    continue;
                }
                match Push::decode(&message.payload) {
                    Ok(Push::Reply(body)) => routes.reply(body),
                    Ok(Push::Request(delivery)) => routes.request(delivery),
                    Err(reason) => {
                        tracing::warn!(channel = %push, "an undecodable push: {reason}");
                    }
                }
            }
            changed = reconnections.changed() => {
                if changed.is_err() {
                    break;
                }
                // What was published while it was down reached nobody: look again.
                wake.send_modify(|g| *g += 1);
            }
        }
    }
    tracing::warn!(channel = %push, "an inbox's subscription ended; looking every {fallback:?}");
    coordkit_core::wake::poll(&wake, fallback).await;
}
