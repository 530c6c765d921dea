//! [`ContextStore`]: the handle, its configuration, and listing entities.

use std::sync::Arc;
use std::time::Duration;

use coordkit_core::{Clock, Keyspace, Pool, validate_name};

use crate::batch::{ReadBatcher, WriteBatcher, read_batcher, write_batcher};
use crate::error::Result;

/// The instance kind of context entities in the keyspace (`<ns>:{ctx:<kind>:<id>}:data`), and
/// the kind part of the store's event channels.
pub(crate) const INSTANCE_KIND: &str = "ctx";

/// The `source` of this crate's events (`changed`, `agent_status`, `agent_expired`); the same
/// name is written in `lua/write.lua`, `lua/agent_set.lua` and `lua/agent_query.lua`.
pub const EVENT_SOURCE: &str = "context";

/// Settings of a [`ContextStore`]; see [`ContextStore::builder`].
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) max_value_bytes: usize,
    pub(crate) history_len: u32,
    pub(crate) idle_ttl: Option<Duration>,
    pub(crate) refresh_on_read: bool,
    pub(crate) tombstone_ttl: Duration,
    pub(crate) actor: String,
    pub(crate) clock: Clock,
    pub(crate) agent_ttl: Duration,
}

/// Shared context: entities (Redis hashes) with versions, compare-and-set, history and change
/// events, plus agent status registries. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ContextStore {
    pub(crate) pool: Pool,
    pub(crate) keyspace: Keyspace,
    pub(crate) settings: Arc<Settings>,
    pub(crate) channel: Arc<str>,
    pub(crate) writes: WriteBatcher,
    pub(crate) reads: ReadBatcher,
}

/// Builds a [`ContextStore`] with validated settings.
#[derive(Debug, Clone)]
pub struct ContextStoreBuilder {
    pool: Pool,
    keyspace: Keyspace,
    settings: Settings,
}

impl ContextStore {
    /// A builder over `pool`, with keys under `keyspace`.
    ///
    /// Defaults: values up to 1 MiB, 100 history entries per entity, no idle expiry, tombstones
    /// (the history of a deleted entity) kept 1 day, actor `"unknown"`, server clock, agent
    /// heartbeat TTL 30 s.
    pub fn builder(pool: &Pool, keyspace: &Keyspace) -> ContextStoreBuilder {
        ContextStoreBuilder {
            pool: pool.clone(),
            keyspace: keyspace.clone(),
            settings: Settings {
                max_value_bytes: 1 << 20,
                history_len: 100,
                idle_ttl: None,
                refresh_on_read: false,
                tombstone_ttl: Duration::from_secs(24 * 3600),
                actor: "unknown".to_owned(),
                clock: Clock::Server,
                agent_ttl: Duration::from_secs(30),
            },
        }
    }

    /// The channel on which every write publishes its `changed` event.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The pool this store uses.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The actor stamped on writes that do not name their own.
    pub fn actor(&self) -> &str {
        &self.settings.actor
    }

    /// One page of the ids of the entities of `kind`, by `SCAN` (never `KEYS`). Start with
    /// `cursor = ""` and pass [`EntityPage::next`] back until it is `None`. An id present during
    /// the whole listing appears at least once; deleted entities (tombstones) are not listed.
    pub async fn list(&self, kind: &str, cursor: &str, count: u32) -> Result<EntityPage> {
        validate_kind(kind)?;
        let prefix = format!("{kind}:");
        let pattern = self
            .keyspace
            .instance_pattern(INSTANCE_KIND, &prefix, "data")?;
        let page = self.pool.scan_page(&pattern, cursor, count).await?;
        let mut ids: Vec<String> = page
            .keys
            .iter()
            .filter_map(|key| self.keyspace.instance_name_of(key, INSTANCE_KIND, "data"))
            .filter_map(|name| name.strip_prefix(&prefix))
            .map(str::to_owned)
            .collect();
        ids.sort();
        ids.dedup();
        Ok(EntityPage {
            ids,
            next: page.next,
        })
    }
}

