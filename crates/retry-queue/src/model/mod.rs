//! A pure-Rust reference model of the queue's state machine (feature `model`), for your own
//! property tests: the same operations as the scripts (`lua/*.lua`), with the same answers, on an
//! explicit clock. Build it from a queue's settings (`QueueModel::new(queue.config().clone())`),
//! drive it with the operations you drive the queue with, and compare the answers; this
//! crate's own property tests run random operation sequences against both and compare every
//! answer and the whole stored state ([`Dump`]).

mod dump;
mod groups;
mod results;
mod schedules;
mod settle;
mod starts;

use std::collections::{BTreeMap, VecDeque};

use coordkit_core::time::duration_ms;

use crate::config::QueueConfig;
use crate::options::TaskOptions;
pub use crate::record::{Record, decode_errors};
use crate::types::{Claim, Enqueued, Failure, NewTask, Stats, Task};
pub use dump::Dump;
pub use groups::GroupsDump;
pub use schedules::{ScheduleDump, ScheduleModel};

/// The ranks one priority level of `urgent` spans (`PRIO_SPAN` in `lua/lib/queue.lua`).
const PRIO_SPAN: u64 = 1 << 49;

/// One task in the model.
#[derive(Debug, Clone)]
struct ModelTask {
    attempts: u32,
    stalls: u32,
    token: u64,
    /// The token whose fail, defer or dead-letter settled it last (0: none since its claim).
    mark: u64,
    prev: u64,
    since: u64,
    enqueued: u64,
    options: TaskOptions,
}

/// The reference model of one queue.
#[derive(Debug, Clone)]
pub struct QueueModel {
    config: QueueConfig,
    seq: u64,
    token: u64,
    completed: u64,
    dead_total: u64,
    tasks: BTreeMap<String, ModelTask>,
    payloads: BTreeMap<String, Vec<u8>>,
    ready: VecDeque<String>,
    /// id -> rank (see [`Dump::urgent`]).
    urgent: BTreeMap<String, u64>,
    delayed: BTreeMap<String, u64>,
    leased: BTreeMap<String, u64>,
    dlq: BTreeMap<String, u64>,
    errors: BTreeMap<String, Vec<Failure>>,
    dead: BTreeMap<String, String>,
    idem: BTreeMap<String, (String, u64)>,
    buried: u32,
    paused: bool,
    max_leased: u64,
    rate_max: u64,
    rate_ms: u64,
    /// The log of starts (`starts.rs`): entry -> time.
    starts: BTreeMap<String, u64>,
    /// id -> (expires at, result).
    results: BTreeMap<String, (u64, Vec<u8>)>,
    groups: groups::Groups,
    /// component -> when its hold ends; and the latest end of any hold.
    holds: BTreeMap<String, u64>,
    held_until: u64,
}

/// Members of a sorted set by (score, member), as Redis orders them.
fn ordered(set: &BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = set.iter().map(|(k, s)| (k.clone(), *s)).collect();
    v.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    v
}

fn due_members(set: &BTreeMap<String, u64>, max: i128, limit: usize) -> Vec<String> {
    ordered(set)
        .into_iter()
        .filter(|(_, s)| i128::from(*s) <= max)
        .take(limit)
        .map(|(k, _)| k)
        .collect()
}

impl QueueModel {
    /// An empty queue with these settings (only the caps, stalls and error history matter).
    pub fn new(config: QueueConfig) -> Self {
        Self {
            config,
            seq: 0,
            token: 0,
            completed: 0,
            dead_total: 0,
            tasks: BTreeMap::new(),
            payloads: BTreeMap::new(),
            ready: VecDeque::new(),
            urgent: BTreeMap::new(),
            delayed: BTreeMap::new(),
            leased: BTreeMap::new(),
            dlq: BTreeMap::new(),
            errors: BTreeMap::new(),
            dead: BTreeMap::new(),
            idem: BTreeMap::new(),
            buried: 0,
            paused: false,
            max_leased: 0,
            rate_max: 0,
            rate_ms: 0,
            starts: BTreeMap::new(),
            results: BTreeMap::new(),
            groups: groups::Groups::default(),
            holds: BTreeMap::new(),
            held_until: 0,
        }
    }

