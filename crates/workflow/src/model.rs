//! The reference model: the store's behaviour in plain Rust, on a clock you pass in. It is
//! what an in-memory store ([`WorkflowStore::in_memory`](crate::WorkflowStore::in_memory))
//! runs, and what this crate's property tests check the Lua against; with the `model` feature
//! it is public, for your own property tests.
//!
//! A record whose TTL ran out is gone at once here; the scripts delete such records a few at a
//! time, but never show one, so every answer is the same.

use std::collections::BTreeMap;

use crate::error::WorkflowError;
use crate::types::{
    Checkpoint, Created, Cursor, Listing, Outcome, Page, Stats, Status, Workflow, WorkflowInfo,
};

/// One answer of a claim, per workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimEntry {
    /// Claimed: the header after the claim, the input, the last checkpoint.
    Claimed {
        /// The header after the claim.
        info: WorkflowInfo,
        /// The workflow's input.
        input: Vec<u8>,
        /// Its last checkpoint.
        last: Option<Checkpoint>,
    },
    /// Another owner's lease is live.
    Busy(WorkflowInfo),
    /// It finished.
    Finished(WorkflowInfo),
    /// No such workflow.
    NotFound,
    /// Its header does not decode (scripts only): nothing was done to it.
    Skipped(String),
}

/// The settings the model follows (a subset of the store's), in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSettings {
    /// [`active_ttl`](crate::WorkflowStoreBuilder::active_ttl).
    pub active_ttl_ms: u64,
    /// [`finished_ttl`](crate::WorkflowStoreBuilder::finished_ttl).
    pub finished_ttl_ms: u64,
    /// [`keep_finished`](crate::WorkflowStoreBuilder::keep_finished).
    pub keep_finished: u64,
}

#[derive(Debug, Clone)]
struct Rec {
    info: WorkflowInfo,
    input: Vec<u8>,
    outcome: Option<Vec<u8>>,
    checkpoints: Vec<Checkpoint>,
}

/// The store's state machine: the records of one store.
#[derive(Debug, Clone)]
pub struct StoreModel {
    settings: ModelSettings,
    records: BTreeMap<String, Rec>,
}

impl StoreModel {
    /// An empty store.
    pub fn new(settings: ModelSettings) -> Self {
        Self {
            settings,
            records: BTreeMap::new(),
        }
    }

    /// Forgets the records whose TTL ran out at `now`.
    fn expire(&mut self, now: u64) {
        self.records.retain(|_, r| r.info.expires_ms > now);
    }

    /// How many records it holds at `now`.
    pub fn len(&mut self, now: u64) -> usize {
        self.expire(now);
        self.records.len()
    }

    /// Whether it holds none at `now`.
    pub fn is_empty(&mut self, now: u64) -> bool {
        self.len(now) == 0
    }

    /// Creates a pending workflow, unless `id` exists.
    pub fn create(&mut self, now: u64, id: &str, kind: &str, input: &[u8]) -> Created {
        self.expire(now);
        if let Some(r) = self.records.get(id) {
            return Created::Exists(r.info.clone());
        }
        let info = WorkflowInfo {
            id: id.to_owned(),
            kind: kind.to_owned(),
            status: Status::Pending,
            step: 0,
            checkpoints: 0,
            token: 0,
            lease_until_ms: None,
            owner: None,
            created_ms: now,
            started_ms: None,
            updated_ms: now,
            finished_ms: None,
            expires_ms: now.saturating_add(self.settings.active_ttl_ms),
            claims: 0,
        };
        let rec = Rec {
            info: info.clone(),
            input: input.to_vec(),
            outcome: None,
            checkpoints: Vec::new(),
        };
        self.records.insert(id.to_owned(), rec);
        Created::Created(info)
    }

    fn take(&mut self, now: u64, id: &str, owner: &str, lease_ms: u64) -> ClaimEntry {
        let ttl = self.settings.active_ttl_ms;
        let Some(r) = self.records.get_mut(id) else {
            return ClaimEntry::NotFound;
        };
        let i = &mut r.info;
        if i.status == Status::Pending {
            i.started_ms = Some(now);
        }
        i.status = Status::Running;
        i.token += 1;
        i.lease_until_ms = Some(now.saturating_add(lease_ms));
        i.owner = Some(owner.to_owned());
        i.updated_ms = now;
        i.expires_ms = now.saturating_add(ttl);
        i.claims = i.claims.saturating_add(1);
        ClaimEntry::Claimed {
            info: i.clone(),
            input: r.input.clone(),
            last: r.checkpoints.last().cloned(),
        }
    }

