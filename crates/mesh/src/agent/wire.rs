//! The wire of `lua/inbox.lua`: its codes, its keys, the packed arguments, the body Rust writes
//! into a record (sender, correlation id, payload) and the answers it reads back.
//!
//! The raw types are public with the `model` or `testing` feature (the model answers them).
#![cfg_attr(
    not(any(feature = "model", feature = "testing")),
    allow(unreachable_pub, dead_code)
)]

use coordkit_core::wire::{Packed, Reply};
use coordkit_core::{InstanceKeys, Invocation, Key, KeyKind, Script};

use super::error::Result;

pub(crate) static INBOX: Script = Script::new("mesh-inbox", include_str!("../../lua/inbox.lua"));
/// The send of a reply: the hot half of every ask, with the keys it needs only.
pub(crate) static REPLY: Script = Script::new("mesh-reply", include_str!("../../lua/reply.lua"));
/// The send of a request to a receiver that serves: the other hot half of every ask.
pub(crate) static REQUEST: Script =
    Script::new("mesh-request", include_str!("../../lua/request.lua"));
/// The removal of replies that reached their asker by push.
pub(crate) static FORGET: Script = Script::new("mesh-forget", include_str!("../../lua/forget.lua"));

/// Numbers shared with `lua/inbox.lua`: the constants of the same names at the top of the
/// script. Change one side, change the other.
pub(crate) mod code {
    /// Lanes: where a record waits.
    pub(crate) const LANE_MESSAGE: u8 = 0;
    pub(crate) const LANE_REQUEST: u8 = 1;
    pub(crate) const LANE_REPLY: u8 = 2;
    /// Answers of `send`.
    pub(crate) const SENT: u64 = 1;
    pub(crate) const NO_RESPONDERS: u64 = 2;
    pub(crate) const LATE: u64 = 3;
    /// `lua/request.lua`: the receiver is alive and does not serve (nothing written).
    pub(crate) const NOT_SERVING: u64 = 4;
    /// Answers of `take`.
    pub(crate) const TAKEN: u64 = 1;
    pub(crate) const ABSENT: u64 = 2;
    pub(crate) const MALFORMED: u64 = 3;
    /// Which presence a send requires.
    pub(crate) const ALIVE_ANY: u8 = 0;
    pub(crate) const ALIVE_AGENT: u8 = 1;
    pub(crate) const ALIVE_MEMBER: u8 = 2;
    /// The kind byte in front of a push.
    pub(crate) const PUSH_REQUEST: u8 = 1;
    pub(crate) const PUSH_REPLY: u8 = 2;
    /// A number an answer does not have.
    pub(crate) const NONE: i64 = -1;
    /// The version byte in front of every body.
    pub(crate) const BODY_V1: u8 = 1;
    /// The status byte in front of a reply's payload.
    pub(crate) const REPLY_OK: u8 = 0;
    pub(crate) const REPLY_ERR: u8 = 1;
}

/// The suffixes of an inbox's keys, in the script's `KEYS` order.
pub(crate) const KEYS: [(&str, KeyKind); 10] = [
    ("msgs", KeyKind::Hash),
    ("ready", KeyKind::List),
    ("asks", KeyKind::List),
    ("pending", KeyKind::ZSet),
    ("tries", KeyKind::Hash),
    ("replies", KeyKind::Hash),
    ("reply_exp", KeyKind::ZSet),
    ("meta", KeyKind::Hash),
    ("alive", KeyKind::String),
    ("dead", KeyKind::List),
];

/// Where the keys Rust reads itself, or hands to the reply and forget scripts, stand in
/// [`KEYS`].
pub(crate) const REPLIES: usize = 5;
pub(crate) const REPLY_EXP: usize = 6;
pub(crate) const MSGS: usize = 0;
pub(crate) const PENDING: usize = 3;
pub(crate) const TRIES: usize = 4;
pub(crate) const META: usize = 7;
pub(crate) const ALIVE: usize = 8;

