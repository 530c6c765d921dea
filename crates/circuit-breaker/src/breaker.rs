//! [`CircuitBreaker`]: the handle every process shares, its keys and its view of the shared
//! state.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use coordkit_core::time::duration_ms;
use coordkit_core::{
    Clock, GroupCommit, IndexPage, InstanceIndex, Key, KeyKind, Keyspace, Lifetime, Listing, Pool,
    Registration, Result, Script, redis::Value,
};

use crate::acquire::{AcquireCall, acquire_batcher};
use crate::config::{BreakerConfig, OpenDuration};
use crate::model::BreakerModel;
use crate::permit::Report;
use crate::state::State;
use crate::stats::StatsCell;
use crate::wire::{pack_state, script_config_args};

pub(crate) static BREAKER: Script =
    Script::new("circuit-breaker", include_str!("../lua/breaker.lua"));

/// A distributed circuit breaker: every process that uses the same Redis, namespace and name
/// shares it. Built with [`CircuitBreaker::builder`]; cheap to clone (every clone is the same
/// handle, with the same [`stats`](Self::stats)).
#[derive(Clone)]
pub struct CircuitBreaker {
    pub(crate) inner: Arc<Inner>,
}

/// The name and the keys (the pool, its address and credentials, are not shown).
impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.inner.name)
            .field("state_key", &self.inner.state_key)
            .field("probes_key", &self.inner.probes_key)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) name: String,
    pub(crate) pool: Pool,
    pub(crate) config: BreakerConfig,
    pub(crate) state_key: Key,
    pub(crate) probes_key: Key,
    pub(crate) channel_prefix: String,
    /// Unique per handle, so permit ids never collide across processes.
    pub(crate) instance: String,
    /// ARGV[3..=5] of the script, packed once.
    pub(crate) config_args: Vec<Vec<u8>>,
    pub(crate) next_permit: AtomicU64,
    /// Reports waiting to go out ahead of the next acquire (or by the flusher).
    pub(crate) pending: Mutex<Vec<Report>>,
    /// Wakes the flusher when it is idle.
    pub(crate) flush: Arc<tokio::sync::Notify>,
    /// Whether the flusher is awake (ticking every [`LINGER`](crate::record::LINGER)): while it is, deferring a report
    /// wakes nobody.
    pub(crate) flusher_awake: Arc<AtomicBool>,
    /// The flusher task, started by the first deferred report.
    pub(crate) flusher: std::sync::OnceLock<tokio::task::AbortHandle>,
    /// The [`StorePolicy::Local`](crate::StorePolicy::Local) fallback, seeded from `seen` when
    /// an outage starts.
    pub(crate) local: Mutex<BreakerModel>,
    /// The last shared state an answer from Redis showed, packed by
    /// [`pack_state`](crate::wire::pack_state) (0: none yet).
    pub(crate) seen: AtomicU64,
    /// When the shared state was last seen open: its epoch and the [`CircuitBreaker::local_now`]
    /// time its open period ends.
    pub(crate) seen_open: Mutex<(u64, u64)>,
    /// Whether the local fallback decides: set by the first acquire that cannot reach Redis
    /// (which seeds it), cleared by any answer from Redis (the store probe's included). While
    /// it is set, acquires do not ask Redis.
    pub(crate) outage: AtomicBool,
    /// Whether the store probe task runs (one per breaker).
    pub(crate) probing: AtomicBool,
    /// The origin of [`CircuitBreaker::local_now`] on the server clock.
    pub(crate) started: Instant,
    pub(crate) stats: StatsCell,
    /// Concurrent acquires share one pipeline.
    pub(crate) acquires: GroupCommit<AcquireCall, coordkit_core::Result<Value>>,
    /// The breaker's entry in the namespace's index of breakers.
    pub(crate) registration: Registration,
    /// The longest its keys can live after a write of this handle's rules (unforced).
    pub(crate) lifetime: Lifetime,
}

/// The kind of a breaker's keys (`<ns>:{cb:<name>}:…`) and of its index.
const INSTANCE_KIND: &str = "cb";

/// The longest a write under `config` makes the keys live (forced states aside, which keep
/// them until cleared): the idle expiry after the longest open period or probe lease (the
/// script's PEXPIREs).
fn lifetime(config: &BreakerConfig) -> Lifetime {
    let open = match config.open {
        OpenDuration::Fixed(d) => d,
        OpenDuration::Exponential { base, max, .. } => base.max(max),
    };
    Lifetime::For(
        open.max(config.permit_lease)
            .saturating_add(config.idle_expiry),
    )
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(flusher) = self.flusher.get() {
            flusher.abort();
        }
    }
}

