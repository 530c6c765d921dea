//! Subscribing to typed channels: as a stream, with a handler, by name or pattern.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use coordkit_core::subscriber::{RawMessage, RawSubscriber, SubscriberControl};
use coordkit_core::{Event, Pool, Result, SubscriberBuilder};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{Channel, ChannelPattern, Names};

/// One message of a typed channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Message<T> {
    /// The name of the channel it was published on.
    pub channel: String,
    /// The glob that matched it, for pattern subscriptions.
    pub pattern: Option<String>,
    /// The envelope's kind (`"message"` unless the channel was built with another).
    pub kind: String,
    /// Who published it (`"mesh"` for [`Channel::publish`]).
    pub source: String,
    /// When it was published, in milliseconds since the Unix epoch, by the server's clock.
    pub ts_ms: u64,
    /// The payload.
    pub payload: T,
}

/// What a subscriber in raw mode delivers: a typed message, or a message that is not in
/// coordkit's envelope (published by another program), as the bytes it published.
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelDelivery<T> {
    /// A message in coordkit's envelope whose payload decoded as `T`.
    Message(Message<T>),
    /// A message that is not in coordkit's envelope; its `channel` (and `pattern`) are the
    /// mesh's names, as in [`Message`].
    Raw(RawMessage),
}

impl<T> ChannelDelivery<T> {
    /// The typed message, if it is one.
    pub fn into_message(self) -> Option<Message<T>> {
        match self {
            ChannelDelivery::Message(m) => Some(m),
            ChannelDelivery::Raw(_) => None,
        }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// What a subscriber delivers: [`Message<T>`] (messages that are not in coordkit's envelope
/// are counted as undecodable and skipped) or, in raw mode, [`ChannelDelivery<T>`]. Sealed.
pub trait Receive<T>: sealed::Sealed + Sized + Send + 'static {
    #[doc(hidden)]
    fn typed(message: Message<T>) -> Self;
    #[doc(hidden)]
    fn foreign(raw: RawMessage) -> Option<Self>;
}

impl<T> sealed::Sealed for Message<T> {}
impl<T> sealed::Sealed for ChannelDelivery<T> {}

impl<T: Send + 'static> Receive<T> for Message<T> {
    fn typed(message: Message<T>) -> Self {
        message
    }
    fn foreign(_: RawMessage) -> Option<Self> {
        None
    }
}

impl<T: Send + 'static> Receive<T> for ChannelDelivery<T> {
    fn typed(message: Message<T>) -> Self {
        ChannelDelivery::Message(message)
    }
    fn foreign(raw: RawMessage) -> Option<Self> {
        Some(ChannelDelivery::Raw(raw))
    }
}

/// What a subscriber has seen so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionStats {
    /// Typed messages delivered.
    pub received: u64,
    /// Messages not in coordkit's envelope, delivered as raw bytes (raw mode only).
    pub raw: u64,
    /// Messages skipped: not in coordkit's envelope (outside raw mode), or in it with a
    /// payload that does not decode as the channel's type.
    pub undecodable: u64,
    /// Times the connection dropped.
    pub disconnects: u64,
    /// Times it came back and resubscribed.
    pub reconnects: u64,
    /// The last undecodable message's reason, or the last connection error.
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    raw: AtomicU64,
    undecodable: AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
}

/// Builds a [`ChannelSubscriber`] (or a [`HandlerTask`]); from [`Channel::subscriber`] or
/// [`ChannelPattern::subscriber`]. `I` is what it delivers: [`Message<T>`], or
/// [`ChannelDelivery<T>`] after [`raw`](Self::raw).
pub struct ChannelSubscriberBuilder<T, I = Message<T>> {
    inner: SubscriberBuilder,
    names: Arc<Names>,
    _payload: PhantomData<fn() -> (T, I)>,
}

impl<T, I> std::fmt::Debug for ChannelSubscriberBuilder<T, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelSubscriberBuilder")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> ChannelSubscriberBuilder<T> {
    pub(super) fn new(pool: &Pool, names: Arc<Names>) -> Self {
        Self {
            inner: pool.subscriber(),
            names,
            _payload: PhantomData,
        }
    }

    /// Raw mode: messages that are not in coordkit's envelope (plain JSON or bytes that other
    /// programs publish) are delivered as [`ChannelDelivery::Raw`] instead of being counted as
    /// undecodable. Messages in the envelope whose payload is not a `T` are still counted as
    /// undecodable and skipped.
    pub fn raw(self) -> ChannelSubscriberBuilder<T, ChannelDelivery<T>> {
        ChannelSubscriberBuilder {
            inner: self.inner,
            names: self.names,
            _payload: PhantomData,
        }
    }
}

