//! [`AgentRegistry::events`]: one registry's agent events, typed.

use coordkit_core::{Subscriber, SubscriberStats};
use serde::Deserialize;

use crate::agents::{AgentRegistry, Status};
use crate::error::Result;
use crate::store::EVENT_SOURCE;

/// The kinds the agent scripts publish (`lua/agent_set.lua`, `lua/agent_query.lua`).
const AGENT_STATUS: &str = "agent_status";
const AGENT_EXPIRED: &str = "agent_expired";

/// One event of one agent of one registry, from the script that made the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEvent {
    /// The registry's name.
    pub registry: String,
    /// The agent (the event's `entity`).
    pub agent: String,
    /// When, in ms since the Unix epoch on the server's clock (or the manual clock).
    pub ts_ms: u64,
    /// What happened.
    pub kind: AgentEventKind,
}

/// What happened to an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentEventKind {
    /// Its status changed ([`AgentRegistry::set_status`], [`AgentRegistry::set_state`]; a
    /// write that keeps the status publishes nothing).
    Status {
        /// The status it had while alive; `None` for an agent that was unknown or expired.
        from: Option<Status>,
        /// The status it has now.
        to: Status,
        /// Its current task.
        task: Option<String>,
    },
    /// It stopped heartbeating and was dropped from the registry (by the first call after its
    /// deadline).
    Expired,
    /// It expired and its record did not decode: it left the live set, but its record (and
    /// its index entries, which are unknown) stay for repair.
    Malformed {
        /// Why the record did not decode.
        reason: String,
    },
}

/// The payload the agent scripts publish.
#[derive(Debug, Deserialize)]
struct Payload {
    registry: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    task: Option<String>,
    #[serde(default)]
    malformed: Option<String>,
}

/// A subscription to one registry's agent events, from [`AgentRegistry::events`].
///
/// Every registry of a namespace publishes on one channel; this one keeps the events whose
/// payload names its registry. A message that does not decode is counted in
/// [`SubscriberStats::decode_errors`] and skipped. Pub/sub delivers to connected subscribers
/// only: after [`reconnections`](Self::reconnections) fires, re-read the registry
/// ([`AgentRegistry::all`]).
#[derive(Debug)]
pub struct AgentEvents {
    registry: String,
    subscriber: Subscriber<Payload>,
    undecodable: u64,
}

impl AgentEvents {
    /// The next event of this registry; `None` once the subscription has shut down.
    pub async fn recv(&mut self) -> Option<AgentEvent> {
        loop {
            let received = self.subscriber.recv().await?;
            if let Some(event) = self.typed(received.event) {
                return Some(event);
            }
        }
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<AgentEvent> {
        while let Some(received) = self.subscriber.try_recv() {
            if let Some(event) = self.typed(received.event) {
                return Some(event);
            }
        }
        None
    }

    /// Events of this registry of a kind this version does not know (or an `agent_status`
    /// without its new status), skipped.
    pub fn undecodable(&self) -> u64 {
        self.undecodable
    }

    /// A signal that changes each time the connection came back after a drop (events
    /// published meanwhile are lost).
    pub fn reconnections(&self) -> tokio::sync::watch::Receiver<u64> {
        self.subscriber.reconnections()
    }

    /// The subscriber's counters (they count the other registries' events too).
    pub fn stats(&self) -> SubscriberStats {
        self.subscriber.stats()
    }

    /// Unsubscribes, closes the connection and waits for the background task to end.
    pub async fn shutdown(self) {
        self.subscriber.shutdown().await;
    }

    /// This registry's event, typed; `None` for another registry's (or one that does not
    /// decode, counted).
    fn typed(&mut self, event: coordkit_core::Event<Payload>) -> Option<AgentEvent> {
        let p = event.payload;
        if p.registry != self.registry || event.source != EVENT_SOURCE {
            return None;
        }
        let name = |s: Option<String>| s.filter(|s| !s.is_empty());
        let kind = match (event.kind.as_str(), p.malformed) {
            (AGENT_STATUS, _) => name(p.to).map(|to| AgentEventKind::Status {
                from: name(p.from).map(|s| Status::parse(&s)),
                to: Status::parse(&to),
                task: name(p.task),
            }),
            (AGENT_EXPIRED, Some(reason)) => Some(AgentEventKind::Malformed { reason }),
            (AGENT_EXPIRED, None) => Some(AgentEventKind::Expired),
            _ => None,
        };
        let Some(kind) = kind else {
            self.undecodable += 1;
            return None;
        };
        Some(AgentEvent {
            registry: p.registry,
            agent: event.entity,
            ts_ms: event.ts_ms,
            kind,
        })
    }
}

impl AgentRegistry {
    /// Subscribes to this registry's agent events (status changes, expiries, malformed records
    /// found at expiry), typed, on a connection of its own: every event published after this
    /// returns is delivered (while connected); those of other registries are not. Expiries are
    /// published by the first call on the registry after an agent's deadline.
    pub async fn events(&self) -> Result<AgentEvents> {
        let subscriber = self
            .store()
            .pool
            .subscriber()
            .channel(self.channel())
            .subscribe()
            .await?;
        Ok(AgentEvents {
            registry: self.name().to_owned(),
            subscriber,
            undecodable: 0,
        })
    }
}