    fn record(t: &ModelTask, payload: &[u8]) -> Record {
        let o = &t.options;
        Record {
            attempts: t.attempts,
            stalls: t.stalls,
            prev: t.prev,
            since: t.since,
            enqueued: t.enqueued,
            max: o.max_attempts,
            priority: o.priority,
            lease: duration_ms(o.lease),
            policy: o.policy(),
            component: o.component.clone(),
            group: o.group.clone(),
            payload: payload.to_vec(),
        }
    }

    /// Ids of the tasks whose attempts are used up or that were dead-lettered.
    pub fn dead_ids(&self) -> Vec<String> {
        self.dlq.keys().cloned().collect()
    }

    /// Failures so far of a task still held.
    pub fn attempts(&self, id: &str) -> Option<(u32, u32)> {
        self.tasks
            .get(id)
            .map(|t| (t.attempts, t.options.max_attempts))
    }

    /// The rank in `urgent` (or a group's lane) of a task of priority `p` and order `order`.
    fn rank(p: u8, order: u64) -> u64 {
        u64::from(crate::MAX_PRIORITY - p) * PRIO_SPAN + order.min(PRIO_SPAN - 1)
    }

    /// Puts `ids` behind the ready tasks of their priority: the list's back, or `urgent` ranked
    /// by the id sequence.
    fn push_ready(&mut self, now: u64, ids: &[String]) {
        let ranked = self.push_plain(ids);
        self.groups.push(now, &ranked);
    }

    /// Puts the tasks of no group in `ids` behind the ready tasks of their priority (the
    /// list's back, or `urgent` ranked by the id sequence). -> those of a group, ranked for
    /// their lanes.
    fn push_plain(&mut self, ids: &[String]) -> BTreeMap<String, Vec<(String, u64)>> {
        let mut ranked: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
        for id in ids {
            let Some(t) = self.tasks.get(id) else {
                continue;
            };
            let p = t.options.priority;
            if let Some(g) = &t.options.group {
                let rank = self.groups.next_rank(p);
                ranked
                    .entry(g.clone())
                    .or_default()
                    .push((id.clone(), rank));
            } else if p == 0 {
                self.ready.push_front(id.clone());
            } else {
                self.urgent.insert(id.clone(), Self::rank(p, self.seq));
            }
        }
        ranked
    }

    /// `hold` of `component` for `ms` (0 ends it).
    pub fn hold(&mut self, now: u64, component: &str, ms: u64) {
        if ms == 0 {
            self.holds.remove(component);
            return;
        }
        self.holds.insert(component.to_owned(), now + ms);
        self.held_until = self.held_until.max(now + ms);
    }

    /// `group_limits` (as stored: 0 = none).
    pub fn set_group_limits(&mut self, now: u64, group: &str, max: u64, rmax: u64, rms: u64) {
        self.groups.set_limits(now, group, max, rmax, rms);
    }

    fn bury(&mut self, now: u64, id: &str, reason: &str) {
        if let Some(t) = self.tasks.get_mut(id) {
            t.token = 0;
            t.since = now;
        }
        self.dlq.insert(id.to_owned(), now);
        self.dead.insert(id.to_owned(), reason.to_owned());
        self.dead_total += 1;
        self.buried += 1;
    }

    fn delete_dead(&mut self, ids: &[String]) {
        for id in ids {
            self.dlq.remove(id);
            self.tasks.remove(id);
            self.payloads.remove(id);
            self.errors.remove(id);
            self.dead.remove(id);
        }
    }

    /// The DLQ caps: the age cap on every claim (`claiming`) and after a dead-lettering, the
    /// count cap after a dead-lettering; at most 100 dead letters each per call.
    fn trim_dlq(&mut self, now: u64, claiming: bool) {
        let buried = std::mem::take(&mut self.buried) > 0;
        if !buried && !claiming {
            return;
        }
        let age = i128::from(duration_ms(self.config.dlq_max_age));
        if age > 0 {
            let old = due_members(&self.dlq, i128::from(now) - age, 100);
            self.delete_dead(&old);
        }
        let max = self.config.dlq_max_count;
        if buried && max > 0 {
            let n = self.dlq.len() as u64;
            if n > max {
                let k = (n - max).min(100) as usize;
                let old: Vec<String> = ordered(&self.dlq)
                    .into_iter()
                    .take(k)
                    .map(|(id, _)| id)
                    .collect();
                self.delete_dead(&old);
            }
        }
    }

