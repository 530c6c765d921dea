//! The inbox operations of a [`MeshAgent`]: sends into any inbox, receives, acks, presence and
//! stats of its own (and, through `capability`, of a capability's).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use coordkit_core::redis;
use coordkit_core::time::{RetryDelay, duration_ms};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::error::{AgentError, Result};
use super::types::{Delivery, InboxStats, SendOptions, Sent};
use super::wire::{self, Body, Outgoing, RawReceived, RawSent, RawTaken, SendArgs, code};
use super::{InboxRef, MeshAgent, add, wake};

impl MeshAgent {
    pub(super) fn now_arg(&self) -> String {
        self.inner.config.clock.arg()
    }

    /// The inbox of `agent` (validating the name).
    pub(super) fn inbox_of(&self, agent: &str) -> Result<Arc<InboxRef>> {
        if agent == self.inner.name {
            return Ok(self.inner.own.clone());
        }
        Ok(Arc::new(InboxRef::agent(&self.inner.keyspace, agent)?))
    }

    pub(super) fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>> {
        let bytes = serde_json::to_vec(value).map_err(AgentError::Encode)?;
        self.check_size(bytes.len())?;
        Ok(bytes)
    }

    pub(super) fn check_size(&self, len: usize) -> Result<()> {
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
        let target = self.inbox_of(to)?;
        self.send_message(&target, message, options).await
    }

    /// A message into `target`'s messages lane.
    pub(super) async fn send_message<T: Serialize>(
        &self,
        target: &InboxRef,
        message: &T,
        options: SendOptions,
    ) -> Result<Sent> {
        let payload = self.encode(message)?;
        let expiry_ms = options.expiry.map_or(0, |d| duration_ms(d).max(1));
        let outgoing = Outgoing::message(expiry_ms, options.only_if_alive);
        let answer = self.send_raw(target, outgoing, &payload).await?;
        Ok(match answer {
            RawSent::Sent { id, trimmed, .. } => Sent::Stored {
                id: id.to_string(),
                trimmed,
            },
            RawSent::NoResponders | RawSent::Late => Sent::NoReceiver,
        })
    }

    /// One send script call: `payload` wrapped in a body from this agent.
    pub(super) async fn send_raw(
        &self,
        target: &InboxRef,
        outgoing: Outgoing<'_>,
        payload: &[u8],
    ) -> Result<RawSent> {
        let body = wire::encode_body(&self.inner.name, outgoing.corr, payload);
        let answer = self.send_call(target, outgoing, body).await?;
        match answer {
            RawSent::Sent { .. } => add(&self.inner.counters.sent, 1),
            RawSent::Late => add(&self.inner.counters.late_replies, 1),
            RawSent::NoResponders => {}
        }
        Ok(answer)
    }

