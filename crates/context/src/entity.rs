//! [`Entity`]: one context hash: reads, partial writes, compare-and-set, typed access.

use std::collections::BTreeMap;

use coordkit_core::time::duration_ms;
use coordkit_core::wire::pack_f64_be;
use coordkit_core::{InstanceKeys, Key, KeyKind, Script, validate_name};
use redis::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::batch::{PlainRead, PreparedWrite, WriteOutcome};
use crate::code;
use crate::decode::{decode_hgetall, decode_read};
use crate::error::{ContextError, Result};
use crate::store::{ContextStore, INSTANCE_KIND, validate_kind};
use crate::types::{EntitySnapshot, Versioned};
use crate::wire::{MAX_STORED, RESERVED_PREFIX, json};

static READ: Script = Script::new("context-read", include_str!("../lua/read.lua"));

/// One context entity (a Redis hash under `<ns>:{ctx:<kind>:<id>}:data`), with its change
/// history. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Entity {
    pub(crate) store: ContextStore,
    kind: String,
    id: String,
    pub(crate) data: Key,
    pub(crate) history: Key,
    name: String,
}

impl Entity {
    pub(crate) fn new(store: ContextStore, kind: &str, id: &str) -> Result<Self> {
        validate_kind(kind)?;
        validate_name("entity id", id)?;
        let keys: InstanceKeys = store
            .keyspace
            .instance(INSTANCE_KIND, &format!("{kind}:{id}"))?;
        Ok(Self {
            data: keys.typed_key("data", KeyKind::Hash),
            history: keys.typed_key("history", KeyKind::List),
            name: format!("{kind}:{id}"),
            kind: kind.to_owned(),
            id: id.to_owned(),
            store,
        })
    }

    /// The entity's kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The entity's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key of the entity's hash (for operators and tools; write through [`Entity`]).
    pub fn data_key(&self) -> &Key {
        &self.data
    }