/// The keys of one agent's inbox, in `KEYS` order.
/// The presence (`alive`) is a string in an agent's inbox and a sorted set of members in a
/// capability's: `alive_kind`.
pub(crate) fn inbox_keys(instance: &InstanceKeys, alive_kind: KeyKind) -> Vec<Key> {
    KEYS.iter()
        .map(|(suffix, kind)| {
            let kind = if *suffix == "alive" {
                alive_kind
            } else {
                *kind
            };
            instance.typed_key(suffix, kind)
        })
        .collect()
}

/// A call of the inbox script on `keys`.
pub(crate) fn call(keys: &[Key], op: &str, now: &str) -> Invocation<'static> {
    let mut call = INBOX.prepare();
    for key in keys {
        call.key(key);
    }
    call.arg(op).arg(now);
    call
}

/// Where one send goes in the receiver's inbox, and on what terms (its body aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing<'a> {
    /// The lane (`LANE_*`).
    pub lane: u8,
    /// The correlation id (requests and replies), or empty.
    pub corr: &'a str,
    /// Relative expiry, ms (0 = none).
    pub expiry_ms: u64,
    /// Absolute deadline, ms (0 = none).
    pub deadline_ms: u64,
    /// Only when the receiver is alive (no responders otherwise).
    pub require_alive: bool,
}

impl<'a> Outgoing<'a> {
    /// A plain message, expiring after `expiry_ms` (0 = never).
    pub fn message(expiry_ms: u64, only_if_alive: bool) -> Self {
        Self {
            lane: code::LANE_MESSAGE,
            corr: "",
            expiry_ms,
            deadline_ms: 0,
            require_alive: only_if_alive,
        }
    }

    /// A request under `corr`, expiring after `timeout_ms`, to a live receiver only.
    pub fn request(corr: &'a str, timeout_ms: u64) -> Self {
        Self {
            lane: code::LANE_REQUEST,
            corr,
            expiry_ms: timeout_ms,
            deadline_ms: 0,
            require_alive: true,
        }
    }

    /// A reply to `corr`, due by `deadline_ms` (0 = none).
    pub fn reply(corr: &'a str, deadline_ms: u64) -> Self {
        Self {
            lane: code::LANE_REPLY,
            corr,
            expiry_ms: 0,
            deadline_ms,
            require_alive: false,
        }
    }
}

/// The packed settings of a `send`.
pub(crate) struct SendArgs {
    pub(crate) lane: u8,
    pub(crate) expiry_ms: u64,
    pub(crate) deadline_ms: u64,
    pub(crate) max_age_ms: u64,
    pub(crate) max_waiting: u64,
    /// `code::ALIVE_*`.
    pub(crate) require_alive: u8,
}

impl SendArgs {
    pub(crate) fn pack(&self) -> Vec<u8> {
        Packed::new()
            .bytes(&[self.lane])
            .u64_le(self.expiry_ms)
            .u64_le(self.deadline_ms)
            .u64_le(self.max_age_ms)
            .u64_le(self.max_waiting)
            .bytes(&[self.require_alive])
            .into_bytes()
    }
}

/// The packed settings of a `lua/request.lua` call.
pub(crate) fn pack_request(expiry_ms: u64, deadline_ms: u64, require_alive: u8) -> Vec<u8> {
    Packed::new()
        .u64_le(expiry_ms)
        .u64_le(deadline_ms)
        .bytes(&[require_alive])
        .into_bytes()
}

/// The packed settings of a `receive`.
pub(crate) fn pack_receive(
    lane: u8,
    max: u64,
    visibility_ms: u64,
    max_age_ms: u64,
    recover: bool,
) -> Vec<u8> {
    Packed::new()
        .bytes(&[lane])
        .u64_le(max)
        .u64_le(visibility_ms)
        .u64_le(max_age_ms)
        .bytes(&[u8::from(recover)])
        .into_bytes()
}

/// What Rust stores after a record's header: who sent it, the correlation id of a request or
/// reply (empty for a plain message), and the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// The sending agent.
    pub from: String,
    /// The correlation id (requests and replies), or empty.
    pub corr: String,
    /// The payload bytes (JSON; a reply's starts with its status byte).
    pub payload: Vec<u8>,
}

