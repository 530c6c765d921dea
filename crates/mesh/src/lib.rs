//! # coordkit-mesh
//!
//! Agent messaging over Redis, for fleets of agents that talk as well as share state:
//!
//! - **Typed channels** ([`Channel`]): a name and a payload type; `publish` answers how many
//!   subscribers received it; subscribe with a handler or as a stream, by name or pattern.
//! - **Durable inboxes and request/reply** ([`MeshAgent`]): every agent has an inbox capped by
//!   count and age; `send` stores a message there and wakes the receiver in one script, the
//!   receiver gets each message at least once and acks it; `ask` a live agent a question and
//!   get its answer, its error, a timeout, or "no responders" in the request's own round trip.
//!   Capabilities route work to whichever live member can do it: dispatch to one, ask one,
//!   broadcast to all.
//!   See the [`agent`] module for the design and guarantees.
//!
//! Every send is one atomic Lua script (or one `PUBLISH`), one round trip, over the shared
//! pool, on the server's clock, and works on Redis Cluster.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
#[cfg(feature = "model")]
pub mod model;

#[cfg(any(feature = "model", feature = "testing"))]
pub use agent::wire::{Body, RawDelivery, RawReceived, RawSent, RawTaken};
pub use agent::{
    AgentConfig, AgentError, AgentStats, CapabilityStats, DEFAULT_MAX_PAYLOAD_BYTES, Delivery,
    InboxStats, MeshAgent, MeshAgentBuilder, Reply, SendOptions, Sent, Server,
};
