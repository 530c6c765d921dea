//! A pure-Rust reference model of one tracker's counters, caps and windows: what the Lua
//! scripts must do, written plainly. For your own property tests (feature `model`): drive it
//! and a tracker with a manual clock through the same records, resolutions and queries, and
//! compare the answers, as this crate's `tests/model.rs` does.

use std::collections::{BTreeMap, VecDeque};

use crate::wire::task_slots;

/// How often (ms) a signature's recency for eviction is refreshed.
pub const INDEX_MS: u64 = 1_000;
/// The most kinds the correlation window holds (the oldest go first).
pub const MAX_WINDOW_KINDS: usize = 64;

/// The caps and windows of the modelled tracker (the builder's settings, in ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelConfig {
    /// Log entries kept.
    pub log_max_len: usize,
    /// Log entries older than this are not shown.
    pub log_max_age_ms: u64,
    /// Task records older than this are not shown.
    pub task_ttl_ms: u64,
    /// Signatures tracked.
    pub max_signatures: usize,
    /// Task record slots.
    pub max_tasks: usize,
    /// (kind, component) counter fields kept (`~other` aside).
    pub max_counters: usize,
    /// Correlation window.
    pub window_ms: u64,
    /// Distinct kinds that make a cascade.
    pub threshold: usize,
}

/// One occurrence, after cleaning (what the script receives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRecord {
    /// Signature.
    pub signature: String,
    /// Kind.
    pub kind: String,
    /// Component.
    pub component: String,
    /// Task, if any.
    pub task: Option<String>,
    /// The caller's occurrence time, if given.
    pub occurred_ms: Option<u64>,
}

/// What a record reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelOutcome {
    /// The signature's count.
    pub count: u64,
    /// Its first occurrence.
    pub first_seen_ms: u64,
    /// It was new.
    pub new_signature: bool,
    /// It re-opened a resolved signature.
    pub regression: bool,
    /// It fired a cascade.
    pub cascade: bool,
}

/// One signature's state, its fields in the order of the stored state (`lua/record.lua`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSignature {
    /// Count.
    pub count: u64,
    /// First seen.
    pub first_seen_ms: u64,
    /// Last seen.
    pub last_seen_ms: u64,
    /// Resolved at, while resolved.
    pub resolved_at_ms: Option<u64>,
    /// Regressions.
    pub regressions: u64,
    /// When its recency was last refreshed.
    pub indexed_ms: u64,
    /// Components seen (at most 16), in order.
    pub components: Vec<String>,
}

/// A resolution's outcome: `Ok(at)` resolved now, `Err(Some(at))` already, `Err(None)` unknown.
pub type ModelResolution = Result<u64, Option<u64>>;

/// The model tracker.
#[derive(Debug, Clone)]
pub struct TrackerModel {
    cfg: ModelConfig,
    sigs: BTreeMap<String, ModelSignature>,
    seen: BTreeMap<String, u64>,
    /// Slot -> (task, ms, signature).
    task_slots: BTreeMap<u32, (String, u64, String)>,
    counts: BTreeMap<String, u64>,
    log: VecDeque<(u64, String)>,
    corr: VecDeque<(String, u64)>,
    cascade_ms: Option<u64>,
}

impl TrackerModel {
    /// An empty tracker.
    pub fn new(cfg: ModelConfig) -> Self {
        Self {
            cfg,
            sigs: BTreeMap::new(),
            seen: BTreeMap::new(),
            task_slots: BTreeMap::new(),
            counts: BTreeMap::new(),
            log: VecDeque::new(),
            corr: VecDeque::new(),
            cascade_ms: None,
        }
    }

    /// The members of a scored set, lowest score first, ties by member.
    fn ascending(set: &BTreeMap<String, u64>) -> Vec<(u64, String)> {
        let mut v: Vec<(u64, String)> = set.iter().map(|(m, s)| (*s, m.clone())).collect();
        v.sort();
        v
    }

