//! The groups in the model: their states, lanes, starts and leases, as `lua/claim.lua`,
//! `lua/settle.lua` and `lib/serve_groups.lua` keep them.

use std::collections::{BTreeMap, BTreeSet};

use super::{QueueModel, ordered};

/// What the model keeps of the groups (see `lua/lib/queue.lua`).
#[derive(Debug, Clone, Default)]
pub(super) struct Groups {
    /// Whether any task of a group was ever ready (`info`'s `grouped`).
    pub(super) grouped: bool,
    /// group -> [leased, max_leased, rate_max, rate_ms].
    pub(super) state: BTreeMap<String, [u64; 4]>,
    /// group -> when it may start a task next (`gready`).
    pub(super) ready: BTreeMap<String, u64>,
    /// id -> group of each leased task of a group (its lease names it; `glease` for a lease made
    /// before leases named their group).
    pub(super) lease: BTreeMap<String, String>,
    /// group -> its lanes, id -> rank: (MAXP − priority) × PRIO_SPAN + the order it was pushed
    /// in (a lane per priority, first in first out).
    pub(super) lanes: BTreeMap<String, BTreeMap<String, u64>>,
    /// How many tasks were pushed to the lanes (the order of the next).
    pub(super) pushed: u64,
    /// group -> its log of starts (`starts.rs`), entry -> time.
    pub(super) starts: BTreeMap<String, BTreeMap<String, u64>>,
}

/// The groups as stored, for [`Dump`](super::Dump): states, gready by (score, group), glease,
/// and the lanes and starts that are not empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupsDump {
    /// group -> (leased, max_leased, rate_max, rate_ms, lanes: bit p set while its lane of
    /// priority p holds tasks).
    pub state: BTreeMap<String, (u64, u64, u64, u64, u16)>,
    /// The groups that may start a task, by (when, group).
    pub ready: Vec<(String, u64)>,
    /// id -> group of each leased task of a group.
    pub lease: BTreeMap<String, String>,
    /// group -> its ready tasks in the order claims take them, each with its priority.
    pub lanes: BTreeMap<String, Vec<(String, u8)>>,
    /// group -> its log of starts by (time, entry).
    pub starts: BTreeMap<String, Vec<(String, u64)>>,
}

