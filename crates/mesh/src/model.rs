//! A pure-Rust reference model of one inbox, an agent's or a capability's (feature `model`),
//! for property tests: it answers every operation of `lua/inbox.lua` exactly as the script
//! does (sends, receives with redelivery and recovery, acks and dead letters, replies and their
//! deadlines, an agent's presence or a capability's members, the count and age caps, expiry) on
//! a clock the caller moves. This crate's tests check the Lua
//! against it with proptest; use it in your own to predict what an inbox holds.
//!
//! ```
//! use coordkit_mesh::model::{InboxModel, Send};
//! use coordkit_mesh::RawSent;
//!
//! let mut inbox = InboxModel::new(2, 0);
//! for _ in 0..3 {
//!     inbox.send(1_000, &Send::message(b"hi".to_vec()));
//! }
//! // The count cap of 2 dropped the oldest.
//! assert_eq!(inbox.ready.len(), 2);
//! assert_eq!(inbox.meta.trimmed, 1);
//! let got = inbox.receive(1_000, 0, 10, 500, false);
//! assert_eq!(got.deliveries.len(), 2);
//! assert_eq!(inbox.ack(&["2"], &[""]), vec![1]);
//! assert_eq!(inbox.send(1_000, &Send::request(b"q".to_vec(), 100)), RawSent::NoResponders);
//! ```

use std::collections::{BTreeMap, VecDeque};

use crate::agent::InboxStats;
use crate::agent::wire::{Outgoing, code};
pub use crate::agent::wire::{RawDelivery, RawReceived, RawSent, RawTaken};

/// Stale messages one call drops from a lane's front at most (`TRIM_LIMIT`).
pub const TRIM_LIMIT: usize = 100;
/// Waiting messages one send drops for the count cap at most (`OVER_LIMIT`).
pub const OVER_LIMIT: u64 = 1000;
/// Pending deliveries one receive takes back at most (`RECLAIM_LIMIT`).
pub const RECLAIM_LIMIT: usize = 1000;
/// Dead letters kept.
pub const DEAD_KEPT: usize = 1000;

/// One stored record: its header and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Sent at (ms).
    pub sent: u64,
    /// Expires at (ms), 0 = never.
    pub expires: u64,
    /// Its lane (0 message, 1 request, 2 reply).
    pub lane: u8,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl Record {
    /// The stored bytes: `<I8I8B` header, then the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(17 + self.body.len());
        out.extend_from_slice(&self.sent.to_le_bytes());
        out.extend_from_slice(&self.expires.to_le_bytes());
        out.push(self.lane);
        out.extend_from_slice(&self.body);
        out
    }

    /// Reads stored bytes back (`None` when the script would call them malformed).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < 17 {
            return None;
        }
        let sent = u64::from_le_bytes(bytes[0..8].try_into().ok()?);
        let expires = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
        let lane = bytes[16];
        const MAX: u64 = (1 << 53) - 1;
        if sent > MAX || expires > MAX || lane > code::LANE_REPLY {
            return None;
        }
        Some(Self {
            sent,
            expires,
            lane,
            body: bytes[17..].to_vec(),
        })
    }
}

/// The arguments of one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    /// The lane (0 message, 1 request, 2 reply).
    pub lane: u8,
    /// Relative expiry, ms (0 = none).
    pub expiry_ms: u64,
    /// Absolute deadline, ms (0 = none).
    pub deadline_ms: u64,
    /// Only when the receiver is alive.
    pub require_alive: bool,
    /// Whether a request to a live server is delivered by the send (the agent's sends of
    /// requests are).
    pub push: bool,
    /// The correlation id (replies).
    pub corr: String,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl Send {
    /// A plain message.
    pub fn message(body: Vec<u8>) -> Self {
        Self {
            lane: code::LANE_MESSAGE,
            expiry_ms: 0,
            deadline_ms: 0,
            require_alive: false,
            push: false,
            corr: String::new(),
            body,
        }
    }

    /// A request, expiring after `timeout_ms`, to a live receiver only (pushed to a server).
    pub fn request(body: Vec<u8>, timeout_ms: u64) -> Self {
        Self {
            lane: code::LANE_REQUEST,
            expiry_ms: timeout_ms,
            require_alive: true,
            push: true,
            ..Self::message(body)
        }
    }

    /// What the agent's send script is given for this send (its body aside).
    pub fn outgoing(&self) -> Outgoing<'_> {
        Outgoing {
            lane: self.lane,
            corr: &self.corr,
            expiry_ms: self.expiry_ms,
            deadline_ms: self.deadline_ms,
            require_alive: self.require_alive,
        }
    }

    /// A reply to `corr`, due by `deadline_ms`.
    pub fn reply(corr: &str, body: Vec<u8>, deadline_ms: u64) -> Self {
        Self {
            lane: code::LANE_REPLY,
            deadline_ms,
            corr: corr.to_owned(),
            ..Self::message(body)
        }
    }
}

