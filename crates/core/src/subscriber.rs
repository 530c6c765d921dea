//! [`Subscriber`]: receives events on its own connection and survives reconnects.
//!
//! The subscriber holds a dedicated RESP3 connection (never one of the pool's): a
//! `ConnectionManager` for a standalone server, a cluster connection for a cluster. Both
//! resubscribe to every channel and pattern after the connection drops; the subscriber also
//! drives the reconnection itself (with backoff) so it comes back even after a long outage.
//! Messages are decoded into [`Event<P>`](Event); one that fails to decode is counted in
//! [`SubscriberStats::decode_errors`] and skipped, never a crash.
//!
//! ```
//! use coordkit_core::{Event, Keyspace, Pool, PoolConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = coordkit_testkit::RedisServer::start()?;
//! # let url = server.url(); // e.g. "redis://127.0.0.1:6379"
//! let pool = Pool::connect(PoolConfig::from_url(&url)?).await?;
//! let keyspace = Keyspace::new("demo")?;
//! let mut events = pool
//!     .subscriber()
//!     .pattern(keyspace.channel_pattern(None)?)
//!     .subscribe::<serde_json::Value>()
//!     .await?;
//! let channel = keyspace.channel("demo", "hello")?;
//! coordkit_core::events::publish(&pool, &channel, "hello", "doc", "world", &42).await?;
//! let received = events.recv().await.expect("an event");
//! assert_eq!(received.channel, channel);
//! assert_eq!(received.event.kind, "hello");
//! assert_eq!(received.event.payload, 42);
//! events.shutdown().await;
//! # Ok(()) }
//! ```

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, RedisResult, Value};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::{PoolConfig, Topology, scrub};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::pool::Pool;
use crate::time::RetryDelay;

/// One received event.
#[derive(Debug, Clone, PartialEq)]
pub struct Received<P> {
    /// The channel it was published on.
    pub channel: String,
    /// The pattern that matched it, for pattern subscriptions.
    pub pattern: Option<String>,
    /// The decoded event.
    pub event: Event<P>,
}

/// What a subscriber has seen so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Events decoded and delivered.
    pub received: u64,
    /// Messages that could not be decoded (skipped).
    pub decode_errors: u64,
    /// Times the connection dropped.
    pub disconnects: u64,
    /// Times it came back (and resubscribed) after dropping.
    pub reconnects: u64,
    /// The last decode or connection error, if any.
    pub last_error: Option<String>,
}

#[derive(Default)]
struct StatsCell {
    received: AtomicU64,
    decode_errors: AtomicU64,
    disconnects: AtomicU64,
    reconnects: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Bumped after each successful reconnect, for [`Subscriber::reconnections`].
    reconnected: tokio::sync::watch::Sender<u64>,
}

impl StatsCell {
    fn set_error(&self, error: String) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error);
        }
    }
}

/// Builds a [`Subscriber`]; from [`Pool::subscriber`].
#[derive(Debug)]
pub struct SubscriberBuilder {
    config: PoolConfig,
    channels: Vec<String>,
    patterns: Vec<String>,
    buffer: usize,
}

impl Pool {
    /// A builder for a subscriber that connects to the same server(s) as this pool, on a
    /// connection of its own.
    pub fn subscriber(&self) -> SubscriberBuilder {
        SubscriberBuilder {
            config: self.config().clone(),
            channels: Vec::new(),
            patterns: Vec::new(),
            buffer: 1024,
        }
    }
}

impl SubscriberBuilder {
    /// Subscribes to a channel.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channels.push(channel.into());
        self
    }

    /// Subscribes to a glob pattern (`PSUBSCRIBE`).
    pub fn pattern(mut self, pattern: impl Into<String>) -> Self {
        self.patterns.push(pattern.into());
        self
    }

    /// How many decoded events may wait for [`Subscriber::recv`] (1 to 1,000,000; default
    /// 1024). When it is full the subscriber waits for the reader; nothing is dropped.
    pub fn buffer(mut self, size: usize) -> Self {
        self.buffer = size;
        self
    }

    /// Connects, subscribes, and starts receiving.
    pub async fn subscribe<P>(self) -> Result<Subscriber<P>>
    where
        P: DeserializeOwned + Send + 'static,
    {
        if self.channels.is_empty() && self.patterns.is_empty() {
            return Err(Error::invalid_config(
                "channel",
                "a subscriber needs at least one channel or pattern",
            ));
        }
        if !(1..=1_000_000).contains(&self.buffer) {
            return Err(Error::invalid_config(
                "buffer",
                format!("must be between 1 and 1000000, got {}", self.buffer),
            ));
        }
        self.config.validate()?;
        let (push_tx, push_rx) = mpsc::unbounded_channel::<PushInfo>();
        let addr = self.config.address();
        let secrets = self.config.secrets();
        let fail = |e: redis::RedisError| Error::Unavailable {
            addr: addr.clone(),
            reason: scrub(&e.to_string(), &secrets),
        };
        let mut conn = SubConnection::open(&self.config, push_tx)
            .await
            .map_err(fail)?;
        for channel in &self.channels {
            conn.subscribe(channel, false).await.map_err(fail)?;
        }
        for pattern in &self.patterns {
            conn.subscribe(pattern, true).await.map_err(fail)?;
        }
        let (events_tx, events_rx) = mpsc::channel(self.buffer);
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let stats = Arc::new(StatsCell::default());
        let task = tokio::spawn(
            Receiver {
                conn,
                push_rx,
                events_tx,
                stats: stats.clone(),
                secrets,
                channels: self.channels,
                patterns: self.patterns,
                _payload: PhantomData::<fn() -> P>,
            }
            .run(shutdown_rx),
        );
        Ok(Subscriber {
            events: events_rx,
            stats,
            shutdown: Some(shutdown_tx),
            task: Some(task),
        })
    }
}

