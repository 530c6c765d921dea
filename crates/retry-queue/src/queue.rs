//! [`Queue`]: the handle of one named queue, its keys and settings; its operations are in
//! `ops` (enqueue, claim, settle) and `admin` (stats, dead letters, inspection).

use std::sync::Arc;

use coordkit_core::time::duration_ms;
use coordkit_core::wire::Packed;
use coordkit_core::{
    IndexPage, InstanceIndex, InstanceKeys, Invocation, Key, KeyKind, Keyspace, Lifetime, Listing,
    Pool, Registration, Script,
};

use crate::code;
use crate::config::QueueConfig;
use crate::error::Result;

/// The largest integer the scripts' numbers hold exactly (ids and tokens beyond it are none of
/// this queue's).
pub(crate) const EXACT: u64 = 1 << 53;

/// A task id as the scripts number it (`None`: not an id this queue hands out).
pub(crate) fn id_number(id: &str) -> Option<u64> {
    let n: u64 = id.parse().ok()?;
    (n < EXACT && n.to_string() == id).then_some(n)
}

struct Inner {
    pool: Pool,
    name: String,
    keys: Vec<Key>,
    /// For the keys built on demand: schedules' and per-task results'.
    instance: InstanceKeys,
    config: QueueConfig,
    settings: Vec<u8>,
    wake_channel: String,
    channel_prefix: String,
    /// The queue's entry in the namespace's index of queues.
    registration: Registration,
}

/// The kind of a queue's keys (`<ns>:{queue:<name>}:…`) and of its index.
const INSTANCE_KIND: &str = "queue";

/// One named queue, built by [`Queue::builder`]. Cheap to clone (an `Arc` inside); every
/// operation is one script call on one hash tag.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Queue {
    /// The name and keys (never the pool's address or credentials).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.inner.keys.iter().map(|k| k.as_str()).collect();
        f.debug_struct("Queue")
            .field("name", &self.inner.name)
            .field("keys", &keys)
            .finish()
    }
}

/// The suffixes of a queue's keys, in the scripts' `KEYS` order.
const KEYS: [(&str, KeyKind); 16] = [
    ("tasks", KeyKind::Hash),
    ("ready", KeyKind::List),
    ("delayed", KeyKind::ZSet),
    ("leased", KeyKind::ZSet),
    ("leases", KeyKind::Hash),
    ("dlq", KeyKind::ZSet),
    ("errors", KeyKind::Hash),
    ("dead", KeyKind::Hash),
    ("idem", KeyKind::Hash),
    ("idem_exp", KeyKind::ZSet),
    ("info", KeyKind::Hash),
    ("starts", KeyKind::ZSet),
    ("urgent", KeyKind::ZSet),
    ("gstate", KeyKind::Hash),
    ("gready", KeyKind::ZSet),
    ("glease", KeyKind::Hash),
];

