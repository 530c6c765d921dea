//! The wire of the scripts: the record script's arguments and answer, the stored signature
//! state, and the codes shared with the Lua.

use coordkit_core::wire::unpack_f64_be;
use coordkit_core::{Error, Result};

use crate::batch::Outcome;
use crate::tracker::Repair;

/// Codes shared with the scripts: each named the same at the top of the script that uses it.
pub(crate) mod code {
    // lua/record.lua: the flags of a record's answer (`FLAG_*` there).
    /// A new signature.
    pub(crate) const FLAG_NEW: u64 = 1;
    /// A resolved signature re-opened.
    pub(crate) const FLAG_REGRESSION: u64 = 2;
    /// A cascade fired.
    pub(crate) const FLAG_CASCADE: u64 = 4;
    /// Repairs: the signature's state, its counter, a task slot's owner, the correlation state,
    /// the counter fields' count, the other counter.
    pub(crate) const FLAG_REPAIRED_STATE: u64 = 8;
    pub(crate) const FLAG_REPAIRED_COUNTER: u64 = 16;
    pub(crate) const FLAG_REPAIRED_TASK_SLOT: u64 = 32;
    pub(crate) const FLAG_REPAIRED_CORRELATION: u64 = 64;
    pub(crate) const FLAG_REPAIRED_COUNTER_FIELDS: u64 = 128;
    pub(crate) const FLAG_REPAIRED_OTHER: u64 = 256;

    // lua/resolve.lua: its answer's status (`RESOLVE_*` there).
    /// No such signature.
    pub(crate) const RESOLVE_UNKNOWN: u8 = 0;
    /// Resolved now.
    pub(crate) const RESOLVE_DONE: u8 = 1;
    /// It already was.
    pub(crate) const RESOLVE_ALREADY: u8 = 2;
}

/// The record script's arguments per record (`STRIDE` in lua/record.lua).
pub(crate) const RECORD_ARGS: usize = 15;

/// The record script's answer: big-endian doubles, `now`, then count, first seen and flags per
/// record.
pub(crate) fn decode_outcomes(packed: &[u8], records: usize) -> Result<Vec<Outcome>> {
    if packed.len() != 8 * (1 + records * 3) {
        return Err(Error::decode(
            "the record script's answer",
            format!("{} bytes for {} records", packed.len(), records),
        ));
    }
    // Whole numbers in 0..=2^53, as the script computed them from bounded stored numbers.
    let mut numbers = Vec::with_capacity(packed.len() / 8);
    for n in unpack_f64_be(packed).unwrap_or_default() {
        numbers.push(whole(n).ok_or_else(|| {
            Error::decode(
                "the record script's answer",
                format!("{n} is no whole number in 0..=2^53"),
            )
        })?);
    }
    let now = numbers.first().copied().unwrap_or_default();
    Ok(numbers
        .get(1..)
        .unwrap_or_default()
        .chunks_exact(3)
        .map(|c| Outcome {
            count: c[0],
            first_seen_ms: c[1],
            ts_ms: now,
            new_signature: c[2] & code::FLAG_NEW != 0,
            regression: c[2] & code::FLAG_REGRESSION != 0,
            cascade: c[2] & code::FLAG_CASCADE != 0,
            repaired: repairs(c[2]),
        })
        .collect())
}

/// The repairs named by a record's flags (the `FLAG_REPAIRED_*` bits).
pub(crate) fn repairs(flags: u64) -> Vec<Repair> {
    Repair::BITS
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, r)| *r)
        .collect()
}

/// The largest whole number the scripts store (in a double, exactly).
pub(crate) const MAX_STORED: u64 = 1 << 53;

/// `n` as a whole number in `0..=2^53`, or `None` (NaN, infinite, negative, fractional, huge).
pub(crate) fn whole(n: f64) -> Option<u64> {
    (n >= 0.0 && n <= MAX_STORED as f64 && n.fract() == 0.0).then_some(n as u64)
}

