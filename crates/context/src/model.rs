//! A pure-Rust reference model of one entity: what the Lua scripts must do, written plainly. For
//! your own property tests (feature `model`): run the same operations against it and against a
//! store on a manual clock and compare the answers, as this crate's `tests/model.rs` does.

use std::collections::{BTreeMap, VecDeque};

use crate::types::Change;

/// One write, before normalization (exactly what a caller hands to [`crate::Write`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOp {
    /// Fields to set, in call order (a later value for the same field wins).
    pub set: Vec<(String, String)>,
    /// Fields to delete, in call order.
    pub delete: Vec<String>,
    /// Compare-and-set: the version the write expects.
    pub expected: Option<u64>,
    /// Delete the whole entity instead.
    pub delete_entity: bool,
    /// The actor stamped on the write.
    pub actor: String,
}

/// What the model answers for a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSnapshot {
    /// The version.
    pub version: u64,
    /// Last write time.
    pub updated_ms: u64,
    /// Last writer.
    pub updated_by: String,
    /// Idle expiry, if any.
    pub expires_ms: Option<u64>,
    /// The user fields.
    pub fields: BTreeMap<String, String>,
}

/// One entity and its history.
#[derive(Debug, Clone)]
pub struct EntityModel {
    history_len: usize,
    idle_ttl_ms: Option<u64>,
    data: Option<ModelSnapshot>,
    history: VecDeque<Change>,
}

impl EntityModel {
    /// An entity that never existed, with the store's history length and idle TTL.
    pub fn new(history_len: usize, idle_ttl_ms: Option<u64>) -> Self {
        Self {
            history_len,
            idle_ttl_ms,
            data: None,
            history: VecDeque::new(),
        }
    }

    fn expired(&self, now: u64) -> bool {
        matches!(&self.data, Some(d) if d.expires_ms.is_some_and(|e| e <= now))
    }

    /// The version a compare-and-set must name (ignoring expiry, as a write sees it after
    /// clearing an expired entity).
    fn current(&self) -> u64 {
        self.history.back().map(|c| c.version).unwrap_or(0)
    }

    /// Applies a write at time `now`: the new version, or `Err(current)` on a conflict.
    pub fn write(&mut self, now: u64, op: &WriteOp) -> Result<u64, u64> {
        if self.expired(now) {
            self.data = None;
            self.history.clear();
        }
        let current = self.current();
        if let Some(expected) = op.expected
            && expected != current
        {
            return Err(current);
        }
        let version = current + 1;
        let mut set = BTreeMap::new();
        let mut deleted = Vec::new();
        if !op.delete_entity {
            for (k, v) in &op.set {
                set.insert(k.clone(), v.clone());
            }
            for k in &op.delete {
                if !set.contains_key(k) && !deleted.contains(k) {
                    deleted.push(k.clone());
                }
            }
        }
        if op.delete_entity {
            self.data = None;
        } else {
            let mut fields = self.data.take().map(|d| d.fields).unwrap_or_default();
            for k in &deleted {
                fields.remove(k);
            }
            fields.extend(set.clone());
            self.data = Some(ModelSnapshot {
                version,
                updated_ms: now,
                updated_by: op.actor.clone(),
                expires_ms: self.idle_ttl_ms.map(|ttl| now + ttl),
                fields,
            });
        }
        self.history.push_back(Change {
            version,
            ts_ms: now,
            actor: op.actor.clone(),
            set,
            deleted,
            entity_deleted: op.delete_entity,
        });
        while self.history.len() > self.history_len {
            self.history.pop_front();
        }
        Ok(version)
    }

    /// A read of every field at time `now`.
    pub fn read(&self, now: u64) -> Option<ModelSnapshot> {
        if self.expired(now) {
            return None;
        }
        self.data.clone()
    }

    /// The changes after `since` at time `now`, or `Err(oldest)` when the history does not
    /// reach back that far.
    pub fn changes_since(&self, now: u64, since: u64) -> Result<Vec<Change>, u64> {
        let (current, oldest) = if self.expired(now) {
            (0, 0)
        } else {
            (
                self.current(),
                self.history.front().map(|c| c.version).unwrap_or(0),
            )
        };
        let nothing_new = current == since;
        let reaches = oldest != 0 && oldest <= since + 1 && current > since;
        if !(nothing_new || reaches) {
            return Err(oldest);
        }
        if self.expired(now) {
            return Ok(Vec::new());
        }
        Ok(self
            .history
            .iter()
            .filter(|c| c.version > since)
            .cloned()
            .collect())
    }
}
