//! [`MeshAgent`]: one agent's durable inbox, its sends into other inboxes, and request/reply.
//!
//! Build an agent with [`MeshAgent::builder`] (every setter documents its range and default;
//! `build()` checks them all), send it messages by name, and ask it questions:
//!
//! ```
//! use std::time::Duration;
//! use coordkit_core::{Keyspace, Pool, PoolConfig};
//! use coordkit_mesh::{MeshAgent, Reply};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = coordkit_testkit::RedisServer::start()?;
//! # let url = server.url(); // e.g. "redis://127.0.0.1:6379"
//! let pool = Pool::connect(PoolConfig::from_url(&url)?).await?;
//! let keyspace = Keyspace::new("lab")?;
//! let planner = MeshAgent::builder(&pool, &keyspace, "planner").build()?;
//! let solver = MeshAgent::builder(&pool, &keyspace, "solver")
//!     .visibility_timeout(Duration::from_secs(60)) // redelivered if not acked by then
//!     .build()?;
//!
//! // A message waits in the solver's inbox until it takes and acks it.
//! planner.send("solver", &"warm up").await?;
//! let note = solver.recv::<String>().await?;
//! assert_eq!((note.from.as_str(), note.payload.as_str()), ("planner", "warm up"));
//! note.ack().await?;
//!
//! // Request/reply: nobody serves yet, so no responders, at once.
//! let reply: Reply<u64> = planner.ask("solver", &20u64, Duration::from_secs(5)).await?;
//! assert_eq!(reply, Reply::NoResponders);
//!
//! let server = solver.serve(|n: u64| async move { Ok::<u64, String>(n + 22) }).await?;
//! let reply: Reply<u64> = planner.ask("solver", &20u64, Duration::from_secs(5)).await?;
//! assert_eq!(reply, Reply::Answer(42));
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! ## What it does
//!
//! - **Send** ([`MeshAgent::send`], [`MeshAgent::send_with`]): one script on the receiver's
//!   inbox validates it, drops stale messages from the front and the oldest ones beyond the
//!   count cap, stores the message, and wakes the receiver (a `PUBLISH` on its wake channel).
//!   A message may carry an expiry of its own ([`SendOptions::expiry`]), or be stored only
//!   when the receiver is alive ([`SendOptions::only_if_alive`]). Sends to an offline agent
//!   wait for it, within its caps.
//! - **Receive** ([`MeshAgent::receive`], [`MeshAgent::recv`]): deliveries stay pending until
//!   acknowledged ([`Delivery::ack`]), and are delivered again after the visibility timeout,
//!   or at once to the next run of the agent (the first receive of a new handle takes back
//!   everything left pending). A waiting `recv` wakes on the wake channel, on a redelivery
//!   coming due, or on a slow fallback timer in case a wake-up was missed; it never polls.
//!   Expired messages are dropped and counted; a payload that does not decode is
//!   dead-lettered with the reason (counted `undecodable`), never a failed receive.
//! - **Ask** ([`MeshAgent::ask`]): distinct outcomes ([`Reply`]): the answer, the responder's
//!   error, a timeout (the target was alive and did not answer in time), no responders (the
//!   target has no live presence: answered by the send script itself, in the request's one
//!   round trip, nothing written). A correlation id ties the reply to the question; the reply
//!   goes into the asker's own inbox, so it is not lost when the asker's connection dropped
//!   while it waited; a reply after the deadline is dropped and counted (`late`).
//! - **Serve** ([`MeshAgent::serve`]): a [`Server`] heartbeats the agent's presence, answers
//!   requests with a handler (up to 64 at once), and acknowledges each only once its reply is
//!   stored. Requests to a live server come pushed whole by their send (pending for the
//!   server's visibility timeout, which its presence records); the server looks in Redis only
//!   at start, after its subscription came back, and when a redelivery comes due.
//! - **Capabilities** ([`MeshAgent::join`], [`MeshAgent::dispatch`],
//!   [`MeshAgent::receive_dispatched`], [`MeshAgent::ask_capability`],
//!   [`MeshAgent::serve_capability`], [`MeshAgent::broadcast`]): work for whichever live agent
//!   can do something. A capability is an inbox of its own whose presence is its set of
//!   members; a dispatched message goes to one member at a time (to another after the
//!   visibility timeout when its holder dies), an ask to a capability is answered by a live
//!   member or by "no responders" in its own round trip (below).
//! - **Scatter-gather** ([`MeshAgent::gather`]): asks every live member of a capability,
//!   concurrently, and lists each one's outcome, until enough answers came
//!   ([`GatherOptions::answers`]) or the deadline passed; with no live member it asks nobody
//!   and does not wait.
//! - **Pipelines** ([`MeshAgent::forward`], [`MeshAgent::serve_dispatched`]): a handler's
//!   answers dispatched to the next capabilities before its input is acknowledged (at least
//!   once: a crash between the two forwards it again), and a consumer running a handler on a
//!   capability's dispatched messages, as the stages of an event mesh.
//! - **Broadcast to the namespace** ([`MeshAgent::broadcast_all`],
//!   [`MeshAgent::live_agents`]): every heartbeat of an agent's presence also keeps it in the
//!   namespace's registry of live agents (`<ns>:{mesh:agents}:alive`, agent → alive until: a
//!   second call per beat, another hash tag); a broadcast reads it, then sends to each live
//!   agent's own inbox, one send per agent, not atomic.
//! - **Stats**: per inbox from Redis ([`MeshAgent::inbox_stats`]: depth, pending, oldest age,
//!   presence, counters); per handle in this process ([`MeshAgent::stats`]: sent, received,
//!   acked, expired, undecodable, late replies, timeouts, no responders).
//!
//! ## Guarantees
//!
//! - **At-least-once delivery**: a message leaves an inbox only when acknowledged,
//!   dead-lettered, expired (its own expiry or the age cap) or trimmed by the count cap; a
//!   handler may see it twice (after a visibility timeout or a restart).
//! - **One agent name, one consumer at a time**: a new handle's first receive takes back every
//!   pending delivery of that inbox, as a restart should; two processes serving one name at
//!   once would take each other's (still at least once, but redelivered).
//! - **Liveness is atomic with the send**: the presence is a key of the same hash tag, read by
//!   the script that stores the request. It is kept by heartbeats on the scripts' clock (a
//!   value "alive until"), the key itself expiring after twice the TTL to clean up.
//! - **Bad input and bad stored data**: invalid names are [`coordkit_core::Error::InvalidName`],
//!   oversized payloads [`AgentError::PayloadTooLarge`], both before any call. Each script
//!   validates the types of the keys it may write and every stored value it uses before its
//!   first write: a failure is [`coordkit_core::Error::WrongType`] or
//!   [`coordkit_core::Error::Corrupt`] naming the key, nothing written; a record that does not
//!   decode is dead-lettered alone (the `dead` list keeps the latest 1,000 with their reason).
//! - **Works on Redis Cluster**: one inbox is one hash tag (`<ns>:{inbox:<agent>}:*`); a send
//!   touches only the receiver's, a receive or a take only the agent's own.
//!
//! ## Capabilities
//!
//! A capability's inbox is `<ns>:{cap:<capability>}:*`, run by the same script as an agent's;
//! its `alive` key is a sorted set of members (member → alive until, on the scripts' clock),
//! pruned by every heartbeat, so the live members are read by the script that stores a
//! request, atomically with it. Its members compete for its messages and requests; unlike an
//! agent's own inbox, a member's first receive does not take back the others' pending
//! deliveries. [`MeshAgent::broadcast`] reads the live members, then sends to each one's own
//! inbox: one round trip per member, not atomic. [`MeshAgent::gather`] reads them too, then
//! asks each one's route to its handler (`<ns>:{capm:<n>:<capability>:<member>}:*`, served by
//! its [`MeshAgent::serve_capability`] server beside the capability's inbox).
//!
//! ## Keys (one hash tag per inbox)
//!
//! `msgs` (hash id → record: sent, expires, lane, then sender, correlation id, payload),
//! `ready` and `asks` (lists of waiting messages and requests), `pending` (zset by visibility
//! deadline), `tries` (delivery counts), `replies` and `reply_exp` (replies by correlation id,
//! and their deadlines), `meta` (id sequence and counters), `alive` (the presence), `dead`
//! (dead letters). The wake channel is `<ns>:{inbox:<agent>}:wake`, the push channel (requests
//! and replies delivered whole) `<ns>:{inbox:<agent>}:push`; on a cluster both are sharded
//! channels (`SPUBLISH`/`SSUBSCRIBE`) of the inbox's hash tag.

