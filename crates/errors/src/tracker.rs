//! [`ErrorTracker`]: the handle, and the record path (cleaning an event and encoding it for
//! the record script; the batching is in `batch`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use coordkit_core::{
    GroupCommit, IndexPage, InstanceIndex, Key, Keyspace, Lifetime, Listing, Pool, Registration,
    Result,
};
use serde::Serialize;

use crate::batch::{Outcome, Prepared};
use crate::config::Settings;
use crate::event::{ErrorEvent, MAX_NAME, Severity, clean_name, mark_with_digest, truncate};
use crate::normalize::{NORMALIZER_VERSION, fingerprint, normalize};
use crate::wire::{RECORD_ARGS, code, task_slots};

/// The instance kind of trackers in the keyspace (`<ns>:{errors:<name>}:…`).
pub const INSTANCE_KIND: &str = "errors";

/// The most stack frames kept per record (beyond it, the last kept frame says how many more
/// there were: `…[<n> more frames]`).
pub const MAX_FRAMES: usize = 64;
/// The most attributes kept per record (beyond it, the attribute `…` says how many more there
/// were: `<n> more attributes`).
pub const MAX_ATTRIBUTES: usize = 64;
/// The longest stack frame, attribute value or code kept, in bytes (longer ones are truncated
/// with a marker).
pub const MAX_FIELD_BYTES: usize = 1024;
/// The longest attribute name kept, in bytes (a longer one is cut and ends with `~` and a
/// digest of the whole name, so two long names stay two).
pub const MAX_ATTRIBUTE_NAME_BYTES: usize = 200;
/// The most records one script call carries (see [`ErrorTrackerBuilder::max_in_flight`](crate::ErrorTrackerBuilder::max_in_flight)).
pub const MAX_BATCH: usize = 64;

/// The keys of one tracker (one hash tag).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub(crate) data: Key,
    pub(crate) seen: Key,
    pub(crate) log: Key,
}

pub(crate) struct Inner {
    pub(crate) pool: Pool,
    pub(crate) name: String,
    pub(crate) keys: Keys,
    pub(crate) settings: Settings,
    /// Event channel per severity, in [`Severity::ALL`] order.
    pub(crate) channels: Vec<String>,
    /// Concurrent records share one record-script call (group commit).
    pub(crate) records: GroupCommit<Prepared, Outcome>,
    /// The tracker's entry in the namespace's index of trackers.
    pub(crate) registration: Registration,
}

/// Error tracking for one application (or one fleet of agents): records error events,
/// deduplicates them by signature, correlates them across components, and answers queries.
/// Cheap to clone; clones share the group-commit queue.
///
/// See the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct ErrorTracker {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for ErrorTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorTracker")
            .field("name", &self.inner.name)
            .field("keys", &self.inner.keys)
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// What [`ErrorTracker::record`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The signature the occurrence was counted under.
    pub signature: String,
    /// The signature's count, this occurrence included.
    pub count: u64,
    /// When the signature was first seen (server time, ms).
    pub first_seen_ms: u64,
    /// When this occurrence was recorded (server time, ms).
    pub ts_ms: u64,
    /// The severity it was recorded with (given, or from the classifier).
    pub severity: Severity,
    /// The signature was not tracked before.
    pub new_signature: bool,
    /// The signature was resolved and this occurrence re-opened it.
    pub regression: bool,
    /// This occurrence completed a cascade: a `cascade` event was emitted.
    pub cascade: bool,
    /// Something was cut: the message to its size limit, the code or a frame or attribute to
    /// [`MAX_FIELD_BYTES`], or frames or attributes beyond [`MAX_FRAMES`] / [`MAX_ATTRIBUTES`]
    /// (each cut leaves a marker).
    pub truncated: bool,
    /// Stored state this record found undecodable (written by something else, or damaged) and
    /// started afresh, so the occurrence was still recorded: empty unless the data was bad.
    /// The record's event says so too (`"repaired"`, see `lua/record.lua`).
    pub repaired: Vec<Repair>,
}

/// Stored state a record could not decode and started afresh (see [`Recorded::repaired`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Repair {
    /// The signature's state: count, first seen, resolution, regressions and components
    /// restart with this occurrence (reported as a new signature).
    SignatureState,
    /// The (kind, component) counter restarts at this occurrence.
    Counter,
    /// The task's details went to a slot whose owner did not decode (its task is unknowable).
    TaskSlot,
    /// The correlation state (kinds seen lately, last cascade) restarts empty.
    Correlation,
    /// The count of counter fields was set to the cap: new pairs count under
    /// [`Counts::other`](crate::Counts::other).
    CounterFields,
    /// [`Counts::other`](crate::Counts::other) restarts at this occurrence.
    OtherCounter,
}