impl Body {
    /// The body's bytes: version, `u8` length + sender, `u8` length + correlation id, payload.
    pub fn encode(&self) -> Vec<u8> {
        encode_body(&self.from, &self.corr, &self.payload)
    }

    /// Reads a body back; `Err` says why it cannot be.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Self, String> {
        let (&version, mut rest) = bytes.split_first().ok_or("the body is empty")?;
        if version != code::BODY_V1 {
            return Err(format!("unknown body version {version}"));
        }
        let mut text = |what: &str| -> std::result::Result<String, String> {
            let (&len, tail) = rest
                .split_first()
                .ok_or_else(|| format!("the body ends before its {what}"))?;
            let len = usize::from(len);
            if tail.len() < len {
                return Err(format!("the body ends inside its {what}"));
            }
            let (s, tail) = tail.split_at(len);
            rest = tail;
            String::from_utf8(s.to_vec()).map_err(|_| format!("its {what} is not UTF-8"))
        };
        let from = text("sender")?;
        let corr = text("correlation id")?;
        Ok(Body {
            from,
            corr,
            payload: rest.to_vec(),
        })
    }
}

/// [`Body::encode`] of borrowed parts (a send's, without copying them into a `Body` first).
pub(crate) fn encode_body(from: &str, corr: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + from.len() + corr.len() + payload.len());
    out.push(code::BODY_V1);
    for s in [from, corr] {
        // Names and ids are validated to at most 200 bytes before they get here.
        out.push(u8::try_from(s.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(&s.as_bytes()[..s.len().min(255)]);
    }
    out.extend_from_slice(payload);
    out
}

/// One delivery of a `receive` answer, before its body is decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDelivery {
    /// The message's id in the inbox.
    pub id: String,
    /// How many times it was delivered, this one included.
    pub attempt: u64,
    /// When it was sent (script ms).
    pub sent_ms: u64,
    /// When it expires (script ms), if ever.
    pub expires_ms: Option<u64>,
    /// The body bytes.
    pub body: Vec<u8>,
}

/// What a send pushed to a subscriber of an inbox's push channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Push<'a> {
    /// A request, delivered by its send (pending, attempt 1).
    Request(RawDelivery),
    /// A reply's body (also stored under its correlation id until forgotten or taken).
    Reply(&'a [u8]),
}

impl<'a> Push<'a> {
    /// Reads a push; `Err` says why it cannot be.
    pub(crate) fn decode(bytes: &'a [u8]) -> std::result::Result<Self, String> {
        match bytes.split_first() {
            Some((&code::PUSH_REPLY, body)) => Ok(Push::Reply(body)),
            Some((&code::PUSH_REQUEST, rest)) if rest.len() >= 24 => {
                let u = |i: usize| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&rest[i..i + 8]);
                    u64::from_le_bytes(b)
                };
                let expires = u(16);
                Ok(Push::Request(RawDelivery {
                    id: u(0).to_string(),
                    attempt: 1,
                    sent_ms: u(8),
                    expires_ms: (expires > 0).then_some(expires),
                    body: rest[24..].to_vec(),
                }))
            }
            Some((&code::PUSH_REQUEST, _)) => Err("a request push shorter than its header".into()),
            Some((kind, _)) => Err(format!("unknown push kind {kind}")),
            None => Err("an empty push".into()),
        }
    }
}

/// A `receive` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawReceived {
    /// The script's time.
    pub now_ms: u64,
    /// The earliest visibility deadline still pending, if any.
    pub next_deadline_ms: Option<u64>,
    /// Stale messages dropped by this call.
    pub expired: u64,
    /// Malformed records dead-lettered by this call.
    pub malformed: u64,
    /// The deliveries, in order.
    pub deliveries: Vec<RawDelivery>,
}

