//! [`Server`]: an agent answering the requests asked of it.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coordkit_core::time::RetryDelay;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::error::Result;
use super::wire::{Body, RawDelivery, RawReceived, code};
use super::{InboxRef, MeshAgent, wake};

/// What [`MeshAgent::serve`] and [`MeshAgent::serve_capability`] take: an async function from a
/// request to its answer or an error. Every closure `Fn(Q) -> impl Future<Output = Result<R, E>>`
/// (with `R: Serialize`, `E: Display`, all `Send + 'static`) is one.
pub trait RequestHandler<Q>: Send + Sync + 'static {
    /// The answer, sent back as [`Reply::Answer`](crate::Reply::Answer).
    type Answer: Serialize + Send + 'static;
    /// The error, sent back as the text of [`Reply::Failed`](crate::Reply::Failed).
    type Error: Display + Send + 'static;
    /// The future answering one request.
    type Future: Future<Output = std::result::Result<Self::Answer, Self::Error>> + Send + 'static;
    /// Answers `request`.
    fn answer(&self, request: Q) -> Self::Future;
}

impl<Q, R, E, F, Fut> RequestHandler<Q> for F
where
    R: Serialize + Send + 'static,
    E: Display + Send + 'static,
    F: Fn(Q) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<R, E>> + Send + 'static,
{
    type Answer = R;
    type Error = E;
    type Future = Fut;

    fn answer(&self, request: Q) -> Fut {
        self(request)
    }
}

/// How many requests one server handles at once.
const CONCURRENCY: usize = 64;

/// A running responder, from [`MeshAgent::serve`]: it keeps the agent alive (a heartbeat at a
/// third of its presence TTL), takes the requests asked of it as their sends push them (and,
/// never polling, those left pending by an earlier run or come due again), runs the handler on
/// each (up to 64 at once), sends the reply into the asker's inbox and then acknowledges the
/// request (in batches). A request whose reply could not be sent
/// (Redis down) is not acknowledged, so it is delivered again after the visibility timeout.
///
/// [`Server::shutdown`] stops taking requests, finishes those in flight, and marks the agent
/// gone. Dropping it stops everything at once (the presence then runs out by itself).
pub struct Server {
    agent: MeshAgent,
    inbox: Arc<InboxRef>,
    /// A capability's own wake-ups (an agent's are shared by its handle).
    _wake: Option<wake::Wake>,
    stop: watch::Sender<bool>,
    serving: Option<JoinHandle<JoinSet<()>>>,
    acking: Option<JoinHandle<()>>,
    heartbeat: JoinHandle<()>,
    served: Arc<AtomicU64>,
    /// Servers that stop with this one: a capability member's route for gathers.
    companions: Vec<Server>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("agent", &self.agent.name())
            .field("served", &self.served())
            .finish()
    }
}

impl Server {
    /// Requests answered so far (replies stored or found late).
    pub fn served(&self) -> u64 {
        let companions: u64 = self.companions.iter().map(Server::served).sum();
        self.served.load(Ordering::Relaxed) + companions
    }

    /// `companion` stops when this server does, after it.
    pub(super) fn attach(&mut self, companion: Server) {
        self.companions.push(companion);
    }

    /// Marks the agent gone (asks to it then answer no responders, and no request is pushed
    /// to it any more), stops taking requests, and waits for those in flight to be answered.
    /// Requests still waiting stay in the inbox for the agent's next run.
    pub async fn shutdown(self) {
        self.stop(None).await;
    }

    /// [`Server::shutdown`], waiting at most `deadline` for the requests in flight: handlers
    /// still running then are abandoned, and their requests, never acknowledged, are delivered
    /// again after the visibility timeout (to another member, for a capability). Answers
    /// whether every request in flight was answered.
    pub async fn shutdown_within(self, deadline: Duration) -> bool {
        self.stop(Some(deadline)).await
    }

