//! [`Subscriber`]: receives events on its own connection and survives reconnects.
//!
//! The subscriber holds a dedicated RESP3 connection (never one of the pool's): a
//! `ConnectionManager` for a standalone server, a cluster connection for a cluster. Both
//! resubscribe to every channel and pattern after the connection drops; the subscriber also
//! drives the reconnection itself (with backoff) so it comes back even after a long outage.
//! Messages are decoded into [`Event<P>`](Event); one that fails to decode is counted in
//! [`SubscriberStats::decode_errors`] and skipped, never a crash; a [`RawSubscriber`]
//! ([`SubscriberBuilder::subscribe_raw`]) delivers the bytes undecoded instead.
//!
//! Channels, shard channels (`SSUBSCRIBE` on a cluster) and patterns can be added and removed
//! while the subscriber runs, through its [`SubscriberControl`]; the connection resubscribes to
//! the current set after a drop, and [`SubscriberControl::is_connected`] says whether it is up.
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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redis::{PushInfo, Value};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::{PoolConfig, scrub};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::pool::Pool;

mod connection;

use connection::{Receiver, SubConnection};

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

/// One received message, undecoded: what a [`RawSubscriber`] delivers, for payloads that are
/// not coordkit events (or that the caller decodes itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// The channel it was published on.
    pub channel: String,
    /// The pattern that matched it, for pattern subscriptions.
    pub pattern: Option<String>,
    /// The bytes as published.
    pub payload: Vec<u8>,
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
    /// False from a drop until the connection is back.
    connected: AtomicBool,
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

    fn snapshot(&self) -> SubscriberStats {
        SubscriberStats {
            received: self.received.load(Ordering::Relaxed),
            decode_errors: self.decode_errors.load(Ordering::Relaxed),
            disconnects: self.disconnects.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }
}

/// The three kinds of subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `SUBSCRIBE`.
    Channel,
    /// `SSUBSCRIBE` on a cluster, `SUBSCRIBE` on a standalone server.
    Shard,
    /// `PSUBSCRIBE`.
    Pattern,
}

/// The subscriptions a subscriber holds, for unsubscribing at shutdown.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Subscriptions {
    channels: Vec<String>,
    shard_channels: Vec<String>,
    patterns: Vec<String>,
}

impl Subscriptions {
    fn list(&mut self, kind: Kind) -> &mut Vec<String> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Shard => &mut self.shard_channels,
            Kind::Pattern => &mut self.patterns,
        }
    }

    fn all(&self) -> impl Iterator<Item = (Kind, &String)> {
        let channels = self.channels.iter().map(|c| (Kind::Channel, c));
        let shards = self.shard_channels.iter().map(|c| (Kind::Shard, c));
        let patterns = self.patterns.iter().map(|p| (Kind::Pattern, p));
        channels.chain(shards).chain(patterns)
    }

    fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.shard_channels.is_empty() && self.patterns.is_empty()
    }
}

/// Builds a [`Subscriber`]; from [`Pool::subscriber`].
#[derive(Debug)]
pub struct SubscriberBuilder {
    config: PoolConfig,
    subscriptions: Subscriptions,
    buffer: usize,
}

impl Pool {
    /// A builder for a subscriber that connects to the same server(s) as this pool, on a
    /// connection of its own.
    pub fn subscriber(&self) -> SubscriberBuilder {
        SubscriberBuilder {
            config: self.config().clone(),
            subscriptions: Subscriptions::default(),
            buffer: 1024,
        }
    }
}

/// Turns one message into what the subscriber delivers, or says why it cannot.
type Decode<I> = fn(String, Option<String>, &Value) -> std::result::Result<I, String>;

fn decode_event<P: DeserializeOwned>(
    channel: String,
    pattern: Option<String>,
    payload: &Value,
) -> std::result::Result<Received<P>, String> {
    match payload {
        Value::BulkString(bytes) => serde_json::from_slice::<Event<P>>(bytes)
            .map(|event| Received {
                channel,
                pattern,
                event,
            })
            .map_err(|e| e.to_string()),
        other => Err(format!("expected a bulk string, got {other:?}")),
    }
}

fn decode_raw(
    channel: String,
    pattern: Option<String>,
    payload: &Value,
) -> std::result::Result<RawMessage, String> {
    match payload {
        Value::BulkString(bytes) => Ok(RawMessage {
            channel,
            pattern,
            payload: bytes.clone(),
        }),
        other => Err(format!("expected a bulk string, got {other:?}")),
    }
}

