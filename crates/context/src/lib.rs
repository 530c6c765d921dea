//! # coordkit-context
//!
//! Shared context for agents: structured state per entity (a project's metadata, a workflow's
//! configuration) in Redis hashes, updated in parts without lost updates, and watched.
//!
//! - **Partial writes, one round trip.** [`Entity::set`], [`Entity::delete_fields`],
//!   [`Entity::write`]: each write is one Lua script that bumps the entity's version, stamps
//!   `__updated_ms` (server time) and `__updated_by`, appends a [`Change`] to the entity's bounded
//!   history and publishes a `changed` event, all atomically. It returns the new version.
//! - **Compare-and-set.** [`Write::expect_version`] fails with [`ContextError::Conflict`]
//!   (carrying the current version) instead of overwriting a newer state;
//!   [`Entity::update`] retries a closure on conflict.
//! - **Every field holds JSON: one rule for typed and raw access.** [`Entity::set_typed`] /
//!   [`Entity::get_typed`] map a struct to fields and encode each value as JSON for you; the raw
//!   [`Entity::set`] / [`Entity::get_all`] take and give each field's JSON text as it is, so a string
//!   is written `"\"training\""` and a number `"10"`. Keep to JSON in raw writes and typed reads
//!   of the same entity work; a field of the wrong shape gives [`ContextError::FieldDecode`]
//!   naming it.
//! - **Who wrote it.** Every write is stamped `__updated_by` with the store's actor
//!   ([`ContextStoreBuilder::actor`], `"unknown"` unless set), or the actor a write names
//!   ([`Write::actor`]).
//! - **Watch.** [`Entity::watch`] follows every version in order; it resumes from the history
//!   after its subscriber reconnects, and resyncs from a snapshot when the history was
//!   compacted ([`ContextError::Compacted`] for [`Entity::changes_since`]).
//! - **Idle expiry**, refreshed on write (and on read when asked), judged on the server clock.
//! - **Agent status** ([`AgentRegistry`]): status, task and capabilities with indexes and
//!   heartbeats, so "who is idle" and "who can do X" are one call; [`AgentRegistry::events`]
//!   follows status changes and expiries, typed.
//! - **Listing** a kind's entities with `SCAN`, paginated ([`ContextStore::list`]).
//! - **Stored data is checked before it is used.** A key of another type fails with
//!   `Error::WrongType`, a stamp, history entry or agent record that does not decode with
//!   `Error::Corrupt`, both naming the key (and the field), and nothing is written over it;
//!   a write that shares a call with others fails alone.
//!
//! Keys: `<ns>:{ctx:<kind>:<id>}:data` (hash) and `…:history` (a list of JSON changes, one per
//! version, oldest first); one hash tag per entity, so everything works on Redis Cluster.
//! Field names starting with `__` are reserved.
//!
//! ```
//! use coordkit_context::{ContextError, ContextStore};
//! use coordkit_core::{Keyspace, Pool, PoolConfig};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct Project {
//!     name: String,
//!     status: String,
//!     dataset_size: u64,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = coordkit_testkit::RedisServer::start()?;
//! # let url = server.url(); // e.g. "redis://127.0.0.1:6379"
//! let pool = Pool::connect(PoolConfig::from_url(&url)?).await?;
//! let store = ContextStore::builder(&pool, &Keyspace::new("demo")?)
//!     .actor("planner")
//!     .build()?;
//! let project = store.entity("project", "proj-1")?;
//!
//! let v1 = project
//!     .set_typed(&Project { name: "asr".into(), status: "new".into(), dataset_size: 10 })
//!     .await?;
//! let v2 = project.set([("status", "\"training\"")]).await?; // one field, one round trip
//! assert_eq!((v1, v2), (1, 2));
//!
//! let read = project.get_typed::<Project>().await?.expect("it exists");
//! assert_eq!(read.value.status, "training");
//!
//! // A write that expects an older version does not overwrite the newer state.
//! let stale = project.write().set("status", "\"done\"").expect_version(1).commit().await;
//! assert!(matches!(stale, Err(ContextError::Conflict { current: 2, .. })));
//!
//! // Writes are stamped with the store's actor unless a write names another.
//! assert_eq!(project.get(&[]).await?.expect("it exists").updated_by, "planner");
//! project.write().set("status", "\"eval\"").actor("reviewer").commit().await?;
//! assert_eq!(project.get(&["status"]).await?.expect("it exists").updated_by, "reviewer");
//!
//! // Who is idle, in one call.
//! use coordkit_context::{AgentStatus, Status};
//! let agents = store.agents("fleet")?;
//! agents.set_status("coder-1", &AgentStatus::new(Status::Idle).capability("rust")).await?;
//! assert_eq!(agents.with_status(&Status::Idle).await?, vec!["coder-1".to_string()]);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod agent_events;
mod agents;
mod batch;
mod code;
mod decode;
mod entity;
mod error;
mod history;
#[cfg(feature = "model")]
pub mod model;
mod store;
mod types;
mod wire;

pub use agent_events::{AgentEvent, AgentEventKind, AgentEvents};
pub use agents::{AgentRecord, AgentRegistry, AgentStatus, Status};
pub use entity::{Entity, Write};
pub use error::{ContextError, Result};
pub use history::{WATCH_RECHECK, WatchEvent, Watcher};
pub use store::{ContextStore, ContextStoreBuilder, EVENT_SOURCE, EntityPage};
pub use types::{Change, ChangeEvent, EntitySnapshot, Versioned};
pub use wire::RESERVED_PREFIX;