impl Groups {
    pub(super) fn dump(&self) -> GroupsDump {
        let lanes: BTreeMap<String, Vec<(String, u8)>> = self
            .lanes
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(g, v)| {
                let tasks = ordered(v)
                    .into_iter()
                    .map(|(id, rank)| (id, Self::priority_of(rank)))
                    .collect();
                (g.clone(), tasks)
            })
            .collect();
        let bits = |g: &str| {
            lanes
                .get(g)
                .map_or(0, |l| l.iter().fold(0, |bits, (_, p)| bits | 1 << p))
        };
        GroupsDump {
            state: self
                .state
                .iter()
                .map(|(g, s)| (g.clone(), (s[0], s[1], s[2], s[3], bits(g))))
                .collect(),
            ready: ordered(&self.ready),
            lease: self.lease.clone(),
            starts: self
                .starts
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(g, v)| (g.clone(), ordered(v)))
                .collect(),
            lanes,
        }
    }

    /// The priority of a task of this rank in a lane.
    fn priority_of(rank: u64) -> u8 {
        crate::MAX_PRIORITY - (rank / super::PRIO_SPAN) as u8
    }

    /// The rank in its group's lanes of the next task pushed, of priority `p`.
    pub(super) fn next_rank(&mut self, p: u8) -> u64 {
        self.pushed += 1;
        QueueModel::rank(p, self.pushed)
    }

    /// `push_groups`: tasks into their lanes, each group ready now unless it waits already.
    pub(super) fn push(&mut self, now: u64, ranked: &BTreeMap<String, Vec<(String, u64)>>) {
        for (g, list) in ranked {
            let lane = self.lanes.entry(g.clone()).or_default();
            for (id, rank) in list {
                lane.insert(id.clone(), *rank);
            }
            self.ready.entry(g.clone()).or_insert(now);
            self.state.entry(g.clone()).or_default();
        }
        if !ranked.is_empty() {
            self.grouped = true;
        }
    }

    fn lane_len(&self, g: &str) -> usize {
        self.lanes.get(g).map_or(0, BTreeMap::len)
    }

    /// Leases of groups' tasks let go (a settle, or a claim reclaiming them): each group counts
    /// one less. -> the groups among theirs that were at their limit (out of gready), which
    /// may start a task again (the caller puts them back in gready when it writes).
    pub(super) fn release(&mut self, ids: &[String]) -> Vec<String> {
        if !self.grouped {
            return Vec::new();
        }
        let mut freed: BTreeMap<String, [u64; 4]> = BTreeMap::new();
        for id in ids {
            if let Some(g) = self.lease.remove(id) {
                let s = self.state.entry(g.clone()).or_default();
                freed.entry(g).or_insert(*s);
                s[0] = s[0].saturating_sub(1);
            }
        }
        // (As read before this call's releases.)
        freed
            .into_iter()
            .filter(|(_, s)| s[1] > 0 && s[0] >= s[1])
            .map(|(g, _)| g)
            .collect()
    }

    /// Groups that may start a task, unless they wait already.
    pub(super) fn reopen(&mut self, now: u64, groups: Vec<String>) {
        for g in groups {
            self.ready.entry(g).or_insert(now);
        }
    }

    /// `group_limits`.
    pub(super) fn set_limits(&mut self, now: u64, g: &str, max: u64, rmax: u64, rms: u64) {
        let (rmax, rms) = if rmax == 0 || rms == 0 {
            self.starts.remove(g);
            (0, 0)
        } else {
            (rmax, rms)
        };
        let s = self.state.entry(g.to_owned()).or_default();
        (s[1], s[2], s[3]) = (max, rmax, rms);
        if self.lane_len(g) > 0 {
            self.ready.insert(g.to_owned(), now);
        }
    }
}

/// A claim's serving of the groups: the ids it takes (in order, with their groups) and when
/// the first waiting group may start.
pub(super) struct Served {
    pub(super) take: Vec<(String, String)>,
    pub(super) next_start: Option<u64>,
    rate: Vec<(String, Vec<String>)>,
    /// The groups served (not dropped, not waiting), and those of them whose tasks put back
    /// were left in their lanes (gready again, after the claim's served writes).
    served: Vec<String>,
    pushed: BTreeSet<String>,
}