    fn push_error(&mut self, now: u64, id: &str, attempt: u32, text: &str) {
        let list = self.errors.entry(id.to_owned()).or_default();
        list.push(Failure {
            attempt,
            at_ms: now,
            error: text.to_owned(),
        });
        let keep = self.config.errors_kept as usize;
        while list.len() > keep {
            list.remove(0);
        }
    }

    /// `enqueue` at `now`.
    pub fn enqueue(&mut self, now: u64, batch: &[NewTask]) -> Vec<Enqueued> {
        let keyed = batch.iter().any(|t| t.options.idempotency.is_some());
        let expired: Vec<String> = if !keyed {
            Vec::new()
        } else {
            let exp: BTreeMap<String, u64> = self
                .idem
                .iter()
                .map(|(k, (_, e))| (k.clone(), *e))
                .collect();
            due_members(&exp, i128::from(now), 100)
        };
        for k in expired {
            self.idem.remove(&k);
        }
        let mut seq = self.seq;
        self.seq += batch.len() as u64;
        let mut out = Vec::new();
        let mut ready = Vec::new();
        let mut grouped: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
        for task in batch {
            seq += 1;
            let id = seq.to_string();
            let o = &task.options;
            let mut dup = None;
            if let Some((key, ttl)) = &o.idempotency {
                if let Some((vid, exp)) = self.idem.get(key)
                    && *exp > now
                {
                    dup = Some(vid.clone());
                }
                if dup.is_none() {
                    self.idem
                        .insert(key.clone(), (id.clone(), now + duration_ms(*ttl)));
                }
            }
            if let Some(d) = dup {
                out.push(Enqueued::Duplicate(d));
                continue;
            }
            let delay = duration_ms(o.delay);
            let due = now + delay;
            self.tasks.insert(
                id.clone(),
                ModelTask {
                    attempts: 0,
                    stalls: 0,
                    token: 0,
                    mark: 0,
                    prev: 0,
                    since: due,
                    enqueued: now,
                    options: o.clone(),
                },
            );
            self.payloads.insert(id.clone(), task.payload.clone());
            if delay > 0 {
                self.delayed.insert(id.clone(), due);
            } else if let Some(g) = &o.group {
                let rank = self.groups.next_rank(o.priority);
                grouped
                    .entry(g.clone())
                    .or_default()
                    .push((id.clone(), rank));
            } else if o.priority > 0 {
                self.urgent.insert(id.clone(), Self::rank(o.priority, seq));
            } else {
                ready.push(id.clone());
            }
            out.push(Enqueued::New(id));
        }
        for id in ready {
            self.ready.push_front(id);
        }
        self.groups.push(now, &grouped);
        out
    }

    /// `limits` (as stored: 0 = none).
    pub fn set_limits(&mut self, max_leased: u64, rate_max: u64, rate_ms: u64) {
        self.max_leased = max_leased;
        if rate_max > 0 && rate_ms > 0 {
            (self.rate_max, self.rate_ms) = (rate_max, rate_ms);
        } else {
            (self.rate_max, self.rate_ms) = (0, 0);
            self.starts.clear();
        }
    }

    /// `pause` (`true`) or `resume`: whether the state changed.
    pub fn pause(&mut self, paused: bool) -> bool {
        let changed = self.paused != paused;
        self.paused = paused;
        changed
    }

    /// `claim` of up to `n` tasks at `now` (none while paused: expired leases and due tasks
    /// still go back to ready).
    pub fn claim(&mut self, now: u64, n: usize) -> Claim {
        self.claim_from(now, n, None)
    }

    /// `claim` by capabilities: only these groups, in this order.
    pub fn claim_capable(&mut self, now: u64, n: usize, capabilities: &[&str]) -> Claim {
        self.claim_from(now, n, Some(capabilities))
    }