    /// `<kind>:<id>`, as named in events.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts a write: `set`, `delete`, `expect_version`, `actor`, then [`Write::commit`].
    pub fn write(&self) -> Write<'_> {
        Write {
            entity: self,
            set: Vec::new(),
            delete: Vec::new(),
            expected: None,
            actor: None,
            delete_entity: false,
        }
    }

    /// Sets some fields (the others stay as they are); returns the new version.
    pub async fn set<I, K, V>(&self, fields: I) -> Result<u64>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut write = self.write();
        for (k, v) in fields {
            write = write.set(k, v);
        }
        write.commit().await
    }

    /// Deletes some fields; returns the new version.
    pub async fn delete_fields<I, K>(&self, fields: I) -> Result<u64>
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        let mut write = self.write();
        for k in fields {
            write = write.delete(k);
        }
        write.commit().await
    }

    /// Deletes the whole entity; returns the version of the deletion (its history keeps a
    /// tombstone for the store's `tombstone_ttl`, so watchers learn of it).
    pub async fn delete(&self) -> Result<u64> {
        self.write().delete_entity().commit().await
    }

    /// Reads every field in one call; `None` when the entity does not exist.
    pub async fn get_all(&self) -> Result<Option<EntitySnapshot>> {
        self.read(&[]).await
    }

    /// Reads some fields in one call; `None` when the entity does not exist. Missing fields
    /// are absent from [`EntitySnapshot::fields`].
    pub async fn get(&self, fields: &[&str]) -> Result<Option<EntitySnapshot>> {
        if fields.is_empty() {
            return Ok(self.read(&[]).await?.map(|mut s| {
                s.fields.clear();
                s
            }));
        }
        for field in fields {
            check_field(field)?;
        }
        self.read(fields).await
    }

    async fn read(&self, fields: &[&str]) -> Result<Option<EntitySnapshot>> {
        if self.store.settings.idle_ttl.is_none() {
            // No idle expiry to judge: a plain HGETALL / HMGET is the whole read.
            return Ok(self.read_plain(fields).await?.0);
        }
        Ok(self.read_scripted(fields).await?.0)
    }

    /// A read by the read script: the snapshot and the version a compare-and-set must name
    /// now, both from one atomic step.
    async fn read_scripted(&self, fields: &[&str]) -> Result<(Option<EntitySnapshot>, u64)> {
        let settings = &self.store.settings;
        let refresh = match (settings.refresh_on_read, settings.idle_ttl) {
            (true, Some(ttl)) => duration_ms(ttl),
            _ => code::NO_REFRESH,
        };
        let mut call = READ.prepare();
        call.key(&self.data)
            .key(&self.history)
            .arg(settings.clock.arg())
            .arg(refresh);
        for field in fields {
            call.arg(*field);
        }
        let values: Vec<Value> = call.invoke(&self.store.pool).await?;
        decode_read(&self.data, fields, values)
    }

    /// A read without a script, in the same shape as the read script's answer. Concurrent
    /// reads of one store go in one pipeline.
    async fn read_plain(&self, fields: &[&str]) -> Result<(Option<EntitySnapshot>, u64)> {
        let read = PlainRead {
            data: self.data.clone(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        };
        let mut values = self.store.reads.submit(&self.data, read).await??;
        if fields.is_empty() {
            return decode_hgetall(&self.data, values);
        }
        values.insert(4, Value::Nil);
        decode_read(&self.data, fields, values)
    }

    /// Writes `value` (a struct or map) as fields, each holding the JSON encoding of its value
    /// (a string `"a"` is stored as `"\"a\""`, a number `3` as `"3"`); returns the new version.
    pub async fn set_typed<T: Serialize>(&self, value: &T) -> Result<u64> {
        self.typed_write(value)?.commit().await
    }

    /// Like [`Entity::set_typed`], but only if the entity is at `version` (compare-and-set).
    pub async fn set_typed_if<T: Serialize>(&self, value: &T, version: u64) -> Result<u64> {
        self.typed_write(value)?
            .expect_version(version)
            .commit()
            .await
    }

    fn typed_write<T: Serialize>(&self, value: &T) -> Result<Write<'_>> {
        let object = match serde_json::to_value(value) {
            Ok(serde_json::Value::Object(object)) => object,
            Ok(other) => {
                return Err(ContextError::FieldDecode {
                    field: String::new(),
                    reason: format!("a typed value must serialize to a map, not {other}"),
                });
            }
            Err(e) => {
                return Err(ContextError::FieldDecode {
                    field: String::new(),
                    reason: e.to_string(),
                });
            }
        };
        let mut write = self.write();
        for (field, value) in object {
            write = write.set(field, value.to_string());
        }
        Ok(write)
    }

    /// Reads the entity into `T`, decoding each field from JSON (see [`Entity::set_typed`]).
    /// A field that does not fit gives [`ContextError::FieldDecode`] naming it.
    pub async fn get_typed<T: DeserializeOwned>(&self) -> Result<Option<Versioned<T>>> {
        let Some(snapshot) = self.get_all().await? else {
            return Ok(None);
        };
        let mut object = serde_json::Map::new();
        for (field, raw) in &snapshot.fields {
            let value = serde_json::from_str(raw).map_err(|e| ContextError::FieldDecode {
                field: field.clone(),
                reason: format!("not JSON: {e}"),
            })?;
            object.insert(field.clone(), value);
        }
        let value =
            serde_path_to_error::deserialize(serde_json::Value::Object(object)).map_err(|e| {
                ContextError::FieldDecode {
                    field: e.path().to_string(),
                    reason: e.inner().to_string(),
                }
            })?;
        Ok(Some(Versioned {
            value,
            version: snapshot.version,
        }))
    }

    /// Read-modify-write with compare-and-set, retried on conflict: `change` gets the current
    /// snapshot (`None` when the entity does not exist) and fills the write; the write commits
    /// only if nobody wrote in between, otherwise `change` runs again on the new snapshot, up
    /// to `max_attempts` times. Returns the new version.
    pub async fn update<F>(&self, max_attempts: u32, mut change: F) -> Result<u64>
    where
        F: for<'w> FnMut(Option<&EntitySnapshot>, Write<'w>) -> Write<'w>,
    {
        for _ in 0..max_attempts.max(1) {
            // The snapshot and the version to expect come from one atomic read: a version read
            // separately could belong to a later state than the snapshot.
            let (snapshot, version) = self.read_scripted(&[]).await?;
            let write = change(snapshot.as_ref(), self.write()).expect_version(version);
            match write.commit().await {
                Err(ContextError::Conflict { .. }) => continue,
                other => return other,
            }
        }
        Err(ContextError::TooManyConflicts {
            attempts: max_attempts.max(1),
        })
    }
}

/// One write being prepared; see [`Entity::write`].
#[derive(Debug)]
#[must_use = "a write does nothing until it is committed"]
pub struct Write<'a> {
    entity: &'a Entity,
    set: Vec<(String, String)>,
    delete: Vec<String>,
    expected: Option<u64>,
    actor: Option<String>,
    delete_entity: bool,
}

