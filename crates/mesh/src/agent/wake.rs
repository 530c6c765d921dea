//! The agent's wake-ups: one subscription to its wake channel, started on first use, turned
//! into a counter that changes on every send into the inbox, on every resubscription after the
//! pub/sub connection dropped (sends made while it was down published to nobody), and on a
//! slow timer once the subscription is gone for good.

use std::time::Duration;

use coordkit_core::Pool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::error::Result;

pub(crate) struct Wake {
    signal: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl Wake {
    pub(crate) async fn start(pool: &Pool, channel: &str, fallback: Duration) -> Result<Self> {
        let subscriber = pool
            .subscriber()
            .channel(channel)
            .subscribe::<serde_json::Value>()
            .await?;
        let (tx, signal) = watch::channel(0u64);
        let task = tokio::spawn(run(subscriber, tx, fallback));
        Ok(Self { signal, task })
    }

    pub(crate) fn signal(&self) -> watch::Receiver<u64> {
        self.signal.clone()
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    subscriber: coordkit_core::Subscriber<serde_json::Value>,
    wake: watch::Sender<u64>,
    fallback: Duration,
) {
    coordkit_core::wake::run(
        subscriber,
        wake,
        fallback,
        || {},
        || tracing::warn!("an agent's wake-up subscription ended; looking every {fallback:?}"),
    )
    .await;
}