    /// The send script on `target` with `body` as given.
    async fn send_call(
        &self,
        target: &InboxRef,
        outgoing: Outgoing<'_>,
        body: Vec<u8>,
    ) -> Result<RawSent> {
        let Outgoing {
            lane,
            corr,
            expiry_ms,
            deadline_ms,
            require_alive,
        } = outgoing;
        if lane == code::LANE_REPLY {
            let keys = &target.keys;
            let mut call = wire::REPLY.prepare();
            call.key(&keys[wire::REPLIES])
                .key(&keys[wire::REPLY_EXP])
                .key(&keys[wire::META])
                .arg(self.now_arg())
                .arg(deadline_ms)
                .arg(corr)
                .arg_bytes(body)
                .arg(target.push.as_str())
                .arg(self.publish_command());
            let value: redis::Value = call.invoke(&self.inner.pool).await?;
            return wire::decode_sent(&value);
        }
        let require_alive = match (require_alive, target.capability) {
            (false, _) => code::ALIVE_ANY,
            (true, false) => code::ALIVE_AGENT,
            (true, true) => code::ALIVE_MEMBER,
        };
        // A request to a live server is delivered by its send (pushed, pending for the
        // server's visibility timeout): the server takes nothing, one round trip saved. One
        // to a receiver that does not serve goes into its lane, with a second call.
        if lane == code::LANE_REQUEST && require_alive != code::ALIVE_ANY {
            let keys = &target.keys;
            let mut call = wire::REQUEST.prepare();
            call.key(&keys[wire::MSGS])
                .key(&keys[wire::PENDING])
                .key(&keys[wire::TRIES])
                .key(&keys[wire::META])
                .key(&keys[wire::ALIVE])
                .arg(self.now_arg())
                .arg_bytes(wire::pack_request(expiry_ms, deadline_ms, require_alive))
                .arg_bytes(body.clone())
                .arg(target.push.as_str())
                .arg(self.publish_command());
            let value: redis::Value = call.invoke(&self.inner.pool).await?;
            if let Some(sent) = wire::decode_request(&value)? {
                return Ok(sent);
            }
        }
        let args = SendArgs {
            lane,
            expiry_ms,
            deadline_ms,
            max_age_ms: duration_ms(self.inner.config.max_age),
            max_waiting: self.inner.config.max_messages,
            require_alive,
        };
        let mut call = wire::call(&target.keys, "send", &self.now_arg());
        call.arg_bytes(args.pack())
            .arg_bytes(body)
            .arg(target.wake.as_str())
            .arg(self.publish_command());
        let value: redis::Value = call.invoke(&self.inner.pool).await?;
        wire::decode_sent(&value)
    }

