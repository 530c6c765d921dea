//! Pipelines over capabilities, as in an event mesh: each stage a capability whose members
//! handle its messages and forward their results to the next capabilities.
//!
//! - [`MeshAgent::forward`] wraps a [`RequestHandler`] so that each of its answers is also
//!   dispatched, as a message of the answer's type, to each of the next capabilities. The
//!   forward is part of the handler's future: it happens before the request is answered and
//!   acknowledged (with [`MeshAgent::serve`] or [`MeshAgent::serve_capability`]) or the message
//!   acknowledged (with [`MeshAgent::serve_dispatched`]). So it is **at least once**: a member
//!   that dies between the forward and the acknowledgement gets the input again (or another
//!   member does, after the visibility timeout), and forwards it again.
//! - [`MeshAgent::serve_dispatched`] joins a capability and runs a handler on each message
//!   dispatched to it: acknowledged when the handler succeeds, dead-lettered with its error
//!   when it fails (it would fail again), so a failing input stops there, visible in the
//!   capability's dead letters.
//!
//! A pipeline parse → enrich → store is three capabilities: the members of `parse` run
//! `serve_dispatched("parse", agent.forward(&["enrich"], parse)?)`, those of `enrich` forward
//! to `store`, and those of `store` keep what reaches them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coordkit_core::BoxFuture;
use coordkit_core::time::{RetryDelay, duration_ms};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::error::Result;
use super::serve::{RequestHandler, beat};
use super::wire::{Outgoing, code};
use super::{InboxRef, MeshAgent, add, wake};

/// How many dispatched messages one consumer handles at once.
const CONCURRENCY: usize = 16;

/// A handler whose answers are also dispatched to the next capabilities
/// ([`MeshAgent::forward`]). Its error is the handler's as text, or the forward's.
pub struct Forward<H> {
    handler: H,
    agent: MeshAgent,
    next: Arc<[(String, Arc<InboxRef>)]>,
}

impl<H> std::fmt::Debug for Forward<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let next: Vec<&str> = self.next.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Forward")
            .field("agent", &self.agent.name())
            .field("next", &next)
            .finish()
    }
}

impl<Q, H: RequestHandler<Q>> RequestHandler<Q> for Forward<H> {
    type Answer = H::Answer;
    type Error = String;
    type Future = BoxFuture<'static, std::result::Result<H::Answer, String>>;

    fn answer(&self, request: Q) -> Self::Future {
        let answering = self.handler.answer(request);
        let (agent, next) = (self.agent.clone(), self.next.clone());
        Box::pin(async move {
            let answer = answering.await.map_err(|e| e.to_string())?;
            let payload = agent
                .encode(&answer)
                .map_err(|e| format!("the answer cannot be forwarded: {e}"))?;
            for (name, inbox) in next.iter() {
                agent
                    .forward_one(inbox, &payload)
                    .await
                    .map_err(|e| format!("forwarding to {name}: {e}"))?;
            }
            Ok(answer)
        })
    }
}

/// A running consumer of a capability's dispatched messages, from
/// [`MeshAgent::serve_dispatched`]: it keeps the agent a member (a heartbeat at a third of its
/// presence TTL), takes the messages as they come (woken by the sends), runs the handler on up
/// to 16 at once, and acknowledges each one it handled or dead-letters it with the handler's
/// error. [`Consumer::shutdown`] stops taking messages, finishes those in hand and leaves the
/// capability; dropping it stops everything at once (what it held comes back after the
/// visibility timeout).
pub struct Consumer {
    agent: MeshAgent,
    inbox: Arc<InboxRef>,
    _wake: wake::Wake,
    stop: watch::Sender<bool>,
    consuming: Option<JoinHandle<()>>,
    heartbeat: JoinHandle<()>,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    handled: AtomicU64,
    failed: AtomicU64,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("agent", &self.agent.name())
            .field("handled", &self.handled())
            .field("failed", &self.failed())
            .finish()
    }
}

impl Consumer {
    /// Messages handled and acknowledged so far.
    pub fn handled(&self) -> u64 {
        self.counts.handled.load(Ordering::Relaxed)
    }

    /// Messages whose handler failed (or panicked), dead-lettered with the reason.
    pub fn failed(&self) -> u64 {
        self.counts.failed.load(Ordering::Relaxed)
    }

    /// Stops taking messages, finishes those in hand, and leaves the capability.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(consuming) = self.consuming.take() {
            let _ = consuming.await;
        }
        self.heartbeat.abort();
        if let Err(e) = self.agent.alive(&self.inbox, 0, false).await {
            tracing::warn!(agent = %self.agent.name(), "leaving the capability: {e}");
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.heartbeat.abort();
        if let Some(consuming) = self.consuming.take() {
            consuming.abort();
        }
    }
}

impl MeshAgent {
    /// Wraps `handler` so that each of its answers is also dispatched, as a message of the
    /// answer's type, to each capability of `next` (in order), before the handler's future
    /// ends, so before its input is acknowledged: at least once, a member that dies between
    /// the forward and the acknowledgement gets the input again and forwards it again. A
    /// forward that cannot be stored is tried again while Redis cannot be reached, for at most
    /// the visibility timeout, then fails the handler with its error (an asker gets
    /// [`Reply::Failed`](crate::Reply::Failed), [`MeshAgent::serve_dispatched`] dead-letters
    /// the input). The names are checked here.
    pub fn forward<H>(&self, next: &[&str], handler: H) -> Result<Forward<H>> {
        let next = next
            .iter()
            .map(|name| {
                let inbox = InboxRef::capability(&self.inner.keyspace, name)?;
                Ok(((*name).to_owned(), Arc::new(inbox)))
            })
            .collect::<Result<Arc<[_]>>>()?;
        Ok(Forward {
            handler,
            agent: self.clone(),
            next,
        })
    }

