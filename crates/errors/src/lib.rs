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
//!   [`TrackerBuilder::publish_every_record`] publishes every one.
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
//! Measured on the shared 2-core development machine (Redis 7.0.15, release build, the bench's
//! `errors-record`: 1,000 signatures, a task per two records, `--ops 20000`, three runs each;
//! ratios against `raw-evalsha` in the same run; other builds and tests shared the machine and
//! the baseline's own rate at concurrency 1 swung between 17,000 and 34,000 calls/s, so the
//! ratios there are wide):
//!
//! | concurrency | records/s | p50 µs | p99 µs | ratio to raw-evalsha | server µs per record |
//! |---:|---:|---:|---:|---:|---:|
//! | 1 | 9,700–10,900 | 105–107 | 189–284 | 0.29–0.63 | 20 |
//! | 50 | 62,000–71,000 | 552–607 | 1,725–3,371 | 0.53–0.64 | 10.7 |
//!
//! (Server time: the `EVALSHA` time in `INFO commandstats` per record, with `--no-baseline`.)
//! A run of 1,000,000 records at concurrency 50 reached 83,000 records/s, 0.68 of the baseline.
//!
//! Later, on a slower machine of the same kind (raw-evalsha at 13,400–15,800 calls/s at
//! concurrency 1 and 31,000–41,000 at 50), after the client's fingerprint and classifier were
//! made cheaper (they were a tenth of its CPU per record), three runs each gave 5,800–7,300
//! records/s at concurrency 1 (ratio 0.44–0.46) and 24,000–29,000 at 50 (ratio 0.73–0.80).
//! On a third machine (2026-12-01; raw-evalsha at 12,200–16,200 calls/s at concurrency 1 and
//! 72,000–98,000 at 50), after each record's fields became arguments of their own and the
//! answer one packed string (server instructions per record 142k → 135k), runs of
//! `--ops 60000` gave 8,000–10,300 records/s at concurrency 1 (ratio 0.58–0.66 over twelve
//! runs) and 68,000–89,000 at 50 (ratio 0.70–1.07, mostly 0.77–0.99; 0.91 on a 3-master
//! cluster). The goal of 0.7 is met at concurrency 50, not at 1.
//! The bench's `errors-record-floor` (the same signatures and JSON on the client, and a script
//! making only the HMGET, XADD and HSET a record needs, computing nothing) reached 0.70–0.80 in
//! the same runs: the record's own work would have to cost under a third of what it does now
//! (cutting the task slots and counters out, 13,000 instructions, moved the ratio by ~0.02).
//! That work is ~55,000 server instructions beyond the floor's 80,000 (callgrind), spread over
//! the state, counters, task slots and correlation, each a few thousand; in Redis 7.0's Lua
//! every new string is hashed byte by byte and each `redis.call` converts every argument and
//! reply.
//!
//! Memory: after 1,005,000 records over 1,000 signatures with the default caps (10,000 log
//! entries, 10,000 task slots, 10,000 signatures), the tracker's three keys hold 9,070,688 bytes
//! (measured again on 12-01; 9,082,944 before)
//! (`MEMORY USAGE`; a log entry is the whole record when it has no stack and few attributes);
//! it plateaus once the caps are reached (the `memory_stays_bounded_by_the_caps` test checks
//! this with smaller caps: no growth from 10,000 to 30,000 records).
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
//! let tracker = ErrorTracker::builder(pool, Keyspace::new("demo")?, "agents").build()?;
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
//! assert_eq!(tracker.task("t-2").await?.expect("kept").message, "GET https://b.example/9 timed out after 45s");
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod event;
pub mod model;
mod normalize;
mod query;
mod tracker;

pub use coordkit_core;
pub use error::{Result, TrackerError};
pub use event::{Classifier, ErrorEvent, Severity, default_classifier};
pub use normalize::{NORMALIZER_VERSION, fingerprint, normalize};
pub use query::{
    Counts, ErrorRecord, LogEntry, LogPage, SignatureDetail, SignatureMeta, TopSignature,
    TopSignatures,
};
pub use tracker::{
    ErrorTracker, INSTANCE_KIND, MAX_ATTRIBUTE_NAME_BYTES, MAX_ATTRIBUTES, MAX_BATCH,
    MAX_FIELD_BYTES, MAX_FRAMES, Recorded, Repair, Resolution, TrackerBuilder,
};
