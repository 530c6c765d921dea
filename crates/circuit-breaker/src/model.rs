//! The reference model of one breaker (feature `model`), for your own property tests: the same
//! state machine as the script, written plainly, on a clock you pass in. Drive your code and
//! a [`BreakerModel`] with the same operations and compare their answers; this crate's own
//! proptest requires the script and the model to agree, step by step. The breaker also runs
//! it in-process as the [`StorePolicy::Local`] fallback when Redis is unreachable.
//!
//! [`StorePolicy::Local`]: crate::StorePolicy::Local

// (The example compiles only where the module is public.)
#![cfg_attr(
    feature = "model",
    doc = r#"
```
use coordkit_circuit_breaker::model::BreakerModel;
use coordkit_circuit_breaker::{BreakerConfig, Outcome, State};

let config = BreakerConfig::builder().minimum_calls(1).consecutive_failures(Some(1)).build()?;
let mut model = BreakerModel::new(config);
let permit = model.acquire(1_000, "p1");
assert!(permit.admitted);
let kind = permit.kind.expect("an admitted permit has a kind");
model.record(1_010, "p1", permit.epoch, kind, Outcome::Failure, 10);
assert_eq!(model.snapshot(1_020).state, State::Open);
# Ok::<(), coordkit_core::Error>(())
```
"#
)]

use std::collections::BTreeMap;

use coordkit_core::time::duration_ms;

use crate::config::{BreakerConfig, Window};
use crate::state::{
    AcquireAnswer, Forced, HALF_OPEN_RETRY_CAP, Outcome, PermitKind, RecordAnswer, RecordStatus,
    Snapshot, State,
};

/// Where the counts stop, as in the script: 2^48 - 1, the largest it accepts from storage.
const MAXI: u64 = (1 << 48) - 1;

#[derive(Debug, Clone)]
enum WindowState {
    Count {
        ring: Vec<u8>,
        pos: usize,
        n: u64,
        nf: u64,
        ns: u64,
    },
    Time {
        slots: Vec<Option<(u64, u64, u64, u64)>>,
        bucket_ms: u64,
    },
}

impl WindowState {
    fn new(window: Window) -> Self {
        match window {
            Window::Count(n) => WindowState::Count {
                ring: vec![b'.'; n as usize],
                pos: 0,
                n: 0,
                nf: 0,
                ns: 0,
            },
            Window::Time { length, buckets } => WindowState::Time {
                slots: vec![None; buckets as usize],
                bucket_ms: duration_ms(length) / u64::from(buckets),
            },
        }
    }

    fn figures(&self, now: u64) -> (u64, u64, u64) {
        match self {
            WindowState::Count { n, nf, ns, .. } => (*n, *nf, *ns),
            WindowState::Time { slots, bucket_ms } => {
                let current = now / bucket_ms;
                let size = slots.len() as u64;
                slots
                    .iter()
                    .flatten()
                    .filter(|(id, ..)| id.saturating_add(size) > current && *id <= current)
                    .fold((0, 0, 0), |(n, f, s), (_, c, cf, cs)| {
                        (n + c, f + cf, s + cs)
                    })
            }
        }
    }

    fn add(&mut self, now: u64, failed: bool, slow: bool) {
        match self {
            WindowState::Count {
                ring,
                pos,
                n,
                nf,
                ns,
            } => {
                let old = ring[*pos];
                if old != b'.' {
                    *n -= 1;
                    if old == b'F' || old == b'f' {
                        *nf -= 1;
                    }
                    if old == b's' || old == b'f' {
                        *ns -= 1;
                    }
                }
                ring[*pos] = match (failed, slow) {
                    (true, true) => b'f',
                    (true, false) => b'F',
                    (false, true) => b's',
                    (false, false) => b'S',
                };
                *pos = (*pos + 1) % ring.len();
                *n += 1;
                *nf += u64::from(failed);
                *ns += u64::from(slow);
            }
            WindowState::Time { slots, bucket_ms } => {
                let id = now / *bucket_ms;
                let len = slots.len() as u64;
                let slot = &mut slots[(id % len) as usize];
                let (c, f, s) = match slot {
                    Some((sid, c, f, s)) if *sid == id => (*c, *f, *s),
                    _ => (0, 0, 0),
                };
                *slot = Some((
                    id,
                    (c + 1).min(MAXI),
                    (f + u64::from(failed)).min(MAXI),
                    (s + u64::from(slow)).min(MAXI),
                ));
            }
        }
    }
}

