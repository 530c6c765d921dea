//! Typed channels: a name plus a payload type, over Redis pub/sub.
//!
//! A [`Channel<T>`] publishes values of `T` (serde) in coordkit's event envelope
//! (`{kind, source: "mesh", entity: <channel name>, ts_ms, payload}`, stamped with the server's
//! time by one Lua script, one round trip) and answers how many subscriptions received each.
//! Subscribers read them as a stream ([`ChannelSubscriber::recv`]) or hand them to an async
//! handler ([`ChannelSubscriberBuilder::subscribe_with`]); they subscribe by name or by glob
//! ([`ChannelPattern`]), add and remove channels and patterns while they run, and survive
//! reconnects (messages published while a subscriber is reconnecting are not replayed: that is
//! pub/sub; durable delivery is what inboxes are for).
//!
//! # Names and the cluster
//!
//! A channel named `telemetry.bench-3` in namespace `lab` is the Redis channel
//! `lab:{mesh:channels}:telemetry.bench-3`. Every channel of a namespace shares the hash tag
//! `{mesh:channels}`, so on a Redis Cluster all of them, and every pattern subscription over
//! them, live on one shard. That is what makes the count [`Channel::publish`] answers exact on
//! a cluster too:
//!
//! - a subscriber subscribes to a channel with `SSUBSCRIBE` (sharded pub/sub, Redis 7) on a
//!   cluster, on the shard that owns the channel; `PSUBSCRIBE` for a pattern goes to the same
//!   shard (the `redis` crate routes subscriptions by the slot of the name);
//! - the publish script runs on that shard and sends `SPUBLISH` (answering every channel
//!   subscriber, wherever it connected) and `PUBLISH` (for pattern subscribers, which sharded
//!   pub/sub does not have; its count covers the shard, where coordkit's pattern subscriptions
//!   are). The answer is their sum.
//!
//! On a standalone server it is one `PUBLISH` and subscribers use `SUBSCRIBE` / `PSUBSCRIBE`.
//! Other programs publishing onto a mesh channel (see raw mode,
//! [`ChannelSubscriberBuilder::raw`]) use `PUBLISH` on a standalone server and `SPUBLISH` on a
//! cluster (a classic `PUBLISH` on a cluster reaches pattern subscriptions only). A classic
//! `SUBSCRIBE` or `PSUBSCRIBE` made by another program on another node of a cluster receives
//! the messages too but is not in the count.

mod subscribe;

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use coordkit_core::{
    Error, Key, Keyspace, Pool, Result, Script, Topology, escape_glob, validate_name,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use subscribe::{
    ChannelControl, ChannelDelivery, ChannelSubscriber, ChannelSubscriberBuilder, HandlerTask,
    Message, Receive, SubscriptionStats,
};

static PUBLISH: Script = Script::new(
    "channel_publish",
    include_str!("../../lua/channel_publish.lua"),
);

/// The envelope kind a channel publishes unless built with another ([`ChannelBuilder::kind`]).
pub const DEFAULT_KIND: &str = "message";

/// The `kind` and `name` of the instance whose hash tag every channel of a namespace shares.
const TAG_KIND: &str = "mesh";
const TAG_NAME: &str = "channels";

/// How channel and pattern names map onto Redis channel names in one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Names {
    /// `<namespace>:{mesh:channels}:`
    prefix: String,
    /// The same with the namespace's glob characters escaped, for patterns.
    glob_prefix: String,
}

impl Names {
    fn new(keyspace: &Keyspace) -> Result<Self> {
        let prefix = keyspace.instance(TAG_KIND, TAG_NAME)?.key("x");
        let prefix = prefix
            .as_str()
            .strip_suffix('x')
            .unwrap_or_default()
            .to_owned();
        let ns = keyspace.namespace();
        let glob_prefix = format!("{}{}", escape_glob(ns), &prefix[ns.len()..]);
        Ok(Self {
            prefix,
            glob_prefix,
        })
    }

    /// The channel's name as the user gave it, from its Redis channel.
    fn channel_name(&self, redis_channel: &str) -> String {
        redis_channel
            .strip_prefix(&self.prefix)
            .unwrap_or(redis_channel)
            .to_owned()
    }

    /// The pattern as the user gave it, from its Redis pattern.
    fn pattern_glob(&self, redis_pattern: &str) -> String {
        redis_pattern
            .strip_prefix(&self.glob_prefix)
            .unwrap_or(redis_pattern)
            .to_owned()
    }
}

/// Builds a [`Channel`]; from [`Channel::builder`].
pub struct ChannelBuilder<T> {
    pool: Pool,
    keyspace: Keyspace,
    name: String,
    kind: String,
    _payload: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for ChannelBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelBuilder")
            .field("keyspace", &self.keyspace)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> ChannelBuilder<T> {
    /// The `kind` field of the envelope of every message it publishes (a name: not empty, at
    /// most 200 bytes, no braces, whitespace or control characters; default
    /// [`DEFAULT_KIND`], `"message"`). Subscribers accept any kind.
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = kind.into();
        self
    }

    /// Validates the name and the settings.
    ///
    /// # Errors
    /// [`Error::InvalidName`] (`what` = `"channel name"`) for a name that is empty, longer
    /// than 200 bytes, or holds braces, whitespace or control characters;
    /// [`Error::InvalidConfig`] with `field` = `"kind"` for a bad kind.
    pub fn build(self) -> Result<Channel<T>> {
        validate_name("channel name", &self.name)?;
        if let Err(e) = validate_name("kind", &self.kind) {
            return Err(Error::invalid_config("kind", e.to_string()));
        }
        let names = Names::new(&self.keyspace)?;
        let key = self.keyspace.instance(TAG_KIND, TAG_NAME)?.key(&self.name);
        Ok(Channel {
            inner: Arc::new(ChannelInner {
                sharded: self.pool.topology() == Topology::Cluster,
                pool: self.pool,
                names: Arc::new(names),
                name: self.name,
                key,
                kind: self.kind,
                published: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
            }),
            _payload: PhantomData,
        })
    }
}

