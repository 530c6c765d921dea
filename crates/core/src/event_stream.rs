//! [`EventStream`]: one instance's events, typed. Every primitive's `events()` returns one: a
//! [`Subscriber`] on the primitive's channels, and a selector that keeps the events of its
//! instance and turns each into the primitive's own event type.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;

use crate::group_commit::BoxFuture;
use crate::subscriber::{Received, Subscriber, SubscriberStats};

/// A subscription to one instance's events, typed as `E`.
///
/// Every instance of a primitive publishes on its namespace's channels; the stream keeps those
/// its selector accepts (its instance, its kinds) and skips the others. A message that does not
/// decode is counted in [`SubscriberStats::decode_errors`] and skipped. Pub/sub delivers to
/// connected subscribers only: after [`reconnections`](Self::reconnections) fires, re-read the
/// instance's state.
pub struct EventStream<E> {
    source: Box<dyn Source<E>>,
    undecodable: Arc<AtomicU64>,
}

/// What a stream's selector makes of one received event.
#[derive(Debug, Clone, PartialEq)]
pub enum Selected<E> {
    /// An event of this instance, typed.
    Event(E),
    /// Another instance's event (or a kind this stream does not follow): skipped.
    Other,
    /// This instance's event whose payload this version cannot read: counted and skipped.
    Undecodable,
}

impl<E> From<Option<E>> for Selected<E> {
    /// `Some` is an event, `None` another instance's.
    fn from(event: Option<E>) -> Self {
        event.map_or(Selected::Other, Selected::Event)
    }
}

impl<E: Send + 'static> EventStream<E> {
    /// Keeps from `subscriber` what `select` turns into an event of this instance.
    pub fn new<P, F>(subscriber: Subscriber<P>, select: F) -> Self
    where
        P: DeserializeOwned + Send + 'static,
        F: FnMut(Received<P>) -> Selected<E> + Send + 'static,
    {
        let undecodable = Arc::new(AtomicU64::new(0));
        Self {
            source: Box::new(Filtered {
                subscriber,
                select,
                undecodable: undecodable.clone(),
            }),
            undecodable,
        }
    }

    /// Events of this instance whose payload did not decode (another version's), skipped.
    pub fn undecodable(&self) -> u64 {
        self.undecodable.load(Ordering::Relaxed)
    }

    /// The next event; `None` once the subscription has shut down.
    pub async fn recv(&mut self) -> Option<E> {
        self.source.recv().await
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<E> {
        self.source.try_recv()
    }

    /// A signal that changes each time the connection came back after a drop (events
    /// published meanwhile are lost).
    pub fn reconnections(&self) -> tokio::sync::watch::Receiver<u64> {
        self.source.reconnections()
    }

    /// The subscriber's counters (they count the skipped events of other instances too).
    pub fn stats(&self) -> SubscriberStats {
        self.source.stats()
    }

    /// Unsubscribes, closes the connection and waits for the background task to end.
    pub async fn shutdown(self) {
        self.source.shutdown().await;
    }
}

impl<E> fmt::Debug for EventStream<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("stats", &self.source.stats())
            .field("undecodable", &self.undecodable.load(Ordering::Relaxed))
            .finish()
    }
}

/// The subscriber and its selector, behind one object so the stream's type names only `E`.
trait Source<E>: Send {
    fn recv(&mut self) -> BoxFuture<'_, Option<E>>;
    fn try_recv(&mut self) -> Option<E>;
    fn reconnections(&self) -> tokio::sync::watch::Receiver<u64>;
    fn stats(&self) -> SubscriberStats;
    fn shutdown(self: Box<Self>) -> BoxFuture<'static, ()>;
}

struct Filtered<P, F> {
    subscriber: Subscriber<P>,
    select: F,
    undecodable: Arc<AtomicU64>,
}

impl<P, E, F> Filtered<P, F>
where
    F: FnMut(Received<P>) -> Selected<E>,
{
    fn keep(&mut self, received: Received<P>) -> Option<E> {
        match (self.select)(received) {
            Selected::Event(event) => Some(event),
            Selected::Other => None,
            Selected::Undecodable => {
                self.undecodable.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

impl<P, E, F> Source<E> for Filtered<P, F>
where
    P: DeserializeOwned + Send + 'static,
    E: Send + 'static,
    F: FnMut(Received<P>) -> Selected<E> + Send + 'static,
{
    fn recv(&mut self) -> BoxFuture<'_, Option<E>> {
        Box::pin(async move {
            loop {
                let received = self.subscriber.recv().await?;
                if let Some(event) = self.keep(received) {
                    return Some(event);
                }
            }
        })
    }

    fn try_recv(&mut self) -> Option<E> {
        while let Some(received) = self.subscriber.try_recv() {
            if let Some(event) = self.keep(received) {
                return Some(event);
            }
        }
        None
    }

    fn reconnections(&self) -> tokio::sync::watch::Receiver<u64> {
        self.subscriber.reconnections()
    }

    fn stats(&self) -> SubscriberStats {
        self.subscriber.stats()
    }

    fn shutdown(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(self.subscriber.shutdown())
    }
}
