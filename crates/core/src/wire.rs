//! The wire between Rust and the scripts: packing numbers into one argument, and reading the
//! answers with every value checked. Every primitive goes through it, so an answer this version
//! cannot read is always [`Error::Decode`] naming the script and the field, never a panic.
//!
//! Codes shared with a script (an operation, an outcome) are named constants on both sides:
//! at the top of the script, and in a `code` module of the Rust that calls it.
//!
//! ```
//! use coordkit_core::redis::Value;
//! use coordkit_core::wire::{Packed, Reply};
//!
//! // ARGV: two numbers in one argument, unpacked in Lua with struct.unpack('<I8<I8', …).
//! let arg = Packed::new().u64_le(7).u64_le(1_000).into_bytes();
//! assert_eq!(arg.len(), 16);
//!
//! // The answer `{ 1, "ok", 42 }`.
//! let answer = Value::Array(vec![
//!     Value::Int(1),
//!     Value::BulkString(b"ok".to_vec()),
//!     Value::Int(42),
//! ]);
//! let reply = Reply::array("claim", &answer)?;
//! assert_eq!(reply.u64(0, "count")?, 1);
//! assert_eq!(reply.text(1, "status")?, "ok");
//! assert!(reply.u64(5, "missing").is_err());
//! # Ok::<(), coordkit_core::Error>(())
//! ```

use redis::Value;

use crate::error::{Error, Result};

/// Numbers packed into one script argument, unpacked in Lua with `struct.unpack`: one
/// argument instead of many, and no number turned into text on either side.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Packed(Vec<u8>);

impl Packed {
    /// An empty argument.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an unsigned 64-bit little-endian integer (`<I8` in Lua; exact below 2^53).
    pub fn u64_le(mut self, n: u64) -> Self {
        self.0.extend_from_slice(&n.to_le_bytes());
        self
    }

    /// Appends a big-endian double (`>d` in Lua).
    pub fn f64_be(mut self, n: f64) -> Self {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }

    /// Appends raw bytes.
    pub fn bytes(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }

    /// The packed argument.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// Doubles packed big-endian, for `struct.unpack('>d…')`.
pub fn pack_f64_be(numbers: &[f64]) -> Vec<u8> {
    numbers.iter().flat_map(|n| n.to_be_bytes()).collect()
}

/// The big-endian doubles a script packed with `struct.pack('>d…')` (or a stored record holds);
/// `None` when the length is not a multiple of 8.
pub fn unpack_f64_be(bytes: &[u8]) -> Option<Vec<f64>> {
    if !bytes.len().is_multiple_of(8) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(8)
            .map(|c| f64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
    )
}

/// A stored value as text, whatever Redis answered it as (a bulk or simple string, lossily
/// decoded, or a number); `None` for nil and lists.
pub fn lossy_text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A script's answer that is a list, read field by field; `script` names it in errors.
#[derive(Debug, Clone, Copy)]
pub struct Reply<'a> {
    script: &'static str,
    items: &'a [Value],
}

impl<'a> Reply<'a> {
    /// The answer as a list; anything else is [`Error::Decode`].
    pub fn array(script: &'static str, value: &'a Value) -> Result<Self> {
        match value {
            Value::Array(items) => Ok(Self { script, items }),
            other => Err(unexpected(script, "the answer", "a list", other)),
        }
    }

    /// The items of a list already taken apart.
    pub fn items(script: &'static str, items: &'a [Value]) -> Self {
        Self { script, items }
    }