impl QueueModel {
    /// `serve_groups` with `back` (the tasks this claim puts back in groups' lanes), then the
    /// lanes and gready written as the claim writes them. Runs before the leases are made:
    /// [`QueueModel::lease_served`] finishes it.
    pub(super) fn serve_groups(
        &mut self,
        now: u64,
        n: usize,
        mut back: BTreeMap<String, Vec<(String, u64)>>,
        (serve, reopen): (bool, Vec<String>),
        caps: Option<&[&str]>,
    ) -> Served {
        let mut out = Served {
            take: Vec::new(),
            next_start: None,
            rate: Vec::new(),
            served: Vec::new(),
            pushed: BTreeSet::new(),
        };
        let mut steps: Vec<(String, Option<u64>)> = Vec::new();
        if serve && n > 0 {
            let mut names = Vec::new();
            match caps {
                Some(caps) => {
                    let mut seen = BTreeSet::new();
                    for g in caps.iter().filter(|g| seen.insert(**g)) {
                        match self.groups.ready.get(*g) {
                            Some(&at) if at <= now => names.push((*g).to_owned()),
                            Some(&at) => {
                                out.next_start = Some(out.next_start.map_or(at, |x| x.min(at)));
                            }
                            None => {}
                        }
                    }
                }
                None => {
                    for (g, at) in ordered(&self.groups.ready).into_iter().take(n) {
                        if at > now {
                            out.next_start = Some(at);
                            break;
                        }
                        names.push(g);
                    }
                }
            }
            for g in names {
                let left = n - out.take.len();
                if left == 0 {
                    break;
                }
                let s = self.groups.state.get(&g).copied().unwrap_or_default();
                let mut allow = left as u64;
                if s[1] > 0 {
                    allow = allow.min(s[1].saturating_sub(s[0]));
                }
                if allow == 0 {
                    steps.push((g, None)); // dropped: at its limit
                    continue;
                }
                let mut rated = false;
                if s[2] > 0 && s[3] > 0 {
                    let since = i128::from(now) - i128::from(s[3]);
                    let (recent, wait) = self.groups.starts.get(&g).map_or((0, None), |log| {
                        super::starts::recent(log, since, s[2], s[3])
                    });
                    if let Some(wait) = wait {
                        out.next_start = Some(out.next_start.map_or(wait, |x| x.min(wait)));
                        steps.push((g, Some(wait)));
                        continue;
                    }
                    allow = allow.min(s[2] - recent);
                    rated = true;
                }
                // The lane and the tasks put back in it together, by rank.
                let lane = self.groups.lanes.entry(g.clone()).or_default();
                let put_back = back.remove(&g).unwrap_or_default();
                for (id, rank) in &put_back {
                    lane.insert(id.clone(), *rank);
                }
                let ids: Vec<String> = ordered(lane)
                    .into_iter()
                    .take(allow as usize)
                    .map(|(id, _)| id)
                    .collect();
                for id in &ids {
                    lane.remove(id);
                    out.take.push((id.clone(), g.clone()));
                }
                // Tasks put back and not taken: the claim pushes them after its served writes.
                if put_back.iter().any(|(id, _)| !ids.contains(id)) {
                    out.pushed.insert(g.clone());
                }
                let empty = lane.is_empty();
                if rated {
                    out.rate.push((g.clone(), ids));
                }
                out.served.push(g.clone());
                steps.push((g, Some(if empty { u64::MAX } else { now })));
            }
        }
        // The claim's writes, in its order: groups whose leases it reclaimed, served groups, then
        // the tasks put back.
        self.groups.reopen(now, reopen);
        out.pushed.extend(
            back.iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(g, _)| g.clone()),
        );
        for (g, at) in steps {
            match at {
                None | Some(u64::MAX) => {
                    self.groups.ready.remove(&g);
                }
                Some(at) => {
                    self.groups.ready.insert(g, at);
                }
            }
        }
        self.groups.push(now, &back);
        out
    }

    /// The leases of the served tasks (`tokens`: id -> token, of the tasks leased: one on hold
    /// is not): their groups count them, and the rate-limited groups log their starts.
    pub(super) fn lease_served(&mut self, now: u64, served: &Served, tokens: &[(String, u64)]) {
        for (id, g) in &served.take {
            if !tokens.iter().any(|(t, _)| t == id) {
                continue;
            }
            self.groups.lease.insert(id.clone(), g.clone());
            self.groups.state.entry(g.clone()).or_default()[0] += 1;
        }
        // A group this claim filled leaves gready (unless tasks put back in its lane made it
        // ready again after).
        for g in &served.served {
            let s = self.groups.state.get(g).copied().unwrap_or_default();
            if s[1] > 0 && s[0] >= s[1] && !served.pushed.contains(g) {
                self.groups.ready.remove(g);
            }
        }
        for (g, ids) in &served.rate {
            // Its tasks leased now: one entry in its log (none: the log as it was).
            let mine: Vec<u64> = tokens
                .iter()
                .filter(|(id, _)| ids.contains(id))
                .map(|(_, tok)| *tok)
                .collect();
            let Some(&first) = mine.iter().min() else {
                continue;
            };
            let per = self.groups.state.get(g).map_or(0, |s| s[3]);
            let since = i128::from(now) - i128::from(per);
            let starts = self.groups.starts.entry(g.clone()).or_default();
            super::starts::write(starts, now, since, first, mine.len() as u64);
        }
    }
}
