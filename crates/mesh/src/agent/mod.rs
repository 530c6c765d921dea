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
//!   stored.
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
//! ## Keys (one hash tag per inbox)
//!
//! `msgs` (hash id → record: sent, expires, lane, then sender, correlation id, payload),
//! `ready` and `asks` (lists of waiting messages and requests), `pending` (zset by visibility
//! deadline), `tries` (delivery counts), `replies` and `reply_exp` (replies by correlation id,
//! and their deadlines), `meta` (id sequence and counters), `alive` (the presence), `dead`
//! (dead letters). The wake channel is `<ns>:{inbox:<agent>}:wake`.

mod ask;
mod config;
pub(crate) mod error;
mod serve;
mod types;
mod wake;
pub(crate) mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use coordkit_core::time::{RetryDelay, duration_ms};
use coordkit_core::{Key, Keyspace, Pool, redis};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{OnceCell, watch};

pub use config::{AgentConfig, DEFAULT_MAX_PAYLOAD_BYTES, MeshAgentBuilder};
pub use error::{AgentError, Result};
pub use serve::Server;
pub use types::{AgentStats, Delivery, InboxStats, Reply, SendOptions, Sent};
use wire::{Body, RawReceived, RawSent, RawTaken, SendArgs, code};

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

struct Inner {
    pool: Pool,
    keyspace: Keyspace,
    name: String,
    keys: Vec<Key>,
    wake_channel: String,
    config: AgentConfig,
    counters: Counters,
    /// Whether a receive already took back the deliveries an earlier run left pending.
    recovered: AtomicBool,
    corr_prefix: String,
    corr_seq: AtomicU64,
    wake: OnceCell<wake::Wake>,
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
        let keys: Vec<&str> = self.inner.keys.iter().map(|k| k.as_str()).collect();
        f.debug_struct("MeshAgent")
            .field("name", &self.inner.name)
            .field("keys", &keys)
            .finish()
    }
}

/// The kind of an inbox's keys in the keyspace.
const KIND: &str = "inbox";

impl MeshAgent {
    fn from_config(
        pool: Pool,
        keyspace: Keyspace,
        name: &str,
        config: AgentConfig,
    ) -> Result<Self> {
        let instance = keyspace.instance(KIND, name)?;
        let keys = wire::inbox_keys(&instance);
        let wake_channel = instance.key("wake").as_str().to_owned();
        let corr_prefix = format!("{:016x}", rand::random::<u64>());
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                keyspace,
                name: name.to_owned(),
                keys,
                wake_channel,
                config,
                counters: Counters::default(),
                recovered: AtomicBool::new(false),
                corr_prefix,
                corr_seq: AtomicU64::new(0),
                wake: OnceCell::new(),
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
        &self.inner.keys
    }

