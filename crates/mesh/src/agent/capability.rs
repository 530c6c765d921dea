//! Capability routing: work for "whichever live agent can do X".
//!
//! A capability is an inbox of its own (`<ns>:{cap:<capability>}:*`), run by the same script
//! as an agent's, whose presence is a sorted set of members (member → alive until, on the
//! scripts' clock) instead of one agent's. Members [`join`](MeshAgent::join) with heartbeats;
//! the live members are read by the script that stores a request, so "no responders" is atomic
//! with the send and costs no extra round trip.
//!
//! - [`MeshAgent::dispatch`] stores a message in the capability's inbox: members compete for
//!   it ([`MeshAgent::receive_dispatched`]), exactly one holds it at a time, and one that dies
//!   before acknowledging loses it to the next member's receive after the visibility timeout.
//! - [`MeshAgent::ask_capability`] asks whichever live member takes the request first; the
//!   reply comes back into the asker's own inbox, as for [`MeshAgent::ask`].
//! - [`MeshAgent::serve_capability`] joins and answers its requests, like
//!   [`MeshAgent::serve`].
//! - [`MeshAgent::broadcast`] sends a message to every live member's own inbox (one send per
//!   member after reading the members: not atomic, and a member that joins meanwhile misses it).
//! - [`MeshAgent::gather`] asks every live member and collects their replies until enough
//!   answers came or the deadline passed (each member answers through a route of its own).
//! - [`MeshAgent::serve_dispatched`] runs a handler on each dispatched message, and
//!   [`MeshAgent::forward`] passes a handler's answers on to the next capabilities (the
//!   `pipeline` module).

use std::sync::Arc;
use std::time::Duration;

use coordkit_core::time::duration_ms;
use coordkit_core::{Clock, redis};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::Result;
use super::serve::RequestHandler;
use super::types::{Delivery, InboxStats, Reply, SendOptions, Sent};
use super::{InboxRef, MeshAgent, Server, wire};

/// A capability's inbox as stored, and its live members ([`MeshAgent::capability_stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilityStats {
    /// The capability's inbox: waiting dispatched messages and requests, pending, counters.
    pub inbox: InboxStats,
    /// Members whose last heartbeat has not run out.
    pub live_members: u64,
}

impl MeshAgent {
    fn capability_inbox(&self, capability: &str) -> Result<Arc<InboxRef>> {
        Ok(Arc::new(InboxRef::capability(
            &self.inner.keyspace,
            capability,
        )?))
    }

    /// Joins `capability` (or renews the membership) for the agent's
    /// [`presence_ttl`](super::MeshAgentBuilder::presence_ttl). A
    /// [`serve_capability`](MeshAgent::serve_capability) server beats on its own.
    pub async fn join(&self, capability: &str) -> Result<()> {
        let inbox = self.capability_inbox(capability)?;
        self.alive(&inbox, duration_ms(self.inner.config.presence_ttl), false)
            .await?;
        Ok(())
    }

    /// The channel on which sends into `capability` wake its members: a sharded channel on a
    /// cluster (subscribe with `shard_channel`, which is a plain subscription on a standalone
    /// server).
    pub fn capability_wake_channel(&self, capability: &str) -> Result<String> {
        Ok(self.capability_inbox(capability)?.wake.clone())
    }

    /// Leaves `capability`: asks to it no longer count on this agent.
    pub async fn leave_capability(&self, capability: &str) -> Result<()> {
        let inbox = self.capability_inbox(capability)?;
        self.alive(&inbox, 0, false).await?;
        Ok(())
    }

    /// Stores `message` for exactly one member of `capability` at a time (the first whose
    /// receive takes it; another one's after the visibility timeout if it is not
    /// acknowledged). With [`SendOptions::only_if_alive`], nothing is stored when no member is
    /// alive ([`Sent::NoReceiver`]).
    pub async fn dispatch<T: Serialize>(
        &self,
        capability: &str,
        message: &T,
        options: SendOptions,
    ) -> Result<Sent> {
        let inbox = self.capability_inbox(capability)?;
        self.send_message(&inbox, message, options).await
    }

    /// Takes up to `max` (1 to 1,000) dispatched messages of `capability`, without waiting:
    /// acknowledge each with [`Delivery::ack`]. Unlike an agent's own inbox, a new handle
    /// does not take back other members' pending deliveries: they come back after the
    /// visibility timeout.
    pub async fn receive_dispatched<T: DeserializeOwned>(
        &self,
        capability: &str,
        max: usize,
    ) -> Result<Vec<Delivery<T>>> {
        let inbox = self.capability_inbox(capability)?;
        self.receive_from(&inbox, max).await
    }

    /// Asks whichever live member of `capability` takes the request first; the outcomes are
    /// those of [`MeshAgent::ask`], with [`Reply::NoResponders`] when no member is alive
    /// (answered by the request's own round trip).
    pub async fn ask_capability<Q, R>(
        &self,
        capability: &str,
        request: &Q,
        timeout: Duration,
    ) -> Result<Reply<R>>
    where
        Q: Serialize,
        R: DeserializeOwned,
    {
        let inbox = self.capability_inbox(capability)?;
        let payload = self.encode(request)?;
        self.ask_inbox(&inbox, capability, payload, timeout).await
    }

    /// Joins `capability` and answers its requests with `handler`, as
    /// [`MeshAgent::serve`] does the agent's own, and the [`gather`](MeshAgent::gather)s
    /// asked of this member; [`Server::shutdown`] leaves it.
    pub async fn serve_capability<Q, F>(&self, capability: &str, handler: F) -> Result<Server>
    where
        Q: DeserializeOwned + Send + 'static,
        F: RequestHandler<Q>,
    {
        let inbox = self.capability_inbox(capability)?;
        let handler = Arc::new(handler);
        // The route first: a gather that finds the member finds its route alive.
        let route = self.member_route(capability, self.name())?;
        let route = self.serve_inbox(route, handler.clone()).await?;
        let mut server = self.serve_inbox(inbox, handler).await?;
        server.attach(route);
        Ok(server)
    }

    /// The live members of `capability`, by name.
    pub async fn members(&self, capability: &str) -> Result<Vec<String>> {
        let inbox = self.capability_inbox(capability)?;
        self.members_of(&inbox).await
    }

    /// The live members of a group's inbox: a capability's, or the namespace's registry.
    pub(super) async fn members_of(&self, inbox: &InboxRef) -> Result<Vec<String>> {
        let now = match &self.inner.config.clock {
            Clock::Manual(manual) => manual.now_ms(),
            _ => self.inner.pool.server_time_ms().await?,
        };
        let mut cmd = redis::cmd("ZRANGEBYSCORE");
        let alive = &inbox.keys[wire::ALIVE..=wire::ALIVE];
        cmd.arg(&alive[0]).arg(format!("({now}")).arg("+inf");
        Ok(self.inner.pool.query_keys(&cmd, alive).await?)
    }

    /// Sends `message` to the own inbox of every live member of `capability`; answers each
    /// member with what its send did. Not atomic: the members are read first, then one send
    /// per member.
    pub async fn broadcast<T: Serialize>(
        &self,
        capability: &str,
        message: &T,
    ) -> Result<Vec<(String, Sent)>> {
        let members = self.members(capability).await?;
        self.send_each(members, message).await
    }

    /// The capability's inbox as stored, and its live members.
    pub async fn capability_stats(&self, capability: &str) -> Result<CapabilityStats> {
        let inbox = self.capability_inbox(capability)?;
        let (inbox, live_members) = self.stats_of(&inbox).await?;
        Ok(CapabilityStats {
            inbox,
            live_members,
        })
    }
}
