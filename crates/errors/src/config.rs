//! [`ErrorTrackerBuilder`]: a tracker's settings, each validated by [`ErrorTrackerBuilder::build`].

use std::sync::Arc;
use std::time::Duration;

use coordkit_core::time::duration_ms;
use coordkit_core::{Clock, Error, InstanceIndex, KeyKind, Keyspace, Pool, Registration, Result};

use crate::batch::{self, RecordCall};
use crate::event::{Classifier, ErrorEvent, Severity, default_classifier};
use crate::tracker::{ErrorTracker, INSTANCE_KIND, Inner, Keys};

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

/// Builds an [`ErrorTracker`] with validated settings.
pub struct ErrorTrackerBuilder {
    pool: Pool,
    keyspace: Keyspace,
    name: String,
    settings: Settings,
}

impl std::fmt::Debug for ErrorTrackerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorTrackerBuilder")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ErrorTrackerBuilder {
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
    /// commit, at most [`MAX_BATCH`](crate::MAX_BATCH) per call): every record is still applied by exactly one
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
        let check = |ok: bool, field: &'static str, reason: &str| {
            if ok {
                Ok(())
            } else {
                Err(Error::invalid_config(field, reason.to_owned()))
            }
        };
        check(
            (64..=1 << 20).contains(&s.max_message_bytes),
            "max_message_bytes",
            "must be between 64 and 1048576",
        )?;
        check(s.log_max_len >= 1, "log_max_len", "must be at least 1")?;
        check(
            duration_ms(s.log_max_age) >= 1,
            "log_max_age",
            "must be at least 1 ms",
        )?;
        check(
            duration_ms(s.task_ttl) >= 1,
            "task_ttl",
            "must be at least 1 ms",
        )?;
        check(
            s.max_signatures >= 1,
            "max_signatures",
            "must be at least 1",
        )?;
        check(s.max_tasks >= 1, "max_tasks", "must be at least 1")?;
        check(s.max_counters >= 1, "max_counters", "must be at least 1")?;
        check(
            duration_ms(s.window) >= 1,
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
        let registration = Registration::new(
            InstanceIndex::new(&self.keyspace, INSTANCE_KIND)?,
            &self.name,
        );
        let keys = Keys {
            data: instance.typed_key("data", KeyKind::Hash),
            seen: instance.typed_key("seen", KeyKind::ZSet),
            log: instance.typed_key("log", KeyKind::Stream),
        };
        let channels = Severity::ALL
            .iter()
            .map(|s| self.keyspace.channel(INSTANCE_KIND, s.as_str()))
            .collect::<Result<Vec<_>>>()?;
        let channel_prefix = channels[Severity::Debug as usize]
            .strip_suffix(Severity::Debug.as_str())
            .unwrap_or_default();
        let call = RecordCall::new(keys.clone(), &self.settings, channel_prefix, &self.name);
        let records = batch::group_commit(&self.pool, call, self.settings.max_in_flight);
        Ok(ErrorTracker {
            inner: Arc::new(Inner {
                pool: self.pool,
                name: self.name,
                keys,
                settings: self.settings,
                channels,
                records,
                registration,
            }),
        })
    }
}

impl ErrorTracker {
    /// A builder for the tracker `name` (a validated name: one hash tag, so every key of the
    /// tracker is in one slot) over `pool`, with keys under `keyspace`.
    ///
    /// Defaults: messages up to 4 KiB, a log of 10,000 entries kept 7 days, task details kept 7
    /// days (at most 10,000), at most 10,000 signatures and 10,000 counters, a 5-minute
    /// correlation window with a threshold of 3 kinds, signatures per component, the
    /// [`default_classifier`], the server clock, 4 record calls in flight.
    pub fn builder(pool: &Pool, keyspace: &Keyspace, name: &str) -> ErrorTrackerBuilder {
        ErrorTrackerBuilder {
            pool: pool.clone(),
            keyspace: keyspace.clone(),
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
}