    fn claim_from(&mut self, now: u64, n: usize, caps: Option<&[&str]>) -> Claim {
        let n = if self.paused {
            0
        } else {
            n.min(crate::types::MAX_BATCH)
        };
        let expired = due_members(
            &self.leased,
            i128::from(now),
            self.config.reclaim_limit as usize,
        );
        let serve = self.groups.grouped;
        let reopen = self.groups.release(&expired);
        let mut back = Vec::new();
        for id in &expired {
            self.leased.remove(id);
            let Some(t) = self.tasks.get_mut(id) else {
                continue;
            };
            t.stalls += 1;
            t.token = 0;
            t.mark = 0;
            if t.stalls > self.config.max_stalls {
                self.bury(now, id, "stalled");
            } else {
                t.since = now;
                back.push(id.clone());
            }
        }
        let due = due_members(
            &self.delayed,
            i128::from(now),
            self.config.promote_limit as usize,
        );
        for id in &due {
            self.delayed.remove(id);
        }
        back.extend(due);
        let back = self.push_plain(&back);
        // The limits: leases held once the expired ones are reclaimed; starts in the window.
        let mut n = n;
        let mut next_start = None;
        if n > 0 && self.max_leased > 0 {
            let free = self.max_leased.saturating_sub(self.leased.len() as u64);
            n = n.min(usize::try_from(free).unwrap_or(usize::MAX));
        }
        let since = i128::from(now) - i128::from(self.rate_ms);
        // Whether this claim's starts go to the log (it has a rate limit and may start some).
        let mut logged = false;
        if n > 0 && self.rate_max > 0 {
            let max = self.rate_max;
            match starts::recent(&self.starts, since, max, self.rate_ms) {
                (_, Some(at)) => {
                    next_start = Some(at);
                    n = 0;
                }
                (recent, None) => {
                    n = n.min(usize::try_from(max - recent).unwrap_or(usize::MAX));
                    logged = true;
                }
            }
        }
        let mut ids: Vec<String> = ordered(&self.urgent)
            .into_iter()
            .take(n)
            .map(|(id, _)| id)
            .collect();
        for id in &ids {
            self.urgent.remove(id);
        }
        // The groups, after the urgent lane.
        let served = self.serve_groups(now, n - ids.len(), back, (serve, reopen), caps);
        ids.extend(served.take.iter().map(|(id, _)| id.clone()));
        if let Some(at) = served.next_start {
            next_start = Some(next_start.map_or(at, |x: u64| x.min(at)));
        }
        while ids.len() < n {
            match self.ready.pop_back() {
                Some(id) => ids.push(id),
                None => break,
            }
        }
        // Tasks of a component on hold: to the delayed set until the hold ends, not leased.
        let on_hold = |id: &String| {
            let t = &self.tasks[id];
            let c = t.options.component.as_ref()?;
            let until = *self.holds.get(c)?;
            (self.held_until > now && until > now).then_some(until)
        };
        let (mut leased, mut held) = (Vec::new(), Vec::new());
        for id in ids {
            match on_hold(&id) {
                Some(until) => held.push((id, until)),
                None => leased.push(id),
            }
        }
        for (id, until) in held {
            self.tasks.get_mut(&id).expect("a ready task exists").since = until;
            self.delayed.insert(id, until);
        }
        let ids = leased;
        let mut tok = self.token;
        self.token += ids.len() as u64;
        let mut tasks = Vec::new();
        for id in ids {
            let t = self.tasks.get_mut(&id).expect("a ready task exists");
            tok += 1;
            t.token = tok;
            t.mark = 0;
            let deadline = now + duration_ms(t.options.lease);
            self.leased.insert(id.clone(), deadline);
            tasks.push(Task {
                id: id.clone(),
                token: tok,
                deadline_ms: deadline,
                attempt: t.attempts + 1,
                stalls: t.stalls,
                component: t.options.component.clone(),
                group: t.options.group.clone(),
                priority: t.options.priority,
                payload: self.payloads.get(&id).cloned().unwrap_or_default(),
                enqueued_ms: t.enqueued,
            });
        }
        let tokens: Vec<(String, u64)> = tasks.iter().map(|t| (t.id.clone(), t.token)).collect();
        self.lease_served(now, &served, &tokens);
        if let (true, Some(first)) = (logged, tasks.first()) {
            starts::write(
                &mut self.starts,
                now,
                since,
                first.token,
                tasks.len() as u64,
            );
        }
        let claim = Claim {
            tasks,
            now_ms: now,
            next_due_ms: ordered(&self.delayed).first().map(|(_, s)| *s),
            next_deadline_ms: ordered(&self.leased).first().map(|(_, s)| *s),
            next_start_ms: next_start,
        };
        self.trim_dlq(now, true);
        claim
    }

