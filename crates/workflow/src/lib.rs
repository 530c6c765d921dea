//! # coordkit-workflow
//!
//! Durable state for multi-step workflows (an agent's research, a pipeline of tool calls),
//! shared by every orchestrator process on the same Redis: when an orchestrator dies or
//! restarts, its workflows are not lost. Another orchestrator (or the same one, restarted)
//! finds them, claims them with a new fenced lease and continues each from the step after its
//! last checkpoint, while the dead one's late writes are refused.
//!
//! Build a store with [`WorkflowStore::builder`] (or `Coordkit::workflows(name)` in the
//! `coordkit` crate); every setter documents its range and default. For tests and Redis-less
//! development, [`WorkflowStore::in_memory`] builds a store with the same API in this
//! process's memory: chosen explicitly, never a silent fallback.
//!
//! ```
//! use coordkit_core::{Keyspace, Pool, PoolConfig};
//! use coordkit_workflow::{Claim, NewWorkflow, Outcome, Status, WorkflowStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = coordkit_testkit::RedisServer::start()?;
//! # let url = server.url(); // e.g. "redis://127.0.0.1:6379"
//! let pool = Pool::connect(PoolConfig::from_url(&url)?).await?;
//! let store = WorkflowStore::builder(&pool, &Keyspace::new("demo")?, "research")
//!     .owner("orchestrator-1")
//!     .lease(std::time::Duration::from_secs(30))
//!     .build()?;
//!
//! // Create (idempotent by id), claim, and run step by step.
//! store.create(NewWorkflow::new("report", "topic: tides").id("wf-1")).await?;
//! let Claim::Claimed(mut lease) = store.claim("wf-1").await? else { panic!("not claimed") };
//! assert_eq!(lease.next_step(), 1);
//! assert_eq!(lease.checkpoint(1, "sources: 12").await?, Outcome::Done);
//! assert_eq!(lease.checkpoint(2, "outline: 5 parts").await?, Outcome::Done);
//!
//! // After a restart: restore everything, resume orphans from their last checkpoint. Here
//! // wf-1's lease is live (its holder is this process), so another orchestrator finds no
//! // orphan; once a holder dies and its lease runs out, the loop takes its workflows over.
//! let restored = store.restore().await?;
//! assert_eq!(restored.active.len(), 1);
//! let other = store.with_owner("orchestrator-2")?;
//! let orphans = other.resume_orphans(100).await?;
//! assert!(orphans.leases.is_empty());
//! for mut orphan in orphans.leases {
//!     let _continue_at = orphan.next_step(); // the step after the last checkpoint
//!     orphan.complete("done").await?;
//! }
//!
//! assert_eq!(lease.complete("report: …").await?, Outcome::Done);
//! let wf = store.get("wf-1").await?.expect("kept 7 days");
//! assert_eq!(wf.info.status, Status::Completed);
//! assert_eq!(wf.checkpoints.len(), 2);
//! # Ok(()) }
//! ```
//!
//! ## Guarantees
//!
//! - **One script per change.** Create, claim, checkpoint, extend, complete, fail and cancel
//!   are each one Lua script on the server's clock, which updates the record, every index
//!   (active, pending, leases, by type, completed / failed / cancelled by finish time)
//!   together, and publishes the event: no subscriber sees a change that did not
//!   happen, and no index disagrees with a record.
//! - **Fenced leases.** Each claim gives the workflow a new fencing token. A running workflow
//!   is claimed again only once its lease ran out (that is a resume), so two orchestrators
//!   racing for one orphan: exactly one wins. A write with an older token, after the lease ran
//!   out, or after a cancel answers [`Outcome::LeaseLost`] and writes nothing.
//! - **Checkpoints are written once.** A checkpoint of a step not after the last one answers
//!   [`Outcome::StepDone`], so a retried call cannot write a step twice; a retried complete
//!   answers [`Outcome::AlreadyFinished`].
//! - **Bounded memory.** A pending or running workflow without activity for the active TTL
//!   (24 h) is deleted; a finished one is kept for the finished TTL (7 days), and each finished
//!   index keeps its newest 100: older ones are deleted with their records and every index
//!   entry, by the scripts themselves (creates sweep records whose TTL ran out, finishes evict
//!   beyond the cap). Reads never show a record whose TTL ran out.
//! - **Bad input is an error, with nothing written**: an input, checkpoint or result over its
//!   limit ([`WorkflowError::TooLarge`] naming it), an invalid id, type or name
//!   ([`Error::InvalidName`](coordkit_core::Error::InvalidName)), a key of another Redis type
//!   ([`Error::WrongType`](coordkit_core::Error::WrongType)), a record that does not decode
//!   ([`Error::Corrupt`](coordkit_core::Error::Corrupt) naming the key; in a batch, the record
//!   is skipped and named).
//! - **Works on Redis Cluster**: one store is one hash tag (`<ns>:{wf:<name>}:*`).
//!
//! ## Keys (one hash tag per store)
//!
//! `records` (hash: per workflow a binary header, its input, type, result or error, and one
//! field per checkpoint), `active` and `pending` (zsets by creation), `leases` (zset by lease
//! deadline), `completed`, `failed`, `cancelled` (zsets by finish time), `types` (zset of
//! `<type> <id>`, by name), `expiry` (zset by TTL deadline). Events go to `<ns>:events:workflow:<kind>` with source `workflow` and
//! the store's name as entity ([`WorkflowStore::events`]).
//!
//! ## Features
//!
//! - `model`: `model::StoreModel`, the reference model of the store (what an in-memory
//!   store runs), for your own property tests.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backend;
mod code;
mod config;
mod error;
mod events;
mod lease;
#[cfg(feature = "model")]
pub mod model;
// Without the feature, the model serves the in-memory store alone.
#[cfg(not(feature = "model"))]
#[allow(unreachable_pub, dead_code)]
mod model;
mod query;
mod scripts;
mod store;
mod types;

pub use config::{DEFAULT_MAX_BYTES, StoreConfig, WorkflowStoreBuilder};
pub use coordkit_core;
pub use error::{Result, WorkflowError};
pub use events::{WorkflowEvent, WorkflowEventKind, WorkflowEvents};
pub use lease::{Claim, Claimed, Lease};
pub use store::WorkflowStore;
pub use types::{
    Checkpoint, Created, Cursor, Listing, NewWorkflow, Outcome, Page, Restored, Stats, Status,
    Workflow, WorkflowInfo,
};