impl CircuitBreaker {
    /// The breaker `name` under `keyspace`, with `config` (validated): see
    /// [`CircuitBreaker::builder`].
    pub(crate) fn with_config(
        pool: Pool,
        keyspace: &Keyspace,
        name: &str,
        config: BreakerConfig,
    ) -> Result<Self> {
        let keys = keyspace.instance(INSTANCE_KIND, name)?;
        let registration = Registration::new(InstanceIndex::new(keyspace, INSTANCE_KIND)?, name);
        let channel_prefix = keyspace.channel("cb", "x")?;
        let channel_prefix = channel_prefix[..channel_prefix.len() - 1].to_owned();
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let instance = format!(
            "{}-{}-{nanos:x}",
            std::process::id(),
            INSTANCES.fetch_add(1, Ordering::Relaxed)
        );
        let config_args = script_config_args(&config, &channel_prefix, name);
        Ok(Self {
            inner: Arc::new(Inner {
                config_args,
                name: name.to_owned(),
                local: Mutex::new(BreakerModel::new(config.clone())),
                seen: AtomicU64::new(0),
                seen_open: Mutex::new((0, 0)),
                outage: AtomicBool::new(false),
                probing: AtomicBool::new(false),
                started: Instant::now(),
                state_key: keys.typed_key("state", KeyKind::Hash),
                probes_key: keys.typed_key("probes", KeyKind::ZSet),
                channel_prefix,
                instance,
                next_permit: AtomicU64::new(0),
                pending: Mutex::new(Vec::new()),
                flush: Arc::new(tokio::sync::Notify::new()),
                flusher_awake: Arc::new(AtomicBool::new(false)),
                flusher: std::sync::OnceLock::new(),
                stats: StatsCell::default(),
                acquires: acquire_batcher(&pool),
                registration,
                lifetime: lifetime(&config),
                pool,
                config,
            }),
        })
    }

    /// The index of the breakers of `keyspace`: every breaker a handle wrote to is listed
    /// there, recorded by the handle before its first write and again every quarter of its
    /// lifetime `L` (the idle expiry after the longest open period or probe lease), with a
    /// deadline of `1.25 L` that outlasts the keys: an idle breaker leaves the list at most
    /// `1.25 L` after its last write. A forced breaker is listed until cleared. See
    /// [`coordkit_core::index`] for the windows.
    pub fn index(keyspace: &Keyspace) -> Result<InstanceIndex> {
        InstanceIndex::new(keyspace, INSTANCE_KIND)
    }

    /// The names of every breaker of `keyspace` whose keys may exist, sorted, in one call
    /// (no `SCAN`), and the index's entries that are not breaker names, if any.
    pub async fn list(pool: &Pool, keyspace: &Keyspace) -> Result<Listing> {
        Self::index(keyspace)?.list(pool).await
    }

    /// One page of [`CircuitBreaker::list`]: up to `count` (1..=1000) names after `after`
    /// (`None`: from the first, then each page's `next`), in one call.
    pub async fn list_page(
        pool: &Pool,
        keyspace: &Keyspace,
        after: Option<&str>,
        count: u32,
    ) -> Result<IndexPage> {
        Self::index(keyspace)?.page(pool, after, count).await
    }

    /// Records the breaker in the index unless this handle did within a quarter lifetime (a lock
    /// and a clock read): before every write. Fails only as a call to Redis fails.
    pub(crate) async fn registered(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.registration.is_due(inner.lifetime) {
            // Boxed: rare, and it keeps the operations' futures small.
            Box::pin(inner.registration.ensure(&inner.pool, inner.lifetime)).await?;
        }
        Ok(())
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Its rules.
    pub fn config(&self) -> &BreakerConfig {
        &self.inner.config
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The channel of one kind of its events (`opened`, `half_opened`, `closed`, `forced`,
    /// `cleared`); every breaker of the namespace publishes there, the envelope's `entity` is
    /// the breaker's name. [`CircuitBreaker::events`] subscribes to this breaker's alone.
    pub fn channel(&self, kind: &str) -> String {
        format!("{}{kind}", self.inner.channel_prefix)
    }

    /// The key of its state hash (for operators and tests).
    pub fn state_key(&self) -> &Key {
        &self.inner.state_key
    }

    /// The key of its probe leases, a sorted set: permit id -> lease deadline (for operators
    /// and tests).
    pub fn probes_key(&self) -> &Key {
        &self.inner.probes_key
    }

    /// A call of the script (counted in [`BreakerStats::store_calls`](crate::BreakerStats::store_calls): every one built is sent).
    pub(crate) fn script(&self, op: &str) -> coordkit_core::Invocation<'static> {
        self.inner.stats.store_calls.fetch_add(1, Ordering::Relaxed);
        let mut call = BREAKER.prepare();
        call.key(&self.inner.state_key)
            .key(&self.inner.probes_key)
            .arg(op)
            .arg(self.inner.config.clock.arg())
            .arg(&self.inner.config_args);
        call
    }

    /// The local fallback's clock (ms): the manual clock, else a monotonic one (a wall clock
    /// that jumps does not shorten or stretch a local open period).
    pub(crate) fn local_now(&self) -> u64 {
        match &self.inner.config.clock {
            Clock::Manual(manual) => manual.now_ms(),
            _ => duration_ms(self.inner.started.elapsed()),
        }
    }

    /// Notes the shared state an answer from Redis showed (`open_left_ms`: how long it stays
    /// open, when it is): the local fallback's start at the next outage, which this answer
    /// ends. Two relaxed loads when nothing changed, as on the hot path.
    pub(crate) fn saw(&self, state: State, epoch: u64, open_left_ms: Option<u64>) {
        let inner = &self.inner;
        if let Some(packed) = pack_state(state, epoch)
            && inner.seen.load(Ordering::Relaxed) != packed
        {
            inner.seen.store(packed, Ordering::Relaxed);
        }
        if let (State::Open, Some(left)) = (state, open_left_ms) {
            let until = self.local_now().saturating_add(left);
            *inner
                .seen_open
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = (epoch, until);
        }
        if inner.outage.load(Ordering::Relaxed) {
            inner.outage.store(false, Ordering::Relaxed);
        }
    }
}