mod acks;
mod ask;
mod capability;
mod config;
pub(crate) mod error;
mod gather;
mod inbox;
mod namespace;
mod pipeline;
mod serve;
mod types;
mod wake;
pub(crate) mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use coordkit_core::{Key, KeyKind, Keyspace, Pool};
use tokio::sync::OnceCell;

pub use capability::CapabilityStats;
pub use config::{AgentConfig, DEFAULT_MAX_PAYLOAD_BYTES, MeshAgentBuilder};
pub use error::{AgentError, Result};
pub use gather::{GatherOptions, Gathered};
pub use pipeline::{Consumer, Forward};
pub use serve::{RequestHandler, Server};
pub use types::{AgentStats, Delivery, InboxStats, Reply, SendOptions, Sent};

/// Counted in this process ([`AgentStats`]).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) expired: AtomicU64,
    pub(crate) undecodable: AtomicU64,
    pub(crate) late_replies: AtomicU64,
    pub(crate) replies: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) no_responders: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// One inbox the scripts run on: an agent's (`inbox:<agent>`, its presence a string) or a
/// capability's (`cap:<capability>`, its members a sorted set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InboxRef {
    pub(crate) keys: Vec<Key>,
    pub(crate) wake: String,
    /// Where its sends push requests and replies: the channel of an agent's inbox; for a
    /// capability, the prefix each member's name completes.
    pub(crate) push: String,
    pub(crate) capability: bool,
}

