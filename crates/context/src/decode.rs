//! Decoding an entity's reads: the read script's answer, or a plain `HGETALL` / `HMGET`.

use std::collections::BTreeMap;

use coordkit_core::Key;
use redis::Value;

use crate::error::{ContextError, Result};
use crate::types::EntitySnapshot;
use crate::wire::{META, RESERVED_PREFIX, corrupt, stored_number, utf8};
use coordkit_core::wire::lossy_text;

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
pub(crate) fn decode_hgetall(data: &Key, all: Vec<Value>) -> Result<(Option<EntitySnapshot>, u64)> {
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
pub(crate) fn decode_read(
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
        lossy_text(&values[0]),
        lossy_text(&values[1]),
        lossy_text(&values[2]),
        lossy_text(&values[3]),
    )?;
    let Some(mut snapshot) = stamps else {
        return Ok((None, current.unwrap_or(0)));
    };
    let rest = &values[5..];
    if fields.is_empty() {
        for pair in rest.chunks(2) {
            if let [k, v] = pair
                && let (Some(k), Some(v)) = (lossy_text(k), lossy_text(v))
                && !k.starts_with(RESERVED_PREFIX)
            {
                snapshot.fields.insert(k, v);
            }
        }
    } else {
        for (field, value) in fields.iter().zip(rest) {
            if let Some(v) = lossy_text(value) {
                snapshot.fields.insert((*field).to_owned(), v);
            }
        }
    }
    let current = current.unwrap_or(snapshot.version);
    Ok((Some(snapshot), current))
}
