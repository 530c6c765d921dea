//! [`ErrorTracker`]: configuration, recording (with group commit) and resolution.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use coordkit_core::{Clock, GroupCommit, Key, KeyKind, Keyspace, Pool, Script};
use serde::Serialize;

use crate::error::Result;
use crate::event::{
    Classifier, ErrorEvent, MAX_NAME, Severity, clean_name, default_classifier, mark_with_digest,
    truncate,
};
use crate::normalize::{NORMALIZER_VERSION, fingerprint, normalize};

// Without the prelude: the record script needs none of its helpers.
pub(crate) static RECORD: Script = Script::bare("errors-record", include_str!("../lua/record.lua"));
static RESOLVE: Script = Script::new("errors-resolve", include_str!("../lua/resolve.lua"));

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
/// The most records one script call carries (see [`TrackerBuilder::max_in_flight`]).
pub const MAX_BATCH: usize = 64;
/// The record script's arguments per record.
const RECORD_ARGS: usize = 15;

#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) max_message_bytes: usize,
    pub(crate) log_max_len: u32,
    pub(crate) log_max_age: Duration,
    pub(crate) task_ttl: Duration,
    pub(crate) max_signatures: u32,
    pub(crate) max_tasks: u32,
    pub(crate) max_counters: u32,
    pub(crate) window: Duration,
    pub(crate) cascade_threshold: u32,
    pub(crate) per_component: bool,
    pub(crate) every_event: bool,
    pub(crate) max_in_flight: usize,
    pub(crate) clock: Clock,
    pub(crate) classifier: Arc<Classifier>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("max_message_bytes", &self.max_message_bytes)
            .field("log_max_len", &self.log_max_len)
            .field("log_max_age", &self.log_max_age)
            .field("task_ttl", &self.task_ttl)
            .field("max_signatures", &self.max_signatures)
            .field("max_tasks", &self.max_tasks)
            .field("max_counters", &self.max_counters)
            .field("window", &self.window)
            .field("cascade_threshold", &self.cascade_threshold)
            .field("per_component", &self.per_component)
            .field("every_event", &self.every_event)
            .field("max_in_flight", &self.max_in_flight)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

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
    records: GroupCommit<Prepared, Outcome>,
}

/// What every record-script call repeats.
struct RecordCall {
    keys: Keys,
    clock: Clock,
    /// The script's settings, the head of its argument (see `lua/record.lua`): its numbers and
    /// log length (then the clock) ...
    header: Vec<u8>,
    /// ... and what its events need (after the clock).
    events: Vec<u8>,
}

#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    count: u64,
    first_seen_ms: u64,
    ts_ms: u64,
    new_signature: bool,
    regression: bool,
    cascade: bool,
    repaired: Vec<Repair>,
}

