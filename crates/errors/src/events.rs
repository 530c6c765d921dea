//! [`ErrorTracker::events`]: one tracker's events (records, resolutions, cascades), typed.

use std::collections::{BTreeMap, BTreeSet};

use coordkit_core::time::millis;
use coordkit_core::{EventStream, Result, Selected};
use serde::Deserialize;

use crate::event::Severity;
use crate::query::ErrorRecord;
use crate::tracker::{ErrorTracker, Repair};
use crate::wire::{code, repairs};

/// The `source` of this crate's events; the same name is written in `lua/record.lua` and
/// `lua/resolve.lua`.
pub const EVENT_SOURCE: &str = "errors";

/// One event of one tracker, from the script that made the change (exactly once per change
/// while the subscriber is connected).
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerEvent {
    /// The tracker's name (the event's `entity`).
    pub tracker: String,
    /// The severity channel it came on: the record's severity, `Info` for a resolution,
    /// `Critical` for a cascade.
    pub severity: Severity,
    /// When, in ms since the Unix epoch on the server's clock (or the manual clock).
    pub ts_ms: u64,
    /// What happened.
    pub kind: TrackerEventKind,
}

/// What happened in a tracker.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TrackerEventKind {
    /// A record of a signature the tracker did not know.
    NewSignature(RecordEvent),
    /// A record that re-opened a resolved signature.
    Regression(RecordEvent),
    /// A record that brought a signature's count to 10, 100, 1,000, …
    Recurring(RecordEvent),
    /// Any other record (only with
    /// [`publish_every_record`](crate::ErrorTrackerBuilder::publish_every_record) on, or when the
    /// record repaired stored state).
    Recorded(RecordEvent),
    /// A signature was resolved ([`ErrorTracker::resolve`]).
    Resolved {
        /// The signature.
        signature: String,
        /// Its count when resolved.
        count: u64,
    },
    /// Distinct kinds within the correlation window reached the threshold.
    Cascade(CascadeEvent),
}

/// A record's event.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordEvent {
    /// The signature's count, this occurrence included.
    pub count: u64,
    /// When the signature was first seen (server time, ms).
    pub first_seen_ms: u64,
    /// Stored state the record started afresh (see
    /// [`Recorded::repaired`](crate::Recorded::repaired)).
    pub repaired: Vec<Repair>,
    /// The occurrence as kept (its `ts_ms` is the event's, its `count` the signature's).
    pub record: ErrorRecord,
}

/// A cascade: several kinds failing together within the correlation window.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CascadeEvent {
    /// The distinct kinds seen in the window.
    pub kinds: BTreeSet<String>,
    /// Occurrences per kind in the window (from the log; lower bounds unless `complete`).
    pub counts: BTreeMap<String, u64>,
    /// Occurrences per component in the window (as `counts`).
    pub components: BTreeMap<String, u64>,
    /// Whether the counts cover every occurrence of the window.
    pub complete: bool,
    /// The correlation window, ms.
    #[serde(with = "millis")]
    pub window_ms: u64,
    /// The number of distinct kinds that makes a cascade.
    #[serde(with = "millis")]
    pub threshold: u64,
    /// The signature whose record completed the cascade.
    pub trigger: String,
    /// Log entries of the window that did not decode (written by something else).
    #[serde(with = "millis")]
    pub undecodable: u64,
}

/// The payload of a record's event (see `lua/record.lua`).
#[derive(Deserialize)]
struct RecordPayload {
    #[serde(with = "millis")]
    count: u64,
    #[serde(with = "millis")]
    first_seen_ms: u64,
    /// The repair flags shifted down to start at 1.
    #[serde(default, with = "millis::option")]
    repaired: Option<u64>,
    record: ErrorRecord,
}

/// The payload of a `resolved` event (see `lua/resolve.lua`).
#[derive(Deserialize)]
struct ResolvedPayload {
    signature: String,
    #[serde(with = "millis")]
    count: u64,
}

/// The kinds the scripts publish, each on its severity's channel.
const RECORD_KINDS: [&str; 4] = ["new_signature", "regression", "recurring", "recorded"];

/// A subscription to one tracker's events, from [`ErrorTracker::events`].
///
/// Every tracker of a namespace publishes on the same channels (one per severity); this one
/// keeps those whose entity is its tracker's name. An event of this tracker that does not
/// decode (another version's) is counted in [`undecodable`](Self::undecodable) and skipped.
/// Pub/sub delivers to connected subscribers only: after
/// [`EventStream::reconnections`] fires, re-read what matters with the queries
/// ([`ErrorTracker::recent`], [`ErrorTracker::top`]). Each severity has its own channel, so on
/// a cluster events of different severities may arrive out of order (`ts_ms` tells).
pub type TrackerEvents = EventStream<TrackerEvent>;

/// The tracker `name`'s event, typed; `channels` are its channels by severity.
fn typed(
    name: &str,
    channels: &[String],
    channel: &str,
    event: coordkit_core::Event<serde_json::Value>,
) -> Selected<TrackerEvent> {
    if !event.is_from(EVENT_SOURCE, name) {
        return Selected::Other;
    }
    let severity = Severity::ALL
        .into_iter()
        .find(|s| channels[*s as usize] == channel);
    let kind = severity.and_then(|_| decode(&event.kind, event.ts_ms, event.payload));
    match (severity, kind) {
        (Some(severity), Some(kind)) => Selected::Event(TrackerEvent {
            tracker: event.entity,
            severity,
            ts_ms: event.ts_ms,
            kind,
        }),
        _ => Selected::Undecodable,
    }
}

/// An event's payload, typed by its kind; `None` when it does not decode.
fn decode(kind: &str, ts_ms: u64, payload: serde_json::Value) -> Option<TrackerEventKind> {
    if RECORD_KINDS.contains(&kind) {
        let p: RecordPayload = serde_json::from_value(payload).ok()?;
        let mut record = p.record;
        record.ts_ms = ts_ms;
        record.count = p.count;
        let event = RecordEvent {
            count: p.count,
            first_seen_ms: p.first_seen_ms,
            repaired: repairs(
                p.repaired
                    .unwrap_or(0)
                    .saturating_mul(code::FLAG_REPAIRED_STATE),
            ),
            record,
        };
        return Some(match kind {
            "new_signature" => TrackerEventKind::NewSignature(event),
            "regression" => TrackerEventKind::Regression(event),
            "recurring" => TrackerEventKind::Recurring(event),
            _ => TrackerEventKind::Recorded(event),
        });
    }
    match kind {
        "resolved" => {
            let p: ResolvedPayload = serde_json::from_value(payload).ok()?;
            Some(TrackerEventKind::Resolved {
                signature: p.signature,
                count: p.count,
            })
        }
        "cascade" => serde_json::from_value(payload)
            .ok()
            .map(TrackerEventKind::Cascade),
        _ => None,
    }
}

impl ErrorTracker {
    /// Subscribes to this tracker's events (records by severity, resolutions, cascades), typed,
    /// on a connection of its own: every event published after this returns is delivered
    /// (while connected); those of other trackers are not. Subscribe before the work whose
    /// events you want.
    pub async fn events(&self) -> Result<TrackerEvents> {
        let mut builder = self.pool().subscriber();
        for channel in &self.inner.channels {
            builder = builder.channel(channel.clone());
        }
        let subscriber = builder.subscribe().await?;
        let (name, channels) = (self.name().to_owned(), self.inner.channels.clone());
        Ok(EventStream::new(subscriber, move |received| {
            typed(&name, &channels, &received.channel, received.event)
        }))
    }
}
