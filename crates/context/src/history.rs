//! Change history and watching: every write leaves a [`Change`] in a bounded per-entity
//! history and publishes a `changed` event; a [`Watcher`] combines both so it never misses a
//! version, even when its subscriber reconnects.

use std::collections::VecDeque;

use coordkit_core::{Script, Subscriber};
use redis::Value;

use crate::entity::Entity;
use crate::error::{ContextError, Result};
use crate::types::{Change, ChangeEvent, EntitySnapshot};
use crate::wire::corrupt;

static CHANGES: Script = Script::new("context-changes", include_str!("../lua/changes.lua"));

/// How many changes a watcher fetches from the history at once.
const WATCH_PAGE: u32 = 100;

impl Entity {
    /// The current version, counting a deleted entity's tombstone (0 if it never existed).
    pub async fn current_version(&self) -> Result<u64> {
        Ok(fetch(self, u64::MAX - 1, 1).await?.current)
    }

    /// The changes after `version`, oldest first (at most `limit`). Fails with
    /// [`ContextError::Compacted`] when the history no longer reaches back that far.
    pub async fn changes_since(&self, version: u64, limit: u32) -> Result<Vec<Change>> {
        changes_since(self, version, limit).await
    }

    /// Watches the entity from `version` (0: from its beginning, or its current snapshot if the
    /// history does not reach back): every change after it, in order, even across subscriber
    /// reconnects. Opens a subscriber connection of its own.
    pub async fn watch(&self, version: u64) -> Result<Watcher> {
        Watcher::start(self.clone(), version).await
    }
}

/// What the history script answered.
pub(crate) struct Fetched {
    pub(crate) current: u64,
    pub(crate) oldest: u64,
    pub(crate) changes: Vec<Change>,
}

pub(crate) async fn fetch(entity: &Entity, since: u64, limit: u32) -> Result<Fetched> {
    let values: Vec<Value> = CHANGES
        .prepare()
        .key(&entity.data)
        .key(&entity.history)
        .arg(entity.store.settings.clock.arg())
        .arg(since)
        .arg(limit.max(1))
        .arg(entity.store.settings.history_len)
        .invoke(&entity.store.pool)
        .await?;
    let number = |v: Option<&Value>| match v {
        Some(Value::Int(n)) => u64::try_from(*n).ok(),
        _ => None,
    };
    let bad = |reason: String| {
        ContextError::Core(coordkit_core::Error::decode(
            format!("the history at {}", entity.history),
            reason,
        ))
    };
    let current = number(values.first()).ok_or_else(|| bad("no current version".into()))?;
    let oldest = number(values.get(1)).ok_or_else(|| bad("no oldest version".into()))?;
    // The script answers the entries from version max(since + 1, oldest) on, consecutive: an
    // entry that does not decode, or holds another version, is corrupt history (a watcher
    // would otherwise wait forever for the version it skipped).
    let first = since.saturating_add(1).max(oldest);
    let changes = values
        .iter()
        .skip(2)
        .zip(0u64..)
        .map(|(v, i)| (v, first.saturating_add(i)))
        .map(|(v, expected)| match v {
            Value::BulkString(bytes) => {
                let change = serde_json::from_slice::<Change>(bytes).map_err(|e| {
                    corrupt(
                        &entity.history,
                        format!("the entry for version {expected} does not decode: {e}"),
                    )
                })?;
                if change.version != expected {
                    return Err(corrupt(
                        &entity.history,
                        format!(
                            "the entry for version {expected} holds version {}",
                            change.version
                        ),
                    ));
                }
                Ok(change)
            }
            other => Err(bad(format!("unexpected {other:?}"))),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Fetched {
        current,
        oldest,
        changes,
    })
}

pub(crate) async fn changes_since(entity: &Entity, since: u64, limit: u32) -> Result<Vec<Change>> {
    let fetched = fetch(entity, since, limit).await?;
    check_reachable(since, &fetched)?;
    Ok(fetched.changes)
}

/// The history reaches back to `since` when it holds `since + 1` (or nothing happened since).
fn check_reachable(since: u64, fetched: &Fetched) -> Result<()> {
    let nothing_new = fetched.current == since;
    let reaches =
        fetched.oldest != 0 && fetched.oldest <= since.saturating_add(1) && fetched.current > since;
    if nothing_new || reaches {
        Ok(())
    } else {
        Err(ContextError::Compacted {
            since,
            oldest: fetched.oldest,
        })
    }
}

/// What a [`Watcher`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The next change, in version order.
    Change(Change),
    /// The history no longer reached back to the last version seen (or the entity expired and
    /// started over): here is the whole current state instead (`None`: it does not exist now).
    /// Changes after it follow as [`WatchEvent::Change`].
    Resync(Option<EntitySnapshot>),
}

