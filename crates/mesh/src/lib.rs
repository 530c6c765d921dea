//! # coordkit-mesh
//!
//! Agent messaging over Redis, for fleets of agents that talk as well as share state:
//!
//! - **Typed channels** ([`Channel`]): a name and a payload type; `publish` answers how many
//!   subscribers received it (exactly, on a cluster too: sharded pub/sub); subscribe with a
//!   handler or as a stream, by name or pattern, add and remove channels while it runs, and
//!   receive other programs' messages as raw bytes.
//! - **Durable inboxes and request/reply** ([`MeshAgent`]): every agent has an inbox capped by
//!   count and age; `send` stores a message there and wakes the receiver in one script, the
//!   receiver gets each message at least once and acks it; `ask` a live agent a question and
//!   get its answer, its error, a timeout, or "no responders" in the request's own round trip.
//!   Capabilities route work to whichever live member can do it: dispatch to one, ask one,
//!   broadcast to all.
//! - **Scatter-gather** ([`MeshAgent::gather`]): ask every live member of a capability, collect
//!   each one's outcome until enough answers came or the deadline passed.
//! - **Pipelines** ([`MeshAgent::forward`], [`MeshAgent::serve_dispatched`]): a stage's results
//!   dispatched to the next capabilities, at least once.
//! - **Broadcast to the namespace** ([`MeshAgent::broadcast_all`]): a message into the inbox of
//!   every agent whose heartbeat has not run out.
//!   See the [`agent`] module for the design and guarantees.
//!
//! Every send is one atomic Lua script (or one `PUBLISH`), one round trip, over the shared
//! pool, on the server's clock, and works on Redis Cluster.
//!
//! ## Typed channels: a lab's telemetry, agent status and experiment data
//!
//! ```
//! use coordkit_core::{Keyspace, Pool, PoolConfig};
//! use coordkit_mesh::{Channel, Message};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! struct Telemetry { instrument: String, celsius: f64 }
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! enum AgentStatus { Idle, Running { experiment: String }, Failed { reason: String } }
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! struct Sample { experiment: String, well: u32, absorbance: f64 }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = coordkit_testkit::RedisServer::start()?;
//! # let url = server.url(); // e.g. "redis://127.0.0.1:6379"
//! let pool = Pool::connect(PoolConfig::from_url(&url)?).await?;
//! let lab = Keyspace::new("lab")?;
//!
//! // One channel per instrument; one per agent; one per experiment.
//! let bench = Channel::<Telemetry>::builder(&pool, &lab, "telemetry.bench-3").build()?;
//! let pipette = Channel::<AgentStatus>::builder(&pool, &lab, "status.pipette-bot").build()?;
//! let run = Channel::<Sample>::builder(&pool, &lab, "experiment.run-42").build()?;
//!
//! // A dashboard watches every instrument, by pattern, as a stream.
//! let all_telemetry = Channel::<Telemetry>::pattern(&pool, &lab, "telemetry.*")?;
//! let mut dashboard = all_telemetry.subscribe().await?;
//!
//! // A supervisor reacts to agent status with a handler on a task of its own.
//! let (failures_tx, mut failures) = tokio::sync::mpsc::unbounded_channel();
//! let supervisor = pipette
//!     .subscriber()
//!     .subscribe_with(move |status: Message<AgentStatus>| {
//!         let failures_tx = failures_tx.clone();
//!         async move {
//!             if let AgentStatus::Failed { reason } = status.payload {
//!                 let _ = failures_tx.send((status.channel, reason));
//!             }
//!         }
//!     })
//!     .await?;
//!
//! // An analysis agent collects the experiment's samples.
//! let mut analysis = run.subscribe().await?;
//!
//! // Publishing answers how many subscribers received it.
//! assert_eq!(bench.publish(&Telemetry { instrument: "incubator".into(), celsius: 37.1 }).await?, 1);
//! pipette.publish(&AgentStatus::Running { experiment: "run-42".into() }).await?;
//! run.publish(&Sample { experiment: "run-42".into(), well: 7, absorbance: 0.42 }).await?;
//! pipette.publish(&AgentStatus::Failed { reason: "tip rack empty".into() }).await?;
//!
//! let reading = dashboard.recv().await.expect("a reading");
//! assert_eq!(reading.channel, "telemetry.bench-3");
//! assert_eq!(reading.payload.celsius, 37.1);
//! assert_eq!(analysis.recv().await.expect("a sample").payload.well, 7);
//! let (agent, reason) = failures.recv().await.expect("a failure");
//! assert_eq!((agent.as_str(), reason.as_str()), ("status.pipette-bot", "tip rack empty"));
//!
//! // Nobody listens to a channel once its subscribers stopped.
//! supervisor.stop().await;
//! assert_eq!(pipette.publish(&AgentStatus::Idle).await?, 0);
//! assert_eq!(dashboard.stats().received, 1);
//! # Ok(()) }
//! ```
//!
//! The [`channel`] module says what the count means on a cluster, how channels are named on
//! Redis, and how other programs' messages reach a subscriber in raw mode.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod channel;
#[cfg(feature = "model")]
pub mod model;

#[cfg(any(feature = "model", feature = "testing"))]
pub use agent::wire::{Body, Outgoing, RawDelivery, RawReceived, RawSent, RawTaken};
pub use agent::{
    AgentConfig, AgentError, AgentStats, CapabilityStats, Consumer, DEFAULT_MAX_PAYLOAD_BYTES,
    Delivery, Forward, GatherOptions, Gathered, InboxStats, MeshAgent, MeshAgentBuilder, Reply,
    RequestHandler, SendOptions, Sent, Server,
};
pub use channel::{
    Channel, ChannelBuilder, ChannelControl, ChannelDelivery, ChannelPattern, ChannelSubscriber,
    ChannelSubscriberBuilder, DEFAULT_KIND, HandlerTask, Message, PublishStats, Receive,
    SubscriptionStats,
};
pub use coordkit_core::RawMessage;
