//! Shared decoding of stored data: stamps and numbers, the JSON the scripts write, and the
//! errors that name bad data.

use std::collections::BTreeMap;

use coordkit_core::Key;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{ContextError, Result};

/// The prefix of the fields coordkit keeps in every entity hash (`__version`, `__updated_ms`,
/// `__updated_by`, `__expires_ms`). User fields may not start with it.
pub const RESERVED_PREFIX: &str = "__";

/// The stamp fields, in the order the read script answers them.
pub(crate) const META: [&str; 4] = ["__version", "__updated_ms", "__updated_by", "__expires_ms"];

/// The largest stored number (version, time in ms) a context accepts: 2^53 - 1, the last whole
/// number a Lua script counts exactly. A stored number above it is corrupt data. The scripts
/// name it `MAX` at their top (`lua/write.lua`, `read.lua`, `changes.lua`, `agent_record.lua`).
pub(crate) const MAX_STORED: u64 = (1 << 53) - 1;

/// JSON text of a value that cannot fail to encode (strings, lists and maps of strings).
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// [`coordkit_core::Error::Corrupt`] naming `key`.
pub(crate) fn corrupt(key: &Key, detail: impl std::fmt::Display) -> ContextError {
    coordkit_core::Error::corrupt(key.as_str(), detail).into()
}

/// At most 40 characters of a stored value, for error messages.
pub(crate) fn shown(raw: &str) -> String {
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
        // MAX_STORED is below 2^53: exact as an f64.
        (f.fract() == 0.0 && (0.0..=MAX_STORED as f64).contains(&f)).then_some(f as u64)
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

pub(crate) fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Lua's cjson writes an empty table as `{}`: accept it where a list is expected.
pub(crate) fn list_or_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrMap {
        List(Vec<String>),
        Map(BTreeMap<String, serde_json::Value>),
    }
    match ListOrMap::deserialize(d)? {
        ListOrMap::List(list) => Ok(list),
        ListOrMap::Map(map) if map.is_empty() => Ok(Vec::new()),
        ListOrMap::Map(_) => Err(serde::de::Error::custom("expected a list")),
    }
}

/// Lua's cjson writes an empty table as `{}`, and Redis may hand a map back as `[]`.
pub(crate) fn map_or_empty<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum MapOrList {
        Map(BTreeMap<String, String>),
        List(Vec<serde_json::Value>),
    }
    match MapOrList::deserialize(d)? {
        MapOrList::Map(map) => Ok(map),
        MapOrList::List(list) if list.is_empty() => Ok(BTreeMap::new()),
        MapOrList::List(_) => Err(serde::de::Error::custom("expected a map")),
    }
}