impl Write<'_> {
    /// Sets a field.
    pub fn set(mut self, field: impl Into<String>, value: impl Into<String>) -> Self {
        self.set.push((field.into(), value.into()));
        self
    }

    /// Deletes a field.
    pub fn delete(mut self, field: impl Into<String>) -> Self {
        self.delete.push(field.into());
        self
    }

    /// Deletes the whole entity (fields set by this write are ignored).
    pub fn delete_entity(mut self) -> Self {
        self.delete_entity = true;
        self
    }

    /// Commits only if the entity is at `version` (0: does not exist and never did);
    /// otherwise fails with [`ContextError::Conflict`] and writes nothing.
    pub fn expect_version(mut self, version: u64) -> Self {
        self.expected = Some(version);
        self
    }

    /// Stamps this write with `actor` instead of the store's.
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Checks the write (reserved names, sizes, names) and runs it: one round trip. Returns the
    /// new version. Nothing is written when any check fails.
    pub async fn commit(self) -> Result<u64> {
        let entity = self.entity;
        let settings = &entity.store.settings;
        // Later values win, as they would one after the other.
        let mut set: BTreeMap<String, String> = BTreeMap::new();
        if !self.delete_entity {
            for (field, value) in self.set {
                check_field(&field)?;
                if value.len() > settings.max_value_bytes {
                    return Err(ContextError::ValueTooLarge {
                        field,
                        len: value.len(),
                        max: settings.max_value_bytes,
                    });
                }
                set.insert(field, value);
            }
        }
        let mut delete = Vec::new();
        if !self.delete_entity {
            for field in self.delete {
                check_field(&field)?;
                if !set.contains_key(&field) && !delete.contains(&field) {
                    delete.push(field);
                }
            }
        }
        let actor = match self.actor {
            Some(actor) => {
                validate_name("actor", &actor)?;
                actor
            }
            None => settings.actor.clone(),
        };
        // The builder keeps an idle TTL at 1 s or more: never NO_IDLE_TTL.
        let ttl_ms = settings.idle_ttl.map_or(code::NO_IDLE_TTL, duration_ms);
        // A version above MAX_STORED exists nowhere: clamped one above it, it still conflicts,
        // and every number sent is whole in an f64.
        let expected = self
            .expected
            // Exact: at most 2^53.
            .map(|v| v.min(MAX_STORED + 1) as f64)
            .unwrap_or(code::EXPECT_NONE);
        let numbers = pack_f64_be(&[
            expected,
            if self.delete_entity {
                code::MODE_DELETE
            } else {
                code::MODE_UPDATE
            },
            ttl_ms as f64,
            f64::from(settings.history_len),
            duration_ms(settings.tombstone_ttl) as f64,
            set.len() as f64,
            delete.len() as f64,
        ]);
        // The JSON of the history entry and of the event, but for the version and the time,
        // which only the script knows.
        let set_json = json(&set);
        let deleted_json = json(&delete);
        let actor_json = json(&actor);
        let history = format!(
            r#"{{"by":{actor_json},"set":{set_json},"del":{deleted_json},"gone":{}"#,
            self.delete_entity
        );
        let changed: Vec<&String> = set.keys().collect();
        let event_payload_head = format!(
            r#"{{"changed":{},"deleted":{deleted_json},"entity_deleted":{},"actor":{actor_json},"version":"#,
            json(&changed),
            self.delete_entity
        );
        let prepared = PreparedWrite {
            data: entity.data.clone(),
            history: entity.history.clone(),
            numbers,
            actor,
            history_head: history,
            event_entity: entity.name.clone(),
            event_payload_head,
            set: set.into_iter().collect(),
            delete,
        };
        let outcome = entity.store.writes.submit(&entity.data, prepared).await?;
        match outcome {
            WriteOutcome::Written(version) => Ok(version),
            WriteOutcome::Conflict(current) => Err(ContextError::Conflict {
                expected: self.expected.unwrap_or_default(),
                current,
            }),
            WriteOutcome::Failed(e) => Err(e.into()),
        }
    }
}

/// A user field name: a valid name that does not start with the reserved prefix.
fn check_field(field: &str) -> Result<()> {
    validate_name("field", field)?;
    if field.starts_with(RESERVED_PREFIX) {
        return Err(ContextError::ReservedField {
            field: field.to_owned(),
        });
    }
    Ok(())
}

impl ContextStore {
    /// The entity `id` of kind `kind` (both validated names; `kind` may not contain `:`).
    pub fn entity(&self, kind: &str, id: &str) -> Result<Entity> {
        Entity::new(self.clone(), kind, id)
    }
}