/// One inbox: what its keys hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboxModel {
    /// The count cap (per lane) of the senders.
    pub max_waiting: u64,
    /// The age cap, ms (0 = none), of senders and receivers.
    pub max_age_ms: u64,
    /// `msgs`: id -> record.
    pub msgs: BTreeMap<u64, Record>,
    /// `ready`: waiting message ids, front first.
    pub ready: VecDeque<u64>,
    /// `asks`: waiting request ids, front first.
    pub asks: VecDeque<u64>,
    /// `pending`: id -> visibility deadline.
    pub pending: BTreeMap<u64, u64>,
    /// `tries`: id -> deliveries.
    pub tries: BTreeMap<u64, u64>,
    /// `replies`: correlation id -> record.
    pub replies: BTreeMap<String, Record>,
    /// `reply_exp`: correlation id -> expiry.
    pub reply_exp: BTreeMap<String, u64>,
    /// `meta`'s id sequence: the last id handed out.
    pub seq: u64,
    /// `meta`'s counters, by the names [`InboxStats`] reports them (its other fields stay at
    /// their defaults).
    pub meta: InboxStats,
    /// Whether it is a capability's inbox: its presence is `members`, not `alive`.
    pub capability: bool,
    /// `alive`: until (absent: never alive), in an agent's inbox.
    pub alive: Option<u64>,
    /// `alive` of a capability's inbox: member -> until.
    pub members: BTreeMap<String, u64>,
    /// `meta`'s `visibility` fields: the visibility timeout of a presence that serves, by
    /// member ("" for the agent's own).
    pub visibility: BTreeMap<String, u64>,
    /// `dead`: reason and record bytes, newest first.
    pub dead: VecDeque<(String, Vec<u8>)>,
}

fn stale(now: u64, r: &Record, max_age: u64) -> bool {
    (max_age > 0 && now >= r.sent + max_age) || (r.expires > 0 && now >= r.expires)
}

/// Members of a sorted set in its order: by score, then by the member's bytes.
fn zorder<'a>(z: impl Iterator<Item = (String, u64)> + 'a) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = z.collect();
    v.sort_by(|a, b| {
        a.1.cmp(&b.1)
            .then_with(|| a.0.as_bytes().cmp(b.0.as_bytes()))
    });
    v
}

impl InboxModel {
    /// An empty inbox whose senders cap it at `max_waiting` per lane and `max_age_ms`.
    pub fn new(max_waiting: u64, max_age_ms: u64) -> Self {
        Self {
            max_waiting,
            max_age_ms,
            ..Self::default()
        }
    }

    fn lane_mut(&mut self, lane: u8) -> &mut VecDeque<u64> {
        if lane == code::LANE_REQUEST {
            &mut self.asks
        } else {
            &mut self.ready
        }
    }

    fn sorted_pending(&self) -> Vec<(u64, u64)> {
        zorder(self.pending.iter().map(|(id, d)| (id.to_string(), *d)))
            .into_iter()
            .map(|(id, d)| (id.parse().unwrap_or(0), d))
            .collect()
    }

    /// A capability's empty inbox, capped like [`InboxModel::new`].
    pub fn capability(max_waiting: u64, max_age_ms: u64) -> Self {
        Self {
            capability: true,
            ..Self::new(max_waiting, max_age_ms)
        }
    }

    /// Whether a request finds a live agent (or member) at `now`.
    pub fn is_alive(&self, now: u64) -> bool {
        if self.capability {
            self.members.values().any(|until| *until > now)
        } else {
            self.alive.unwrap_or(0) > now
        }
    }