/// The kind of an agent inbox's keys in the keyspace.
const KIND: &str = "inbox";
/// The kind of a capability inbox's keys.
const CAPABILITY_KIND: &str = "cap";

impl InboxRef {
    fn agent(keyspace: &Keyspace, agent: &str) -> Result<Self> {
        let instance = keyspace.instance(KIND, agent)?;
        Ok(Self {
            keys: wire::inbox_keys(&instance, KeyKind::String),
            wake: instance.key("wake").as_str().to_owned(),
            push: instance.key("push").as_str().to_owned(),
            capability: false,
        })
    }

    fn capability(keyspace: &Keyspace, capability: &str) -> Result<Self> {
        Self::group(keyspace, CAPABILITY_KIND, capability)
    }

    /// An inbox whose presence is a sorted set of members, of `kind`: a capability's, or a
    /// member's route to its capability's handler (`gather`).
    fn group(keyspace: &Keyspace, kind: &str, name: &str) -> Result<Self> {
        let instance = keyspace.instance(kind, name)?;
        Ok(Self {
            keys: wire::inbox_keys(&instance, KeyKind::ZSet),
            wake: instance.key("wake").as_str().to_owned(),
            push: format!("{}:", instance.key("push").as_str()),
            capability: true,
        })
    }

    /// A member's push channel of this capability's inbox.
    pub(crate) fn member_push(&self, member: &str) -> String {
        format!("{}{member}", self.push)
    }
}

struct Inner {
    pool: Pool,
    keyspace: Keyspace,
    name: String,
    own: Arc<InboxRef>,
    config: AgentConfig,
    counters: Counters,
    /// Whether a receive already took back the deliveries an earlier run left pending.
    recovered: AtomicBool,
    corr_prefix: String,
    corr_seq: AtomicU64,
    wake: OnceCell<wake::Wake>,
    /// Correlation ids of replies that came by push, to forget in batches.
    forget: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<String>>,
    /// Acks of single deliveries, grouped (started on first use).
    acks: std::sync::OnceLock<acks::Acks>,
}

