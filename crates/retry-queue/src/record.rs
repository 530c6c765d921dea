//! A task's stored record and error history, as `lua/lib/queue.lua` lays them out.

use coordkit_core::wire::Packed;

use crate::types::Failure;

/// A task's stored record, decoded (see `lua/lib/queue.lua`: a fixed 48-byte head, of which the
/// script writes the first 32 bytes and Rust the other 16, then the policy, the component and
/// the payload). Decoding checks the lengths only; the script also
/// bounds the numbers it uses. Public with the `model` feature (what a `model::Dump`
/// holds).
#[cfg_attr(not(feature = "model"), allow(unreachable_pub))]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Failures so far.
    pub attempts: u32,
    /// Lost leases so far.
    pub stalls: u32,
    /// The last backoff delay chosen (ms).
    pub prev: u64,
    /// When it became (or becomes) ready, or was dead-lettered.
    pub since: u64,
    /// When it was enqueued.
    pub enqueued: u64,
    /// Its attempt budget.
    pub max: u32,
    /// Its priority (0 to [`MAX_PRIORITY`](crate::MAX_PRIORITY)).
    pub priority: u8,
    /// Its lease length (ms).
    pub lease: u64,
    /// Its backoff policy as the script reads it.
    pub policy: Vec<u8>,
    /// Its component.
    pub component: Option<String>,
    /// Its group.
    pub group: Option<String>,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// The length of a record's fixed head (`HDR` in `lua/lib/queue.lua`).
const HEAD: usize = 48;
/// The part of the head the script writes, from offset 0: attempts, stalls, last delay,
/// since, enqueued. Rust writes the rest, from offset 32 (see [`tail`]).
const SCRIPT_HEAD: usize = 32;

fn le_u64(b: &[u8], at: usize, len: usize) -> u64 {
    let mut v = [0u8; 8];
    v[..len].copy_from_slice(&b[at..at + len]);
    u64::from_le_bytes(v)
}

#[cfg_attr(not(feature = "model"), allow(unreachable_pub))]
impl Record {
    /// Decodes a stored record.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < HEAD {
            return None;
        }
        let plen = le_u64(b, SCRIPT_HEAD + 12, 2) as usize;
        let clen = le_u64(b, SCRIPT_HEAD + 14, 2) as usize;
        let glen = b[SCRIPT_HEAD + 3] as usize;
        let at = HEAD + plen + clen;
        if b.len() < at + glen {
            return None;
        }
        let component = String::from_utf8_lossy(&b[HEAD + plen..at]);
        let group = String::from_utf8_lossy(&b[at..at + glen]);
        Some(Self {
            attempts: le_u64(b, 0, 4) as u32,
            stalls: le_u64(b, 4, 4) as u32,
            prev: le_u64(b, 8, 8),
            since: le_u64(b, 16, 8),
            enqueued: le_u64(b, 24, 8),
            max: le_u64(b, SCRIPT_HEAD, 2) as u32,
            priority: b[SCRIPT_HEAD + 2],
            lease: le_u64(b, SCRIPT_HEAD + 4, 8),
            policy: b[HEAD..HEAD + plen].to_vec(),
            component: (clen > 0).then(|| component.into_owned()),
            group: (glen > 0).then(|| group.into_owned()),
            payload: b[at + glen..].to_vec(),
        })
    }
}

/// The part of a record Rust writes: from offset [`SCRIPT_HEAD`] (32) to the end of the
/// [`HEAD`] (max I2, priority B, group length B, lease I8, policy length I2, component length
/// I2), then the policy, the component, the group and the payload. A group is at most 200
/// bytes (a checked name).
pub(crate) fn tail(
    max: u32,
    priority: u8,
    lease: u64,
    policy: &[u8],
    (component, group): (&str, &str),
    payload: &[u8],
) -> Vec<u8> {
    Packed::new()
        .bytes(&(max as u16).to_le_bytes())
        .bytes(&[priority, group.len() as u8])
        .u64_le(lease)
        .bytes(&(policy.len() as u16).to_le_bytes())
        .bytes(&(component.len() as u16).to_le_bytes())
        .bytes(policy)
        .bytes(component.as_bytes())
        .bytes(group.as_bytes())
        .bytes(payload)
        .into_bytes()
}

/// The part of a record Rust writes ([`tail`]) for a task with these options.
pub(crate) fn task_tail(o: &crate::options::TaskOptions, payload: &[u8]) -> Vec<u8> {
    tail(
        o.max_attempts,
        o.priority,
        coordkit_core::time::duration_ms(o.lease),
        &o.policy(),
        (
            o.component.as_deref().unwrap_or(""),
            o.group.as_deref().unwrap_or(""),
        ),
        payload,
    )
}

/// Decodes a stored error history (oldest first); public with the `model` feature.
#[cfg_attr(not(feature = "model"), allow(unreachable_pub))]
pub fn decode_errors(b: &[u8]) -> Option<Vec<Failure>> {
    let Some((&count, mut rest)) = b.split_first() else {
        return Some(Vec::new());
    };
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        if rest.len() < 14 {
            return None;
        }
        let len = le_u64(rest, 12, 2) as usize;
        let text = rest.get(14..14 + len)?;
        out.push(Failure {
            attempt: le_u64(rest, 0, 4) as u32,
            at_ms: le_u64(rest, 4, 8),
            error: String::from_utf8_lossy(text).into_owned(),
        });
        rest = &rest[14 + len..];
    }
    rest.is_empty().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_head_and_the_rust_tail_make_the_documented_48_byte_head() {
        let tail = tail(7, 3, 30_000, b"pp", ("db", "key-1"), b"payload");
        assert_eq!(tail.len(), HEAD - SCRIPT_HEAD + 2 + 2 + 5 + 7);
        // What the enqueue script writes before it: attempts, stalls, last delay, since,
        // enqueued.
        let mut rec = Packed::new()
            .bytes(&1u32.to_le_bytes())
            .bytes(&2u32.to_le_bytes())
            .u64_le(3)
            .u64_le(4)
            .u64_le(5)
            .into_bytes();
        assert_eq!(rec.len(), SCRIPT_HEAD);
        rec.extend_from_slice(&tail);
        let r = Record::decode(&rec).unwrap();
        assert_eq!(
            (
                r.attempts, r.stalls, r.prev, r.since, r.enqueued, r.max, r.priority, r.lease
            ),
            (1, 2, 3, 4, 5, 7, 3, 30_000)
        );
        assert_eq!(
            (r.policy.as_slice(), r.component.as_deref()),
            (&b"pp"[..], Some("db"))
        );
        assert_eq!(r.group.as_deref(), Some("key-1"));
        assert_eq!(r.payload, b"payload");
    }
}