impl Repair {
    /// Each repair with its bit in the record script's flags.
    pub(crate) const BITS: [(u64, Repair); 6] = [
        (code::FLAG_REPAIRED_STATE, Repair::SignatureState),
        (code::FLAG_REPAIRED_COUNTER, Repair::Counter),
        (code::FLAG_REPAIRED_TASK_SLOT, Repair::TaskSlot),
        (code::FLAG_REPAIRED_CORRELATION, Repair::Correlation),
        (code::FLAG_REPAIRED_COUNTER_FIELDS, Repair::CounterFields),
        (code::FLAG_REPAIRED_OTHER, Repair::OtherCounter),
    ];
}

#[derive(Serialize)]
struct RecordJson<'a> {
    signature: &'a str,
    /// The log entry's fields, in the same place of the JSON.
    #[serde(flatten)]
    entry: EntryJson<'a>,
    truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    occurred_ms: Option<u64>,
    stack: &'a [String],
    attributes: &'a BTreeMap<String, String>,
}

#[derive(Serialize, Clone, Copy)]
struct EntryJson<'a> {
    component: &'a str,
    kind: &'a str,
    severity: Severity,
    message: &'a str,
    task_id: Option<&'a str>,
    code: Option<&'a str>,
    recoverable: bool,
}

#[derive(Serialize)]
struct MetaJson<'a> {
    kind: &'a str,
    component: &'a str,
    template: &'a str,
    normalizer: u32,
}

/// How many of `len` items are kept under a cap of `cap`: all of them, or one fewer than the cap
/// when they are more, to leave room for the marker that says how many more there were.
fn kept_within(len: usize, cap: usize) -> usize {
    if len > cap { cap - 1 } else { len }
}

fn clean_text(text: &str, max: usize) -> String {
    let mut text = text.to_owned();
    truncate(&mut text, max);
    text
}

fn clean_fingerprint(custom: &str) -> String {
    let cleaned: String = custom
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut name = clean_name(&cleaned);
    if cleaned != custom && name.len() <= MAX_NAME {
        // Characters were replaced: a digest of the original keeps "a b" and "a_b" apart.
        mark_with_digest(&mut name, custom, MAX_NAME);
    }
    format!("c-{name}")
}

impl ErrorTracker {
    /// The tracker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The index of the trackers of `keyspace`: every tracker a handle recorded an error in
    /// is listed there, recorded by the handle before its first record (see
    /// [`coordkit_core::index`]). A tracker's keys do not expire: no deadline.
    pub fn index(keyspace: &Keyspace) -> Result<InstanceIndex> {
        InstanceIndex::new(keyspace, INSTANCE_KIND)
    }

    /// The names of every tracker of `keyspace`, sorted, in one call (no `SCAN`), and the
    /// index's entries that are not tracker names, if any.
    pub async fn list(pool: &Pool, keyspace: &Keyspace) -> Result<Listing> {
        Self::index(keyspace)?.list(pool).await
    }

    /// One page of [`ErrorTracker::list`]: up to `count` (1..=1000) names after `after`
    /// (`None`: from the first, then each page's `next`), in one call.
    pub async fn list_page(
        pool: &Pool,
        keyspace: &Keyspace,
        after: Option<&str>,
        count: u32,
    ) -> Result<IndexPage> {
        Self::index(keyspace)?.page(pool, after, count).await
    }

    /// Every key the tracker writes (data, seen, log), for monitoring (`MEMORY USAGE`) or
    /// deletion.
    pub fn keys(&self) -> Vec<Key> {
        let k = &self.inner.keys;
        [&k.data, &k.seen, &k.log].into_iter().cloned().collect()
    }

    /// The pool it uses.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The event channel of `severity`: `<ns>:events:errors:<severity>`. Records publish on
    /// their severity's channel (event kinds `new_signature`, `regression`, `recurring` at
    /// counts of 10, 100, …, and `recorded` for the others when
    /// [`ErrorTrackerBuilder::publish_every_record`](crate::ErrorTrackerBuilder::publish_every_record) is on); cascades go to `critical`, resolutions
    /// to `info`. A pattern subscription on
    /// [`Keyspace::channel_pattern`](coordkit_core::Keyspace::channel_pattern)`(Some("errors"))` watches them all.
    pub fn channel(&self, severity: Severity) -> &str {
        &self.inner.channels[severity as usize]
    }

