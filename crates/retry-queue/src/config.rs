//! [`QueueBuilder`]: a queue's settings, each validated by [`QueueBuilder::build`].

use std::time::Duration;

use coordkit_core::time::duration_ms;
use coordkit_core::{Clock, Error as CoreError, Keyspace, Pool};

use crate::error::Result;
use crate::options::MAX_DURATION_MS;
use crate::queue::Queue;

/// The default payload limit of [`QueueBuilder::max_payload_bytes`]: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// The largest payload limit: Redis's limit for one string, 512 MiB.
const MAX_PAYLOAD_BYTES: usize = 512 << 20;

/// The longest backoff a failure may be retried in place after (a worker slot waits that long).
const MAX_RETRY_IN_PLACE: Duration = Duration::from_secs(60);

/// A queue's settings, as its [`QueueBuilder`] validated them: read them with
/// [`Queue::config`], and build a `model::QueueModel` (feature
/// `model`) from them. [`QueueConfig::default`] holds every setter's default.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub(crate) clock: Clock,
    pub(crate) max_stalls: u32,
    pub(crate) dlq_max_count: u64,
    pub(crate) max_payload_bytes: usize,
    pub(crate) dlq_max_age: Duration,
    pub(crate) errors_kept: u32,
    pub(crate) succeeded_events: bool,
    pub(crate) promote_limit: u32,
    pub(crate) reclaim_limit: u32,
    pub(crate) retry_in_place_below: Duration,
    pub(crate) result_ttl: Duration,
}

/// The default of [`QueueBuilder::result_ttl`]: one hour.
pub const DEFAULT_RESULT_TTL: Duration = Duration::from_secs(3600);

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            clock: Clock::Server,
            max_stalls: 2,
            dlq_max_count: 100_000,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            dlq_max_age: Duration::from_secs(7 * 24 * 3600),
            errors_kept: 10,
            succeeded_events: false,
            promote_limit: 1_000,
            reclaim_limit: 100,
            retry_in_place_below: Duration::from_millis(500),
            result_ttl: DEFAULT_RESULT_TTL,
        }
    }
}

impl QueueConfig {
    /// Checks every setting; the error names the setter at fault.
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: &str| {
            Err(CoreError::invalid_config(field, reason).into())
        };
        if self.max_stalls > 1_000 {
            return bad("max_stalls", "must be 0 to 1000");
        }
        if !(1..=100).contains(&self.errors_kept) {
            return bad("errors_kept", "must be 1 to 100");
        }
        if !(1..=10_000).contains(&self.promote_limit) {
            return bad("promote_limit", "must be 1 to 10000");
        }
        if !(1..=10_000).contains(&self.reclaim_limit) {
            return bad("reclaim_limit", "must be 1 to 10000");
        }
        if self.retry_in_place_below > MAX_RETRY_IN_PLACE {
            return bad("retry_in_place_below", "must be at most 60 s");
        }
        if duration_ms(self.dlq_max_age) > MAX_DURATION_MS {
            return bad("dlq_max_age", "must be at most 2^35 ms");
        }
        if !(1..=MAX_DURATION_MS).contains(&duration_ms(self.result_ttl)) {
            return bad("result_ttl", "must be 1 ms to 2^35 ms");
        }
        if !(1..=MAX_PAYLOAD_BYTES).contains(&self.max_payload_bytes) {
            return bad("max_payload_bytes", "must be 1 to 536870912 (512 MiB)");
        }
        Ok(())
    }
}

/// Builds a [`Queue`]: from [`Queue::builder`] (or `Coordkit::queue`), setters, then
/// [`QueueBuilder::build`], which validates every setting.
#[derive(Debug, Clone)]
pub struct QueueBuilder {
    pool: Pool,
    keyspace: Keyspace,
    name: String,
    config: QueueConfig,
}

impl Queue {
    /// A builder for the queue `name` under `keyspace` (keys `<ns>:{queue:<name>}:*`), with
    /// every setting at its default.
    pub fn builder(pool: &Pool, keyspace: &Keyspace, name: &str) -> QueueBuilder {
        QueueBuilder {
            pool: pool.clone(),
            keyspace: keyspace.clone(),
            name: name.to_owned(),
            config: QueueConfig::default(),
        }
    }
}