impl SubscriberBuilder {
    /// Subscribes to a channel.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.subscriptions.channels.push(channel.into());
        self
    }

    /// Subscribes to a shard channel: `SSUBSCRIBE` on a cluster (Redis 7; the subscription
    /// lives on the shard that owns the channel's slot, and only `SPUBLISH` reaches it), a
    /// plain `SUBSCRIBE` on a standalone server.
    pub fn shard_channel(mut self, channel: impl Into<String>) -> Self {
        self.subscriptions.shard_channels.push(channel.into());
        self
    }

    /// Subscribes to a glob pattern (`PSUBSCRIBE`).
    pub fn pattern(mut self, pattern: impl Into<String>) -> Self {
        self.subscriptions.patterns.push(pattern.into());
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
        Ok(Subscriber {
            inner: self.start(decode_event::<P>).await?,
        })
    }

    /// Connects, subscribes, and starts receiving messages undecoded ([`RawMessage`]).
    pub async fn subscribe_raw(self) -> Result<RawSubscriber> {
        Ok(RawSubscriber {
            inner: self.start(decode_raw).await?,
        })
    }

    async fn start<I: Send + 'static>(self, decode: Decode<I>) -> Result<Inner<I>> {
        if self.subscriptions.is_empty() {
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
        let addr: Arc<str> = self.config.address().into();
        let secrets: Arc<[String]> = self.config.secrets().into();
        let mut conn = SubConnection::open(&self.config, push_tx)
            .await
            .map_err(|e| unavailable(&addr, &secrets, &e))?;
        for (kind, name) in self.subscriptions.all() {
            conn.subscribe(name, kind)
                .await
                .map_err(|e| unavailable(&addr, &secrets, &e))?;
        }
        let (events_tx, events_rx) = mpsc::channel(self.buffer);
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let stats = Arc::new(StatsCell::default());
        stats.connected.store(true, Ordering::Relaxed);
        let subscriptions = Arc::new(Mutex::new(self.subscriptions));
        let control = SubscriberControl {
            conn: conn.clone(),
            subscriptions: subscriptions.clone(),
            stats: stats.clone(),
            addr,
            secrets: secrets.clone(),
        };
        let task = tokio::spawn(
            Receiver {
                conn,
                push_rx,
                events_tx,
                stats,
                secrets,
                subscriptions,
                decode,
            }
            .run(shutdown_rx),
        );
        Ok(Inner {
            events: events_rx,
            control,
            shutdown: Some(shutdown_tx),
            task: Some(task),
        })
    }
}

fn unavailable(addr: &str, secrets: &[String], e: &redis::RedisError) -> Error {
    Error::Unavailable {
        addr: addr.to_owned(),
        reason: scrub(&e.to_string(), secrets),
    }
}

/// Changes what a running subscriber receives, and watches its connection; from
/// [`Subscriber::control`] or [`RawSubscriber::control`]. Cheap to clone; it can be moved to
/// another task while the subscriber is being read.
///
/// Subscriptions added here survive reconnects like the ones given to the builder (the
/// connection resubscribes to every current subscription), and a removed one is not restored.
#[derive(Clone)]
pub struct SubscriberControl {
    conn: SubConnection,
    subscriptions: Arc<Mutex<Subscriptions>>,
    stats: Arc<StatsCell>,
    addr: Arc<str>,
    secrets: Arc<[String]>,
}