    /// The signature `event` would be recorded under: its own fingerprint (`c-<cleaned>`; when
    /// characters had to be replaced, `~` and a digest of the original follow, so fingerprints
    /// that differ stay different), or
    /// `v<version>-<hash>` of its kind, component (unless disabled) and message template.
    pub fn signature_of(&self, event: &ErrorEvent) -> String {
        let message = clean_text(&event.message_text(), self.inner.settings.max_message_bytes);
        self.signature_with(
            event,
            &clean_name(&event.kind),
            &clean_name(&event.component),
            &message,
        )
        .0
    }

    /// The signature of `event` with its cleaned kind, component and message, and the message
    /// template it hashed (empty for the caller's own fingerprint).
    fn signature_with(
        &self,
        event: &ErrorEvent,
        kind: &str,
        component: &str,
        message: &str,
    ) -> (String, String) {
        match &event.fingerprint {
            Some(custom) => (clean_fingerprint(custom), String::new()),
            None => {
                let template = normalize(message);
                let signature = fingerprint(
                    kind,
                    self.inner.settings.per_component.then_some(component),
                    &template,
                );
                (signature, template)
            }
        }
    }

    fn prepare(&self, event: &ErrorEvent) -> Prepared {
        let settings = &self.inner.settings;
        let mut message = event.message_text().into_owned();
        // Whether anything was cut: the message, the code, frames or attributes.
        let mut cut = truncate(&mut message, settings.max_message_bytes);
        let kind = clean_name(&event.kind);
        let component = clean_name(&event.component);
        let task = event.task_id.as_deref().map(clean_name);
        let code = event.code.as_deref().map(|c| {
            let mut code = c.to_owned();
            cut |= truncate(&mut code, MAX_FIELD_BYTES);
            code
        });
        let severity = event
            .severity
            .unwrap_or_else(|| (settings.classifier)(event));
        let (signature, mut template) = self.signature_with(event, &kind, &component, &message);
        // Stack and attributes are copied only when some of them must be cut; what goes beyond
        // the caps leaves a marker (the last frame, the attribute "…"), never silence.
        let fits = |text: &String, max: usize| text.len() <= max;
        let stack: Cow<'_, [String]> = if event.stack.len() <= MAX_FRAMES
            && event.stack.iter().all(|f| fits(f, MAX_FIELD_BYTES))
        {
            Cow::Borrowed(&event.stack)
        } else {
            cut = true;
            let kept = kept_within(event.stack.len(), MAX_FRAMES);
            let mut frames: Vec<String> = event
                .stack
                .iter()
                .take(kept)
                .map(|f| clean_text(f, MAX_FIELD_BYTES))
                .collect();
            if event.stack.len() > kept {
                frames.push(format!("…[{} more frames]", event.stack.len() - kept));
            }
            Cow::Owned(frames)
        };
        let attributes: Cow<'_, BTreeMap<String, String>> = if event.attributes.len()
            <= MAX_ATTRIBUTES
            && event
                .attributes
                .iter()
                .all(|(k, v)| fits(k, MAX_ATTRIBUTE_NAME_BYTES) && fits(v, MAX_FIELD_BYTES))
        {
            Cow::Borrowed(&event.attributes)
        } else {
            cut = true;
            let kept = kept_within(event.attributes.len(), MAX_ATTRIBUTES);
            let mut attributes: BTreeMap<String, String> = event
                .attributes
                .iter()
                .take(kept)
                .map(|(k, v)| {
                    let mut name = k.clone();
                    if name.len() > MAX_ATTRIBUTE_NAME_BYTES {
                        // Cut with a digest of the whole, so two long names stay two.
                        mark_with_digest(&mut name, k, MAX_ATTRIBUTE_NAME_BYTES);
                    }
                    (name, clean_text(v, MAX_FIELD_BYTES))
                })
                .collect();
            if event.attributes.len() > kept {
                attributes.insert(
                    "…".to_owned(),
                    format!("{} more attributes", event.attributes.len() - kept),
                );
            }
            Cow::Owned(attributes)
        };
        let entry = EntryJson {
            component: &component,
            kind: &kind,
            severity,
            message: &message,
            task_id: task.as_deref(),
            code: code.as_deref(),
            recoverable: event.recoverable,
        };
        let record = serde_json::to_string(&RecordJson {
            signature: &signature,
            entry,
            truncated: cut,
            occurred_ms: event.occurred_ms,
            stack: &stack,
            attributes: &attributes,
        })
        .unwrap_or_else(|_| "{\"signature\":\"?\"}".to_owned());
        // The log entry: the record itself when it has little beyond the entry's fields (no
        // stack, few small attributes), so the script gets one JSON less; else the entry alone.
        let entry = if stack.is_empty()
            && attributes.len() <= 4
            && attributes
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
                <= 64
        {
            String::new()
        } else {
            serde_json::to_string(&entry).unwrap_or_else(|_| "{\"kind\":\"?\"}".to_owned())
        };
        truncate(&mut template, 1024);
        let meta = serde_json::to_string(&MetaJson {
            kind: &kind,
            component: &component,
            template: &template,
            normalizer: NORMALIZER_VERSION,
        })
        .unwrap_or_default();
        let task = task.unwrap_or_default();
        // The record's arguments of the script (see `lua/record.lua`).
        let concat = |parts: &[&[u8]]| parts.concat();
        let slots = (!task.is_empty()).then(|| {
            let (a, b) = task_slots(&task, settings.max_tasks);
            (a.to_string(), b.to_string())
        });
        let slot_field = |prefix: &[u8], second: bool| match &slots {
            Some((a, b)) => concat(&[prefix, (if second { b } else { a }).as_bytes()]),
            None => Vec::new(),
        };
        let occurred = event
            .occurred_ms
            .map(|ms| ms.to_string())
            .unwrap_or_default();
        let args = vec![
            // The fields the batch reads.
            signature.clone().into_bytes(),
            concat(&[b"~c ", kind.as_bytes(), b" ", component.as_bytes()]),
            slot_field(b"~to ", false),
            slot_field(b"~to ", true),
            // The rest.
            concat(&[signature.as_bytes(), b" s"]),
            concat(&[b"~k ", kind.as_bytes()]),
            concat(&[b" ", component.as_bytes(), b" "]),
            if slots.is_some() {
                concat(&[task.as_bytes(), b"\t"])
            } else {
                Vec::new()
            },
            entry.into_bytes(),
            slot_field(b"~t ", false),
            slot_field(b"~t ", true),
            occurred.into_bytes(),
            severity.as_str().as_bytes().to_vec(),
            meta.into_bytes(),
            record.into_bytes(),
        ];
        debug_assert_eq!(args.len(), RECORD_ARGS);
        Prepared {
            signature,
            args,
            severity,
            truncated: cut,
        }
    }