    /// The channel on which sends wake this agent up.
    pub fn wake_channel(&self) -> &str {
        &self.inner.wake_channel
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

    fn now_arg(&self) -> String {
        self.inner.config.clock.arg()
    }

    /// The keys of `agent`'s inbox (validating the name).
    fn keys_of(&self, agent: &str) -> Result<(Vec<Key>, String)> {
        if agent == self.inner.name {
            return Ok((self.inner.keys.clone(), self.inner.wake_channel.clone()));
        }
        let instance = self.inner.keyspace.instance(KIND, agent)?;
        let wake = instance.key("wake").as_str().to_owned();
        Ok((wire::inbox_keys(&instance), wake))
    }

    fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>> {
        let bytes = serde_json::to_vec(value).map_err(AgentError::Encode)?;
        self.check_size(bytes.len())?;
        Ok(bytes)
    }

    fn check_size(&self, len: usize) -> Result<()> {
        let max = self.inner.config.max_payload_bytes;
        if len > max {
            return Err(AgentError::PayloadTooLarge { len, max });
        }
        Ok(())
    }

    /// Sends `message` (as JSON) to `to`'s inbox: one script stores it within the receiver's
    /// caps and wakes the receiver. It waits there while the receiver is offline.
    pub async fn send<T: Serialize>(&self, to: &str, message: &T) -> Result<Sent> {
        self.send_with(to, message, SendOptions::default()).await
    }

    /// [`MeshAgent::send`] with options: an expiry of the message's own, or only to a live
    /// receiver.
    pub async fn send_with<T: Serialize>(
        &self,
        to: &str,
        message: &T,
        options: SendOptions,
    ) -> Result<Sent> {
        let payload = self.encode(message)?;
        let expiry_ms = options.expiry.map_or(0, |d| duration_ms(d).max(1));
        let answer = self
            .send_raw(
                to,
                code::LANE_MESSAGE,
                "",
                payload,
                expiry_ms,
                0,
                options.only_if_alive,
            )
            .await?;
        Ok(match answer {
            RawSent::Sent { id, trimmed, .. } => Sent::Stored {
                id: id.to_string(),
                trimmed,
            },
            RawSent::NoResponders | RawSent::Late => Sent::NoReceiver,
        })
    }

    /// One send script call: `payload` wrapped in a body from this agent.
    #[allow(clippy::too_many_arguments)]
    async fn send_raw(
        &self,
        to: &str,
        lane: u8,
        corr: &str,
        payload: Vec<u8>,
        expiry_ms: u64,
        deadline_ms: u64,
        require_alive: bool,
    ) -> Result<RawSent> {
        let body = Body {
            from: self.inner.name.clone(),
            corr: corr.to_owned(),
            payload,
        }
        .encode();
        let value = self
            .send_call(to, lane, corr, body, expiry_ms, deadline_ms, require_alive)
            .await?;
        let answer = wire::decode_sent(&value)?;
        match answer {
            RawSent::Sent { .. } => add(&self.inner.counters.sent, 1),
            RawSent::Late => add(&self.inner.counters.late_replies, 1),
            RawSent::NoResponders => {}
        }
        Ok(answer)
    }

    /// The send script on `to`'s inbox with `body` as given.
    #[allow(clippy::too_many_arguments)]
    async fn send_call(
        &self,
        to: &str,
        lane: u8,
        corr: &str,
        body: Vec<u8>,
        expiry_ms: u64,
        deadline_ms: u64,
        require_alive: bool,
    ) -> Result<redis::Value> {
        let (keys, wake) = self.keys_of(to)?;
        let args = SendArgs {
            lane,
            expiry_ms,
            deadline_ms,
            max_age_ms: duration_ms(self.inner.config.max_age),
            max_waiting: self.inner.config.max_messages,
            require_alive,
        };
        let mut call = wire::call(&keys, "send", &self.now_arg());
        call.arg_bytes(args.pack())
            .arg_bytes(body)
            .arg(wake.as_str())
            .arg(corr);
        Ok(call.invoke(&self.inner.pool).await?)
    }

    /// One receive script call on `lane` of this agent's inbox.
    async fn receive_raw(&self, lane: u8, max: usize) -> Result<RawReceived> {
        let config = &self.inner.config;
        // One receive of a handle takes back what an earlier run left pending; a receive that
        // runs at the same time does not (it would take back the first one's deliveries).
        let recover = self
            .inner
            .recovered
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        let args = wire::pack_receive(
            lane,
            max as u64,
            duration_ms(config.visibility_timeout),
            duration_ms(config.max_age),
            recover,
        );
        let mut call = wire::call(&self.inner.keys, "receive", &self.now_arg());
        call.arg_bytes(args);
        let value: redis::Value = match call.invoke(&self.inner.pool).await {
            Ok(value) => value,
            Err(e) => {
                if recover {
                    self.inner.recovered.store(false, Ordering::Release);
                }
                return Err(e.into());
            }
        };
        let received = wire::decode_received(&value)?;
        add(&self.inner.counters.expired, received.expired);
        Ok(received)
    }

    /// Decodes raw deliveries into `T`; one that does not decode is dead-lettered with the
    /// reason (never returned, never an error of the call).
    async fn decode_deliveries<T: DeserializeOwned>(
        &self,
        raw: Vec<wire::RawDelivery>,
    ) -> Result<Vec<(Delivery<T>, String)>> {
        let mut out = Vec::with_capacity(raw.len());
        let mut bad: Vec<(String, String)> = Vec::new();
        for d in raw {
            let decoded = Body::decode(&d.body).and_then(|body| {
                serde_json::from_slice::<T>(&body.payload)
                    .map(|payload| (body.from, body.corr, payload))
                    .map_err(|e| format!("the payload is no {}: {e}", std::any::type_name::<T>()))
            });
            match decoded {
                Ok((from, corr, payload)) => out.push((
                    Delivery {
                        id: d.id,
                        from,
                        attempt: d.attempt,
                        sent_ms: d.sent_ms,
                        expires_ms: d.expires_ms,
                        payload,
                        agent: self.clone(),
                    },
                    corr,
                )),
                Err(reason) => bad.push((d.id, format!("undecodable: {reason}"))),
            }
        }
        add(&self.inner.counters.received, out.len() as u64);
        if !bad.is_empty() {
            add(&self.inner.counters.undecodable, bad.len() as u64);
            tracing::warn!(
                agent = %self.inner.name,
                "dead-lettered {} undecodable deliveries: {}",
                bad.len(),
                bad[0].1
            );
            let ids: Vec<&str> = bad.iter().map(|(id, _)| id.as_str()).collect();
            let reasons: Vec<&str> = bad.iter().map(|(_, r)| r.as_str()).collect();
            self.ack_raw(&ids, &reasons).await?;
        }
        Ok(out)
    }

    /// Takes up to `max` messages (1 to 1,000) from the inbox without waiting: each is
    /// delivered (at least once) and must be acknowledged. Stale messages are dropped and
    /// counted; a message whose payload does not decode as `T` is dead-lettered (counted
    /// `undecodable`). The first receive of a handle also takes back every delivery an earlier
    /// run of this agent left unacknowledged.
    pub async fn receive<T: DeserializeOwned>(&self, max: usize) -> Result<Vec<Delivery<T>>> {
        check_max(max)?;
        let raw = self.receive_raw(code::LANE_MESSAGE, max).await?;
        Ok(self
            .decode_deliveries(raw.deliveries)
            .await?
            .into_iter()
            .map(|(d, _)| d)
            .collect())
    }

    /// Waits for the next message: wakes up on the agent's wake channel (a send publishes
    /// there), on a redelivery coming due, or on the fallback timer; never polls. While Redis
    /// cannot be reached it keeps trying (with backoff), so a wait outlives a reconnection;
    /// other errors (bad stored data) end it.
    pub async fn recv<T: DeserializeOwned>(&self) -> Result<Delivery<T>> {
        let mut retry = RetryDelay::new(Duration::from_millis(10), Duration::from_secs(1));
        let mut wake = loop {
            match self.wake_signal().await {
                Ok(wake) => break wake,
                Err(e) if e.is_retryable() => tokio::time::sleep(retry.next_delay()).await,
                Err(e) => return Err(e),
            }
        };
        loop {
            wake.borrow_and_update();
            let raw = match self.receive_raw(code::LANE_MESSAGE, 1).await {
                Ok(raw) => raw,
                Err(e) if e.is_retryable() => {
                    tracing::debug!(agent = %self.inner.name, "receiving: {e}; trying again");
                    tokio::time::sleep(retry.next_delay()).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            retry.reset();
            let wait = self.wait_for(&raw);
            let mut got = self.decode_deliveries::<T>(raw.deliveries).await?;
            if let Some((d, _)) = got.pop() {
                return Ok(d);
            }
            self.sleep_or_wake(&mut wake, wait).await;
        }
    }

    /// How long to wait before looking again: until the next redelivery, at most the fallback.
    fn wait_for(&self, raw: &RawReceived) -> Duration {
        let fallback = self.inner.config.fallback_wake;
        match raw.next_deadline_ms {
            Some(at) if matches!(self.inner.config.clock, coordkit_core::Clock::Server) => {
                Duration::from_millis(at.saturating_sub(raw.now_ms).max(1)).min(fallback)
            }
            _ => fallback,
        }
    }

    async fn sleep_or_wake(&self, wake: &mut watch::Receiver<u64>, wait: Duration) {
        tokio::select! {
            changed = wake.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(wait).await;
                }
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }

    /// A signal that changes on every wake-up of this agent (subscribing on first use).
    async fn wake_signal(&self) -> Result<watch::Receiver<u64>> {
        let wake = self
            .inner
            .wake
            .get_or_try_init(|| {
                wake::Wake::start(
                    &self.inner.pool,
                    &self.inner.wake_channel,
                    self.inner.config.fallback_wake,
                )
            })
            .await?;
        Ok(wake.signal())
    }

    /// Acknowledges deliveries by id; answers how many were pending (the others had been
    /// acknowledged already).
    pub async fn ack(&self, ids: &[&str]) -> Result<u64> {
        let reasons = vec![""; ids.len()];
        let found = self.ack_raw(ids, &reasons).await?;
        let n = found.iter().filter(|f| **f == 1).count() as u64;
        add(&self.inner.counters.acked, n);
        Ok(n)
    }

    /// The ack script: each id acknowledged (`""`) or dead-lettered with its reason.
    async fn ack_raw(&self, ids: &[&str], reasons: &[&str]) -> Result<Vec<u64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = wire::call(&self.inner.keys, "ack", &self.now_arg());
        call.arg(ids.len());
        for id in ids {
            call.arg(*id);
        }
        for reason in reasons {
            call.arg(*reason);
        }
        Ok(call.invoke(&self.inner.pool).await?)
    }

    /// Marks the agent alive for its [`presence_ttl`](MeshAgentBuilder::presence_ttl): asks
    /// to it are accepted until then. A [`Server`] beats on its own.
    pub async fn heartbeat(&self) -> Result<()> {
        self.alive(duration_ms(self.inner.config.presence_ttl))
            .await?;
        Ok(())
    }

    /// Marks the agent gone: asks to it answer [`Reply::NoResponders`] at once. Its inbox
    /// stays; messages still wait for it.
    pub async fn leave(&self) -> Result<()> {
        self.alive(0).await?;
        Ok(())
    }

    async fn alive(&self, ttl_ms: u64) -> Result<u64> {
        let mut call = wire::call(&self.inner.keys, "alive", &self.now_arg());
        call.arg(ttl_ms);
        Ok(call.invoke(&self.inner.pool).await?)
    }

    /// The inbox as stored: depth, pending, oldest age, presence, counters.
    pub async fn inbox_stats(&self) -> Result<InboxStats> {
        let call = wire::call(&self.inner.keys, "stats", &self.now_arg());
        let value: redis::Value = call.invoke(&self.inner.pool).await?;
        let r = coordkit_core::wire::Reply::array("mesh-inbox", &value)?;
        let now = r.u64(15, "stats now")?;
        let oldest = wire::some(r.i64(4, "stats oldest")?);
        let alive = wire::some(r.i64(5, "stats alive")?);
        Ok(InboxStats {
            waiting_messages: r.u64(0, "stats ready")?,
            waiting_requests: r.u64(1, "stats asks")?,
            pending: r.u64(2, "stats pending")?,
            replies: r.u64(3, "stats replies")?,
            oldest_age: oldest.map(|at| Duration::from_millis(now.saturating_sub(at))),
            alive_for: alive.map(|at| Duration::from_millis(at.saturating_sub(now))),
            sent: r.u64(7, "stats sent")?,
            delivered: r.u64(8, "stats delivered")?,
            acked: r.u64(9, "stats acked")?,
            expired: r.u64(10, "stats expired")?,
            trimmed: r.u64(11, "stats trimmed")?,
            late: r.u64(12, "stats late")?,
            dead: r.u64(13, "stats dead")?,
            dead_letters: r.u64(14, "stats dead letters")?,
        })
    }

    /// The take script: the reply to `corr`, if it is there.
    async fn take_raw(&self, corr: &str) -> Result<RawTaken> {
        let mut call = wire::call(&self.inner.keys, "take", &self.now_arg());
        call.arg(corr);
        let value: redis::Value = call.invoke(&self.inner.pool).await?;
        wire::decode_taken(&value)
    }

    fn next_corr(&self) -> String {
        let n = self.inner.corr_seq.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.inner.corr_prefix)
    }
}

fn check_max(max: usize) -> Result<()> {
    if !(1..=1_000).contains(&max) {
        return Err(coordkit_core::Error::invalid_config("max", "must be 1 to 1000").into());
    }
    Ok(())
}

/// Raw script calls with chosen arguments, for this crate's model and corruption tests; not
/// part of the API.
#[cfg(feature = "testing")]
#[doc(hidden)]
impl MeshAgent {
    /// One send with a raw body, exactly as given.
    #[allow(clippy::too_many_arguments)]
    pub async fn testing_send(
        &self,
        to: &str,
        lane: u8,
        corr: &str,
        body: Vec<u8>,
        expiry_ms: u64,
        deadline_ms: u64,
        require_alive: bool,
    ) -> Result<RawSent> {
        let value = self
            .send_call(to, lane, corr, body, expiry_ms, deadline_ms, require_alive)
            .await?;
        wire::decode_sent(&value)
    }

    /// One receive, raw; `recover` forces (or skips) taking back every pending delivery.
    pub async fn testing_receive(
        &self,
        lane: u8,
        max: usize,
        recover: bool,
    ) -> Result<RawReceived> {
        self.inner.recovered.store(!recover, Ordering::Release);
        self.receive_raw(lane, max).await
    }

    /// One ack call, raw: a reason dead-letters.
    pub async fn testing_ack(&self, ids: &[&str], reasons: &[&str]) -> Result<Vec<u64>> {
        self.ack_raw(ids, reasons).await
    }

    /// One take, raw.
    pub async fn testing_take(&self, corr: &str) -> Result<RawTaken> {
        self.take_raw(corr).await
    }

    /// One presence call: `ttl_ms` 0 leaves; answers the until time.
    pub async fn testing_alive(&self, ttl_ms: u64) -> Result<u64> {
        self.alive(ttl_ms).await
    }
}