    async fn stop(mut self, deadline: Option<Duration>) -> bool {
        let until = deadline.map(|d| tokio::time::Instant::now() + d);
        self.heartbeat.abort();
        if let Err(e) = self.agent.alive(&self.inbox, 0, false).await {
            tracing::warn!(agent = %self.agent.name(), "marking the agent gone: {e}");
        }
        self.stop.send_replace(true);
        let mut clean = true;
        if let Some(serving) = self.serving.take()
            && let Ok(mut running) = serving.await
        {
            let drained = async { while running.join_next().await.is_some() {} };
            match until {
                None => drained.await,
                Some(until) => {
                    if tokio::time::timeout_at(until, drained).await.is_err() {
                        // Dropping the set aborts the handlers still running.
                        clean = false;
                        tracing::warn!(
                            agent = %self.agent.name(),
                            "abandoned {} requests at the shutdown deadline",
                            running.len()
                        );
                    }
                }
            }
        }
        // Every answer is in (or abandoned): the acknowledger applies the last batch and ends.
        if let Some(acking) = self.acking.take() {
            let _ = acking.await;
        }
        for companion in std::mem::take(&mut self.companions) {
            let left = until.map(|u| u.saturating_duration_since(tokio::time::Instant::now()));
            clean &= Box::pin(companion.stop(left)).await;
        }
        clean
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.heartbeat.abort();
        if let Some(serving) = self.serving.take() {
            serving.abort();
        }
        if let Some(acking) = self.acking.take() {
            acking.abort();
        }
    }
}

impl MeshAgent {
    /// Starts answering the requests asked of this agent with `handler`: the request decoded
    /// as `Q`, its `Ok` sent back as the answer and its `Err` (as text) as the responder's
    /// error ([`Reply::Failed`](crate::Reply::Failed)); a panic answers `Failed` too, and so
    /// does a request that does not decode as `Q`. The agent is alive (asks reach it) once this
    /// returns.
    pub async fn serve<Q, F>(&self, handler: F) -> Result<Server>
    where
        Q: DeserializeOwned + Send + 'static,
        F: RequestHandler<Q>,
    {
        let own = self.inner.own.clone();
        self.serve_inbox(own, Arc::new(handler)).await
    }

    /// Serves the requests of `inbox`: the agent's own, or a capability's as a member.
    pub(super) async fn serve_inbox<Q, F>(
        &self,
        inbox: Arc<InboxRef>,
        handler: Arc<F>,
    ) -> Result<Server>
    where
        Q: DeserializeOwned + Send + 'static,
        F: RequestHandler<Q>,
    {
        // Subscribed before it is alive: no request is pushed to nobody.
        let (wake, pushed, own_wake) = if inbox.capability {
            let w = wake::Wake::start(
                &self.inner.pool,
                &inbox.wake,
                Some(&inbox.member_push(self.name())),
                self.inner.config.fallback_wake,
            )
            .await?;
            (w.signal(code::LANE_REQUEST), w.take_requests(), Some(w))
        } else {
            let w = self.own_wake().await?;
            (w.signal(code::LANE_REQUEST), w.take_requests(), None)
        };
        // What an earlier run left pending is taken back before the agent is alive: after,
        // it would take back the requests pushed to this run as well.
        let first = self
            .receive_raw(&inbox, code::LANE_REQUEST, CONCURRENCY)
            .await?;
        let ttl = coordkit_core::time::duration_ms(self.inner.config.presence_ttl);
        self.alive(&inbox, ttl, true).await?;
        let (acks, ack_ids) = mpsc::unbounded_channel();
        let acking = tokio::spawn(ack_loop(self.clone(), inbox.clone(), ack_ids));
        let (stop, stopped) = watch::channel(false);
        let served = Arc::new(AtomicU64::new(0));
        let heartbeat = tokio::spawn(beat(self.clone(), inbox.clone(), true));
        let serving = tokio::spawn(serve_loop(
            self.clone(),
            inbox.clone(),
            handler,
            first,
            wake,
            pushed,
            acks,
            stopped,
            served.clone(),
        ));
        Ok(Server {
            agent: self.clone(),
            inbox,
            _wake: own_wake,
            stop,
            serving: Some(serving),
            acking: Some(acking),
            heartbeat,
            served,
            companions: Vec::new(),
        })
    }
}

