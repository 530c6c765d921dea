//! [`Entity`]: one context hash: reads, partial writes, compare-and-set, typed access.

use std::collections::BTreeMap;

use std::sync::Arc;

use coordkit_core::{Clock, GroupCommit, InstanceKeys, Key, KeyKind, Pool, Script, validate_name};
use redis::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ContextError, Result};
use crate::history::{Change, Watcher};
use crate::store::{ContextStore, INSTANCE_KIND, validate_kind};

static WRITE: Script = Script::new("context-write", include_str!("../lua/write.lua"));
static READ: Script = Script::new("context-read", include_str!("../lua/read.lua"));

/// The prefix of the fields coordkit keeps in every entity hash (`__version`, `__updated_ms`,
/// `__updated_by`, `__expires_ms`). User fields may not start with it.
pub const RESERVED_PREFIX: &str = "__";

/// The stamp fields, in the order the read script answers them.
const META: [&str; 4] = ["__version", "__updated_ms", "__updated_by", "__expires_ms"];

/// The largest stored number (version, time in ms) a context accepts: 2^53 - 1, the last whole
/// number a Lua script counts exactly. A stored number above it is corrupt data.
pub(crate) const MAX_STORED: u64 = (1 << 53) - 1;

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
    /// The entity's version when it was read: pass it to [`Write::expect_version`].
    pub version: u64,
}

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
            (true, Some(ttl)) => ttl.as_millis().to_string(),
            _ => "0".to_owned(),
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

    /// The current version, counting a deleted entity's tombstone (0 if it never existed).
    pub async fn current_version(&self) -> Result<u64> {
        Ok(crate::history::fetch(self, u64::MAX - 1, 1).await?.current)
    }

    /// The changes after `version`, oldest first (at most `limit`). Fails with
    /// [`ContextError::Compacted`] when the history no longer reaches back that far.
    pub async fn changes_since(&self, version: u64, limit: u32) -> Result<Vec<Change>> {
        crate::history::changes_since(self, version, limit).await
    }

    /// Watches the entity from `version` (0: from its beginning, or its current snapshot if the
    /// history does not reach back): every change after it, in order, even across subscriber
    /// reconnects. Opens a subscriber connection of its own.
    pub async fn watch(&self, version: u64) -> Result<Watcher> {
        Watcher::start(self.clone(), version).await
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
        let ttl_ms = settings.idle_ttl.map(ms).unwrap_or(0);
        // A version above MAX_STORED exists nowhere: clamped one above it, it still conflicts,
        // and every number sent is whole in an f64.
        let expected = self
            .expected
            // Exact: at most 2^53.
            .map(|v| v.min(MAX_STORED + 1) as f64)
            .unwrap_or(-1.0);
        let numbers: Vec<u8> = [
            expected,
            if self.delete_entity { 1.0 } else { 0.0 },
            ttl_ms as f64,
            f64::from(settings.history_len),
            ms(settings.tombstone_ttl) as f64,
            set.len() as f64,
            delete.len() as f64,
        ]
        .iter()
        .flat_map(|n| n.to_be_bytes())
        .collect();
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
        let envelope_head = format!(
            r#"{{"kind":"changed","source":"ctx","entity":{},"ts_ms":"#,
            json(&entity.name)
        );
        let envelope_tail = format!(
            r#","payload":{{"changed":{},"deleted":{deleted_json},"entity_deleted":{},"actor":{actor_json},"version":"#,
            json(&changed),
            self.delete_entity
        );
        let prepared = PreparedWrite {
            data: entity.data.clone(),
            history: entity.history.clone(),
            numbers,
            actor,
            history_head: history,
            envelope_head,
            envelope_tail,
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

/// A read of a whole entity (no fields) or of some fields, without a script.
#[derive(Debug)]
pub(crate) struct PlainRead {
    data: Key,
    fields: Vec<String>,
}

impl PlainRead {
    /// The read's command (`HGETALL`, or `HMGET` of the stamps and the fields), with its key.
    fn command(&self) -> (redis::Cmd, &[Key]) {
        let cmd = if self.fields.is_empty() {
            let mut cmd = redis::cmd("HGETALL");
            cmd.arg(&self.data);
            cmd
        } else {
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(&self.data).arg(&META[..]).arg(&self.fields);
            cmd
        };
        (cmd, std::slice::from_ref(&self.data))
    }
}

/// The store's group commit of plain reads: concurrent reads share one pipeline.
pub(crate) type ReadBatcher = GroupCommit<PlainRead, coordkit_core::Result<Vec<Value>>>;

/// How many read pipelines per lane may be on the wire at once.
const READS_IN_FLIGHT: usize = 4;
/// The most reads one pipeline carries.
const MAX_READ_BATCH: usize = 128;

pub(crate) fn read_batcher(pool: &Pool) -> ReadBatcher {
    GroupCommit::new(
        pool,
        READS_IN_FLIGHT,
        MAX_READ_BATCH,
        |pool, reads: Vec<PlainRead>| {
            Box::pin(async move {
                if let [read] = &reads[..] {
                    // A lone read needs no pipeline: its failure, whatever it is, is its own.
                    let (cmd, keys) = read.command();
                    return Ok(vec![pool.query_keys(&cmd, keys).await]);
                }
                let commands: Vec<(redis::Cmd, &[Key])> =
                    reads.iter().map(PlainRead::command).collect();
                pool.query_each(&commands).await
            })
        },
    )
}

/// A checked write, ready for the write script (alone or in a batch).
#[derive(Debug)]
pub(crate) struct PreparedWrite {
    data: Key,
    history: Key,
    numbers: Vec<u8>,
    actor: String,
    history_head: String,
    envelope_head: String,
    envelope_tail: String,
    set: Vec<(String, String)>,
    delete: Vec<String>,
}

/// What the write script answered for one write.
#[derive(Debug)]
pub(crate) enum WriteOutcome {
    Written(u64),
    Conflict(u64),
    Failed(coordkit_core::Error),
}

/// The store's group commit of writes: concurrent writes share one write-script call.
pub(crate) type WriteBatcher = GroupCommit<PreparedWrite, WriteOutcome>;

/// How many write calls per lane may be on the wire at once.
const WRITES_IN_FLIGHT: usize = 4;
/// The most writes one call carries.
const MAX_WRITE_BATCH: usize = 128;

pub(crate) fn write_batcher(pool: &Pool, clock: Clock, channel: Arc<str>) -> WriteBatcher {
    GroupCommit::new(
        pool,
        WRITES_IN_FLIGHT,
        MAX_WRITE_BATCH,
        move |pool, writes: Vec<PreparedWrite>| {
            let now_arg = clock.arg();
            let channel = channel.clone();
            Box::pin(async move {
                let mut call = WRITE.prepare();
                for w in &writes {
                    call.key(&w.data).key(&w.history);
                }
                call.arg(now_arg).arg(&*channel);
                for w in &writes {
                    call.arg(&w.numbers[..])
                        .arg(&w.actor)
                        .arg(&w.history_head)
                        .arg(&w.envelope_head)
                        .arg(&w.envelope_tail);
                    for (field, value) in &w.set {
                        call.arg(field).arg(value);
                    }
                    for field in &w.delete {
                        call.arg(field);
                    }
                }
                // A lone write's answer comes alone, a batch's as a list.
                let answers = match call.invoke::<Value>(&pool).await? {
                    Value::Array(answers) if writes.len() > 1 => answers,
                    answer if writes.len() == 1 => vec![answer],
                    other => {
                        return Err(coordkit_core::Error::decode(
                            "the write script's answer",
                            format!("{other:?} for {} writes", writes.len()),
                        ));
                    }
                };
                if answers.len() != writes.len() {
                    return Err(coordkit_core::Error::decode(
                        "the write script's answer",
                        format!("{} answers for {} writes", answers.len(), writes.len()),
                    ));
                }
                Ok(writes
                    .iter()
                    .zip(answers)
                    .map(|(w, answer)| write_outcome(w, answer))
                    .collect())
            })
        },
    )
}

fn write_outcome(write: &PreparedWrite, answer: Value) -> WriteOutcome {
    let unexpected = |what: &dyn std::fmt::Debug| {
        WriteOutcome::Failed(coordkit_core::Error::decode(
            "the write script's answer",
            format!("unexpected {what:?}"),
        ))
    };
    match answer {
        Value::Int(v) if v > 0 => WriteOutcome::Written(v.unsigned_abs()),
        // A conflict answers -(current + 1).
        Value::Int(v) => match v.checked_add(1).and_then(i64::checked_neg) {
            Some(current) => WriteOutcome::Conflict(current.unsigned_abs()),
            None => unexpected(&v),
        },
        Value::BulkString(text) => {
            let text = String::from_utf8_lossy(&text);
            let mut words = text.splitn(3, ' ');
            let (code, which, rest) = (words.next(), words.next(), words.next());
            let key = if which == Some("history") {
                &write.history
            } else {
                &write.data
            };
            match (code, which) {
                (Some("WRONGTYPE"), Some(_)) => {
                    WriteOutcome::Failed(coordkit_core::Error::WrongType {
                        key: key.to_string(),
                        found: rest.unwrap_or("unknown").to_owned(),
                    })
                }
                (Some("CORRUPT"), Some("data" | "history")) => WriteOutcome::Failed(
                    coordkit_core::Error::corrupt(key.as_str(), rest.unwrap_or_default()),
                ),
                _ => unexpected(&text),
            }
        }
        other => unexpected(&other),
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// JSON text of a value that cannot fail to encode (strings, lists and maps of strings).
fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
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

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// [`coordkit_core::Error::Corrupt`] naming `key`.
pub(crate) fn corrupt(key: &Key, detail: impl std::fmt::Display) -> ContextError {
    coordkit_core::Error::corrupt(key.as_str(), detail).into()
}

/// At most 40 characters of a stored value, for error messages.
fn shown(raw: &str) -> String {
    let mut shown: String = raw.chars().take(40).collect();
    if shown.len() < raw.len() {
        shown.push_str("...");
    }
    shown
}

/// A stored stamp of `key`: a whole number in `0..=MAX_STORED` (digits, or a whole number a
/// Lua script reads the same, like `1e3`), else [`coordkit_core::Error::Corrupt`] naming the
/// key and the field.
pub(crate) fn stored_number(key: &Key, field: &str, raw: &str) -> Result<u64> {
    let n = raw.parse::<u64>().ok().or_else(|| {
        let f: f64 = raw.parse().ok()?;
        // In range and whole, the cast is exact.
        (f.fract() == 0.0 && (0.0..=9_007_199_254_740_991.0).contains(&f)).then_some(f as u64)
    });
    n.filter(|n| *n <= MAX_STORED).ok_or_else(|| {
        corrupt(
            key,
            format!(
                "{field} is {:?}, not a whole number in 0..{MAX_STORED}",
                shown(raw)
            ),
        )
    })
}

fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The stamps as stored (text, `None` when missing), decoded into a snapshot without fields
/// (`None`: no version, no entity).
fn decode_stamps(
    data: &Key,
    version: Option<String>,
    updated_ms: Option<String>,
    updated_by: Option<String>,
    expires_ms: Option<String>,
) -> Result<Option<EntitySnapshot>> {
    // Every stamp is checked, even of a hash without a version: a read never hides bad data.
    let expires_ms = expires_ms
        .map(|raw| stored_number(data, "__expires_ms", &raw))
        .transpose()?;
    let updated = updated_ms
        .map(|raw| stored_number(data, "__updated_ms", &raw))
        .transpose()?;
    let Some(version) = version else {
        return Ok(None);
    };
    let version = stored_number(data, "__version", &version)?;
    let updated_ms = updated.ok_or_else(|| corrupt(data, "__updated_ms is missing"))?;
    Ok(Some(EntitySnapshot {
        version,
        updated_ms,
        updated_by: updated_by.unwrap_or_default(),
        expires_ms,
        fields: BTreeMap::new(),
    }))
}

/// Decodes a plain `HGETALL`, taking the strings over without copying them.
fn decode_hgetall(data: &Key, all: Vec<Value>) -> Result<(Option<EntitySnapshot>, u64)> {
    let mut stamps: [Option<String>; 4] = Default::default();
    let mut fields = BTreeMap::new();
    let mut items = all.into_iter();
    while let (Some(k), Some(v)) = (items.next(), items.next()) {
        let (Value::BulkString(k), Value::BulkString(v)) = (k, v) else {
            return Err(coordkit_core::Error::decode(
                format!("the entity at {data}"),
                "HGETALL answered a field or value that is not a string",
            )
            .into());
        };
        if let Some(i) = META.iter().position(|m| m.as_bytes() == k.as_slice()) {
            stamps[i] = Some(utf8(v));
        } else if !k.starts_with(RESERVED_PREFIX.as_bytes()) {
            fields.insert(utf8(k), utf8(v));
        }
    }
    let [version, updated_ms, updated_by, expires_ms] = stamps;
    let Some(mut snapshot) = decode_stamps(data, version, updated_ms, updated_by, expires_ms)?
    else {
        return Ok((None, 0));
    };
    snapshot.fields = fields;
    let version = snapshot.version;
    Ok((Some(snapshot), version))
}

/// Decodes the read script's answer (or a plain read put in the same shape, with no current
/// version: then the snapshot's version, or 0, is the current one).
fn decode_read(
    data: &Key,
    fields: &[&str],
    values: Vec<Value>,
) -> Result<(Option<EntitySnapshot>, u64)> {
    let bad = |reason: &str| {
        ContextError::Core(coordkit_core::Error::decode(
            format!("the entity at {data}"),
            reason,
        ))
    };
    if values.len() < 5 {
        return Err(bad("the read script answered too few values"));
    }
    let current = match &values[4] {
        Value::Nil => None,
        Value::Int(n) => Some(u64::try_from(*n).map_err(|_| bad("a negative current version"))?),
        _ => return Err(bad("the current version is not a number")),
    };
    let stamps = decode_stamps(
        data,
        text(&values[0]),
        text(&values[1]),
        text(&values[2]),
        text(&values[3]),
    )?;
    let Some(mut snapshot) = stamps else {
        return Ok((None, current.unwrap_or(0)));
    };
    let rest = &values[5..];
    if fields.is_empty() {
        for pair in rest.chunks(2) {
            if let [k, v] = pair
                && let (Some(k), Some(v)) = (text(k), text(v))
                && !k.starts_with(RESERVED_PREFIX)
            {
                snapshot.fields.insert(k, v);
            }
        }
    } else {
        for (field, value) in fields.iter().zip(rest) {
            if let Some(v) = text(value) {
                snapshot.fields.insert((*field).to_owned(), v);
            }
        }
    }
    let current = current.unwrap_or(snapshot.version);
    Ok((Some(snapshot), current))
}