/// One record, cleaned and encoded: its section of the script's argument (field names and
/// delimited names built here, so the script does less string work; see `lua/record.lua`), and
/// what the caller is told.
struct Prepared {
    signature: String,
    /// The record's arguments of the script (see `lua/record.lua`), its JSON last.
    args: Vec<Vec<u8>>,
    severity: Severity,
    truncated: bool,
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

/// Builds an [`ErrorTracker`] with validated settings.
pub struct TrackerBuilder {
    pool: Pool,
    keyspace: Keyspace,
    name: String,
    settings: Settings,
}

impl std::fmt::Debug for TrackerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackerBuilder")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl TrackerBuilder {
    /// The longest message kept, in bytes (default 4 KiB; 64 ..= 1 MiB). A longer one is cut
    /// at a character boundary and ends with `…[truncated <n> bytes]`.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.settings.max_message_bytes = bytes;
        self
    }

    /// How many entries the chronological log keeps (default 10,000).
    pub fn log_max_len(mut self, entries: u32) -> Self {
        self.settings.log_max_len = entries;
        self
    }

    /// How long log entries stay visible (default 7 days).
    pub fn log_max_age(mut self, age: Duration) -> Self {
        self.settings.log_max_age = age;
        self
    }

    /// How long a task's details record is kept after its latest error (default 7 days).
    pub fn task_ttl(mut self, ttl: Duration) -> Self {
        self.settings.task_ttl = ttl;
        self
    }

    /// How many signatures are tracked (default 10,000); beyond it the least recently seen is
    /// forgotten.
    pub fn max_signatures(mut self, n: u32) -> Self {
        self.settings.max_signatures = n;
        self
    }

    /// How many task details records are kept (default 10,000); beyond it the oldest goes.
    pub fn max_tasks(mut self, n: u32) -> Self {
        self.settings.max_tasks = n;
        self
    }

    /// How many (kind, component) counters are kept (default 10,000); occurrences of new pairs
    /// beyond it are counted under [`Counts::other`](crate::Counts::other).
    pub fn max_counters(mut self, n: u32) -> Self {
        self.settings.max_counters = n;
        self
    }

    /// The correlation window (default 5 minutes).
    pub fn correlation_window(mut self, window: Duration) -> Self {
        self.settings.window = window;
        self
    }

    /// How many distinct kinds within the window make a cascade (default 3).
    pub fn cascade_threshold(mut self, kinds: u32) -> Self {
        self.settings.cascade_threshold = kinds;
        self
    }

    /// Whether the component is part of a computed signature (default `true`). With `false`,
    /// one problem seen by several components is one signature listing them all.
    pub fn signature_per_component(mut self, yes: bool) -> Self {
        self.settings.per_component = yes;
        self
    }

    /// Whether every record publishes an event (`recorded`), or only notable ones: a new
    /// signature (`new_signature`), a regression (`regression`), and counts of 10, 100, 1000,
    /// … (`recurring`), so a storm of duplicates does not become a storm of events. Default
    /// `false` (notable ones only).
    pub fn publish_every_record(mut self, yes: bool) -> Self {
        self.settings.every_event = yes;
        self
    }

    /// The severity of events that carry none (default: [`default_classifier`]).
    pub fn classifier(
        mut self,
        f: impl Fn(&ErrorEvent) -> Severity + Send + Sync + 'static,
    ) -> Self {
        self.settings.classifier = Arc::new(f);
        self
    }

    /// The clock scripts use (default: the server's).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.settings.clock = clock;
        self
    }

    /// How many record calls of this tracker may be in flight at once (default 4, 1 ..= 64).
    /// Records made while that many are in flight wait and go together in the next call (group
    /// commit, at most [`MAX_BATCH`] per call): every record is still applied by exactly one
    /// script call, the records of one call in their arrival order, and under load there are
    /// fewer, larger calls. Calls in flight at the same time may be applied in either order
    /// (the log's order is the order they were applied in).
    pub fn max_in_flight(mut self, calls: usize) -> Self {
        self.settings.max_in_flight = calls;
        self
    }

    /// Validates the settings and builds the tracker.
    pub fn build(self) -> Result<ErrorTracker> {
        let s = &self.settings;
        let ms = |d: Duration| d.as_millis();
        let check = |ok: bool, field: &'static str, reason: &str| {
            if ok {
                Ok(())
            } else {
                Err(coordkit_core::Error::invalid_config(
                    field,
                    reason.to_owned(),
                ))
            }
        };
        check(
            (64..=1 << 20).contains(&s.max_message_bytes),
            "max_message_bytes",
            "must be between 64 and 1048576",
        )?;
        check(s.log_max_len >= 1, "log_max_len", "must be at least 1")?;
        check(
            ms(s.log_max_age) >= 1,
            "log_max_age",
            "must be at least 1 ms",
        )?;
        check(ms(s.task_ttl) >= 1, "task_ttl", "must be at least 1 ms")?;
        check(
            s.max_signatures >= 1,
            "max_signatures",
            "must be at least 1",
        )?;
        check(s.max_tasks >= 1, "max_tasks", "must be at least 1")?;
        check(s.max_counters >= 1, "max_counters", "must be at least 1")?;
        check(
            ms(s.window) >= 1,
            "correlation_window",
            "must be at least 1 ms",
        )?;
        check(
            s.cascade_threshold >= 1,
            "cascade_threshold",
            "must be at least 1",
        )?;
        check(
            (1..=64).contains(&s.max_in_flight),
            "max_in_flight",
            "must be between 1 and 64",
        )?;
        let instance = self.keyspace.instance(INSTANCE_KIND, &self.name)?;
        let keys = Keys {
            data: instance.typed_key("data", KeyKind::Hash),
            seen: instance.typed_key("seen", KeyKind::ZSet),
            log: instance.typed_key("log", KeyKind::Stream),
        };
        let channels = Severity::ALL
            .iter()
            .map(|s| self.keyspace.channel(INSTANCE_KIND, s.as_str()))
            .collect::<coordkit_core::Result<Vec<_>>>()?;
        let name_json = serde_json::to_string(&self.name).unwrap_or_else(|_| "\"\"".into());
        let channel_prefix = channels[Severity::Debug as usize]
            .strip_suffix(Severity::Debug.as_str())
            .unwrap_or_default();
        let mut header = pack_f64s(&[
            millis(s.log_max_age) as f64,
            if s.every_event { 1.0 } else { 0.0 },
            f64::from(s.max_signatures),
            f64::from(s.max_counters),
            millis(s.window) as f64,
            f64::from(s.cascade_threshold),
        ]);
        put_short(&mut header, s.log_max_len.to_string().as_bytes());
        let mut event_names = Vec::new();
        put_short(&mut event_names, channel_prefix.as_bytes());
        put_short(&mut event_names, self.name.as_bytes());
        put_short(&mut event_names, name_json.as_bytes());
        let mut events = Vec::with_capacity(4 + event_names.len());
        put_long(&mut events, &event_names);
        let call = Arc::new(RecordCall {
            keys: keys.clone(),
            clock: self.settings.clock.clone(),
            header,
            events,
        });
        let records = GroupCommit::new(
            &self.pool,
            self.settings.max_in_flight,
            MAX_BATCH,
            move |pool, batch: Vec<Prepared>| {
                let call = call.clone();
                Box::pin(async move { send(&pool, &call, batch).await })
            },
        );
        Ok(ErrorTracker {
            inner: Arc::new(Inner {
                pool: self.pool,
                name: self.name,
                keys,
                settings: self.settings,
                channels,
                records,
            }),
        })
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
    const BITS: [(u64, Repair); 6] = [
        (8, Repair::SignatureState),
        (16, Repair::Counter),
        (32, Repair::TaskSlot),
        (64, Repair::Correlation),
        (128, Repair::CounterFields),
        (256, Repair::OtherCounter),
    ];
}