/// A string as the record script's `struct.unpack('>Hc0')` reads it: its length (2 bytes,
/// big-endian), then its bytes. Only for short strings: names, ids.
pub(crate) fn put_short(out: &mut Vec<u8>, bytes: &[u8]) {
    debug_assert!(
        bytes.len() <= usize::from(u16::MAX),
        "a short string of {} bytes",
        bytes.len()
    );
    out.extend_from_slice(&u16::try_from(bytes.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A string as `struct.unpack('>I4c0')` reads it: its length (4 bytes, big-endian), then its
/// bytes.
pub(crate) fn put_long(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The parsed signature state (see `lua/record.lua`): six big-endian doubles (count, first,
/// last, resolved, regressions, indexed), then the components seen (`" a b "`, NUL-terminated).
pub(crate) struct State {
    pub(crate) count: u64,
    pub(crate) first: u64,
    pub(crate) last: u64,
    pub(crate) resolved: u64,
    pub(crate) regressions: u64,
    pub(crate) components: Vec<String>,
}

/// `key` is the data hash that holds it: undecodable state is [`Error::Corrupt`] naming it and
/// the signature (the same checks as `lua/record.lua`, which starts such a state afresh).
pub(crate) fn parse_state(key: &str, signature: &str, state: &[u8]) -> Result<State> {
    let bad = |why: &str| -> Error {
        let shown: String = String::from_utf8_lossy(state).chars().take(40).collect();
        Error::corrupt(
            key,
            format!(
                "signature {signature} state ({} bytes, {shown:?}): {why}",
                state.len()
            ),
        )
    };
    if !(50..=4096).contains(&state.len()) {
        return Err(bad("not 50..=4096 bytes"));
    }
    let (numbers, comps) = state.split_at(48);
    let mut n = [0u64; 6];
    for (slot, value) in n.iter_mut().zip(unpack_f64_be(numbers).unwrap_or_default()) {
        *slot =
            whole(value).ok_or_else(|| bad(&format!("{value} is no whole number in 0..=2^53")))?;
    }
    if n[0] == 0 {
        return Err(bad("a count of 0"));
    }
    let comps = comps
        .strip_suffix(b"\0")
        .filter(|c| !c.contains(&0) && c.starts_with(b" ") && c.ends_with(b" "))
        .ok_or_else(|| bad("the components are not \" a b \" ending the value"))?;
    // Names only (the script does not check UTF-8): a damaged byte shows as U+FFFD.
    let comps = String::from_utf8_lossy(comps);
    Ok(State {
        count: n[0],
        first: n[1],
        last: n[2],
        resolved: n[3],
        regressions: n[4],
        components: comps
            .split(' ')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// The two slots (of `max_tasks`) a task's details record may use: from a SHA-1 of its id, so
/// every process agrees.
pub(crate) fn task_slots(task: &str, max_tasks: u32) -> (u32, u32) {
    let digest = sha1_smol::Sha1::from(task.as_bytes()).digest().bytes();
    let a = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    let b = u32::from_be_bytes([digest[4], digest[5], digest[6], digest[7]]);
    let n = max_tasks.max(1);
    (a % n, b % n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coordkit_core::wire::pack_f64_be;

    #[test]
    fn the_record_answer_is_decoded_per_record() {
        let outcomes = decode_outcomes(
            &pack_f64_be(&[
                1_700_000_000_123.0,
                5.0,
                1_600_000_000_000.0,
                0.0,
                1.0,
                1_700_000_000_123.0,
                7.0,
            ]),
            2,
        )
        .unwrap();
        assert_eq!(outcomes.len(), 2);
        assert_eq!(outcomes[0].count, 5);
        assert_eq!(outcomes[0].first_seen_ms, 1_600_000_000_000);
        assert_eq!(outcomes[0].ts_ms, 1_700_000_000_123);
        assert!(!outcomes[0].new_signature && !outcomes[0].regression && !outcomes[0].cascade);
        assert_eq!(outcomes[1].count, 1);
        assert!(outcomes[1].new_signature && outcomes[1].regression && outcomes[1].cascade);
    }

    #[test]
    fn a_record_answer_of_the_wrong_size_is_an_error_not_a_panic() {
        assert!(decode_outcomes(&pack_f64_be(&[1.0, 2.0, 3.0]), 1).is_err());
        assert!(decode_outcomes(&[0; 13], 1).is_err());
        assert!(decode_outcomes(&[], 0).is_err());
    }
}