/// A `send` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawSent {
    /// Stored: its id (0 for a reply), older messages trimmed, stale ones dropped.
    Sent {
        /// The id.
        id: u64,
        /// Dropped by the count cap.
        trimmed: u64,
        /// Dropped as stale from the lane's front.
        expired: u64,
    },
    /// `require_alive` and the receiver is not alive: nothing written.
    NoResponders,
    /// A reply after its deadline: dropped and counted.
    Late,
}

/// A `take` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawTaken {
    /// The reply: when it was sent, and its body.
    Taken {
        /// Sent at (script ms).
        sent_ms: u64,
        /// The body bytes.
        body: Vec<u8>,
    },
    /// No reply for that correlation id (yet).
    Absent,
    /// The stored reply was malformed: dead-lettered.
    Malformed,
}

pub(crate) fn decode_sent(value: &coordkit_core::redis::Value) -> Result<RawSent> {
    let r = Reply::array("mesh-inbox", value)?;
    Ok(match r.u64(0, "send status")? {
        code::SENT => RawSent::Sent {
            id: r.u64(1, "send id")?,
            trimmed: r.u64(2, "send trimmed")?,
            expired: r.u64(3, "send expired")?,
        },
        code::NO_RESPONDERS => RawSent::NoResponders,
        code::LATE => RawSent::Late,
        other => return Err(bad("send status", other)),
    })
}

/// The answer of `lua/request.lua`: `None` when the receiver does not serve (nothing written:
/// the request goes into the lane with `send`).
pub(crate) fn decode_request(value: &coordkit_core::redis::Value) -> Result<Option<RawSent>> {
    let r = Reply::array("mesh-request", value)?;
    Ok(match r.u64(0, "request status")? {
        code::SENT => Some(RawSent::Sent {
            id: r.u64(1, "request id")?,
            trimmed: 0,
            expired: 0,
        }),
        code::NO_RESPONDERS => Some(RawSent::NoResponders),
        code::NOT_SERVING => None,
        other => return Err(bad("request status", other)),
    })
}

pub(crate) fn decode_taken(value: &coordkit_core::redis::Value) -> Result<RawTaken> {
    let r = Reply::array("mesh-inbox", value)?;
    Ok(match r.u64(0, "take status")? {
        code::TAKEN => RawTaken::Taken {
            sent_ms: r.u64(1, "take sent")?,
            body: r.bytes(2, "take body")?.to_vec(),
        },
        code::ABSENT => RawTaken::Absent,
        code::MALFORMED => RawTaken::Malformed,
        other => return Err(bad("take status", other)),
    })
}

fn bad(field: &str, n: u64) -> super::error::AgentError {
    coordkit_core::Error::decode(
        format!("the `mesh-inbox` script's {field}"),
        format!("unknown code {n}"),
    )
    .into()
}

pub(crate) fn some(n: i64) -> Option<u64> {
    if n <= code::NONE {
        None
    } else {
        u64::try_from(n).ok()
    }
}