impl<T, I> ChannelSubscriberBuilder<T, I>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    I: Receive<T>,
{
    /// Subscribes to one more channel.
    pub fn channel(mut self, channel: &Channel<T>) -> Self {
        self.inner = self.inner.shard_channel(channel.redis_channel());
        self
    }

    /// Subscribes to one more pattern.
    pub fn pattern(mut self, pattern: &ChannelPattern<T>) -> Self {
        self.inner = self.inner.pattern(pattern.redis_pattern());
        self
    }

    /// How many messages may wait to be read (1 to 1,000,000; default 1024). When it is full
    /// the subscriber waits for the reader; nothing is dropped.
    pub fn buffer(mut self, size: usize) -> Self {
        self.inner = self.inner.buffer(size);
        self
    }

    /// Connects, subscribes, and starts receiving; read with [`ChannelSubscriber::recv`].
    ///
    /// # Errors
    /// [`Error::InvalidConfig`](coordkit_core::Error::InvalidConfig) for a bad `buffer`;
    /// [`Error::Unavailable`](coordkit_core::Error::Unavailable) when Redis cannot be reached.
    pub async fn subscribe(self) -> Result<ChannelSubscriber<T, I>> {
        let raw = self.inner.subscribe_raw().await?;
        let control = ChannelControl {
            control: raw.control(),
            counters: Arc::new(Counters::default()),
            _payload: PhantomData,
        };
        Ok(ChannelSubscriber {
            raw,
            names: self.names,
            control,
            _item: PhantomData,
        })
    }

    /// Connects, subscribes, and calls `handler` with each message, one at a time, on a task
    /// of its own, until [`HandlerTask::stop`].
    ///
    /// # Errors
    /// As [`subscribe`](Self::subscribe).
    pub async fn subscribe_with<F, Fut>(self, mut handler: F) -> Result<HandlerTask<T>>
    where
        F: FnMut(I) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let mut subscriber = self.subscribe().await?;
        let control = subscriber.control();
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stop_rx => break,
                    next = subscriber.recv() => match next {
                        Some(item) => handler(item).await,
                        None => break,
                    },
                }
            }
            subscriber.shutdown().await;
        });
        Ok(HandlerTask {
            control,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }
}

/// Adds and removes the channels and patterns of a running subscriber, and reads its stats;
/// from [`ChannelSubscriber::control`] or [`HandlerTask::control`]. Cheap to clone.
///
/// Additions survive reconnects like the subscriptions the subscriber started with; after a
/// removal returns, messages published on the removed channel no longer arrive.
pub struct ChannelControl<T> {
    control: SubscriberControl,
    counters: Arc<Counters>,
    _payload: PhantomData<fn() -> T>,
}