impl QueueBuilder {
    /// The clock of the scripts (default: the server's; a manual clock in tests).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.config.clock = clock;
        self
    }

    /// A task whose lease runs out more than this many times is dead-lettered as `stalled`
    /// (0 to 1,000; default 2).
    pub fn max_stalls(mut self, n: u32) -> Self {
        self.config.max_stalls = n;
        self
    }

    /// At most this many dead letters are kept, the oldest dropped first by the call that
    /// dead-letters one more (0 = no cap, any number; default 100,000).
    pub fn dlq_max_count(mut self, n: u64) -> Self {
        self.config.dlq_max_count = n;
        self
    }

    /// The largest payload an enqueue accepts, in bytes (1 to 512 MiB; default 1 MiB): a larger
    /// one fails the enqueue with [`QueueError::PayloadTooLarge`](crate::QueueError), nothing
    /// enqueued. Every claim carries its tasks' payloads, so large ones belong elsewhere (a
    /// blob store) with a reference in the task. It bounds a task's stored result too.
    pub fn max_payload_bytes(mut self, n: usize) -> Self {
        self.config.max_payload_bytes = n;
        self
    }

    /// Dead letters older than this are dropped (zero = no cap, at most 2^35 ms; default 7
    /// days): by every claim and every call that dead-letters a task, at most 100 per call, so
    /// a queue whose workers keep claiming sheds old dead letters even when nothing new fails.
    pub fn dlq_max_age(mut self, age: Duration) -> Self {
        self.config.dlq_max_age = age;
        self
    }

    /// How many of its latest errors a task keeps (1 to 100; default 10).
    pub fn errors_kept(mut self, n: u32) -> Self {
        self.config.errors_kept = n;
        self
    }

    /// Emit a `succeeded` event per acknowledged task (default off: it costs server time).
    pub fn succeeded_events(mut self, on: bool) -> Self {
        self.config.succeeded_events = on;
        self
    }

    /// How many due delayed tasks one claim promotes at most (1 to 10,000; default 1,000).
    pub fn promote_limit(mut self, n: u32) -> Self {
        self.config.promote_limit = n;
        self
    }

    /// How many expired leases one claim reclaims at most (1 to 10,000; default 100).
    pub fn reclaim_limit(mut self, n: u32) -> Self {
        self.config.reclaim_limit = n;
        self
    }

    /// Failures whose backoff is shorter than this are retried in place (0 to 60 s; default
    /// 500 ms; zero turns it off): the settle records the attempt (count, error, event) and
    /// keeps the task leased to the same worker, which runs it again after the backoff. One
    /// settle instead of a settle, a promotion and a claim per retry, and no other worker picks
    /// the task up; the worker's slot stays busy during the backoff. It stays crash-safe: if
    /// the worker dies, the lease runs out and the task is reclaimed with its attempt count.
    /// Longer backoffs, and every retry while the queue is paused or has a rate limit, go
    /// through the delayed set.
    pub fn retry_in_place_below(mut self, threshold: Duration) -> Self {
        self.config.retry_in_place_below = threshold;
        self
    }

    /// How long a handler's result is kept after its task is acknowledged (1 ms to 2^35 ms;
    /// default 1 hour): [`TaskHandle::wait`](crate::TaskHandle::wait) can read it until then.
    /// Each result is its own key expiring by itself, so the memory results take is bounded
    /// by (results per second) × TTL × (result size, at most
    /// [`max_payload_bytes`](Self::max_payload_bytes)), with no cleanup work.
    pub fn result_ttl(mut self, ttl: Duration) -> Self {
        self.config.result_ttl = ttl;
        self
    }

    /// Validates every setting and the name, and builds the queue. A setting out of range is
    /// [`Error::InvalidConfig`](coordkit_core::Error::InvalidConfig) naming its setter; a bad
    /// name is [`Error::InvalidName`](coordkit_core::Error::InvalidName).
    pub fn build(self) -> Result<Queue> {
        self.config.validate()?;
        Queue::from_config(self.pool, &self.keyspace, &self.name, self.config)
    }
}