/// Receives decoded events; see the [module docs](self).
///
/// Dropping it stops the background task; [`Subscriber::shutdown`] also unsubscribes first.
pub struct Subscriber<P> {
    events: mpsc::Receiver<Received<P>>,
    stats: Arc<StatsCell>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl<P> std::fmt::Debug for Subscriber<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("stats", &self.stats())
            .finish()
    }
}

impl<P> Subscriber<P> {
    /// The next event; `None` once the subscriber has shut down.
    pub async fn recv(&mut self) -> Option<Received<P>> {
        self.events.recv().await
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<Received<P>> {
        self.events.try_recv().ok()
    }

    /// A signal that changes each time the connection came back (and resubscribed) after a
    /// drop. Events published while it was down are not replayed by Redis, so a consumer that
    /// must not miss changes re-reads its source of truth when this fires.
    pub fn reconnections(&self) -> tokio::sync::watch::Receiver<u64> {
        self.stats.reconnected.subscribe()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SubscriberStats {
        let cell = &self.stats;
        SubscriberStats {
            received: cell.received.load(Ordering::Relaxed),
            decode_errors: cell.decode_errors.load(Ordering::Relaxed),
            disconnects: cell.disconnects.load(Ordering::Relaxed),
            reconnects: cell.reconnects.load(Ordering::Relaxed),
            last_error: cell.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }

    /// Unsubscribes, closes the connection and waits for the background task to end.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl<P> Drop for Subscriber<P> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

enum SubConnection {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl SubConnection {
    async fn open(
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

    async fn subscribe(&mut self, name: &str, pattern: bool) -> RedisResult<()> {
        match (self, pattern) {
            (SubConnection::Standalone(c), false) => c.subscribe(name).await,
            (SubConnection::Standalone(c), true) => c.psubscribe(name).await,
            (SubConnection::Cluster(c), false) => c.subscribe(name).await,
            (SubConnection::Cluster(c), true) => c.psubscribe(name).await,
        }
    }

    async fn unsubscribe(&mut self, name: &str, pattern: bool) -> RedisResult<()> {
        match (self, pattern) {
            (SubConnection::Standalone(c), false) => c.unsubscribe(name).await,
            (SubConnection::Standalone(c), true) => c.punsubscribe(name).await,
            (SubConnection::Cluster(c), false) => c.unsubscribe(name).await,
            (SubConnection::Cluster(c), true) => c.punsubscribe(name).await,
        }
    }

    async fn ping(&mut self) -> RedisResult<()> {
        let cmd = redis::cmd("PING");
        match self {
            SubConnection::Standalone(c) => cmd.query_async(c).await,
            SubConnection::Cluster(c) => cmd.query_async(c).await,
        }
    }
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "timed out connecting",
    ))
}

struct Receiver<P> {
    conn: SubConnection,
    push_rx: mpsc::UnboundedReceiver<PushInfo>,
    events_tx: mpsc::Sender<Received<P>>,
    stats: Arc<StatsCell>,
    secrets: Vec<String>,
    channels: Vec<String>,
    patterns: Vec<String>,
    _payload: PhantomData<fn() -> P>,
}

impl<P: DeserializeOwned + Send + 'static> Receiver<P> {
    async fn run(mut self, mut shutdown: oneshot::Receiver<()>) {
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
        for channel in std::mem::take(&mut self.channels) {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                self.conn.unsubscribe(&channel, false),
            )
            .await;
        }
        for pattern in std::mem::take(&mut self.patterns) {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                self.conn.unsubscribe(&pattern, true),
            )
            .await;
        }
    }

    /// Handles one push; false when the reader is gone or shutdown was asked for.
    async fn handle(&mut self, push: PushInfo, shutdown: &mut oneshot::Receiver<()>) -> bool {
        let (pattern, channel, payload) = match (push.kind, push.data.as_slice()) {
            (PushKind::Message, [channel, payload]) => (None, channel, payload),
            (PushKind::PMessage, [pattern, channel, payload]) => (text(pattern), channel, payload),
            (PushKind::Disconnection, _) => {
                self.stats.disconnects.fetch_add(1, Ordering::Relaxed);
                return self.reconnect(shutdown).await;
            }
            _ => return true,
        };
        let channel = text(channel).unwrap_or_default();
        let decoded = match payload {
            Value::BulkString(bytes) => {
                serde_json::from_slice::<Event<P>>(bytes).map_err(|e| e.to_string())
            }
            other => Err(format!("expected a bulk string, got {other:?}")),
        };
        match decoded {
            Ok(event) => {
                self.stats.received.fetch_add(1, Ordering::Relaxed);
                let received = Received {
                    channel,
                    pattern,
                    event,
                };
                self.events_tx.send(received).await.is_ok()
            }
            Err(reason) => {
                self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                let message = format!("could not decode a message on {channel:?}: {reason}");
                tracing::warn!(target: "coordkit::subscriber", "{message}");
                self.stats.set_error(message);
                true
            }
        }
    }

    /// Drives the connection back (the drivers resubscribe on reconnect) with backoff.
    async fn reconnect(&mut self, shutdown: &mut oneshot::Receiver<()>) -> bool {
        let mut delay = RetryDelay::new(Duration::from_millis(20), Duration::from_secs(1));
        loop {
            let attempt = tokio::time::timeout(Duration::from_secs(2), self.conn.ping()).await;
            match attempt {
                Ok(Ok(())) => {
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

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}