/// One page of [`ContextStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityPage {
    /// Entity ids found on this page.
    pub ids: Vec<String>,
    /// The cursor of the next page; `None` when the listing is complete.
    pub next: Option<String>,
}

pub(crate) fn validate_kind(kind: &str) -> Result<()> {
    validate_name("entity kind", kind)?;
    if kind.contains(':') {
        return Err(coordkit_core::Error::InvalidName {
            what: "entity kind",
            input: kind.to_owned(),
            rule: coordkit_core::NameRule::Forbidden { found: ':' },
        }
        .into());
    }
    Ok(())
}

impl ContextStoreBuilder {
    /// The largest value accepted, in bytes (1 byte to 512 MiB; default 1 MiB).
    pub fn max_value_bytes(mut self, max: usize) -> Self {
        self.settings.max_value_bytes = max;
        self
    }

    /// How many changes each entity's history keeps for watchers (1 to 100,000; default 100).
    pub fn history_len(mut self, len: u32) -> Self {
        self.settings.history_len = len;
        self
    }

    /// Entities expire after this long without a write (1 s to 365 days; default: never).
    pub fn idle_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.settings.idle_ttl = ttl;
        self
    }

    /// Whether reads also push the idle expiry back (default: only writes do).
    pub fn refresh_on_read(mut self, refresh: bool) -> Self {
        self.settings.refresh_on_read = refresh;
        self
    }

    /// How long the history of a deleted entity is kept, so watchers learn of the deletion
    /// (1 s to 365 days; default 1 day).
    pub fn tombstone_ttl(mut self, ttl: Duration) -> Self {
        self.settings.tombstone_ttl = ttl;
        self
    }

    /// The actor stamped on writes (`__updated_by`) unless a write names its own.
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.settings.actor = actor.into();
        self
    }

    /// The clock scripts use (tests inject a manual one).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.settings.clock = clock;
        self
    }

    /// How long an agent stays in the registry without a heartbeat (100 ms to 1 day; default
    /// 30 s).
    pub fn agent_ttl(mut self, ttl: Duration) -> Self {
        self.settings.agent_ttl = ttl;
        self
    }

    /// Validates the settings (naming the field at fault) and builds the store.
    pub fn build(self) -> Result<ContextStore> {
        use coordkit_core::Error;
        let s = &self.settings;
        let day = Duration::from_secs(24 * 3600);
        if !(1..=512 << 20).contains(&s.max_value_bytes) {
            return Err(Error::invalid_config(
                "max_value_bytes",
                format!("must be between 1 and 536870912, got {}", s.max_value_bytes),
            )
            .into());
        }
        if !(1..=100_000).contains(&s.history_len) {
            return Err(Error::invalid_config(
                "history_len",
                format!("must be between 1 and 100000, got {}", s.history_len),
            )
            .into());
        }
        if let Some(ttl) = s.idle_ttl
            && (ttl < Duration::from_secs(1) || ttl > day * 365)
        {
            return Err(Error::invalid_config(
                "idle_ttl",
                format!("must be between 1s and 365 days, got {ttl:?}"),
            )
            .into());
        }
        if s.tombstone_ttl < Duration::from_secs(1) || s.tombstone_ttl > day * 365 {
            return Err(Error::invalid_config(
                "tombstone_ttl",
                format!("must be between 1s and 365 days, got {:?}", s.tombstone_ttl),
            )
            .into());
        }
        if s.agent_ttl < Duration::from_millis(100) || s.agent_ttl > day {
            return Err(Error::invalid_config(
                "agent_ttl",
                format!("must be between 100ms and 1 day, got {:?}", s.agent_ttl),
            )
            .into());
        }
        validate_name("actor", &s.actor)?;
        let channel: Arc<str> = self.keyspace.channel(INSTANCE_KIND, "changed")?.into();
        let reads = read_batcher(&self.pool);
        let writes = write_batcher(&self.pool, self.settings.clock.clone(), channel.clone());
        Ok(ContextStore {
            pool: self.pool,
            keyspace: self.keyspace,
            settings: Arc::new(self.settings),
            channel,
            writes,
            reads,
        })
    }
}