    /// `send` at `now`.
    pub fn send(&mut self, now: u64, s: &Send) -> RawSent {
        if s.require_alive && !self.is_alive(now) {
            return RawSent::NoResponders;
        }
        let mut expires = if s.expiry_ms > 0 {
            now + s.expiry_ms
        } else {
            0
        };
        if s.deadline_ms > 0 && (expires == 0 || s.deadline_ms < expires) {
            expires = s.deadline_ms;
        }
        let rec = Record {
            sent: now,
            expires,
            lane: s.lane,
            body: s.body.clone(),
        };
        if s.lane == code::LANE_REPLY {
            if expires > 0 && now >= expires {
                self.meta.late += 1;
                return RawSent::Late;
            }
            self.replies.insert(s.corr.clone(), rec);
            if expires > 0 {
                self.reply_exp.insert(s.corr.clone(), expires);
            }
            return RawSent::Sent {
                id: 0,
                trimmed: 0,
                expired: 0,
            };
        }
        if let Some(visibility) = self.server_visibility(now, s) {
            // Delivered by the send: pending at once, nothing waits in the lane.
            self.seq += 1;
            let id = self.seq;
            self.meta.sent += 1;
            self.meta.delivered += 1;
            self.msgs.insert(id, rec);
            self.tries.insert(id, 1);
            self.pending.insert(id, now + visibility);
            return RawSent::Sent {
                id,
                trimmed: 0,
                expired: 0,
            };
        }
        let max_age = self.max_age_ms;
        let list = if s.lane == code::LANE_REQUEST {
            &self.asks
        } else {
            &self.ready
        };
        let waiting = list.len() as u64;
        let mut drops = 0;
        for id in list.iter().take(TRIM_LIMIT) {
            match self.msgs.get(id) {
                Some(r) if stale(now, r, max_age) => drops += 1,
                _ => break,
            }
        }
        let over = (waiting as i64 - drops as i64 - self.max_waiting as i64 + 1)
            .clamp(0, OVER_LIMIT as i64) as u64;
        for _ in 0..drops {
            if let Some(id) = self.lane_mut(s.lane).pop_front() {
                self.msgs.remove(&id);
                self.tries.remove(&id);
            }
        }
        for _ in 0..over {
            if let Some(id) = self.lane_mut(s.lane).pop_front() {
                self.msgs.remove(&id);
                self.tries.remove(&id);
            }
        }
        self.seq += 1;
        let id = self.seq;
        self.meta.sent += 1;
        self.meta.expired += drops;
        self.meta.trimmed += over;
        self.msgs.insert(id, rec);
        self.lane_mut(s.lane).push_back(id);
        RawSent::Sent {
            id,
            trimmed: over,
            expired: drops,
        }
    }

    /// `forget` of replies that came by push: answers how many were stored.
    pub fn forget(&mut self, corrs: &[&str]) -> u64 {
        let mut removed = 0;
        for corr in corrs {
            self.reply_exp.remove(*corr);
            if self.replies.remove(*corr).is_some() {
                removed += 1;
            }
        }
        removed
    }

    /// `receive` of up to `max` from `lane` at `now`.
    pub fn receive(
        &mut self,
        now: u64,
        lane: u8,
        max: u64,
        visibility_ms: u64,
        recover: bool,
    ) -> RawReceived {
        let max_age = self.max_age_ms;
        let due: Vec<u64> = self
            .sorted_pending()
            .into_iter()
            .filter(|(_, d)| recover || *d <= now)
            .take(RECLAIM_LIMIT)
            .map(|(id, _)| id)
            .collect();
        enum Action {
            Deliver,
            Expire,
        }
        let mut cands: Vec<(u64, Action)> = Vec::new();
        let mut back: Vec<(u64, u8)> = Vec::new();
        let mut delivered = 0u64;
        let mut consider = |id: u64,
                            from_list: bool,
                            cands: &mut Vec<(u64, Action)>,
                            msgs: &BTreeMap<u64, Record>|
         -> bool {
            let r = &msgs[&id];
            if !from_list && r.lane != lane {
                back.push((id, r.lane));
                false
            } else if stale(now, r, max_age) {
                cands.push((id, Action::Expire));
                false
            } else if delivered < max {
                delivered += 1;
                cands.push((id, Action::Deliver));
                true
            } else {
                back.push((id, r.lane));
                false
            }
        };
        for id in &due {
            consider(*id, false, &mut cands, &self.msgs);
        }
        let list: Vec<u64> = if lane == code::LANE_REQUEST {
            self.asks.iter().copied().collect()
        } else {
            self.ready.iter().copied().collect()
        };
        let mut scanned = 0;
        let mut dropped = 0;
        let mut delivered_now = cands
            .iter()
            .filter(|c| matches!(c.1, Action::Deliver))
            .count() as u64;
        while delivered_now < max && dropped < TRIM_LIMIT {
            let Some(id) = list.get(scanned) else { break };
            scanned += 1;
            if consider(*id, true, &mut cands, &self.msgs) {
                delivered_now += 1;
            } else {
                dropped += 1;
            }
        }
        // writes
        for id in &due {
            self.pending.remove(id);
        }
        for _ in 0..scanned {
            self.lane_mut(lane).pop_front();
        }
        for (id, l) in back.iter().rev() {
            self.lane_mut(*l).push_front(*id);
        }
        let mut answer = RawReceived {
            now_ms: now,
            next_deadline_ms: None,
            expired: 0,
            malformed: 0,
            deliveries: Vec::new(),
        };
        for (id, action) in cands {
            match action {
                Action::Deliver => {
                    let tries = self.tries.get(&id).copied().unwrap_or(0) + 1;
                    self.pending.insert(id, now + visibility_ms);
                    self.tries.insert(id, tries);
                    let r = &self.msgs[&id];
                    answer.deliveries.push(RawDelivery {
                        id: id.to_string(),
                        attempt: tries,
                        sent_ms: r.sent,
                        expires_ms: (r.expires > 0).then_some(r.expires),
                        body: r.body.clone(),
                    });
                }
                Action::Expire => {
                    self.msgs.remove(&id);
                    self.tries.remove(&id);
                    answer.expired += 1;
                }
            }
        }
        self.meta.delivered += answer.deliveries.len() as u64;
        self.meta.expired += answer.expired;
        answer.next_deadline_ms = self.sorted_pending().first().map(|(_, d)| *d);
        answer
    }