    /// Records `r` at `now`.
    pub fn record(&mut self, now: u64, r: &ModelRecord) -> ModelOutcome {
        let cfg = self.cfg;
        let new = !self.sigs.contains_key(&r.signature);

        // Signature eviction.
        if new {
            let over = (self.seen.len() + 1).saturating_sub(cfg.max_signatures);
            for (_, victim) in Self::ascending(&self.seen).into_iter().take(over) {
                self.seen.remove(&victim);
                self.sigs.remove(&victim);
            }
        }
        let sig = self
            .sigs
            .entry(r.signature.clone())
            .or_insert_with(|| ModelSignature {
                count: 0,
                first_seen_ms: now,
                last_seen_ms: now,
                resolved_at_ms: None,
                regressions: 0,
                components: Vec::new(),
                indexed_ms: 0,
            });
        if new || now as i128 - sig.indexed_ms as i128 >= INDEX_MS as i128 {
            sig.indexed_ms = now;
            self.seen.insert(r.signature.clone(), now);
        }
        sig.count += 1;
        sig.last_seen_ms = now;
        let mut regression = false;
        if let Some(resolved) = sig.resolved_at_ms
            && r.occurred_ms.is_none_or(|o| o > resolved)
        {
            regression = true;
            sig.resolved_at_ms = None;
            sig.regressions += 1;
        }
        if !sig.components.contains(&r.component) && sig.components.len() < 16 {
            sig.components.push(r.component.clone());
        }
        let (count, first_seen_ms) = (sig.count, sig.first_seen_ms);

        // Correlation: kinds within the window, oldest first.
        let cutoff = now as i128 - cfg.window_ms as i128;
        self.corr
            .retain(|(k, ts)| k != &r.kind && (*ts as i128) > cutoff);
        self.corr.push_back((r.kind.clone(), now));
        while self.corr.len() > MAX_WINDOW_KINDS {
            self.corr.pop_front();
        }
        let mut cascade = false;
        if self.corr.len() >= cfg.threshold
            && self
                .cascade_ms
                .is_none_or(|f| now as i128 - f as i128 >= cfg.window_ms as i128)
        {
            cascade = true;
            self.cascade_ms = Some(now);
        }

        // Counters: pairs up to the cap, then "~other".
        let pair = format!("{} {}", r.kind, r.component);
        let pairs = self.counts.len() - usize::from(self.counts.contains_key("~other"));
        match self.counts.get_mut(&pair) {
            Some(n) => *n += 1,
            None if pairs < cfg.max_counters => {
                self.counts.insert(pair, 1);
            }
            None => *self.counts.entry("~other".into()).or_default() += 1,
        }

        // Tasks: the slot it owns, else a free one, else the one written longest ago.
        if let Some(task) = &r.task {
            let (s1, s2) = task_slots(task, cfg.max_tasks as u32);
            let o1 = self.task_slots.get(&s1);
            let o2 = self.task_slots.get(&s2);
            let slot = match (o1, o2) {
                (Some((t, _, _)), _) if t == task => s1,
                (_, Some((t, _, _))) if t == task => s2,
                (None, _) => s1,
                (_, None) => s2,
                (Some((_, ts1, _)), Some((_, ts2, _))) => {
                    if ts2 < ts1 {
                        s2
                    } else {
                        s1
                    }
                }
            };
            self.task_slots
                .insert(slot, (task.clone(), now, r.signature.clone()));
        }

        // Log.
        self.log.push_back((now, r.signature.clone()));
        while self.log.len() > cfg.log_max_len {
            self.log.pop_front();
        }
        ModelOutcome {
            count,
            first_seen_ms,
            new_signature: new,
            regression,
            cascade,
        }
    }
    /// Resolves `signature` at `now`.
    pub fn resolve(&mut self, now: u64, signature: &str) -> ModelResolution {
        match self.sigs.get_mut(signature) {
            None => Err(None),
            Some(s) => match s.resolved_at_ms {
                Some(at) => Err(Some(at)),
                None => {
                    s.resolved_at_ms = Some(now);
                    Ok(now)
                }
            },
        }
    }

    /// A signature's state.
    pub fn signature(&self, signature: &str) -> Option<&ModelSignature> {
        self.sigs.get(signature)
    }

    /// The visible log at `now`, newest first: (ts, signature).
    pub fn recent(&self, now: u64) -> Vec<(u64, String)> {
        let min = now.saturating_sub(self.cfg.log_max_age_ms);
        self.log
            .iter()
            .rev()
            .filter(|(ts, _)| *ts >= min)
            .cloned()
            .collect()
    }

    /// Occurrences per signature within `window_ms` at `now`, most first, ties by signature.
    pub fn top(&self, now: u64, window_ms: u64, limit: usize) -> Vec<(String, u64)> {
        let from = (now as i128 - window_ms as i128 + 1)
            .max(now as i128 - self.cfg.log_max_age_ms as i128)
            .max(0) as u64;
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for (ts, sig) in &self.log {
            if *ts >= from {
                *counts.entry(sig.clone()).or_default() += 1;
            }
        }
        let mut v: Vec<(String, u64)> = counts.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(limit);
        v
    }

    /// The counter fields: `"<kind> <component>"` and `"~other"`.
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }

    /// The signature of a task's details record at `now`, if visible.
    pub fn task(&self, now: u64, task: &str) -> Option<&str> {
        let (s1, s2) = task_slots(task, self.cfg.max_tasks as u32);
        [s1, s2]
            .iter()
            .filter_map(|s| self.task_slots.get(s))
            .find(|(t, _, _)| t == task)
            .filter(|(_, ts, _)| (*ts as i128) > now as i128 - self.cfg.task_ttl_ms as i128)
            .map(|(_, _, sig)| sig.as_str())
    }
}
