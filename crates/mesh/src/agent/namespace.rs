//! The namespace's live agents, and a broadcast to all of them ([`MeshAgent::broadcast_all`]).
//!
//! Every heartbeat of an agent's own presence ([`MeshAgent::heartbeat`], a [`Server`]'s
//! beats, [`MeshAgent::leave`], a server's shutdown) also writes the agent into the
//! namespace's registry, `<ns>:{mesh:agents}:alive`: a sorted set agent → alive until, on the
//! scripts' clock, kept by the same presence operation of `lua/inbox.lua` as a capability's
//! members (the registry is a group of its own; only its `alive` key is ever written). It is a
//! hash tag of its own, so that is a second call per beat (beats come every third of the
//! presence TTL). A heartbeat whose registry write fails answers the error; the presence
//! itself was renewed by the first call. An agent that only serves capabilities is a member
//! of those, not a live agent (asks to it answer no responders), so it is not in the registry.
//!
//! [`Server`]: super::Server

use serde::Serialize;

use super::error::Result;
use super::types::Sent;
use super::{InboxRef, MeshAgent};

/// The registry's instance in the keyspace: `<ns>:{mesh:agents}`.
const REGISTRY_KIND: &str = "mesh";
const REGISTRY_NAME: &str = "agents";

impl MeshAgent {
    fn registry(&self) -> Result<InboxRef> {
        InboxRef::group(&self.inner.keyspace, REGISTRY_KIND, REGISTRY_NAME)
    }

    /// Writes this agent into the namespace's registry for `ttl_ms` (0: removes it).
    pub(super) async fn register(&self, ttl_ms: u64) -> Result<u64> {
        self.presence_call(&self.registry()?, ttl_ms, 0).await
    }

    /// The namespace's live agents (whose heartbeat has not run out), by name, soonest to run
    /// out first.
    pub async fn live_agents(&self) -> Result<Vec<String>> {
        self.members_of(&self.registry()?).await
    }

    /// Sends `message` to the own inbox of every live agent of the namespace (this one too,
    /// when it is alive); answers each agent with what its send did. Not atomic: the agents
    /// are read first, then one send per agent (each inbox is a hash tag of its own), so an
    /// agent that comes alive meanwhile misses it.
    pub async fn broadcast_all<T: Serialize>(&self, message: &T) -> Result<Vec<(String, Sent)>> {
        let agents = self.live_agents().await?;
        self.send_each(agents, message).await
    }

    /// Sends `message` to each of `agents`' own inboxes, one after the other.
    pub(super) async fn send_each<T: Serialize>(
        &self,
        agents: Vec<String>,
        message: &T,
    ) -> Result<Vec<(String, Sent)>> {
        let mut out = Vec::with_capacity(agents.len());
        for agent in agents {
            let sent = self.send(&agent, message).await?;
            out.push((agent, sent));
        }
        Ok(out)
    }
}