    /// Joins `capability` and runs `handler` on each message dispatched to it (decoded as
    /// `T`; one that does not decode is dead-lettered): `Ok` acknowledges it (the answer is
    /// dropped, unless the handler is a [`Forward`]), `Err` or a panic dead-letters it with
    /// the error. The agent is a member once this returns.
    pub async fn serve_dispatched<T, F>(&self, capability: &str, handler: F) -> Result<Consumer>
    where
        T: DeserializeOwned + Send + 'static,
        F: RequestHandler<T>,
    {
        let inbox = Arc::new(InboxRef::capability(&self.inner.keyspace, capability)?);
        let ttl = duration_ms(self.inner.config.presence_ttl);
        self.alive(&inbox, ttl, false).await?;
        let fallback = self.inner.config.fallback_wake;
        // Messages only: requests are a server's.
        let wake = wake::Wake::start(&self.inner.pool, &inbox.wake, None, fallback).await?;
        let (stop, stopped) = watch::channel(false);
        let counts = Arc::new(Counts::default());
        let consuming = tokio::spawn(consume(
            self.clone(),
            inbox.clone(),
            Arc::new(handler),
            wake.signal(code::LANE_MESSAGE),
            stopped,
            counts.clone(),
        ));
        Ok(Consumer {
            agent: self.clone(),
            inbox: inbox.clone(),
            _wake: wake,
            stop,
            consuming: Some(consuming),
            heartbeat: tokio::spawn(beat(self.clone(), inbox, false)),
            counts,
        })
    }

    /// Stores one forwarded message, trying again while Redis cannot be reached, for at most
    /// the visibility timeout (after it the input may be in another member's hands).
    async fn forward_one(&self, inbox: &InboxRef, payload: &[u8]) -> Result<()> {
        let give_up = Instant::now() + self.inner.config.visibility_timeout;
        let mut retry = RetryDelay::new(Duration::from_millis(10), Duration::from_secs(1));
        loop {
            let sent = self
                .send_raw(inbox, Outgoing::message(0, false), payload)
                .await;
            match sent {
                Ok(_) => return Ok(()),
                Err(e) if e.is_retryable() && Instant::now() < give_up => {
                    tracing::debug!(agent = %self.name(), "forwarding: {e}; trying again");
                    tokio::time::sleep(retry.next_delay()).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The consumer's loop: take a batch, handle it, settle it (one ack call), again.
async fn consume<T, F>(
    agent: MeshAgent,
    inbox: Arc<InboxRef>,
    handler: Arc<F>,
    mut wake: watch::Receiver<u64>,
    mut stopped: watch::Receiver<bool>,
    counts: Arc<Counts>,
) where
    T: DeserializeOwned + Send + 'static,
    F: RequestHandler<T>,
{
    let mut retry = RetryDelay::new(Duration::from_millis(10), Duration::from_secs(1));
    while !*stopped.borrow() {
        wake.borrow_and_update();
        let taken = match agent
            .receive_raw(&inbox, code::LANE_MESSAGE, CONCURRENCY)
            .await
        {
            Ok(raw) => {
                // Took some that did not decode (dead-lettered): more may wait, look at once.
                let wait = if raw.deliveries.is_empty() {
                    agent.wait_for(&raw)
                } else {
                    Duration::ZERO
                };
                agent
                    .decode_deliveries::<T>(&inbox, raw.deliveries)
                    .await
                    .map(|deliveries| (wait, deliveries))
            }
            Err(e) => Err(e),
        };
        let (wait, deliveries) = match taken {
            Ok(taken) => taken,
            Err(e) => {
                tracing::warn!(agent = %agent.name(), "taking dispatched messages: {e}");
                tokio::select! {
                    _ = stopped.changed() => break,
                    _ = tokio::time::sleep(retry.next_delay()) => continue,
                }
            }
        };
        retry.reset();
        if deliveries.is_empty() {
            tokio::select! {
                _ = stopped.changed() => break,
                _ = agent.sleep_or_wake(&mut wake, wait) => {}
            }
            continue;
        }
        // Each handler in a task of its own, so that a panic is caught; aborted with the loop.
        let mut running = JoinSet::new();
        let mut ids = std::collections::HashMap::new();
        for d in deliveries {
            let task = running.spawn(handler.answer(d.payload));
            ids.insert(task.id(), d.id);
        }
        let (mut settle, mut reasons) = (Vec::new(), Vec::new());
        while let Some(ended) = running.join_next_with_id().await {
            let (task, reason) = match ended {
                Ok((task, Ok(_))) => (task, String::new()),
                Ok((task, Err(e))) => (task, format!("failed: {e}")),
                Err(e) if e.is_panic() => (e.id(), "failed: the handler panicked".to_owned()),
                Err(_) => continue,
            };
            if let Some(id) = ids.remove(&task) {
                settle.push(id);
                reasons.push(reason);
            }
        }
        let ids: Vec<&str> = settle.iter().map(String::as_str).collect();
        let why: Vec<&str> = reasons.iter().map(String::as_str).collect();
        match agent.ack_raw(&inbox, &ids, &why).await {
            Ok(found) => {
                for (pending, reason) in found.iter().zip(&reasons) {
                    let counter = if reason.is_empty() {
                        add(&agent.inner.counters.acked, *pending);
                        &counts.handled
                    } else {
                        &counts.failed
                    };
                    add(counter, *pending);
                }
            }
            // Left pending: delivered again after the visibility timeout.
            Err(e) => tracing::warn!(agent = %agent.name(), "settling dispatched messages: {e}"),
        }
    }
}