    /// Claims `id` for `owner`: a pending workflow, or a running one whose lease ran out.
    pub fn claim(&mut self, now: u64, id: &str, owner: &str, lease_ms: u64) -> ClaimEntry {
        self.expire(now);
        let Some(r) = self.records.get(id) else {
            return ClaimEntry::NotFound;
        };
        match r.info.status {
            s if s.is_finished() => ClaimEntry::Finished(r.info.clone()),
            Status::Running if r.info.lease_until_ms.unwrap_or(0) > now => {
                ClaimEntry::Busy(r.info.clone())
            }
            _ => self.take(now, id, owner, lease_ms),
        }
    }

    /// Claims the oldest pending workflows (by creation, then id), up to `max`.
    pub fn claim_pending(
        &mut self,
        now: u64,
        max: usize,
        owner: &str,
        lease_ms: u64,
    ) -> Vec<ClaimEntry> {
        self.claim_by(now, max, owner, lease_ms, |i| {
            (i.status == Status::Pending).then_some(i.created_ms)
        })
    }

    /// Claims running workflows whose lease ran out, up to `max`: the first to run out first
    /// (then by id).
    pub fn claim_orphans(
        &mut self,
        now: u64,
        max: usize,
        owner: &str,
        lease_ms: u64,
    ) -> Vec<ClaimEntry> {
        self.claim_by(now, max, owner, lease_ms, |i| {
            let lease = i.lease_until_ms.unwrap_or(0);
            (i.status == Status::Running && lease <= now).then_some(lease)
        })
    }

    /// Claims up to `max` of the workflows `order` gives a rank, lowest (then id) first.
    fn claim_by(
        &mut self,
        now: u64,
        max: usize,
        owner: &str,
        lease_ms: u64,
        order: impl Fn(&WorkflowInfo) -> Option<u64>,
    ) -> Vec<ClaimEntry> {
        self.expire(now);
        let mut ids: Vec<(u64, String)> = self
            .records
            .values()
            .filter_map(|r| order(&r.info).map(|rank| (rank, r.info.id.clone())))
            .collect();
        ids.sort();
        ids.truncate(max);
        ids.into_iter()
            .map(|(_, id)| self.take(now, &id, owner, lease_ms))
            .collect()
    }

    /// Checks a lease: `Err` is the outcome that refuses the write.
    fn holder(&mut self, now: u64, id: &str, token: u64) -> Result<&mut Rec, Outcome> {
        self.expire(now);
        let r = self.records.get_mut(id).ok_or(Outcome::LeaseLost)?;
        if r.info.token == token && matches!(r.info.status, Status::Completed | Status::Failed) {
            return Err(Outcome::AlreadyFinished(r.info.status));
        }
        if r.info.status != Status::Running
            || r.info.token != token
            || r.info.lease_until_ms.unwrap_or(0) <= now
        {
            return Err(Outcome::LeaseLost);
        }
        Ok(r)
    }

    fn renew(info: &mut WorkflowInfo, now: u64, lease_ms: u64, ttl: u64) {
        let renewed = now.saturating_add(lease_ms);
        if renewed > info.lease_until_ms.unwrap_or(0) {
            info.lease_until_ms = Some(renewed);
        }
        info.updated_ms = now;
        info.expires_ms = now.saturating_add(ttl);
    }

    /// A lease holder's checkpoint of `step`; renews the lease to at least `now + lease_ms`.
    /// [`WorkflowError::TooManyCheckpoints`] (nothing written) when the workflow holds the
    /// most checkpoints one may hold (100,000).
    #[allow(clippy::too_many_arguments)]
    pub fn checkpoint(
        &mut self,
        now: u64,
        id: &str,
        token: u64,
        lease_ms: u64,
        step: u32,
        output: &[u8],
    ) -> Result<(Outcome, Option<WorkflowInfo>), WorkflowError> {
        let ttl = self.settings.active_ttl_ms;
        let r = match self.holder(now, id, token) {
            Ok(r) => r,
            Err(o) => return Ok((o, None)),
        };
        if step <= r.info.step {
            return Ok((Outcome::StepDone { step: r.info.step }, None));
        }
        if r.info.checkpoints >= crate::code::MAX_CHECKPOINTS {
            return Err(WorkflowError::TooManyCheckpoints {
                max: crate::code::MAX_CHECKPOINTS,
            });
        }
        Self::renew(&mut r.info, now, lease_ms, ttl);
        r.info.step = step;
        r.info.checkpoints += 1;
        r.checkpoints.push(Checkpoint {
            step,
            output: output.to_vec(),
        });
        Ok((Outcome::Done, Some(r.info.clone())))
    }

