//! Wake-up loops: a subscription to a wake channel turned into a counter that a waiting loop
//! (a queue's claimer, an agent's receiver) watches.
//!
//! The counter changes on every batch of messages (messages that queued up while the waiter
//! was busy count once), on every resubscription after the subscriber's connection dropped
//! (messages published while it was down reached nobody, so the waiter looks again), and,
//! once the subscription has ended for good, on a timer: the waiter then polls instead of
//! waiting forever.
//!
//! ```
//! use std::time::Duration;
//! use coordkit_core::{Pool, PoolConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = coordkit_testkit::RedisServer::start()?;
//! # let url = server.url();
//! let pool = Pool::connect(PoolConfig::from_url(&url)?).await?;
//! let subscriber = pool.subscriber().channel("wake").subscribe::<serde_json::Value>().await?;
//! let (tx, mut wake) = tokio::sync::watch::channel(0u64);
//! let task = tokio::spawn(coordkit_core::wake::run(
//!     subscriber,
//!     tx,
//!     Duration::from_secs(1),
//!     || {},
//!     || tracing::warn!("wake-ups ended; polling"),
//! ));
//! coordkit_core::events::publish(&pool, "wake", "wake", "doc", "", &()).await?;
//! wake.changed().await?;
//! task.abort();
//! # Ok(()) }
//! ```

use std::time::Duration;

use tokio::sync::watch;

use crate::subscriber::Subscriber;

/// Bumps `wake` for each batch of `subscriber`'s messages (calling `on_message` once per
/// batch) and for each reconnection; returns once the subscription has ended.
async fn forward<P>(
    subscriber: &mut Subscriber<P>,
    wake: &watch::Sender<u64>,
    mut on_message: impl FnMut(),
) {
    let mut reconnections = subscriber.reconnections();
    loop {
        tokio::select! {
            got = subscriber.recv() => {
                if got.is_none() {
                    return;
                }
                while subscriber.try_recv().is_some() {}
                on_message();
                wake.send_modify(|g| *g += 1);
            }
            changed = reconnections.changed() => {
                if changed.is_err() {
                    return;
                }
                // Messages published while it was down are lost: look again.
                wake.send_modify(|g| *g += 1);
            }
        }
    }
}

/// Bumps `wake` now and then every `every`, forever (the fallback once wake-ups are gone).
pub async fn poll(wake: &watch::Sender<u64>, every: Duration) {
    loop {
        wake.send_modify(|g| *g += 1);
        tokio::time::sleep(every).await;
    }
}

/// The whole loop: a bump of `wake` for every batch of messages (`on_message` once per batch)
/// and every reconnection until the subscription ends, then `on_ended` (say so: log it, mark
/// the runtime's health), then [`poll`] every `fallback`. Runs until aborted.
pub async fn run<P>(
    mut subscriber: Subscriber<P>,
    wake: watch::Sender<u64>,
    fallback: Duration,
    on_message: impl FnMut(),
    on_ended: impl FnOnce(),
) {
    forward(&mut subscriber, &wake, on_message).await;
    on_ended();
    poll(&wake, fallback).await;
}