/// A transition, as the script emits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// `opened`, `half_opened`, `closed`, `forced` or `cleared`.
    pub kind: &'static str,
    /// The state after it.
    pub state: State,
    /// The epoch after it.
    pub epoch: u64,
    /// Why (`opened` and `closed` only).
    pub reason: Option<&'static str>,
}

/// One breaker's whole state.
#[derive(Debug, Clone)]
pub struct BreakerModel {
    config: BreakerConfig,
    st: State,
    ep: u64,
    oa: u64,
    ou: u64,
    rc: u64,
    hs: u64,
    hok: u64,
    cf: u64,
    window: WindowState,
    probes: BTreeMap<String, u64>,
    /// Every transition so far, in order.
    pub transitions: Vec<Transition>,
}

impl BreakerModel {
    /// A breaker that has seen nothing: closed, epoch 1.
    pub fn new(config: BreakerConfig) -> Self {
        let window = WindowState::new(config.window);
        Self {
            config,
            st: State::Closed,
            ep: 1,
            oa: 0,
            ou: 0,
            rc: 0,
            hs: 0,
            hok: 0,
            cf: 0,
            window,
            probes: BTreeMap::new(),
            transitions: Vec::new(),
        }
    }

    /// A breaker last seen in `state` at `epoch`, from `now` on: the [`StorePolicy::Local`]
    /// fallback's start when Redis becomes unreachable. Open until `open_until` (ms on the
    /// same clock as `now`), half-open since `now`; the window is empty and no probe is held.
    ///
    /// [`StorePolicy::Local`]: crate::StorePolicy::Local
    pub fn resume(
        config: BreakerConfig,
        state: State,
        epoch: u64,
        now: u64,
        open_until: u64,
    ) -> Self {
        let mut model = Self::new(config);
        model.st = state;
        model.ep = epoch.max(1);
        match state {
            State::Open => {
                model.oa = now;
                model.ou = open_until;
            }
            State::HalfOpen => model.hs = now,
            _ => {}
        }
        model
    }

    fn emit(&mut self, kind: &'static str, reason: Option<&'static str>) {
        self.transitions.push(Transition {
            kind,
            state: self.st,
            epoch: self.ep,
            reason,
        });
    }

    fn clear_window(&mut self) {
        self.window = WindowState::new(self.config.window);
    }

    fn open_for(&self, reopenings: u64) -> u64 {
        let (base, factor, max) = self.config.open_ms();
        let mut d = base as f64 * factor.powf(reopenings as f64);
        if d > max as f64 {
            d = max as f64;
        }
        d.floor() as u64
    }

    /// Every transition: the new state, the next epoch, no probe leases.
    fn enter(&mut self, to: State) {
        self.st = to;
        self.ep = self.ep.saturating_add(1).min(MAXI);
        self.probes.clear();
    }

    /// Back to closed (the probes succeeded, or an operator cleared it): nothing counted.
    fn enter_closed(&mut self) {
        self.enter(State::Closed);
        self.hok = 0;
        self.cf = 0;
        self.rc = 0;
        self.clear_window();
    }

    fn go_open(&mut self, now: u64, reason: &'static str) {
        self.rc = if matches!(self.st, State::HalfOpen | State::Open) {
            self.rc.saturating_add(1).min(MAXI)
        } else {
            0
        };
        self.enter(State::Open);
        self.oa = now;
        self.ou = now.saturating_add(self.open_for(self.rc));
        self.hok = 0;
        self.cf = 0;
        self.clear_window();
        self.emit("opened", Some(reason));
    }

    fn go_half_open(&mut self, now: u64) {
        self.enter(State::HalfOpen);
        self.hs = now;
        self.hok = 0;
        self.emit("half_opened", None);
    }

    fn go_closed(&mut self, reason: &'static str) {
        self.enter_closed();
        self.emit("closed", Some(reason));
    }

    fn settle(&mut self, now: u64) {
        if self.st == State::Open && now >= self.ou {
            self.go_half_open(now);
        }
        if let Some(max_wait) = self.config.half_open_max_wait
            && self.st == State::HalfOpen
            && now.saturating_sub(self.hs) >= duration_ms(max_wait)
        {
            self.go_open(now, "half_open_timeout");
            if now >= self.ou {
                self.go_half_open(now);
            }
        }
        if self.st == State::HalfOpen {
            self.probes.retain(|_, deadline| *deadline > now);
        }
    }