/// Renews `inbox`'s presence (a server's when `serving`) every third of the TTL.
pub(super) async fn beat(agent: MeshAgent, inbox: Arc<InboxRef>, serving: bool) {
    let ttl = agent.config().presence_ttl;
    loop {
        tokio::time::sleep(ttl / 3).await;
        if let Err(e) = agent
            .alive(&inbox, coordkit_core::time::duration_ms(ttl), serving)
            .await
        {
            tracing::warn!(agent = %agent.name(), "heartbeat: {e}");
        }
    }
}

/// The server's loop: a request pushed by its send is answered at once; Redis is looked in
/// (a receive) at the start (what an earlier run left), when the subscription came back, and
/// when a redelivery comes due: requests whose holder did not acknowledge them in time.
#[allow(clippy::too_many_arguments)]
async fn serve_loop<Q, F>(
    agent: MeshAgent,
    inbox: Arc<InboxRef>,
    handler: Arc<F>,
    first: RawReceived,
    mut wake: watch::Receiver<u64>,
    mut pushed: mpsc::UnboundedReceiver<RawDelivery>,
    acks: mpsc::UnboundedSender<String>,
    mut stopped: watch::Receiver<bool>,
    served: Arc<AtomicU64>,
) -> JoinSet<()>
where
    Q: DeserializeOwned + Send + 'static,
    F: RequestHandler<Q>,
{
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let mut running = JoinSet::new();
    let mut retry = RetryDelay::new(Duration::from_millis(10), Duration::from_secs(1));
    let mut pushes_open = true;
    let mut wait = if first.deliveries.len() == CONCURRENCY {
        Duration::ZERO
    } else {
        agent.wait_for(&first)
    };
    let spawn = |running: &mut JoinSet<()>, delivery: RawDelivery, permit| {
        let agent = agent.clone();
        let handler = handler.clone();
        let served = served.clone();
        let acks = acks.clone();
        let inbox = inbox.clone();
        running.spawn(async move {
            answer(&agent, &inbox, &*handler, delivery, &acks, &served).await;
            drop(permit);
        });
    };
    for delivery in first.deliveries {
        match slots.clone().try_acquire_owned() {
            Ok(permit) => spawn(&mut running, delivery, permit),
            Err(_) => break,
        }
    }
    loop {
        while running.try_join_next().is_some() {}
        if *stopped.borrow() {
            break;
        }
        let look = tokio::select! {
            biased;
            _ = stopped.changed() => break,
            got = pushed.recv(), if pushes_open => match got {
                Some(delivery) => {
                    let permit = tokio::select! {
                        _ = stopped.changed() => break,
                        permit = slots.clone().acquire_owned() => match permit {
                            Ok(p) => p,
                            Err(_) => break,
                        },
                    };
                    spawn(&mut running, delivery, permit);
                    false
                }
                None => {
                    pushes_open = false;
                    false
                }
            },
            _ = agent.sleep_or_wake(&mut wake, wait) => true,
        };
        if !look {
            continue;
        }
        let first = tokio::select! {
            biased;
            _ = stopped.changed() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let mut permits = vec![first];
        while permits.len() < CONCURRENCY {
            match slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        wake.borrow_and_update();
        let raw = match agent
            .receive_raw(&inbox, code::LANE_REQUEST, permits.len())
            .await
        {
            Ok(raw) => raw,
            Err(e) => {
                tracing::warn!(agent = %agent.name(), "taking requests: {e}");
                wait = retry.next_delay();
                continue;
            }
        };
        retry.reset();
        // A full batch: more may wait, look again at once.
        wait = if raw.deliveries.len() == permits.len() {
            Duration::ZERO
        } else {
            agent.wait_for(&raw)
        };
        for delivery in raw.deliveries {
            let Some(permit) = permits.pop() else { break };
            spawn(&mut running, delivery, permit);
        }
    }
    running
}

/// How long the acknowledger gathers ids before one call acknowledges them all.
const ACK_GATHER: Duration = Duration::from_millis(2);
/// The most ids one acknowledgement call takes.
const ACK_BATCH: usize = 1000;

/// Acknowledges answered requests in batches, one script per batch, off the reply's path;
/// returns once every sender is gone and the last batch is applied. A batch that fails is
/// left pending: its requests are redelivered after the visibility timeout (at least once).
async fn ack_loop(
    agent: MeshAgent,
    inbox: Arc<InboxRef>,
    mut ids: mpsc::UnboundedReceiver<String>,
) {
    while let Some(batch) = super::next_batch(&mut ids, ACK_GATHER, ACK_BATCH).await {
        let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
        if let Err(e) = agent.ack_in(&inbox, &refs).await {
            warn(&agent, &e);
        }
    }
}

/// Runs the handler on one request, replies, and has it acknowledged.
async fn answer<Q, F>(
    agent: &MeshAgent,
    inbox: &InboxRef,
    handler: &F,
    delivery: RawDelivery,
    acks: &mpsc::UnboundedSender<String>,
    served: &AtomicU64,
) where
    Q: DeserializeOwned + Send + 'static,
    F: RequestHandler<Q>,
{
    let id = delivery.id.as_str();
    let body = match Body::decode(&delivery.body) {
        Ok(body) if !body.corr.is_empty() => body,
        Ok(_) => {
            return dead_letter(
                agent,
                inbox,
                id,
                "undecodable: a request without a correlation id",
            )
            .await;
        }
        Err(reason) => {
            return dead_letter(agent, inbox, id, &format!("undecodable: {reason}")).await;
        }
    };
    agent
        .inner
        .counters
        .received
        .fetch_add(1, Ordering::Relaxed);
    let result = match serde_json::from_slice::<Q>(&body.payload) {
        Err(e) => Err(format!(
            "the request is no {}: {e}",
            std::any::type_name::<Q>()
        )),
        // In a task of its own so a panic is caught; aborted with this one (a server dropped).
        Ok(request) => match (&mut AbortOnDrop(tokio::spawn(handler.answer(request))).0).await {
            Ok(Ok(reply)) => serde_json::to_vec(&reply)
                .map_err(|e| format!("the reply could not be encoded: {e}")),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the handler panicked".to_owned()),
        },
    };
    let deadline = delivery.expires_ms.unwrap_or(0);
    match agent
        .reply_raw(&body.from, &body.corr, result, deadline)
        .await
    {
        Ok(_) => {}
        Err(super::AgentError::PayloadTooLarge { len, max }) => {
            let text = format!("the reply of {len} bytes is larger than the limit of {max}");
            if let Err(e) = agent
                .reply_raw(&body.from, &body.corr, Err(text), deadline)
                .await
            {
                return warn(agent, &e);
            }
        }
        Err(e) if e.is_retryable() => return warn(agent, &e),
        Err(e) => {
            // The asker's name or inbox cannot take a reply: nothing will ever be able to.
            return dead_letter(agent, inbox, id, &format!("unanswerable: {e}")).await;
        }
    }
    served.fetch_add(1, Ordering::Relaxed);
    let _ = acks.send(delivery.id);
}

fn warn(agent: &MeshAgent, e: &super::AgentError) {
    tracing::warn!(agent = %agent.name(), "answering a request: {e}");
}

async fn dead_letter(agent: &MeshAgent, inbox: &InboxRef, id: &str, reason: &str) {
    agent
        .inner
        .counters
        .undecodable
        .fetch_add(1, Ordering::Relaxed);
    if let Err(e) = agent.ack_raw(inbox, &[id], &[reason]).await {
        warn(agent, &e);
    }
}

/// A task aborted when its handle is dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
