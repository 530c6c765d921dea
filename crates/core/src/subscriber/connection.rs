//! The subscriber's own connection (a connection manager, or a cluster connection, on
//! RESP3) and the task that receives its pushes, decodes them and drives reconnection.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, RedisResult};
use tokio::sync::{mpsc, oneshot};

use super::{Decode, Kind, StatsCell, Subscriptions};
use crate::config::{PoolConfig, Topology, scrub};
use crate::time::RetryDelay;
use crate::wire::lossy_text;

#[derive(Clone)]
pub(super) enum SubConnection {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl SubConnection {
    pub(super) async fn open(
        config: &PoolConfig,
        push_tx: mpsc::UnboundedSender<PushInfo>,
    ) -> RedisResult<Self> {
        let resp3 = |info: &redis::ConnectionInfo| {
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(redis::ProtocolVersion::RESP3);
            info.clone().set_redis_settings(settings)
        };
        match config.topology {
            Topology::Standalone => {
                let client = redis::Client::open(resp3(&config.nodes[0]))?;
                let manager_config = ConnectionManagerConfig::new()
                    .set_push_sender(push_tx)
                    .set_automatic_resubscription()
                    .set_connection_timeout(Some(config.connection_timeout))
                    .set_response_timeout(Some(config.command_timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                let manager = tokio::time::timeout(
                    config.connection_timeout * 2,
                    ConnectionManager::new_with_config(client, manager_config),
                )
                .await
                .map_err(|_| timed_out())??;
                Ok(SubConnection::Standalone(manager))
            }
            Topology::Cluster => {
                let client = ClusterClient::builder(config.nodes.iter().map(resp3))
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .push_sender(push_tx)
                    .connection_timeout(config.connection_timeout)
                    .response_timeout(config.command_timeout)
                    .build()?;
                let conn = tokio::time::timeout(
                    config.connection_timeout * 2,
                    client.get_async_connection(),
                )
                .await
                .map_err(|_| timed_out())??;
                Ok(SubConnection::Cluster(conn))
            }
        }
    }

    pub(super) async fn subscribe(&mut self, name: &str, kind: Kind) -> RedisResult<()> {
        match (self, kind) {
            (SubConnection::Standalone(c), Kind::Channel | Kind::Shard) => c.subscribe(name).await,
            (SubConnection::Standalone(c), Kind::Pattern) => c.psubscribe(name).await,
            (SubConnection::Cluster(c), Kind::Channel) => c.subscribe(name).await,
            (SubConnection::Cluster(c), Kind::Shard) => c.ssubscribe(name).await,
            (SubConnection::Cluster(c), Kind::Pattern) => c.psubscribe(name).await,
        }
    }

    pub(super) async fn unsubscribe(&mut self, name: &str, kind: Kind) -> RedisResult<()> {
        match (self, kind) {
            (SubConnection::Standalone(c), Kind::Channel | Kind::Shard) => {
                c.unsubscribe(name).await
            }
            (SubConnection::Standalone(c), Kind::Pattern) => c.punsubscribe(name).await,
            (SubConnection::Cluster(c), Kind::Channel) => c.unsubscribe(name).await,
            (SubConnection::Cluster(c), Kind::Shard) => c.sunsubscribe(name).await,
            (SubConnection::Cluster(c), Kind::Pattern) => c.punsubscribe(name).await,
        }
    }

    pub(super) async fn ping(&mut self) -> RedisResult<()> {
        let cmd = redis::cmd("PING");
        match self {
            SubConnection::Standalone(c) => cmd.query_async(c).await,
            SubConnection::Cluster(c) => cmd.query_async(c).await,
        }
    }
}

pub(super) fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "timed out connecting",
    ))
}

pub(super) struct Receiver<I> {
    pub(super) conn: SubConnection,
    pub(super) push_rx: mpsc::UnboundedReceiver<PushInfo>,
    pub(super) events_tx: mpsc::Sender<I>,
    pub(super) stats: Arc<StatsCell>,
    pub(super) secrets: Arc<[String]>,
    pub(super) subscriptions: Arc<Mutex<Subscriptions>>,
    pub(super) decode: Decode<I>,
}

impl<I: Send + 'static> Receiver<I> {
    pub(super) async fn run(mut self, mut shutdown: oneshot::Receiver<()>) {
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                push = self.push_rx.recv() => match push {
                    None => break,
                    Some(push) => {
                        if !self.handle(push, &mut shutdown).await {
                            break;
                        }
                    }
                }
            }
        }
        let subscriptions = self
            .subscriptions
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default();
        for (kind, name) in subscriptions.all() {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.conn.unsubscribe(name, kind))
                .await;
        }
    }

    /// Handles one push; false when the reader is gone or shutdown was asked for.
    pub(super) async fn handle(
        &mut self,
        push: PushInfo,
        shutdown: &mut oneshot::Receiver<()>,
    ) -> bool {
        let (pattern, channel, payload) = match (push.kind, push.data.as_slice()) {
            (PushKind::Message | PushKind::SMessage, [channel, payload]) => {
                (None, channel, payload)
            }
            (PushKind::PMessage, [pattern, channel, payload]) => {
                (lossy_text(pattern), channel, payload)
            }
            (PushKind::Disconnection, _) => {
                self.stats.connected.store(false, Ordering::Relaxed);
                self.stats.disconnects.fetch_add(1, Ordering::Relaxed);
                return self.reconnect(shutdown).await;
            }
            _ => return true,
        };
        let channel = lossy_text(channel).unwrap_or_default();
        let described = channel.clone();
        match (self.decode)(channel, pattern, payload) {
            Ok(item) => {
                self.stats.received.fetch_add(1, Ordering::Relaxed);
                self.events_tx.send(item).await.is_ok()
            }
            Err(reason) => {
                self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                let message = format!("could not decode a message on {described:?}: {reason}");
                tracing::warn!(target: "coordkit::subscriber", "{message}");
                self.stats.set_error(message);
                true
            }
        }
    }

    /// Drives the connection back (the drivers resubscribe on reconnect) with backoff.
    pub(super) async fn reconnect(&mut self, shutdown: &mut oneshot::Receiver<()>) -> bool {
        let mut delay = RetryDelay::new(Duration::from_millis(20), Duration::from_secs(1));
        loop {
            let attempt = tokio::time::timeout(Duration::from_secs(2), self.conn.ping()).await;
            match attempt {
                Ok(Ok(())) => {
                    self.stats.connected.store(true, Ordering::Relaxed);
                    let n = self.stats.reconnects.fetch_add(1, Ordering::Relaxed) + 1;
                    self.stats.reconnected.send_replace(n);
                    return true;
                }
                Ok(Err(e)) => self.stats.set_error(format!(
                    "reconnecting: {}",
                    scrub(&e.to_string(), &self.secrets)
                )),
                Err(_) => self.stats.set_error("reconnecting: timed out".to_owned()),
            }
            tokio::select! {
                _ = &mut *shutdown => return false,
                _ = tokio::time::sleep(delay.next_delay()) => {}
            }
        }
    }
}