    /// How many items the answer has.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the answer is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Item `i`, or `Decode` when the answer is shorter.
    pub fn get(&self, i: usize, field: &str) -> Result<&'a Value> {
        self.items.get(i).ok_or_else(|| {
            decode(
                self.script,
                field,
                format!("the answer has {} items, not {}", self.items.len(), i + 1),
            )
        })
    }

    /// Item `i` as a whole number of at least 0.
    pub fn u64(&self, i: usize, field: &str) -> Result<u64> {
        uint(self.script, field, self.get(i, field)?)
    }

    /// Item `i` as a whole number.
    pub fn i64(&self, i: usize, field: &str) -> Result<i64> {
        int(self.script, field, self.get(i, field)?)
    }

    /// Item `i` as bytes (a bulk or simple string).
    pub fn bytes(&self, i: usize, field: &str) -> Result<&'a [u8]> {
        bytes(self.script, field, self.get(i, field)?)
    }

    /// Item `i` as UTF-8 text.
    pub fn text(&self, i: usize, field: &str) -> Result<&'a str> {
        text(self.script, field, self.get(i, field)?)
    }

    /// Item `i` as a list.
    pub fn list(&self, i: usize, field: &str) -> Result<Reply<'a>> {
        match self.get(i, field)? {
            Value::Array(items) => Ok(Reply {
                script: self.script,
                items,
            }),
            other => Err(unexpected(self.script, field, "a list", other)),
        }
    }
}

/// A whole number.
pub fn int(script: &str, field: &str, value: &Value) -> Result<i64> {
    match value {
        Value::Int(n) => Ok(*n),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| unexpected(script, field, "a whole number", value)),
        other => Err(unexpected(script, field, "a whole number", other)),
    }
}

/// A whole number of at least 0.
pub fn uint(script: &str, field: &str, value: &Value) -> Result<u64> {
    let n = int(script, field, value)?;
    u64::try_from(n).map_err(|_| decode(script, field, format!("{n} is below 0")))
}

/// Bytes: a bulk or simple string.
pub fn bytes<'a>(script: &str, field: &str, value: &'a Value) -> Result<&'a [u8]> {
    match value {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.as_bytes()),
        other => Err(unexpected(script, field, "a string", other)),
    }
}

/// UTF-8 text.
pub fn text<'a>(script: &str, field: &str, value: &'a Value) -> Result<&'a str> {
    std::str::from_utf8(bytes(script, field, value)?)
        .map_err(|_| decode(script, field, "not UTF-8".to_owned()))
}

fn unexpected(script: &str, field: &str, expected: &str, found: &Value) -> Error {
    let found = match found {
        Value::Nil => "nil",
        Value::Int(_) => "a number",
        Value::BulkString(_) | Value::SimpleString(_) => "a string",
        Value::Array(_) => "a list",
        _ => "another type",
    };
    decode(script, field, format!("expected {expected}, found {found}"))
}

fn decode(script: &str, field: &str, reason: String) -> Error {
    Error::Decode {
        what: format!("the `{script}` script's {field}"),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_numbers_are_laid_out_as_lua_unpacks_them() {
        let p = Packed::new().u64_le(1).f64_be(2.0).bytes(b"x").into_bytes();
        assert_eq!(&p[..8], &1u64.to_le_bytes());
        assert_eq!(&p[8..16], &2.0f64.to_be_bytes());
        assert_eq!(&p[16..], b"x");
        assert_eq!(pack_f64_be(&[1.0, 2.0]).len(), 16);
        assert_eq!(
            unpack_f64_be(&pack_f64_be(&[1.5, -2.0])),
            Some(vec![1.5, -2.0])
        );
        assert_eq!(unpack_f64_be(&[0; 7]), None);
        assert_eq!(lossy_text(&Value::Int(7)).as_deref(), Some("7"));
        assert_eq!(lossy_text(&Value::Nil), None);
    }

    #[test]
    fn a_reply_names_the_script_and_field_it_cannot_read() {
        let v = Value::Array(vec![
            Value::Int(-1),
            Value::Nil,
            Value::BulkString(vec![0xff]),
        ]);
        let r = Reply::array("claim", &v).unwrap();
        assert_eq!(r.i64(0, "count").unwrap(), -1);
        let e = r.u64(0, "count").unwrap_err().to_string();
        assert!(
            e.contains("`claim`") && e.contains("count") && e.contains("below 0"),
            "{e}"
        );
        let e = r.text(1, "status").unwrap_err().to_string();
        assert!(e.contains("expected a string, found nil"), "{e}");
        assert!(r.text(2, "name").unwrap_err().to_string().contains("UTF-8"));
        let e = r.u64(3, "extra").unwrap_err().to_string();
        assert!(e.contains("3 items, not 4"), "{e}");
        assert!(Reply::array("x", &Value::Int(1)).is_err());
    }
}
