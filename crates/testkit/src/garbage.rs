//! Bad stored data for corruption tests: what another program sharing the namespace, an
//! operator's mistake or another version of coordkit may leave in a primitive's keys.
//!
//! - [`overwrite_with_type`] replaces a key with a value of another Redis type;
//! - [`Garbage`] turns a stored value (a record, a field) into bad bytes: random, truncated,
//!   empty, huge or negative numbers, text where a number belongs, numbers in forms Lua reads
//!   but Redis's integer commands refuse (`5.0`, `0x10`);
//! - [`garbage`] and [`wrong_type`] are proptest strategies over both.
//!
//! ```no_run
//! # async fn demo(pool: coordkit_core::Pool, key: coordkit_core::Key) {
//! use coordkit_testkit::garbage::{Garbage, overwrite_with_type};
//!
//! overwrite_with_type(&pool, &key, "string").await; // the key is now a string
//! let bad = Garbage::Truncated(3).apply(b"a stored record");
//! assert_eq!(bad, b"a s");
//! # }
//! ```

use coordkit_core::{Key, KeyKind, Pool};
use proptest::prelude::*;

/// The Redis types a key can be overwritten with.
pub const TYPES: [&str; 5] = ["string", "list", "hash", "set", "zset"];

/// Deletes `key` and writes one element of Redis type `type_name` (one of [`TYPES`]) there, in
/// one atomic call.
///
/// # Panics
/// On an unknown type name or when the server refuses (the test cannot go on).
pub async fn overwrite_with_type(pool: &Pool, key: &Key, type_name: &str) {
    assert!(TYPES.contains(&type_name), "no such type {type_name:?}");
    let mut eval = redis::cmd("EVAL");
    eval.arg(
        "redis.call('DEL', KEYS[1]) \
         local t = ARGV[1] \
         if t == 'string' then redis.call('SET', KEYS[1], 'garbage') \
         elseif t == 'list' then redis.call('RPUSH', KEYS[1], 'garbage') \
         elseif t == 'hash' then redis.call('HSET', KEYS[1], 'garbage-field', 'garbage') \
         elseif t == 'set' then redis.call('SADD', KEYS[1], 'garbage') \
         else redis.call('ZADD', KEYS[1], 1, 'garbage') end",
    )
    .arg(1)
    .arg(key)
    .arg(type_name);
    if let Err(e) = pool.query::<()>(&eval).await {
        panic!("cannot overwrite {key} with a {type_name}: {e}");
    }
}

/// Bad bytes for a stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Garbage {
    /// These bytes instead of the value.
    Random(Vec<u8>),
    /// The value cut to this many bytes (kept whole when shorter).
    Truncated(usize),
    /// The value with this byte flipped (index modulo the length; nothing for an empty value).
    Flipped(usize),
    /// An empty string.
    Empty,
    /// `18446744073709551615` (2^64 − 1 as text).
    Huge,
    /// `-1`.
    Negative,
    /// `1e308`.
    Float,
    /// `not a number`.
    Text,
    /// A number to Lua's `tonumber` but not to Redis's `HINCRBY` (`5.0`, ` 5`, `0x10`, `1e3`,
    /// …; the index picks one, modulo their count).
    Lenient(usize),
}

/// Numbers in forms Lua reads and Redis's integer commands refuse.
const LENIENT: [&str; 7] = ["5.0", " 5", "5 ", "0x10", "1e3", "+5", "05"];

impl Garbage {
    /// The bad bytes that replace `original`.
    pub fn apply(&self, original: &[u8]) -> Vec<u8> {
        match self {
            Garbage::Random(b) => b.clone(),
            Garbage::Truncated(n) => original[..(*n).min(original.len())].to_vec(),
            Garbage::Flipped(i) => {
                let mut b = original.to_vec();
                if !b.is_empty() {
                    let i = i % b.len();
                    b[i] = !b[i];
                }
                b
            }
            Garbage::Empty => Vec::new(),
            Garbage::Huge => b"18446744073709551615".to_vec(),
            Garbage::Negative => b"-1".to_vec(),
            Garbage::Float => b"1e308".to_vec(),
            Garbage::Text => b"not a number".to_vec(),
            Garbage::Lenient(i) => LENIENT[i % LENIENT.len()].as_bytes().to_vec(),
        }
    }
}

/// Any [`Garbage`]: random bytes (up to 64), truncations, flipped bytes and the fixed shapes.
pub fn garbage() -> impl Strategy<Value = Garbage> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Garbage::Random),
        (0usize..64).prop_map(Garbage::Truncated),
        any::<usize>().prop_map(Garbage::Flipped),
        Just(Garbage::Empty),
        Just(Garbage::Huge),
        Just(Garbage::Negative),
        Just(Garbage::Float),
        Just(Garbage::Text),
        (0usize..LENIENT.len()).prop_map(Garbage::Lenient),
    ]
}

/// A Redis type other than `kind`'s, for [`overwrite_with_type`].
pub fn wrong_type(kind: KeyKind) -> impl Strategy<Value = &'static str> {
    let expected = kind.type_name();
    let others: Vec<&'static str> = TYPES.into_iter().filter(|t| *t != expected).collect();
    proptest::sample::select(others)
}
