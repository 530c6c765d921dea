//! The values an agent's operations answer.

use std::sync::Arc;
use std::time::Duration;

use super::error::Result;
use super::{InboxRef, MeshAgent};

/// How one message is sent ([`MeshAgent::send_with`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendOptions {
    pub(crate) expiry: Option<Duration>,
    pub(crate) only_if_alive: bool,
}

impl SendOptions {
    /// The message expires this long after it was sent (on the scripts' clock): if it has not
    /// been delivered by then it is dropped, never delivered (counted `expired`). Default:
    /// only the receiver's age cap applies.
    pub fn expiry(mut self, expiry: Duration) -> Self {
        self.expiry = Some(expiry);
        self
    }

    /// Store the message only when the receiver is alive (it heartbeats); otherwise nothing is
    /// written and the send answers [`Sent::NoReceiver`]. Default off: a message waits for an
    /// agent that is offline.
    pub fn only_if_alive(mut self, on: bool) -> Self {
        self.only_if_alive = on;
        self
    }
}

/// What a send did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Sent {
    /// Stored in the receiver's inbox, and the receiver woken.
    Stored {
        /// The message's id in that inbox.
        id: String,
        /// Older waiting messages dropped to keep within the count cap.
        trimmed: u64,
    },
    /// [`SendOptions::only_if_alive`] and the receiver was not alive: nothing written.
    NoReceiver,
}

/// One message (or request) delivered to this agent. Acknowledge it with
/// [`Delivery::ack`] once handled; one that is not is delivered again after the visibility
/// timeout, or when the agent restarts.
#[derive(Debug, Clone)]
pub struct Delivery<T> {
    /// Its id in the inbox.
    pub id: String,
    /// The agent that sent it.
    pub from: String,
    /// How many times it was delivered, this one included (1 the first time).
    pub attempt: u64,
    /// When it was sent (the scripts' clock, ms since the epoch).
    pub sent_ms: u64,
    /// When it expires, if it carries its own expiry (an ask's deadline).
    pub expires_ms: Option<u64>,
    /// The decoded payload.
    pub payload: T,
    pub(crate) agent: MeshAgent,
    /// The inbox it came from: the agent's own or a capability's.
    pub(crate) inbox: Arc<InboxRef>,
}

impl<T> Delivery<T> {
    /// Acknowledges it: it leaves the inbox for good. `false` when it was no longer pending
    /// (acknowledged already).
    pub async fn ack(&self) -> Result<bool> {
        Ok(self.agent.ack_in(&self.inbox, &[self.id.as_str()]).await? == 1)
    }
}

/// The outcome of an [`ask`](MeshAgent::ask).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<R> {
    /// The responder answered.
    Answer(R),
    /// The responder's handler failed, with its error text.
    Failed(String),
    /// The target was alive but no reply came before the deadline. A reply that comes later
    /// is dropped and counted (`late` in the asker's [`InboxStats`]).
    Timeout,
    /// The target had no live presence: nothing was sent, answered in the same round trip as
    /// the request.
    NoResponders,
}

impl<R> Reply<R> {
    /// The answer, if there was one.
    pub fn answer(self) -> Option<R> {
        match self {
            Reply::Answer(r) => Some(r),
            _ => None,
        }
    }
}

/// An inbox as stored ([`MeshAgent::inbox_stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboxStats {
    /// Messages waiting to be delivered.
    pub waiting_messages: u64,
    /// Requests waiting to be served.
    pub waiting_requests: u64,
    /// Delivered, not acknowledged.
    pub pending: u64,
    /// Replies waiting for the asks that will take them.
    pub replies: u64,
    /// How long the oldest waiting message or request has waited.
    pub oldest_age: Option<Duration>,
    /// How much longer the agent counts as alive, if it does.
    pub alive_for: Option<Duration>,
    /// Messages and requests stored, ever.
    pub sent: u64,
    /// Deliveries made (redeliveries included).
    pub delivered: u64,
    /// Deliveries acknowledged.
    pub acked: u64,
    /// Messages dropped because they expired or grew older than the age cap.
    pub expired: u64,
    /// Messages dropped to keep within the count cap.
    pub trimmed: u64,
    /// Replies that came after their ask's deadline, dropped.
    pub late: u64,
    /// Messages dead-lettered (malformed, undecodable).
    pub dead: u64,
    /// Dead letters kept (the latest 1,000).
    pub dead_letters: u64,
}

/// What this agent handle did ([`MeshAgent::stats`]): counted in this process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentStats {
    /// Messages, requests and replies stored in other inboxes.
    pub sent: u64,
    /// Messages and requests delivered to it.
    pub received: u64,
    /// Deliveries it acknowledged.
    pub acked: u64,
    /// Stale messages its receives dropped.
    pub expired: u64,
    /// Deliveries whose body or payload did not decode: dead-lettered.
    pub undecodable: u64,
    /// Replies it sent after the asker's deadline (dropped by the asker's inbox).
    pub late_replies: u64,
    /// Replies it got to its asks.
    pub replies: u64,
    /// Its asks that timed out.
    pub timeouts: u64,
    /// Its asks that found no responder.
    pub no_responders: u64,
}