/// How long after its last read of the history a watcher reads it anyway, whatever else the
/// store's channel carried (one read of the versions after its last; nothing when there are
/// none).
pub const WATCH_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Follows one entity's changes; from [`Entity::watch`].
///
/// It subscribes first, then reads the history after the last version it has seen, and reads it
/// again on every event for the entity, after every reconnection of its subscriber, and
/// [`WATCH_RECHECK`] after its last read (in case a drop of the connection went unreported: a
/// cluster connection may resubscribe by itself), so a version is never skipped and never
/// delivered twice.
#[derive(Debug)]
pub struct Watcher {
    entity: Entity,
    events: Subscriber<ChangeEvent>,
    reconnections: tokio::sync::watch::Receiver<u64>,
    last_seen: u64,
    pending: VecDeque<WatchEvent>,
    /// Whether the history should be read before waiting for the next event.
    stale: bool,
    /// When to read it anyway: [`WATCH_RECHECK`] after the last read (events of other
    /// entities on the store's channel do not put it off).
    recheck_at: tokio::time::Instant,
}

impl Watcher {
    pub(crate) async fn start(entity: Entity, from_version: u64) -> Result<Self> {
        let events = entity
            .store
            .pool
            .subscriber()
            .channel(entity.store.channel())
            .subscribe::<ChangeEvent>()
            .await?;
        let reconnections = events.reconnections();
        Ok(Self {
            entity,
            events,
            reconnections,
            last_seen: from_version,
            pending: VecDeque::new(),
            stale: true,
            recheck_at: tokio::time::Instant::now(),
        })
    }

    /// The last version delivered (or resynced to).
    pub fn last_seen(&self) -> u64 {
        self.last_seen
    }

    /// How many times the watcher's subscriber has reconnected (each time, the watcher read
    /// the history for what it may have missed meanwhile).
    pub fn reconnections(&self) -> u64 {
        *self.reconnections.borrow()
    }

    /// The next change (or resync). Waits for one; fails when Redis does, or when the
    /// entity's stored data is corrupt ([`coordkit_core::Error::Corrupt`] naming the key): the
    /// next call reads again, so the watcher goes on once the key is repaired or deleted.
    pub async fn next(&mut self) -> Result<WatchEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            if self.stale {
                // Still stale if the read fails: the next call reads again.
                self.catch_up().await?;
                self.stale = false;
                self.recheck_at = tokio::time::Instant::now() + WATCH_RECHECK;
                continue;
            }
            tokio::select! {
                received = self.events.recv() => match received {
                    Some(received) => {
                        if received.event.entity == self.entity.name()
                            && received.event.payload.version != self.last_seen
                        {
                            self.stale = true;
                        }
                    }
                    None => {
                        return Err(coordkit_core::Error::Unavailable {
                            addr: self.entity.store.pool.address().to_owned(),
                            reason: "the watcher's subscriber stopped".into(),
                        }
                        .into())
                    }
                },
                changed = self.reconnections.changed() => {
                    if changed.is_ok() {
                        self.stale = true;
                    }
                }
                // No read for a while: read the history once, in case events were lost.
                _ = tokio::time::sleep_until(self.recheck_at) => self.stale = true,
            }
        }
    }

    async fn catch_up(&mut self) -> Result<()> {
        loop {
            let fetched = fetch(&self.entity, self.last_seen, WATCH_PAGE).await?;
            if fetched.current < self.last_seen
                || check_reachable(self.last_seen, &fetched).is_err()
            {
                let snapshot = self.entity.get_all().await?;
                self.last_seen = match &snapshot {
                    Some(s) => s.version,
                    None => self.entity.current_version().await?,
                };
                self.pending.push_back(WatchEvent::Resync(snapshot));
                return Ok(());
            }
            let more = fetched.changes.len() == WATCH_PAGE as usize;
            for change in fetched.changes {
                if change.version == self.last_seen.saturating_add(1) {
                    self.last_seen = change.version;
                    self.pending.push_back(WatchEvent::Change(change));
                }
            }
            if !more {
                return Ok(());
            }
        }
    }
}