    /// `ack` of `ids`, each with a reason (`""` acknowledges, else dead-letters).
    pub fn ack(&mut self, ids: &[&str], reasons: &[&str]) -> Vec<u64> {
        let mut found = Vec::new();
        for (id, reason) in ids.iter().zip(reasons) {
            let n: Option<u64> = id.parse().ok().filter(|n: &u64| n.to_string() == *id);
            let pending = n.is_some_and(|n| self.pending.contains_key(&n));
            found.push(u64::from(pending));
            if let (true, Some(n)) = (pending, n) {
                if reason.is_empty() {
                    self.meta.acked += 1;
                } else {
                    let rec = self.msgs.get(&n).map(Record::encode).unwrap_or_default();
                    self.dead.push_front((reason.to_string(), rec));
                    self.dead.truncate(DEAD_KEPT);
                    self.meta.dead += 1;
                }
                self.pending.remove(&n);
                self.msgs.remove(&n);
                self.tries.remove(&n);
            }
        }
        found
    }

    /// `take` of the reply to `corr` at `now`.
    pub fn take(&mut self, now: u64, corr: &str) -> RawTaken {
        let late: Vec<String> = zorder(self.reply_exp.iter().map(|(c, e)| (c.clone(), *e)))
            .into_iter()
            .filter(|(_, e)| *e < now)
            .take(TRIM_LIMIT)
            .map(|(c, _)| c)
            .filter(|c| c != corr)
            .collect();
        for c in &late {
            self.reply_exp.remove(c);
            self.replies.remove(c);
        }
        self.meta.late += late.len() as u64;
        match self.replies.remove(corr) {
            None => RawTaken::Absent,
            Some(r) => {
                self.reply_exp.remove(corr);
                RawTaken::Taken {
                    sent_ms: r.sent,
                    body: r.body,
                }
            }
        }
    }

    /// The visibility a pushed request `s` gets at `now`: its receiver's (the agent, or the
    /// member whose turn it is among the live ones, by the next id) when that receiver
    /// serves; `None` when `s` is not pushed.
    fn server_visibility(&self, now: u64, s: &Send) -> Option<u64> {
        if s.lane != code::LANE_REQUEST || !s.push || !s.require_alive {
            return None;
        }
        let receiver = if self.capability {
            let live = zorder(
                self.members
                    .iter()
                    .filter(|(_, until)| **until > now)
                    .map(|(m, until)| (m.clone(), *until)),
            );
            let turn = (self.seq + 1) % live.len() as u64;
            live.into_iter().nth(turn as usize)?.0
        } else {
            String::new()
        };
        self.visibility.get(&receiver).copied()
    }

    /// Records (a server's `visibility_ms`) or removes (0) the receiver's visibility.
    fn record_visibility(&mut self, receiver: &str, visibility_ms: u64) {
        if visibility_ms > 0 {
            self.visibility.insert(receiver.to_owned(), visibility_ms);
        } else {
            self.visibility.remove(receiver);
        }
    }

    /// A capability's `alive` for `member` with `ttl_ms` at `now` (0 leaves), serving with
    /// `visibility_ms` (0: not serving): members whose time ran out are pruned first; answers
    /// the until time (0 when left).
    pub fn join(&mut self, now: u64, member: &str, ttl_ms: u64, visibility_ms: u64) -> u64 {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(m, _)| m.clone())
            .collect();
        for m in gone {
            self.members.remove(&m);
            self.visibility.remove(&m);
        }
        if ttl_ms == 0 {
            self.members.remove(member);
            self.visibility.remove(member);
            return 0;
        }
        self.members.insert(member.to_owned(), now + ttl_ms);
        self.record_visibility(member, visibility_ms);
        now + ttl_ms
    }

    /// `alive` with `ttl_ms` at `now` (0 leaves), serving with `visibility_ms` (0: not
    /// serving); answers the until time (0 when left).
    pub fn alive(&mut self, now: u64, ttl_ms: u64, visibility_ms: u64) -> u64 {
        if ttl_ms == 0 {
            self.alive = None;
            self.visibility.remove("");
            return 0;
        }
        self.alive = Some(now + ttl_ms);
        self.record_visibility("", visibility_ms);
        now + ttl_ms
    }
}