    /// How the scripts publish wake-ups and pushes: sharded on a cluster (the channels share
    /// their inbox's hash tag, so the traffic spreads over the shards).
    pub(super) fn publish_command(&self) -> &'static str {
        match self.inner.pool.topology() {
            coordkit_core::Topology::Cluster => "SPUBLISH",
            coordkit_core::Topology::Standalone => "PUBLISH",
        }
    }

    /// Removes replies that reached this agent by push (one call for all of them).
    pub(super) async fn forget_raw(&self, corrs: &[String]) -> Result<u64> {
        let keys = &self.inner.own.keys;
        let mut call = wire::FORGET.prepare();
        call.key(&keys[wire::REPLIES]).key(&keys[wire::REPLY_EXP]);
        for corr in corrs {
            call.arg(corr.as_str());
        }
        Ok(call.invoke(&self.inner.pool).await?)
    }

    /// One receive script call on `lane` of `inbox`. The agent's own inbox takes back, on the
    /// handle's first receive, every delivery an earlier run left pending; a capability's never
    /// does (its other members hold them).
    pub(super) async fn receive_raw(
        &self,
        inbox: &InboxRef,
        lane: u8,
        max: usize,
    ) -> Result<RawReceived> {
        let config = &self.inner.config;
        // One receive of a handle takes back what an earlier run left pending; a receive that
        // runs at the same time does not (it would take back the first one's deliveries).
        let recover = !inbox.capability
            && self
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
        let mut call = wire::call(&inbox.keys, "receive", &self.now_arg());
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

    /// Decodes raw deliveries of `inbox` into `T`; one that does not decode is dead-lettered
    /// with the reason (never returned, never an error of the call).
    pub(super) async fn decode_deliveries<T: DeserializeOwned>(
        &self,
        inbox: &Arc<InboxRef>,
        raw: Vec<wire::RawDelivery>,
    ) -> Result<Vec<Delivery<T>>> {
        let mut out = Vec::with_capacity(raw.len());
        let mut bad: Vec<(String, String)> = Vec::new();
        for d in raw {
            let decoded = Body::decode(&d.body).and_then(|body| {
                serde_json::from_slice::<T>(&body.payload)
                    .map(|payload| (body.from, payload))
                    .map_err(|e| format!("the payload is no {}: {e}", std::any::type_name::<T>()))
            });
            match decoded {
                Ok((from, payload)) => out.push(Delivery {
                    id: d.id,
                    from,
                    attempt: d.attempt,
                    sent_ms: d.sent_ms,
                    expires_ms: d.expires_ms,
                    payload,
                    agent: self.clone(),
                    inbox: inbox.clone(),
                }),
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
            self.ack_raw(inbox, &ids, &reasons).await?;
        }
        Ok(out)
    }

    /// Takes up to `max` messages (1 to 1,000) from the inbox without waiting: each is
    /// delivered (at least once) and must be acknowledged. Stale messages are dropped and
    /// counted; a message whose payload does not decode as `T` is dead-lettered (counted
    /// `undecodable`). The first receive of a handle also takes back every delivery an earlier
    /// run of this agent left unacknowledged.
    pub async fn receive<T: DeserializeOwned>(&self, max: usize) -> Result<Vec<Delivery<T>>> {
        let own = self.inner.own.clone();
        self.receive_from(&own, max).await
    }

    pub(super) async fn receive_from<T: DeserializeOwned>(
        &self,
        inbox: &Arc<InboxRef>,
        max: usize,
    ) -> Result<Vec<Delivery<T>>> {
        check_max(max)?;
        let raw = self.receive_raw(inbox, code::LANE_MESSAGE, max).await?;
        self.decode_deliveries(inbox, raw.deliveries).await
    }

    /// Waits for the next message: wakes up on the agent's wake channel (a send publishes
    /// there), on a redelivery coming due, or on the fallback timer; never polls. While Redis
    /// cannot be reached it keeps trying (with backoff), so a wait outlives a reconnection;
    /// other errors (bad stored data) end it.
    pub async fn recv<T: DeserializeOwned>(&self) -> Result<Delivery<T>> {
        let own = self.inner.own.clone();
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
            let raw = match self.receive_raw(&own, code::LANE_MESSAGE, 1).await {
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
            let took = !raw.deliveries.is_empty();
            if let Some(d) = self
                .decode_deliveries::<T>(&own, raw.deliveries)
                .await?
                .pop()
            {
                return Ok(d);
            }
            // What it took did not decode (dead-lettered): more may wait, look again at once.
            if !took {
                self.sleep_or_wake(&mut wake, wait).await;
            }
        }
    }

    /// How long to wait before looking again: until the next redelivery, at most the fallback.
    pub(super) fn wait_for(&self, raw: &RawReceived) -> Duration {
        let fallback = self.inner.config.fallback_wake;
        match raw.next_deadline_ms {
            Some(at) if matches!(self.inner.config.clock, coordkit_core::Clock::Server) => {
                Duration::from_millis(at.saturating_sub(raw.now_ms).max(1)).min(fallback)
            }
            _ => fallback,
        }
    }

    pub(super) async fn sleep_or_wake(&self, wake: &mut watch::Receiver<u64>, wait: Duration) {
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
    pub(super) async fn wake_signal(&self) -> Result<watch::Receiver<u64>> {
        Ok(self.own_wake().await?.signal(code::LANE_MESSAGE))
    }

    /// The agent's own subscription: wake-ups, pushed replies and requests (started on first
    /// use).
    pub(super) async fn own_wake(&self) -> Result<&wake::Wake> {
        self.inner
            .wake
            .get_or_try_init(|| {
                wake::Wake::start(
                    &self.inner.pool,
                    &self.inner.own.wake,
                    Some(&self.inner.own.push),
                    self.inner.config.fallback_wake,
                )
            })
            .await
    }

    /// Acknowledges deliveries of the agent's own inbox by id; answers how many were pending
    /// (the others had been acknowledged already).
    pub async fn ack(&self, ids: &[&str]) -> Result<u64> {
        let own = self.inner.own.clone();
        self.ack_in(&own, ids).await
    }

    pub(super) async fn ack_in(&self, inbox: &Arc<InboxRef>, ids: &[&str]) -> Result<u64> {
        let n = if let [id] = ids {
            // One delivery: grouped with the handle's other acks of the moment.
            let acks = self.inner.acks.get_or_init(|| {
                super::acks::grouped(&self.inner.pool, self.inner.config.clock.clone())
            });
            let op = super::acks::AckOp {
                inbox: inbox.clone(),
                id: (*id).to_owned(),
            };
            acks.submit(&inbox.keys[0], op).await?
        } else {
            let reasons = vec![""; ids.len()];
            let found = self.ack_raw(inbox, ids, &reasons).await?;
            found.iter().filter(|f| **f == 1).count() as u64
        };
        add(&self.inner.counters.acked, n);
        Ok(n)
    }

    /// The ack script: each id acknowledged (`""`) or dead-lettered with its reason.
    pub(super) async fn ack_raw(
        &self,
        inbox: &InboxRef,
        ids: &[&str],
        reasons: &[&str],
    ) -> Result<Vec<u64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = wire::call(&inbox.keys, "ack", &self.now_arg());
        call.arg(ids.len());
        for id in ids {
            call.arg(*id);
        }
        for reason in reasons {
            call.arg(*reason);
        }
        Ok(call.invoke(&self.inner.pool).await?)
    }

    /// Marks the agent alive for its [`presence_ttl`](super::MeshAgentBuilder::presence_ttl):
    /// asks to it are accepted until then. A [`Server`](super::Server) beats on its own.
    pub async fn heartbeat(&self) -> Result<()> {
        let own = self.inner.own.clone();
        self.alive(&own, duration_ms(self.inner.config.presence_ttl), false)
            .await?;
        Ok(())
    }

    /// Marks the agent gone: asks to it answer
    /// [`Reply::NoResponders`](super::Reply::NoResponders) at once. Its inbox stays; messages
    /// still wait for it.
    pub async fn leave(&self) -> Result<()> {
        let own = self.inner.own.clone();
        self.alive(&own, 0, false).await?;
        Ok(())
    }

    /// This agent's presence in `inbox`: its own (and then in the namespace's registry,
    /// `namespace`), or its membership of a capability; `ttl_ms` 0 leaves. A `serving`
    /// presence records the agent's visibility timeout beside it: requests are then pushed to
    /// it, pending for that long (only a server takes pushed requests); any other presence
    /// gets them through the lane.
    pub(super) async fn alive(&self, inbox: &InboxRef, ttl_ms: u64, serving: bool) -> Result<u64> {
        let visibility_ms = if serving {
            duration_ms(self.inner.config.visibility_timeout)
        } else {
            0
        };
        let until = self.presence_call(inbox, ttl_ms, visibility_ms).await?;
        if !inbox.capability {
            self.register(ttl_ms).await?;
        }
        Ok(until)
    }

    /// The presence script on `inbox` alone (see [`MeshAgent::alive`]).
    pub(super) async fn presence_call(
        &self,
        inbox: &InboxRef,
        ttl_ms: u64,
        visibility_ms: u64,
    ) -> Result<u64> {
        let mut call = wire::call(&inbox.keys, "alive", &self.now_arg());
        call.arg(ttl_ms);
        call.arg(if inbox.capability {
            self.inner.name.as_str()
        } else {
            ""
        });
        call.arg(visibility_ms);
        Ok(call.invoke(&self.inner.pool).await?)
    }

    /// The agent's inbox as stored: depth, pending, oldest age, presence, counters.
    pub async fn inbox_stats(&self) -> Result<InboxStats> {
        let own = self.inner.own.clone();
        Ok(self.stats_of(&own).await?.0)
    }

    /// An inbox's stats, and the live members of a capability's.
    pub(super) async fn stats_of(&self, inbox: &InboxRef) -> Result<(InboxStats, u64)> {
        let mut call = wire::call(&inbox.keys, "stats", &self.now_arg());
        call.arg(if inbox.capability { "1" } else { "0" });
        let value: redis::Value = call.invoke(&self.inner.pool).await?;
        let r = coordkit_core::wire::Reply::array("mesh-inbox", &value)?;
        let now = r.u64(15, "stats now")?;
        let oldest = wire::some(r.i64(4, "stats oldest")?);
        let alive = r.i64(5, "stats alive")?;
        let (alive_for, members) = if inbox.capability {
            (None, wire::some(alive).unwrap_or(0))
        } else {
            let until = wire::some(alive);
            (
                until.map(|at| Duration::from_millis(at.saturating_sub(now))),
                0,
            )
        };
        let stats = InboxStats {
            waiting_messages: r.u64(0, "stats ready")?,
            waiting_requests: r.u64(1, "stats asks")?,
            pending: r.u64(2, "stats pending")?,
            replies: r.u64(3, "stats replies")?,
            oldest_age: oldest.map(|at| Duration::from_millis(now.saturating_sub(at))),
            alive_for,
            sent: r.u64(7, "stats sent")?,
            delivered: r.u64(8, "stats delivered")?,
            acked: r.u64(9, "stats acked")?,
            expired: r.u64(10, "stats expired")?,
            trimmed: r.u64(11, "stats trimmed")?,
            late: r.u64(12, "stats late")?,
            dead: r.u64(13, "stats dead")?,
            dead_letters: r.u64(14, "stats dead letters")?,
        };
        Ok((stats, members))
    }

    /// The take script: the reply to `corr`, if it is there.
    pub(super) async fn take_raw(&self, corr: &str) -> Result<RawTaken> {
        let mut call = wire::call(&self.inner.own.keys, "take", &self.now_arg());
        call.arg(corr);
        let value: redis::Value = call.invoke(&self.inner.pool).await?;
        wire::decode_taken(&value)
    }
}

pub(super) fn check_max(max: usize) -> Result<()> {
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
    /// One send with a raw body, exactly as given, to an agent (or with `capability`, to a
    /// capability).
    pub async fn testing_send(
        &self,
        to: &str,
        capability: bool,
        outgoing: Outgoing<'_>,
        body: Vec<u8>,
    ) -> Result<RawSent> {
        let target = self.testing_inbox(to, capability)?;
        self.send_call(&target, outgoing, body).await
    }

    fn testing_inbox(&self, name: &str, capability: bool) -> Result<Arc<InboxRef>> {
        if capability {
            Ok(Arc::new(InboxRef::capability(&self.inner.keyspace, name)?))
        } else {
            self.inbox_of(name)
        }
    }

    /// The agent's own inbox, or `capability`'s.
    fn testing_own_or(&self, capability: Option<&str>) -> Result<Arc<InboxRef>> {
        match capability {
            Some(c) => self.testing_inbox(c, true),
            None => Ok(self.inner.own.clone()),
        }
    }

    /// One receive of the agent's own inbox (or `capability`'s), raw; `recover` forces (or
    /// skips) taking back every pending delivery of the agent's own (a capability's never).
    pub async fn testing_receive(
        &self,
        capability: Option<&str>,
        lane: u8,
        max: usize,
        recover: bool,
    ) -> Result<RawReceived> {
        self.inner.recovered.store(!recover, Ordering::Release);
        let inbox = self.testing_own_or(capability)?;
        self.receive_raw(&inbox, lane, max).await
    }

    /// One ack call on the agent's own inbox (or `capability`'s), raw: a reason dead-letters.
    pub async fn testing_ack(
        &self,
        capability: Option<&str>,
        ids: &[&str],
        reasons: &[&str],
    ) -> Result<Vec<u64>> {
        let inbox = self.testing_own_or(capability)?;
        self.ack_raw(&inbox, ids, reasons).await
    }

    /// One take, raw.
    pub async fn testing_take(&self, corr: &str) -> Result<RawTaken> {
        self.take_raw(corr).await
    }

    /// One forget of the agent's stored replies, raw.
    pub async fn testing_forget(&self, corrs: &[String]) -> Result<u64> {
        self.forget_raw(corrs).await
    }

    /// One presence call: `ttl_ms` 0 leaves; answers the until time. With `capability`, this
    /// agent's membership of that capability; `serving` as a server's.
    pub async fn testing_alive(
        &self,
        capability: Option<&str>,
        ttl_ms: u64,
        serving: bool,
    ) -> Result<u64> {
        let inbox = self.testing_own_or(capability)?;
        self.alive(&inbox, ttl_ms, serving).await
    }
}