/// What [`ErrorTracker::resolve`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Resolved now (server time, ms).
    Resolved {
        /// When.
        at_ms: u64,
    },
    /// It already was, since `at_ms`.
    AlreadyResolved {
        /// Since when.
        at_ms: u64,
    },
    /// No such signature is tracked.
    Unknown,
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
    /// A builder for the tracker `name` (a validated name: one hash tag, so every key of the
    /// tracker is in one slot) over `pool`, with keys under `keyspace`.
    ///
    /// Defaults: messages up to 4 KiB, a log of 10,000 entries kept 7 days, task details kept 7
    /// days (at most 10,000), at most 10,000 signatures and 10,000 counters, a 5-minute
    /// correlation window with a threshold of 3 kinds, signatures per component, the
    /// [`default_classifier`], the server clock, 4 record calls in flight.
    pub fn builder(pool: Pool, keyspace: Keyspace, name: &str) -> TrackerBuilder {
        TrackerBuilder {
            pool,
            keyspace,
            name: name.to_owned(),
            settings: Settings {
                max_message_bytes: 4096,
                log_max_len: 10_000,
                log_max_age: Duration::from_secs(7 * 24 * 3600),
                task_ttl: Duration::from_secs(7 * 24 * 3600),
                max_signatures: 10_000,
                max_tasks: 10_000,
                max_counters: 10_000,
                window: Duration::from_secs(300),
                cascade_threshold: 3,
                per_component: true,
                every_event: false,
                max_in_flight: 4,
                clock: Clock::Server,
                classifier: Arc::new(default_classifier),
            },
        }
    }

    /// The tracker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
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
    /// [`TrackerBuilder::publish_every_record`] is on); cascades go to `critical`, resolutions
    /// to `info`. A pattern subscription on
    /// [`Keyspace::channel_pattern`]`(Some("errors"))` watches them all.
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
    /// [`TrackerBuilder::max_in_flight`]); each is applied exactly once, atomically.
    pub async fn record(&self, event: &ErrorEvent) -> Result<Recorded> {
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

    /// Marks `signature` resolved (server time). A later occurrence re-opens it as a
    /// regression, with a `regression` event.
    pub async fn resolve(&self, signature: &str) -> Result<Resolution> {
        let inner = &self.inner;
        let (status, ms): (u8, u64) = RESOLVE
            .prepare()
            .key(&inner.keys.data)
            .arg(inner.settings.clock.arg())
            .arg(signature)
            .arg(self.channel(Severity::Info))
            .arg(&inner.name)
            .invoke(&inner.pool)
            .await?;
        Ok(match status {
            1 => Resolution::Resolved { at_ms: ms },
            2 => Resolution::AlreadyResolved { at_ms: ms },
            _ => Resolution::Unknown,
        })
    }
}

/// One record-script call for `batch`: its outcomes, in order.
async fn send(
    pool: &Pool,
    common: &RecordCall,
    batch: Vec<Prepared>,
) -> coordkit_core::Result<Vec<Outcome>> {
    let keys = &common.keys;
    let clock = common.clock.arg();
    let mut header =
        Vec::with_capacity(common.header.len() + clock.len() + 2 + common.events.len());
    header.extend_from_slice(&common.header);
    put_short(&mut header, clock.as_bytes());
    header.extend_from_slice(&common.events);
    let mut call = RECORD.prepare();
    call.key(&keys.data)
        .key(&keys.seen)
        .key(&keys.log)
        .arg(header);
    let records = batch.len();
    for p in batch {
        for arg in p.args {
            call.arg_bytes(arg);
        }
    }
    let packed: Vec<u8> = call.invoke(pool).await?;
    decode_outcomes(&packed, records)
}

