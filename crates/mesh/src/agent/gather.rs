//! Scatter-gather: [`MeshAgent::gather`] asks every live member of a capability the same
//! question and collects their replies until enough answers came or the deadline passed.
//!
//! A request to the capability's inbox goes to whichever member takes it first, so a gather
//! cannot go there. Nor can it go to a member's own inbox: that one is answered by the agent's
//! own [`serve`](MeshAgent::serve) handler, one for the agent, which knows nothing of the
//! capabilities it serves. So every [`serve_capability`](MeshAgent::serve_capability) server
//! also serves a route of its own to the same handler: an inbox `<ns>:{capm:<n>:<capability>:
//! <member>}:*` (`<n>` the capability name's length, so that no two pairs share a route),
//! whose presence is the member alone. A gather reads the live members of the capability,
//! then asks each one's route concurrently, each ask the one of [`MeshAgent::ask`]: a member
//! that joined without serving (it only [`receive_dispatched`](MeshAgent::receive_dispatched))
//! has no live route and answers [`Reply::NoResponders`] at once.
//!
//! The route costs each server a second heartbeat call per beat and a second wake-up
//! subscription. Like [`MeshAgent::broadcast`], a gather is not atomic: the members are read
//! first, and a member that joins meanwhile is not asked.

use std::sync::Arc;
use std::time::Duration;

use coordkit_core::validate_name;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

use super::error::{AgentError, Result};
use super::types::Reply;
use super::{InboxRef, MeshAgent};

/// The kind of a member's route to its capability's handler.
const ROUTE_KIND: &str = "capm";

/// How long a [`gather`](MeshAgent::gather) waits, and for how many answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatherOptions {
    timeout: Duration,
    answers: Option<usize>,
}

impl GatherOptions {
    /// Waits at most `timeout` (1 ms to 2^35 ms) for the members' replies; by default until
    /// every member's ask ended (answered, failed or timed out).
    pub fn within(timeout: Duration) -> Self {
        Self {
            timeout,
            answers: None,
        }
    }

    /// Stops as soon as `n` members answered ([`Reply::Answer`]; 1 or more): the asks still
    /// running are dropped, their replies dropped when they come (counted `late` once their
    /// deadline passed). Default: no such limit.
    pub fn answers(mut self, n: usize) -> Self {
        self.answers = Some(n);
        self
    }
}

/// What a [`gather`](MeshAgent::gather) collected, member by member.
#[derive(Debug)]
#[non_exhaustive]
pub struct Gathered<R> {
    /// The members whose ask ended, in the order they ended, with its outcome.
    pub replies: Vec<(String, Reply<R>)>,
    /// The members whose ask failed with an error (Redis unreachable until the deadline, a
    /// reply that does not decode).
    pub errors: Vec<(String, AgentError)>,
    /// The members asked and not waited for: enough answers came first.
    pub outstanding: Vec<String>,
}

impl<R> Gathered<R> {
    /// The answers, by member.
    pub fn answers(&self) -> impl Iterator<Item = (&str, &R)> {
        self.replies
            .iter()
            .filter_map(|(member, reply)| match reply {
                Reply::Answer(r) => Some((member.as_str(), r)),
                _ => None,
            })
    }

    /// How many members answered.
    pub fn answered(&self) -> usize {
        self.answers().count()
    }

    /// Whether the capability had no live member: nobody was asked, and the gather did not
    /// wait.
    pub fn no_members(&self) -> bool {
        self.replies.is_empty() && self.errors.is_empty() && self.outstanding.is_empty()
    }
}

impl MeshAgent {
    /// Asks every live member of `capability` (those serving it with
    /// [`serve_capability`](MeshAgent::serve_capability)) `request`, concurrently, and
    /// collects their outcomes until [`GatherOptions::answers`] members answered or the
    /// deadline passed. With no live member it answers at once, nobody asked
    /// ([`Gathered::no_members`]). Each member's outcome is that of [`MeshAgent::ask`]:
    /// [`Reply::NoResponders`] for a member that joined without serving.
    pub async fn gather<Q, R>(
        &self,
        capability: &str,
        request: &Q,
        options: GatherOptions,
    ) -> Result<Gathered<R>>
    where
        Q: Serialize,
        R: DeserializeOwned + Send + 'static,
    {
        super::config::timeout_ms(options.timeout)?;
        if options.answers == Some(0) {
            let e = coordkit_core::Error::invalid_config("answers", "must be 1 or more");
            return Err(e.into());
        }
        let payload = self.encode(request)?;
        let members = self.members(capability).await?;
        let routes = members
            .iter()
            .map(|m| self.member_route(capability, m))
            .collect::<Result<Vec<_>>>()?;
        let mut asks = JoinSet::new();
        for (member, route) in members.iter().cloned().zip(routes) {
            let (agent, payload) = (self.clone(), payload.clone());
            asks.spawn(async move {
                let reply = agent
                    .ask_inbox::<R>(&route, &member, payload, options.timeout)
                    .await;
                (member, reply)
            });
        }
        let mut gathered = Gathered {
            replies: Vec::new(),
            errors: Vec::new(),
            outstanding: members,
        };
        let enough = options.answers.unwrap_or(usize::MAX);
        while gathered.answered() < enough {
            let Some(joined) = asks.join_next().await else {
                break;
            };
            let (member, reply) = match joined {
                Ok(ended) => ended,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => continue,
            };
            gathered.outstanding.retain(|m| *m != member);
            match reply {
                Ok(reply) => gathered.replies.push((member, reply)),
                Err(e) => gathered.errors.push((member, e)),
            }
        }
        // Dropping the set aborts the asks still running.
        Ok(gathered)
    }

    /// The route of `member` to `capability`'s handler.
    pub(super) fn member_route(&self, capability: &str, member: &str) -> Result<Arc<InboxRef>> {
        validate_name("capability", capability)?;
        validate_name("agent name", member)?;
        let name = format!("{}:{capability}:{member}", capability.len());
        Ok(Arc::new(InboxRef::group(
            &self.inner.keyspace,
            ROUTE_KIND,
            &name,
        )?))
    }
}