pub(crate) fn decode_received(value: &coordkit_core::redis::Value) -> Result<RawReceived> {
    let r = Reply::array("mesh-inbox", value)?;
    let mut received = RawReceived {
        now_ms: r.u64(0, "receive now")?,
        next_deadline_ms: some(r.i64(1, "receive next deadline")?),
        expired: r.u64(2, "receive expired")?,
        malformed: r.u64(3, "receive malformed")?,
        deliveries: Vec::new(),
    };
    if (r.len() - 4) % 5 != 0 {
        return Err(coordkit_core::Error::decode(
            "the `mesh-inbox` script's receive answer",
            format!("{} items do not make whole deliveries", r.len()),
        )
        .into());
    }
    let mut i = 4;
    while i < r.len() {
        let expires = r.u64(i + 3, "delivery expires")?;
        received.deliveries.push(RawDelivery {
            id: r.text(i, "delivery id")?.to_owned(),
            attempt: r.u64(i + 1, "delivery tries")?,
            sent_ms: r.u64(i + 2, "delivery sent")?,
            expires_ms: (expires > 0).then_some(expires),
            body: r.bytes(i + 4, "delivery body")?.to_vec(),
        });
        i += 5;
    }
    Ok(received)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scripts name the same numbers, in the lines at their tops.
    #[test]
    fn the_scripts_name_the_same_numbers() {
        use code::*;
        let scripts = [
            (
                include_str!("../../lua/inbox.lua"),
                vec![
                    format!(
                        "local LANE_MESSAGE, LANE_REQUEST, LANE_REPLY = \
                         {LANE_MESSAGE}, {LANE_REQUEST}, {LANE_REPLY}"
                    ),
                    format!("local SENT, NO_RESPONDERS = {SENT}, {NO_RESPONDERS}"),
                    format!("local TAKEN, ABSENT, MALFORMED = {TAKEN}, {ABSENT}, {MALFORMED}"),
                    format!(
                        "local ALIVE_ANY, ALIVE_AGENT, ALIVE_MEMBER = \
                         {ALIVE_ANY}, {ALIVE_AGENT}, {ALIVE_MEMBER}"
                    ),
                    format!("local NONE = {NONE}"),
                ],
            ),
            (
                include_str!("../../lua/request.lua"),
                vec![
                    format!("local LANE_REQUEST = {LANE_REQUEST}"),
                    format!(
                        "local SENT, NO_RESPONDERS, NOT_SERVING = \
                         {SENT}, {NO_RESPONDERS}, {NOT_SERVING}"
                    ),
                    format!("local ALIVE_AGENT = {ALIVE_AGENT}"),
                    format!("local PUSH_REQUEST = {PUSH_REQUEST}"),
                ],
            ),
            (
                include_str!("../../lua/reply.lua"),
                vec![
                    format!("local LANE_REPLY = {LANE_REPLY}"),
                    format!("local SENT, LATE = {SENT}, {LATE}"),
                    format!("local PUSH_REPLY = {PUSH_REPLY}"),
                ],
            ),
        ];
        for (script, lines) in scripts {
            for line in lines {
                assert!(script.lines().any(|l| l == line), "no line `{line}`");
            }
        }
    }

    #[test]
    fn the_named_key_positions_are_those_keys() {
        assert_eq!(KEYS[MSGS].0, "msgs");
        assert_eq!(KEYS[PENDING].0, "pending");
        assert_eq!(KEYS[TRIES].0, "tries");
        assert_eq!(KEYS[REPLIES].0, "replies");
        assert_eq!(KEYS[REPLY_EXP].0, "reply_exp");
        assert_eq!(KEYS[META].0, "meta");
        assert_eq!(KEYS[ALIVE].0, "alive");
    }

    #[test]
    fn bodies_round_trip_and_garbage_is_refused() {
        let body = Body {
            from: "alice".into(),
            corr: "c-1".into(),
            payload: b"{\"x\":1}".to_vec(),
        };
        assert_eq!(Body::decode(&body.encode()).unwrap(), body);
        assert!(Body::decode(b"").is_err());
        assert!(Body::decode(&[9]).is_err());
        assert!(Body::decode(&[1, 5, b'a']).is_err());
        assert!(Body::decode(&[1, 1, 0xff, 0]).is_err());
    }

    #[test]
    fn pushes_decode_and_garbage_is_refused() {
        let mut request = vec![code::PUSH_REQUEST];
        for n in [7u64, 1_000, 0] {
            request.extend_from_slice(&n.to_le_bytes());
        }
        request.extend_from_slice(b"body");
        let Ok(Push::Request(d)) = Push::decode(&request) else {
            panic!("a request push")
        };
        assert_eq!((d.id.as_str(), d.sent_ms, d.expires_ms), ("7", 1_000, None));
        assert_eq!(d.body, b"body");
        assert_eq!(
            Push::decode(&[code::PUSH_REPLY, 9]),
            Ok(Push::Reply(&[9][..]))
        );
        assert!(Push::decode(&request[..20]).is_err());
        assert!(Push::decode(&[9]).is_err());
        assert!(Push::decode(&[]).is_err());
    }
}