impl Queue {
    /// The queue `name` under `keyspace` with validated settings.
    pub(crate) fn from_config(
        pool: Pool,
        keyspace: &Keyspace,
        name: &str,
        config: QueueConfig,
    ) -> Result<Self> {
        let instance = keyspace.instance(INSTANCE_KIND, name)?;
        let registration = Registration::new(InstanceIndex::new(keyspace, INSTANCE_KIND)?, name);
        let keys = KEYS
            .iter()
            .map(|(suffix, kind)| instance.typed_key(suffix, *kind))
            .collect();
        let any = keyspace.channel("queue", "x")?;
        let channel_prefix = any[..any.len() - 1].to_owned();
        let wake_channel = format!("{channel_prefix}wake:{name}");
        // The script's settings, one argument (see `lua/lib/queue.lua`).
        let mut settings = Packed::new()
            .bytes(&[u8::from(config.succeeded_events)])
            .bytes(&config.max_stalls.to_le_bytes())
            .u64_le(config.dlq_max_count)
            .u64_le(duration_ms(config.dlq_max_age))
            .bytes(&[config.errors_kept as u8])
            .u64_le(duration_ms(config.retry_in_place_below));
        for s in [name, &channel_prefix, &wake_channel] {
            let len = u16::try_from(s.len()).map_err(|_| {
                coordkit_core::Error::invalid_config("name", "too long for the queue's channels")
            })?;
            settings = settings.bytes(&len.to_le_bytes()).bytes(s.as_bytes());
        }
        let settings = settings.into_bytes();
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                name: name.to_owned(),
                keys,
                instance,
                config,
                settings,
                wake_channel,
                channel_prefix,
                registration,
            }),
        })
    }

    /// The index of the queues of `keyspace`: every queue a handle wrote to (enqueued,
    /// claimed, paused, configured limits, holds or schedules) is listed there, recorded by the
    /// handle before its first write (see [`coordkit_core::index`]). Queues keep their keys
    /// until deleted, so an entry has no deadline.
    pub fn index(keyspace: &Keyspace) -> Result<InstanceIndex> {
        Ok(InstanceIndex::new(keyspace, INSTANCE_KIND)?)
    }

    /// The names of every queue of `keyspace`, sorted, in one call (no `SCAN`), and the
    /// index's entries that are not queue names, if any.
    pub async fn list(pool: &Pool, keyspace: &Keyspace) -> Result<Listing> {
        Ok(Self::index(keyspace)?.list(pool).await?)
    }

    /// One page of [`Queue::list`]: up to `count` (1..=1000) names after `after` (`None`: from
    /// the first, then each page's `next`), in one call.
    pub async fn list_page(
        pool: &Pool,
        keyspace: &Keyspace,
        after: Option<&str>,
        count: u32,
    ) -> Result<IndexPage> {
        Ok(Self::index(keyspace)?.page(pool, after, count).await?)
    }

    /// Records the queue in the index unless this handle already did (a lock and a clock
    /// read): called before every operation that may create the queue's keys.
    pub(crate) async fn registered(&self) -> Result<()> {
        let registration = &self.inner.registration;
        if registration.is_due(Lifetime::Forever) {
            // Boxed: rare, and it keeps the operations' futures small.
            Box::pin(registration.ensure(&self.inner.pool, Lifetime::Forever)).await?;
        }
        Ok(())
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Its settings.
    pub fn config(&self) -> &QueueConfig {
        &self.inner.config
    }

    /// The pool it runs on.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The channel of one kind of its events (`retry_scheduled`, `dead_lettered`, `stalled`,
    /// `requeued`, `succeeded`); every queue of the namespace publishes there, the envelope's
    /// `entity` is the queue's name and `payload.task` the task's id.
    pub fn channel(&self, kind: &str) -> String {
        format!("{}{kind}", self.inner.channel_prefix)
    }

    /// The channel on which the scripts wake idle workers of this queue up (work became ready,
    /// or an earlier delayed task was scheduled).
    pub fn wake_channel(&self) -> &str {
        &self.inner.wake_channel
    }

    /// The queue's keys, in the scripts' `KEYS` order (for operators and tests): tasks, ready,
    /// delayed, leased, leases, dlq, errors, dead, idem, idem_exp, info.
    pub fn keys(&self) -> &[Key] {
        &self.inner.keys
    }

    /// The key of task `id`'s result (`<ns>:{queue:<name>}:result:<id>`, the queue's hash
    /// tag): given only to the scripts that store or read it, after the shared keys.
    pub(crate) fn result_key(&self, id: u64) -> Key {
        self.inner
            .instance
            .typed_key(&format!("result:{id}"), KeyKind::String)
    }

    /// A call of one of the queue's scripts (`crate::scripts`) with the arguments every one
    /// takes: the keys, the clock, the settings.
    pub(crate) fn call(&self, script: &'static Script) -> Invocation<'static> {
        let mut call = script.prepare();
        for key in &self.inner.keys {
            call.key(key);
        }
        call.arg(self.inner.config.clock.arg())
            .arg(self.inner.settings.as_slice());
        call
    }

    /// Another key of the queue's hash tag (the schedules' keys).
    pub(crate) fn key(&self, suffix: &str, kind: KeyKind) -> Key {
        self.inner.instance.typed_key(suffix, kind)
    }

    pub(crate) fn inner_pool(&self) -> &Pool {
        &self.inner.pool
    }

    pub(crate) fn inner_config(&self) -> &QueueConfig {
        &self.inner.config
    }
}

/// A number of an answer that may be [`code::NONE`] (or any other negative number).
pub(crate) fn some(n: i64) -> Option<u64> {
    if n == code::NONE {
        return None;
    }
    u64::try_from(n).ok()
}

/// Text a script stored from a caller (a reason), with invalid UTF-8 replaced.
pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