impl std::fmt::Debug for SubscriberControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let subscriptions = self.subscriptions.lock().map(|s| s.clone()).ok();
        f.debug_struct("SubscriberControl")
            .field("subscriptions", &subscriptions)
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl SubscriberControl {
    /// Subscribes to one more channel; returns once the server confirmed it.
    pub async fn add_channel(&self, channel: &str) -> Result<()> {
        self.change(Kind::Channel, channel, true).await
    }

    /// Unsubscribes from a channel; returns once the server confirmed it (messages published
    /// after that no longer arrive).
    pub async fn remove_channel(&self, channel: &str) -> Result<()> {
        self.change(Kind::Channel, channel, false).await
    }

    /// Subscribes to one more shard channel (see [`SubscriberBuilder::shard_channel`]).
    pub async fn add_shard_channel(&self, channel: &str) -> Result<()> {
        self.change(Kind::Shard, channel, true).await
    }

    /// Unsubscribes from a shard channel.
    pub async fn remove_shard_channel(&self, channel: &str) -> Result<()> {
        self.change(Kind::Shard, channel, false).await
    }

    /// Subscribes to one more glob pattern.
    pub async fn add_pattern(&self, pattern: &str) -> Result<()> {
        self.change(Kind::Pattern, pattern, true).await
    }

    /// Unsubscribes from a glob pattern.
    pub async fn remove_pattern(&self, pattern: &str) -> Result<()> {
        self.change(Kind::Pattern, pattern, false).await
    }

    /// Whether the connection is up: false from the moment it dropped until it came back and
    /// resubscribed.
    pub fn is_connected(&self) -> bool {
        self.stats.connected.load(Ordering::Relaxed)
    }

    /// A snapshot of the subscriber's counters.
    pub fn stats(&self) -> SubscriberStats {
        self.stats.snapshot()
    }

    async fn change(&self, kind: Kind, name: &str, add: bool) -> Result<()> {
        let mut conn = self.conn.clone();
        let done = if add {
            conn.subscribe(name, kind).await
        } else {
            conn.unsubscribe(name, kind).await
        };
        done.map_err(|e| unavailable(&self.addr, &self.secrets, &e))?;
        if let Ok(mut subscriptions) = self.subscriptions.lock() {
            let list = subscriptions.list(kind);
            list.retain(|n| n != name);
            if add {
                list.push(name.to_owned());
            }
        }
        Ok(())
    }
}

/// What both subscriber types hold.
struct Inner<I> {
    events: mpsc::Receiver<I>,
    control: SubscriberControl,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl<I> Inner<I> {
    async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl<I> Drop for Inner<I> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Receives decoded events; see the [module docs](self).
///
/// Dropping it stops the background task; [`Subscriber::shutdown`] also unsubscribes first.
pub struct Subscriber<P> {
    inner: Inner<Received<P>>,
}

/// Receives messages undecoded ([`RawMessage`]); from [`SubscriberBuilder::subscribe_raw`].
/// Otherwise like [`Subscriber`]; every message that is a bulk string counts as received.
pub struct RawSubscriber {
    inner: Inner<RawMessage>,
}

impl<P> std::fmt::Debug for Subscriber<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("stats", &self.stats())
            .finish()
    }
}

impl std::fmt::Debug for RawSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSubscriber")
            .field("stats", &self.stats())
            .finish()
    }
}

macro_rules! subscriber_methods {
    ($item:ty) => {
        /// The next one; `None` once the subscriber has shut down.
        pub async fn recv(&mut self) -> Option<$item> {
            self.inner.events.recv().await
        }

        /// The next one if one is waiting, without waiting.
        pub fn try_recv(&mut self) -> Option<$item> {
            self.inner.events.try_recv().ok()
        }

        /// A signal that changes each time the connection came back (and resubscribed) after a
        /// drop. Events published while it was down are not replayed by Redis, so a consumer
        /// that must not miss changes re-reads its source of truth when this fires.
        pub fn reconnections(&self) -> tokio::sync::watch::Receiver<u64> {
            self.inner.control.stats.reconnected.subscribe()
        }

        /// A snapshot of the counters.
        pub fn stats(&self) -> SubscriberStats {
            self.inner.control.stats()
        }

        /// Whether the connection is up (see [`SubscriberControl::is_connected`]).
        pub fn is_connected(&self) -> bool {
            self.inner.control.is_connected()
        }

        /// A handle that adds and removes subscriptions while this subscriber runs.
        pub fn control(&self) -> SubscriberControl {
            self.inner.control.clone()
        }

        /// Subscribes to one more channel (see [`SubscriberControl::add_channel`]).
        pub async fn add_channel(&self, channel: &str) -> Result<()> {
            self.inner.control.add_channel(channel).await
        }

        /// Unsubscribes from a channel (see [`SubscriberControl::remove_channel`]).
        pub async fn remove_channel(&self, channel: &str) -> Result<()> {
            self.inner.control.remove_channel(channel).await
        }

        /// Subscribes to one more glob pattern.
        pub async fn add_pattern(&self, pattern: &str) -> Result<()> {
            self.inner.control.add_pattern(pattern).await
        }

        /// Unsubscribes from a glob pattern.
        pub async fn remove_pattern(&self, pattern: &str) -> Result<()> {
            self.inner.control.remove_pattern(pattern).await
        }

        /// Unsubscribes, closes the connection and waits for the background task to end.
        pub async fn shutdown(self) {
            self.inner.shutdown().await
        }
    };
}

impl<P> Subscriber<P> {
    subscriber_methods!(Received<P>);
}

impl RawSubscriber {
    subscriber_methods!(RawMessage);
}