    /// `extend` at `now` (`ms` = `None`: the task's lease length).
    pub fn extend(&mut self, now: u64, id: &str, token: u64, ms: Option<u64>) -> Option<u64> {
        let t = self.tasks.get(id)?;
        if token == 0 || t.token != token {
            return None;
        }
        let deadline = now + ms.unwrap_or(duration_ms(t.options.lease));
        if self.leased.contains_key(id) {
            self.leased.insert(id.to_owned(), deadline);
        }
        Some(deadline)
    }

    /// `requeue` of the oldest `limit` dead letters (`ids` empty) or of these ids.
    pub fn requeue(&mut self, now: u64, ids: &[&str], limit: usize, reset: bool) -> Vec<String> {
        let ids = self.select_dead(ids, limit);
        for id in &ids {
            let t = self.tasks.get_mut(id).expect("dead tasks exist");
            t.stalls = 0;
            t.token = 0;
            t.mark = 0;
            t.since = now;
            if reset {
                t.attempts = 0;
                t.prev = 0;
                self.errors.remove(id);
            } else if t.attempts >= t.options.max_attempts {
                t.attempts = t.options.max_attempts - 1;
            }
            self.dlq.remove(id);
            self.dead.remove(id);
        }
        self.push_ready(now, &ids);
        ids
    }

    /// `make_due` of these ids: the delayed ones move to the back of the ready list.
    pub fn make_due(&mut self, now: u64, ids: &[&str]) -> Vec<String> {
        let mut moved: Vec<String> = Vec::new();
        for id in ids {
            if self.delayed.contains_key(*id) && !moved.iter().any(|m| m == id) {
                moved.push((*id).to_owned());
            }
        }
        for id in &moved {
            self.delayed.remove(id);
            self.tasks.get_mut(id).expect("delayed tasks exist").since = now;
        }
        self.push_ready(now, &moved);
        moved
    }

    /// `purge` of the oldest `limit` dead letters (`ids` empty) or of these ids.
    pub fn purge(&mut self, ids: &[&str], limit: usize) -> u64 {
        let ids = self.select_dead(ids, limit);
        self.delete_dead(&ids);
        ids.len() as u64
    }

    fn select_dead(&self, ids: &[&str], limit: usize) -> Vec<String> {
        if ids.is_empty() {
            return ordered(&self.dlq)
                .into_iter()
                .take(limit)
                .map(|(id, _)| id)
                .collect();
        }
        let mut out: Vec<String> = Vec::new();
        for id in ids {
            if self.dlq.contains_key(*id) && !out.iter().any(|o| o == id) {
                out.push((*id).to_owned());
            }
        }
        out
    }

    /// `stats` at `now`.
    pub fn stats(&self, now: u64) -> Stats {
        // The first of the list and of each priority level of `urgent`, as the script reads them.
        // (And of each group's lane of each priority.)
        let mut firsts: Vec<String> = self.ready.back().into_iter().cloned().collect();
        for lanes in std::iter::once(&self.urgent).chain(self.groups.lanes.values()) {
            let mut level = None;
            for (id, rank) in ordered(lanes) {
                if level != Some(rank / PRIO_SPAN) {
                    level = Some(rank / PRIO_SPAN);
                    firsts.push(id);
                }
            }
        }
        let oldest = firsts
            .iter()
            .filter_map(|id| self.tasks.get(id))
            .map(|t| t.since)
            .min();
        let grouped: usize = self.groups.lanes.values().map(BTreeMap::len).sum();
        Stats {
            ready: (self.ready.len() + self.urgent.len() + grouped) as u64,
            delayed: self.delayed.len() as u64,
            leased: self.leased.len() as u64,
            dead: self.dlq.len() as u64,
            completed: self.completed,
            dead_lettered_total: self.dead_total,
            oldest_ready_age: oldest
                .map(|s| std::time::Duration::from_millis(now.saturating_sub(s))),
            next_due_ms: ordered(&self.delayed).first().map(|(_, s)| *s),
            now_ms: now,
            paused: self.paused,
            limits: crate::Limits::from_wire(self.max_leased, self.rate_max, self.rate_ms),
        }
    }
}