    fn trip_check(&mut self, now: u64) {
        let (n, nf, ns) = self.window.figures(now);
        if let Some(max) = self.config.consecutive_failures
            && self.cf >= u64::from(max)
        {
            self.go_open(now, "consecutive_failures");
            return;
        }
        if n >= u64::from(self.config.minimum_calls) && n > 0 {
            if nf as f64 / n as f64 >= self.config.failure_rate {
                self.go_open(now, "failure_rate");
            } else if ns as f64 / n as f64 >= self.config.slow_call_rate {
                self.go_open(now, "slow_call_rate");
            }
        }
    }

    /// Asks for a permit at `now` for permit id `permit`.
    pub fn acquire(&mut self, now: u64, permit: &str) -> AcquireAnswer {
        self.settle(now);
        let (admitted, kind, retry) = match self.st {
            State::Closed => (true, Some(PermitKind::Normal), 0),
            State::Disabled => (true, Some(PermitKind::Bypass), 0),
            State::MetricsOnly => (true, Some(PermitKind::MetricsOnly), 0),
            State::Open => (false, None, self.ou.saturating_sub(now)),
            State::ForcedOpen => (false, None, 0),
            State::HalfOpen => {
                if (self.probes.len() as u64) < u64::from(self.config.half_open_permits) {
                    self.probes.insert(
                        permit.to_owned(),
                        now.saturating_add(duration_ms(self.config.permit_lease)),
                    );
                    (true, Some(PermitKind::Probe), 0)
                } else {
                    let first = self.probes.values().min().copied().unwrap_or(now);
                    let retry = first
                        .saturating_sub(now)
                        .min(self.config.open_ms().0)
                        .min(duration_ms(HALF_OPEN_RETRY_CAP))
                        .max(1);
                    (false, None, retry)
                }
            }
        };
        AcquireAnswer {
            admitted,
            state: self.st,
            epoch: self.ep,
            retry_after_ms: retry,
            kind,
        }
    }

    /// Records the outcome of permit `permit` (given at `epoch`, of `kind`) at `now`.
    pub fn record(
        &mut self,
        now: u64,
        permit: &str,
        epoch: u64,
        kind: PermitKind,
        outcome: Outcome,
        duration_ms: u64,
    ) -> RecordAnswer {
        if kind == PermitKind::Probe {
            self.probes.remove(permit);
        }
        self.settle(now);
        let status = if epoch != self.ep {
            RecordStatus::Stale
        } else if outcome == Outcome::Ignored {
            RecordStatus::Ignored
        } else if matches!(self.st, State::Disabled | State::ForcedOpen | State::Open) {
            RecordStatus::NotCounted
        } else {
            let failed = outcome == Outcome::Failure;
            let slow =
                duration_ms >= coordkit_core::time::duration_ms(self.config.slow_call_duration);
            if self.st == State::HalfOpen {
                if failed {
                    self.go_open(now, "probe_failed");
                } else {
                    self.hok = self.hok.saturating_add(1).min(MAXI);
                    if self.hok >= u64::from(self.config.half_open_successes) {
                        self.go_closed("probes_succeeded");
                    }
                }
            } else {
                self.window.add(now, failed, slow);
                self.cf = if failed {
                    self.cf.saturating_add(1).min(MAXI)
                } else {
                    0
                };
                if self.st == State::Closed {
                    self.trip_check(now);
                }
            }
            RecordStatus::Recorded
        };
        RecordAnswer {
            status,
            state: self.st,
            epoch: self.ep,
        }
    }

    /// The state and figures at `now` (applying lazy transitions).
    pub fn snapshot(&mut self, now: u64) -> Snapshot {
        self.settle(now);
        let (calls, failures, slow_calls) = self.window.figures(now);
        Snapshot {
            state: self.st,
            epoch: self.ep,
            calls,
            failures,
            slow_calls,
            consecutive_failures: self.cf,
            opened_at_ms: self.oa,
            open_until_ms: self.ou,
            half_open_successes: self.hok,
            probes_in_flight: self.probes.len() as u64,
            reopenings: self.rc,
        }
    }

    /// An operator state.
    pub fn force(&mut self, to: Forced) -> (State, u64) {
        self.enter(match to {
            Forced::Open => State::ForcedOpen,
            Forced::Disabled => State::Disabled,
            Forced::MetricsOnly => State::MetricsOnly,
        });
        self.emit("forced", None);
        (self.st, self.ep)
    }

    /// Back to closed, from any state.
    pub fn clear(&mut self, now: u64) -> (State, u64) {
        self.settle(now);
        self.enter_closed();
        self.emit("cleared", None);
        (self.st, self.ep)
    }
}
