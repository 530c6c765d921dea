//! # coordkit-errors
//!
//! Error tracking for agents: every agent reports its failures to one tracker; operators see
//! which distinct problems exist, how often, since when, and when several subsystems fail
//! together (a cascade), without a storm of duplicates and without unbounded memory.
//!
//! - **One round trip per record.** [`ErrorTracker::record`] runs one Lua script that updates
//!   the signature (count, first/last seen by server time, last sample, components seen), the
//!   counters by kind and component, the chronological log, the task's details record, the
//!   correlation window, re-opens a resolved signature (a regression), and publishes events,
//!   all atomically. In the steady state the script costs one `XADD` (whose id is the server
//!   time) plus one `HMGET` and one `HSET` of the tracker's data hash. Under concurrency,
//!   records of one tracker share calls (group commit: one `HMGET`/`HSET` per call), each still
//!   applied exactly once, in order. The script is written for Redis's Lua, where every new
//!   string is hashed byte by byte, every growing table is rehashed and every closure is an
//!   allocation: numbers are stored packed (never formatted), names and JSON come built from
//!   Rust, each an argument of its own (so each byte is hashed once), the answer is one packed
//!   string, and the correlation state is only read in full when a cascade is possible.
//! - **Signatures.** The message is normalized ([`normalize`]: numbers, UUIDs, hex ids, IPs,
//!   e-mails, URLs, paths, timestamps, durations, quoted values) and hashed with the kind and
//!   component ([`fingerprint`], SHA-1, versioned by [`NORMALIZER_VERSION`]); a caller may bring
//!   its own ([`ErrorEvent::fingerprint`]).
//! - **Resolve and regressions.** [`ErrorTracker::resolve`]; an occurrence after the resolution
//!   re-opens it with a `regression` event ([`ErrorEvent::occurred_ms`] lets a late report of an
//!   earlier failure count without re-opening).
//! - **Cascades.** When the distinct kinds within the correlation window (default 5 minutes)
//!   reach the threshold (default 3), one `cascade` event lists the kinds, their counts and the
//!   components, at most once per window. The counts come from the log (at most its newest
//!   2,000 entries); the payload's `complete` is false when the window held more than the log
//!   kept or than were read, so they are lower bounds.
//! - **Events** on one channel per [`Severity`] (`<ns>:events:errors:<severity>`), published by
//!   the recording script: a pattern subscription watches them all. By default only notable
//!   records publish (`new_signature`, `regression`, `recurring` at counts 10, 100, …), so a
//!   storm of duplicates is not a storm of events;
//!   [`ErrorTrackerBuilder::publish_every_record`] publishes every one. [`ErrorTracker::events`]
//!   subscribes to one tracker's events, typed ([`TrackerEvent`]).
//! - **Queries:** [`ErrorTracker::recent`] (paged), [`ErrorTracker::top`] (within a window),
//!   [`ErrorTracker::signature`], [`ErrorTracker::counts`], [`ErrorTracker::task`].
//! - **Bounded memory:** caps on the log (count, and age: default 7 days), signatures (least
//!   recently seen evicted), task records (a fixed number of slots; TTL), counters, and the
//!   kinds of the correlation window.
//! - **Bad input is recorded, not rejected:** invalid UTF-8 is replaced, an over-long message
//!   is truncated with a marker, malformed names are cleaned, missing fields take defaults.
//! - **Bad stored data never loses a record:** a key of another type fails the call, naming
//!   it, with nothing written; a stored value that does not decode (a signature's state, a
//!   counter, a task slot's owner, the correlation state, written by something else) is started
//!   afresh by the record that needs it, alone in its batch, and reported
//!   ([`Recorded::repaired`], `"repaired"` in its event). Queries name such data
//!   (`Error::Corrupt` with the key and field), or count it ([`LogPage::undecodable`],
//!   [`TopSignatures::undecodable`]).
//!
//! Keys (one hash tag per tracker, so every script touches one slot and it works on Redis
//! Cluster), all built by [`coordkit_core::InstanceKeys`]:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<ns>:{errors:<name>}:data` | hash | per signature: state (count, first, last, resolved, regressions, indexed as packed doubles, then the components seen), last sample, meta; task slots (record + owner); counters `~c <kind> <component>` (packed); the correlation window: `~corr` (last cascade, kinds seen lately) and each such kind's last occurrence `~k <kind>` |
//! | `…:seen` | sorted set | signature → last seen (refreshed once a second): the eviction order |
//! | `…:log` | stream | the chronological log, id = record time, capped by count (exactly) and age |
//!
//! Throughput and memory figures, with the commands that reproduce them, are in
//! `docs/benchmarks.md` (scenario `errors-record`).
//!
//! ```
//! use std::time::Duration;
//! use coordkit_core::{Keyspace, Pool, PoolConfig};
//! use coordkit_errors::{ErrorEvent, ErrorTracker, Resolution, Severity};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = coordkit_testkit::RedisServer::start()?;
//! # let url = server.url(); // e.g. "redis://127.0.0.1:6379"
//! let pool = Pool::connect(PoolConfig::from_url(&url)?).await?;
//! let tracker = ErrorTracker::builder(&pool, &Keyspace::new("demo")?, "agents").build()?;
//!
//! // Two occurrences of one problem: different ids and hosts, one signature.
//! let first = tracker
//!     .record(&ErrorEvent::new("fetcher", "Timeout", "GET https://a.example/1 timed out after 30s").task("t-1"))
//!     .await?;
//! let second = tracker
//!     .record(&ErrorEvent::new("fetcher", "Timeout", "GET https://b.example/9 timed out after 45s").task("t-2"))
//!     .await?;
//! assert_eq!(first.signature, second.signature);
//! assert!(first.new_signature && !second.new_signature);
//! assert_eq!(second.count, 2);
//! assert_eq!(second.severity, Severity::Error); // from the default classifier
//!
//! let detail = tracker.signature(&second.signature).await?.expect("tracked");
//! assert_eq!(detail.meta.template, "GET <url> timed out after <dur>");
//!
//! // Resolved, then seen again: a regression.
//! assert!(matches!(tracker.resolve(&second.signature).await?, Resolution::Resolved { .. }));
//! let again = tracker
//!     .record(&ErrorEvent::new("fetcher", "Timeout", "GET https://c.example/2 timed out after 5s"))
//!     .await?;
//! assert!(again.regression);
//!
//! let top = tracker.top(Duration::from_secs(3600), 10).await?;
//! assert_eq!(top.signatures[0].in_window, 3);
//! assert_eq!(tracker.counts().await?.by_kind["Timeout"], 3);
//! assert_eq!(tracker.task("t-2").await?.expect("kept").occurrence.message, "GET https://b.example/9 timed out after 45s");
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod batch;
mod config;
mod event;
mod events;
#[cfg(feature = "model")]
pub mod model;
mod normalize;
mod query;
mod resolve;
mod tracker;
mod wire;

pub use config::ErrorTrackerBuilder;
pub use coordkit_core;
pub use event::{Classifier, ErrorEvent, Severity, default_classifier};
pub use events::{
    CascadeEvent, EVENT_SOURCE, RecordEvent, TrackerEvent, TrackerEventKind, TrackerEvents,
};
pub use normalize::{NORMALIZER_VERSION, fingerprint, normalize};
pub use query::{
    Counts, ErrorRecord, LogEntry, LogPage, Occurrence, SignatureDetail, SignatureMeta,
    TopSignature, TopSignatures,
};
pub use resolve::Resolution;
pub use tracker::{
    ErrorTracker, INSTANCE_KIND, MAX_ATTRIBUTE_NAME_BYTES, MAX_ATTRIBUTES, MAX_BATCH,
    MAX_FIELD_BYTES, MAX_FRAMES, Recorded, Repair,
};