    /// A lease holder's extension to at least `now + lease_ms`.
    pub fn extend(
        &mut self,
        now: u64,
        id: &str,
        token: u64,
        lease_ms: u64,
    ) -> (Outcome, Option<WorkflowInfo>) {
        let ttl = self.settings.active_ttl_ms;
        match self.holder(now, id, token) {
            Ok(r) => {
                Self::renew(&mut r.info, now, lease_ms, ttl);
                (Outcome::Done, Some(r.info.clone()))
            }
            Err(o) => (o, None),
        }
    }

    /// Completes or fails under a lease (`token`), or cancels (`token` ignored): `to` is the
    /// status set.
    pub fn finish(
        &mut self,
        now: u64,
        id: &str,
        token: u64,
        to: Status,
        payload: &[u8],
    ) -> (Outcome, Option<WorkflowInfo>) {
        self.expire(now);
        let Some(r) = self.records.get_mut(id) else {
            let o = if to == Status::Cancelled {
                Outcome::NotFound
            } else {
                Outcome::LeaseLost
            };
            return (o, None);
        };
        if r.info.status.is_finished() {
            if to == Status::Cancelled
                || (r.info.token == token && r.info.status != Status::Cancelled)
            {
                return (Outcome::AlreadyFinished(r.info.status), None);
            }
            return (Outcome::LeaseLost, None);
        }
        if to != Status::Cancelled
            && (r.info.status != Status::Running
                || r.info.token != token
                || r.info.lease_until_ms.unwrap_or(0) <= now)
        {
            return (Outcome::LeaseLost, None);
        }
        let i = &mut r.info;
        i.status = to;
        i.finished_ms = Some(now);
        i.updated_ms = now;
        i.lease_until_ms = None;
        i.expires_ms = now.saturating_add(self.settings.finished_ttl_ms);
        r.outcome = Some(payload.to_vec());
        let info = i.clone();
        // The newest `keep_finished` of the status stay.
        let mut done: Vec<(u64, String)> = self
            .records
            .values()
            .filter(|r| r.info.status == to && r.info.id != id)
            .map(|r| (r.info.finished_ms.unwrap_or(0), r.info.id.clone()))
            .collect();
        done.sort();
        let keep = usize::try_from(self.settings.keep_finished).unwrap_or(usize::MAX);
        let excess = (done.len() + 1).saturating_sub(keep);
        for (_, old) in done.into_iter().take(excess) {
            self.records.remove(&old);
        }
        (Outcome::Done, Some(info))
    }

    /// The whole workflow `id`.
    pub fn get(&mut self, now: u64, id: &str) -> Option<Workflow> {
        self.expire(now);
        self.records.get(id).map(|r| Workflow {
            info: r.info.clone(),
            input: r.input.clone(),
            checkpoints: r.checkpoints.clone(),
            outcome: r.outcome.clone(),
        })
    }

    /// One page of a listing.
    pub fn list(
        &mut self,
        now: u64,
        listing: &Listing,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Page {
        self.expire(now);
        let mut all: Vec<(u64, String, WorkflowInfo)> = self
            .records
            .values()
            .filter(|r| match listing {
                Listing::Active => !r.info.status.is_finished(),
                Listing::Status(s) => r.info.status == *s,
                Listing::Type(t) => &r.info.kind == t,
            })
            .map(|r| {
                let score = match listing {
                    Listing::Type(_) => 0,
                    _ => r.info.finished_ms.unwrap_or(r.info.created_ms),
                };
                (score, r.info.id.clone(), r.info.clone())
            })
            .collect();
        all.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        if let Some(c) = after {
            all.retain(|(s, id, _)| (*s, id.as_str()) > (c.score, c.id.as_str()));
        }
        let more = all.len() > limit;
        all.truncate(limit);
        let next = match (more, all.last()) {
            (true, Some((score, id, _))) => Some(Cursor {
                score: *score,
                id: id.clone(),
            }),
            _ => None,
        };
        Page {
            items: all.into_iter().map(|(_, _, i)| i).collect(),
            skipped: Vec::new(),
            next,
        }
    }

    /// Counts, and the workflows finished in the `window_ms` before `now`.
    pub fn stats(&mut self, now: u64, window_ms: u64) -> Stats {
        self.expire(now);
        let mut counts = Vec::new();
        let mut finished = Vec::new();
        for r in self.records.values() {
            counts.push((r.info.kind.clone(), r.info.status, 1));
            if r.info
                .finished_ms
                .is_some_and(|f| f >= now.saturating_sub(window_ms))
            {
                finished.push(r.info.clone());
            }
        }
        crate::query::stats_of(counts, &finished)
    }
}