impl<T> Clone for ChannelControl<T> {
    fn clone(&self) -> Self {
        Self {
            control: self.control.clone(),
            counters: self.counters.clone(),
            _payload: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for ChannelControl<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelControl")
            .field("subscriber", &self.control)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> ChannelControl<T> {
    /// Subscribes to one more channel; returns once Redis confirmed it.
    pub async fn add_channel(&self, channel: &Channel<T>) -> Result<()> {
        self.control
            .add_shard_channel(channel.redis_channel())
            .await
    }

    /// Unsubscribes from a channel; returns once Redis confirmed it.
    pub async fn remove_channel(&self, channel: &Channel<T>) -> Result<()> {
        self.control
            .remove_shard_channel(channel.redis_channel())
            .await
    }

    /// Subscribes to one more pattern; returns once Redis confirmed it.
    pub async fn add_pattern(&self, pattern: &ChannelPattern<T>) -> Result<()> {
        self.control.add_pattern(pattern.redis_pattern()).await
    }

    /// Unsubscribes from a pattern; returns once Redis confirmed it.
    pub async fn remove_pattern(&self, pattern: &ChannelPattern<T>) -> Result<()> {
        self.control.remove_pattern(pattern.redis_pattern()).await
    }

    /// Whether the connection is up: false from a drop until it is back and resubscribed.
    pub fn is_connected(&self) -> bool {
        self.control.is_connected()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SubscriptionStats {
        let connection = self.control.stats();
        let counters = &self.counters;
        let decode_error = counters.last_error.lock().ok().and_then(|e| e.clone());
        SubscriptionStats {
            received: counters.received.load(Ordering::Relaxed),
            raw: counters.raw.load(Ordering::Relaxed),
            undecodable: counters.undecodable.load(Ordering::Relaxed),
            disconnects: connection.disconnects,
            reconnects: connection.reconnects,
            last_error: decode_error.or(connection.last_error),
        }
    }
}

/// Receives the messages of typed channels and patterns, as a stream; from
/// [`ChannelSubscriberBuilder::subscribe`]. `I` is [`Message<T>`], or [`ChannelDelivery<T>`] in raw
/// mode.
///
/// Dropping it stops receiving; [`shutdown`](Self::shutdown) also unsubscribes first.
pub struct ChannelSubscriber<T, I = Message<T>> {
    raw: RawSubscriber,
    names: Arc<Names>,
    control: ChannelControl<T>,
    _item: PhantomData<fn() -> I>,
}

impl<T, I> std::fmt::Debug for ChannelSubscriber<T, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelSubscriber")
            .field("subscriber", &self.raw)
            .finish()
    }
}

impl<T, I> ChannelSubscriber<T, I>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    I: Receive<T>,
{
    /// The next message; `None` once the subscriber has shut down.
    pub async fn recv(&mut self) -> Option<I> {
        loop {
            let message = self.raw.recv().await?;
            if let Some(item) = self.accept(message) {
                return Some(item);
            }
        }
    }

    /// The next message if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<I> {
        loop {
            let message = self.raw.try_recv()?;
            if let Some(item) = self.accept(message) {
                return Some(item);
            }
        }
    }

    /// A handle that adds and removes channels and patterns while this subscriber runs.
    pub fn control(&self) -> ChannelControl<T> {
        self.control.clone()
    }

    /// Subscribes to one more channel (see [`ChannelControl::add_channel`]).
    pub async fn add_channel(&self, channel: &Channel<T>) -> Result<()> {
        self.control.add_channel(channel).await
    }

    /// Unsubscribes from a channel (see [`ChannelControl::remove_channel`]).
    pub async fn remove_channel(&self, channel: &Channel<T>) -> Result<()> {
        self.control.remove_channel(channel).await
    }

    /// Subscribes to one more pattern.
    pub async fn add_pattern(&self, pattern: &ChannelPattern<T>) -> Result<()> {
        self.control.add_pattern(pattern).await
    }

    /// Unsubscribes from a pattern.
    pub async fn remove_pattern(&self, pattern: &ChannelPattern<T>) -> Result<()> {
        self.control.remove_pattern(pattern).await
    }

    /// Whether the connection is up.
    pub fn is_connected(&self) -> bool {
        self.control.is_connected()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SubscriptionStats {
        self.control.stats()
    }

    /// Unsubscribes, closes the connection and waits for its task to end.
    pub async fn shutdown(self) {
        self.raw.shutdown().await;
    }

    /// Decodes one message: a typed one, a raw one (raw mode), or `None` (counted).
    fn accept(&self, message: RawMessage) -> Option<I> {
        let counters = &self.control.counters;
        let channel = self.names.channel_name(&message.channel);
        let pattern = message
            .pattern
            .as_deref()
            .map(|p| self.names.pattern_glob(p));
        let reason = match serde_json::from_slice::<Event<T>>(&message.payload) {
            Ok(event) => {
                counters.received.fetch_add(1, Ordering::Relaxed);
                return Some(I::typed(Message {
                    channel,
                    pattern,
                    kind: event.kind,
                    source: event.source,
                    ts_ms: event.ts_ms,
                    payload: event.payload,
                }));
            }
            Err(e) => e,
        };
        // An envelope whose payload is not a `T` is undecodable in every mode; anything else
        // is a foreign message, delivered in raw mode.
        let envelope = serde_json::from_slice::<Event<serde_json::Value>>(&message.payload).is_ok();
        if !envelope {
            let raw = RawMessage {
                channel: channel.clone(),
                pattern,
                payload: message.payload,
            };
            if let Some(item) = I::foreign(raw) {
                counters.raw.fetch_add(1, Ordering::Relaxed);
                return Some(item);
            }
        }
        counters.undecodable.fetch_add(1, Ordering::Relaxed);
        let what = if envelope {
            "a payload that is not the channel's type"
        } else {
            "not in coordkit's envelope"
        };
        let detail = format!("undecodable message on channel {channel:?} ({what}): {reason}");
        tracing::debug!(target: "coordkit::mesh", "{detail}");
        if let Ok(mut last) = counters.last_error.lock() {
            *last = Some(detail);
        }
        None
    }
}

/// A subscriber that hands each message to an async handler on a task of its own; from
/// [`ChannelSubscriberBuilder::subscribe_with`]. Stopped by [`stop`](Self::stop) (dropping it
/// stops the task too, without waiting).
pub struct HandlerTask<T> {
    control: ChannelControl<T>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl<T> std::fmt::Debug for HandlerTask<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerTask")
            .field("control", &self.control)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> HandlerTask<T> {
    /// A handle that adds and removes channels and patterns while the handler runs.
    pub fn control(&self) -> ChannelControl<T> {
        self.control.clone()
    }

    /// Whether the connection is up.
    pub fn is_connected(&self) -> bool {
        self.control.is_connected()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SubscriptionStats {
        self.control.stats()
    }

    /// Stops after the message being handled (if any), unsubscribes, and waits for the task.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl<T> Drop for HandlerTask<T> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