/// How long the forgetter gathers correlation ids before one call removes them all: an asker
/// with one ask at a time has one id per ask, so the gathering, not concurrency, makes the
/// batch (a stored reply costs nothing while it waits).
const FORGET_GATHER: std::time::Duration = std::time::Duration::from_millis(100);
/// The most correlation ids one forget call takes.
const FORGET_BATCH: usize = 1000;

/// The next batch of `rx`: waits for one item, gives the others `gather` to come, and takes
/// up to `max`; `None` once every sender is gone.
pub(crate) async fn next_batch<T>(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<T>,
    gather: std::time::Duration,
    max: usize,
) -> Option<Vec<T>> {
    let first = rx.recv().await?;
    tokio::time::sleep(gather).await;
    let mut batch = vec![first];
    while batch.len() < max {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Forgets pushed replies in batches until the agent's last handle is gone.
async fn forget_loop(
    agent: std::sync::Weak<Inner>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    while let Some(batch) = next_batch(&mut rx, FORGET_GATHER, FORGET_BATCH).await {
        let Some(inner) = agent.upgrade() else { return };
        let agent = MeshAgent { inner };
        if let Err(e) = agent.forget_raw(&batch).await {
            tracing::debug!(agent = %agent.name(), "forgetting {} pushed replies: {e}", batch.len());
        }
    }
}

/// One agent of the mesh: its durable inbox and its handle to every other agent's. Built by
/// [`MeshAgent::builder`]; cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct MeshAgent {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MeshAgent {
    /// The name and keys (never the pool's address or credentials).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.inner.own.keys.iter().map(|k| k.as_str()).collect();
        f.debug_struct("MeshAgent")
            .field("name", &self.inner.name)
            .field("keys", &keys)
            .finish()
    }
}

impl MeshAgent {
    fn from_config(
        pool: Pool,
        keyspace: Keyspace,
        name: &str,
        config: AgentConfig,
    ) -> Result<Self> {
        let own = Arc::new(InboxRef::agent(&keyspace, name)?);
        let corr_prefix = format!("{:016x}", rand::random::<u64>());
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                keyspace,
                name: name.to_owned(),
                own,
                config,
                counters: Counters::default(),
                recovered: AtomicBool::new(false),
                corr_prefix,
                corr_seq: AtomicU64::new(0),
                wake: OnceCell::new(),
                forget: std::sync::OnceLock::new(),
                acks: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Its settings.
    pub fn config(&self) -> &AgentConfig {
        &self.inner.config
    }

    /// Its inbox's keys, in the script's order: msgs, ready, asks, pending, tries, replies,
    /// reply_exp, meta, alive, dead.
    pub fn keys(&self) -> &[Key] {
        &self.inner.own.keys
    }

    /// The channel on which sends wake this agent up (a sharded channel on a cluster).
    pub fn wake_channel(&self) -> &str {
        &self.inner.own.wake
    }

    /// What this handle (and its clones) did, counted in this process.
    pub fn stats(&self) -> AgentStats {
        let c = &self.inner.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AgentStats {
            sent: l(&c.sent),
            received: l(&c.received),
            acked: l(&c.acked),
            expired: l(&c.expired),
            undecodable: l(&c.undecodable),
            late_replies: l(&c.late_replies),
            replies: l(&c.replies),
            timeouts: l(&c.timeouts),
            no_responders: l(&c.no_responders),
        }
    }

    /// Forgets the stored copy of a reply that came by push, later, batched with others: one
    /// script per batch, off the ask's path. A forget that fails leaves the copy to expire
    /// with its ask (then counted late).
    fn forget_later(&self, corr: &str) {
        let tx = self.inner.forget.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(forget_loop(Arc::downgrade(&self.inner), rx));
            tx
        });
        let _ = tx.send(corr.to_owned());
    }

    fn next_corr(&self) -> String {
        let n = self.inner.corr_seq.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.inner.corr_prefix)
    }
}
