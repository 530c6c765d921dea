//! [`AgentRegistry::events`]: one registry's agent events, typed.

use coordkit_core::{EventStream, Selected};
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
/// the stream's stats and skipped. Pub/sub delivers to connected subscribers only: after
/// [`EventStream::reconnections`] fires, re-read the registry
/// ([`AgentRegistry::all`]).
pub type AgentEvents = EventStream<AgentEvent>;

/// The registry `registry`'s event, typed.
fn typed(registry: &str, event: coordkit_core::Event<Payload>) -> Selected<AgentEvent> {
    let p = event.payload;
    if p.registry != registry || event.source != EVENT_SOURCE {
        return Selected::Other;
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
    match kind {
        Some(kind) => Selected::Event(AgentEvent {
            registry: p.registry,
            agent: event.entity,
            ts_ms: event.ts_ms,
            kind,
        }),
        None => Selected::Undecodable,
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
        let registry = self.name().to_owned();
        Ok(EventStream::new(subscriber, move |received| {
            typed(&registry, received.event)
        }))
    }
}