    /// Records one occurrence, in one script call: the signature's count, first/last seen and
    /// last sample, the components seen, the counters by kind and component, the log, the
    /// task's details record, correlation (and a `cascade` event when it completes one), the
    /// re-opening of a resolved signature (a regression), and one event on the severity's
    /// channel.
    ///
    /// Bad input is cleaned, never rejected: invalid UTF-8 is replaced, a message over the
    /// limit is truncated with a marker, kinds, components and task ids have whitespace,
    /// control characters and braces replaced and are cut (with a hash) to 120 bytes, an empty
    /// one becomes `unknown`; stack frames, attributes and codes are capped, each cut leaving a
    /// marker (and [`Recorded::truncated`] set).
    ///
    /// Concurrent records of one tracker may share a call (see
    /// [`ErrorTrackerBuilder::max_in_flight`](crate::ErrorTrackerBuilder::max_in_flight)); each is applied exactly once, atomically.
    pub async fn record(&self, event: &ErrorEvent) -> Result<Recorded> {
        let registration = &self.inner.registration;
        if registration.is_due(Lifetime::Forever) {
            // Boxed: rare (once per handle and refresh period), keeps the future small.
            Box::pin(registration.ensure(&self.inner.pool, Lifetime::Forever)).await?;
        }
        let prepared = self.prepare(event);
        let signature = prepared.signature.clone();
        let (severity, truncated) = (prepared.severity, prepared.truncated);
        let outcome = self
            .inner
            .records
            .submit(&self.inner.keys.data, prepared)
            .await?;
        Ok(Recorded {
            signature,
            count: outcome.count,
            first_seen_ms: outcome.first_seen_ms,
            ts_ms: outcome.ts_ms,
            severity,
            new_signature: outcome.new_signature,
            regression: outcome.regression,
            cascade: outcome.cascade,
            truncated,
            repaired: outcome.repaired,
        })
    }
}