/// A typed channel: a name and a payload type `T`. See the [module docs](self).
///
/// Cheap to clone; clones share the publish counters.
pub struct Channel<T> {
    inner: Arc<ChannelInner>,
    _payload: PhantomData<fn() -> T>,
}

struct ChannelInner {
    pool: Pool,
    names: Arc<Names>,
    name: String,
    key: Key,
    kind: String,
    sharded: bool,
    published: AtomicU64,
    delivered: AtomicU64,
}

impl<T> Clone for Channel<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            _payload: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.inner.name)
            .field("redis_channel", &self.inner.key)
            .field("payload", &std::any::type_name::<T>())
            .finish()
    }
}

/// What a [`Channel`] (and its clones) published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishStats {
    /// Messages published.
    pub published: u64,
    /// The sum of the counts [`Channel::publish`] answered.
    pub delivered: u64,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Channel<T> {
    /// A builder for the channel `name` of `keyspace`, published through `pool`.
    pub fn builder(pool: &Pool, keyspace: &Keyspace, name: &str) -> ChannelBuilder<T> {
        ChannelBuilder {
            pool: pool.clone(),
            keyspace: keyspace.clone(),
            name: name.to_owned(),
            kind: DEFAULT_KIND.to_owned(),
            _payload: PhantomData,
        }
    }

    /// A pattern over the channels of `keyspace` that carry `T`: `glob` is a Redis glob over
    /// channel names (`telemetry.*`), validated like a name (no braces, whitespace or
    /// control characters).
    ///
    /// # Errors
    /// [`Error::InvalidName`] with `what` = `"channel pattern"`.
    pub fn pattern(pool: &Pool, keyspace: &Keyspace, glob: &str) -> Result<ChannelPattern<T>> {
        validate_name("channel pattern", glob)?;
        let names = Names::new(keyspace)?;
        Ok(ChannelPattern {
            redis_pattern: format!("{}{glob}", names.glob_prefix).into(),
            glob: glob.into(),
            names: Arc::new(names),
            pool: pool.clone(),
            _payload: PhantomData,
        })
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The Redis channel it publishes on, for other programs
    /// (`<namespace>:{mesh:channels}:<name>`).
    pub fn redis_channel(&self) -> &str {
        self.inner.key.as_str()
    }

    /// Publishes `message`, stamped with the server's time, in one round trip. Answers how
    /// many subscriptions received it: exact on a standalone server and on a cluster (see the
    /// [module docs](self)); 0 when nobody listens.
    ///
    /// # Errors
    /// [`Error::Decode`] when `message` cannot be serialized to JSON; the pool's errors
    /// (`Unavailable`, `Timeout`) when Redis cannot be reached.
    pub async fn publish(&self, message: &T) -> Result<u64> {
        let payload = serde_json::to_string(message)
            .map_err(|e| Error::decode(format!("a message for channel {}", self.name()), e))?;
        let inner = &self.inner;
        let received: u64 = PUBLISH
            .prepare()
            .key(&inner.key)
            .arg(if inner.sharded { "1" } else { "0" })
            .arg(&inner.kind)
            .arg(&inner.name)
            .arg(payload)
            .arg("")
            .invoke(&inner.pool)
            .await?;
        inner.published.fetch_add(1, Ordering::Relaxed);
        inner.delivered.fetch_add(received, Ordering::Relaxed);
        Ok(received)
    }

    /// What this channel and its clones published so far.
    pub fn stats(&self) -> PublishStats {
        PublishStats {
            published: self.inner.published.load(Ordering::Relaxed),
            delivered: self.inner.delivered.load(Ordering::Relaxed),
        }
    }

    /// A builder for a subscriber, subscribed to this channel; add more channels and
    /// patterns of the same payload type to it, now or while it runs.
    pub fn subscriber(&self) -> ChannelSubscriberBuilder<T> {
        ChannelSubscriberBuilder::new(&self.inner.pool, self.inner.names.clone()).channel(self)
    }

    /// Subscribes to this channel alone, as a stream.
    pub async fn subscribe(&self) -> Result<ChannelSubscriber<T>> {
        self.subscriber().subscribe().await
    }
}

/// A glob over the channel names of a namespace that carry `T`; from [`Channel::pattern`].
pub struct ChannelPattern<T> {
    pool: Pool,
    names: Arc<Names>,
    glob: Arc<str>,
    redis_pattern: Arc<str>,
    _payload: PhantomData<fn() -> T>,
}

impl<T> Clone for ChannelPattern<T> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            names: self.names.clone(),
            glob: self.glob.clone(),
            redis_pattern: self.redis_pattern.clone(),
            _payload: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for ChannelPattern<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelPattern")
            .field("glob", &self.glob)
            .field("redis_pattern", &self.redis_pattern)
            .field("payload", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> ChannelPattern<T> {
    /// The glob, as given.
    pub fn glob(&self) -> &str {
        &self.glob
    }

    /// The Redis pattern it subscribes to.
    pub fn redis_pattern(&self) -> &str {
        &self.redis_pattern
    }

    /// A builder for a subscriber, subscribed to this pattern.
    pub fn subscriber(&self) -> ChannelSubscriberBuilder<T> {
        ChannelSubscriberBuilder::new(&self.pool, self.names.clone()).pattern(self)
    }

    /// Subscribes to this pattern alone, as a stream.
    pub async fn subscribe(&self) -> Result<ChannelSubscriber<T>> {
        self.subscriber().subscribe().await
    }
}