/// The record script's answer: big-endian doubles, `now`, then count, first seen and flags per
/// record.
pub(crate) fn decode_outcomes(
    packed: &[u8],
    records: usize,
) -> coordkit_core::Result<Vec<Outcome>> {
    if packed.len() != 8 * (1 + records * 3) {
        return Err(coordkit_core::Error::decode(
            "the record script's answer",
            format!("{} bytes for {} records", packed.len(), records),
        ));
    }
    // Whole numbers in 0..=2^53, as the script computed them from bounded stored numbers.
    let mut numbers = Vec::with_capacity(packed.len() / 8);
    for c in packed.chunks_exact(8) {
        let n = f64::from_be_bytes(c.try_into().unwrap_or_default());
        numbers.push(whole(n).ok_or_else(|| {
            coordkit_core::Error::decode(
                "the record script's answer",
                format!("{n} is no whole number in 0..=2^53"),
            )
        })?);
    }
    let now = numbers.first().copied().unwrap_or_default();
    Ok(numbers
        .get(1..)
        .unwrap_or_default()
        .chunks_exact(3)
        .map(|c| Outcome {
            count: c[0],
            first_seen_ms: c[1],
            ts_ms: now,
            new_signature: c[2] & 1 != 0,
            regression: c[2] & 2 != 0,
            cascade: c[2] & 4 != 0,
            repaired: Repair::BITS
                .iter()
                .filter(|(bit, _)| c[2] & bit != 0)
                .map(|(_, r)| *r)
                .collect(),
        })
        .collect())
}

/// The largest whole number the scripts store (in a double, exactly).
pub(crate) const MAX_STORED: u64 = 1 << 53;

/// `n` as a whole number in `0..=2^53`, or `None` (NaN, infinite, negative, fractional, huge).
pub(crate) fn whole(n: f64) -> Option<u64> {
    (n >= 0.0 && n <= MAX_STORED as f64 && n.fract() == 0.0).then_some(n as u64)
}

/// A string as the record script's `struct.unpack('>Hc0')` reads it: its length (2 bytes,
/// big-endian), then its bytes. Only for short strings: names, ids.
fn put_short(out: &mut Vec<u8>, bytes: &[u8]) {
    debug_assert!(
        bytes.len() <= usize::from(u16::MAX),
        "a short string of {} bytes",
        bytes.len()
    );
    out.extend_from_slice(&u16::try_from(bytes.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A string as `struct.unpack('>I4c0')` reads it: its length (4 bytes, big-endian), then its
/// bytes.
fn put_long(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Numbers as the scripts' `struct.pack('>d', …)` writes them: big-endian doubles.
pub(crate) fn pack_f64s(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// The two slots (of `max_tasks`) a task's details record may use: from a SHA-1 of its id, so
/// every process agrees.
pub(crate) fn task_slots(task: &str, max_tasks: u32) -> (u32, u32) {
    let digest = sha1_smol::Sha1::from(task.as_bytes()).digest().bytes();
    let a = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    let b = u32::from_be_bytes([digest[4], digest[5], digest[6], digest[7]]);
    let n = max_tasks.max(1);
    (a % n, b % n)
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(numbers: &[f64]) -> Vec<u8> {
        pack_f64s(numbers)
    }

    #[test]
    fn the_record_answer_is_decoded_per_record() {
        let outcomes = decode_outcomes(
            &packed(&[
                1_700_000_000_123.0,
                5.0,
                1_600_000_000_000.0,
                0.0,
                1.0,
                1_700_000_000_123.0,
                7.0,
            ]),
            2,
        )
        .unwrap();
        assert_eq!(outcomes.len(), 2);
        assert_eq!(outcomes[0].count, 5);
        assert_eq!(outcomes[0].first_seen_ms, 1_600_000_000_000);
        assert_eq!(outcomes[0].ts_ms, 1_700_000_000_123);
        assert!(!outcomes[0].new_signature && !outcomes[0].regression && !outcomes[0].cascade);
        assert_eq!(outcomes[1].count, 1);
        assert!(outcomes[1].new_signature && outcomes[1].regression && outcomes[1].cascade);
    }

    #[test]
    fn a_record_answer_of_the_wrong_size_is_an_error_not_a_panic() {
        assert!(decode_outcomes(&packed(&[1.0, 2.0, 3.0]), 1).is_err());
        assert!(decode_outcomes(&[0; 13], 1).is_err());
        assert!(decode_outcomes(&[], 0).is_err());
    }
}
