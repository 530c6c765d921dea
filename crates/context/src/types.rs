//! The values an entity's reads, history and events hand out.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::wire::{list_or_empty, map_or_empty};

/// An entity as read: its fields and its stamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntitySnapshot {
    /// The version: 1 after the first write, +1 per write.
    pub version: u64,
    /// When it was last written (server time, ms).
    pub updated_ms: u64,
    /// Who last wrote it.
    pub updated_by: String,
    /// When it expires if not written again (ms), with an idle TTL.
    pub expires_ms: Option<u64>,
    /// The user fields (without the `__` stamps). A read of some fields holds only those that
    /// exist.
    pub fields: BTreeMap<String, String>,
}

/// A typed value read with its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The decoded value.
    pub value: T,
    /// The entity's version when it was read: pass it to [`Write::expect_version`](crate::Write::expect_version).
    pub version: u64,
}

/// One write, as kept in the history.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Change {
    /// The version this write produced.
    #[serde(rename = "v")]
    pub version: u64,
    /// When (server time, ms).
    #[serde(rename = "ts")]
    pub ts_ms: u64,
    /// Who wrote it.
    #[serde(rename = "by")]
    pub actor: String,
    /// Fields set, with their new values.
    #[serde(rename = "set", deserialize_with = "map_or_empty")]
    pub set: BTreeMap<String, String>,
    /// Fields deleted.
    #[serde(rename = "del", deserialize_with = "list_or_empty")]
    pub deleted: Vec<String>,
    /// Whether this write deleted the whole entity.
    #[serde(rename = "gone")]
    pub entity_deleted: bool,
}

/// The payload of a `changed` event (on [`ContextStore::channel`](crate::ContextStore::channel);
/// the envelope's `entity` is `<kind>:<id>`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChangeEvent {
    /// The version the write produced.
    pub version: u64,
    /// The names of the fields set.
    #[serde(deserialize_with = "list_or_empty")]
    pub changed: Vec<String>,
    /// The names of the fields deleted.
    #[serde(deserialize_with = "list_or_empty")]
    pub deleted: Vec<String>,
    /// Whether the whole entity was deleted.
    pub entity_deleted: bool,
    /// Who wrote it.
    pub actor: String,
}
