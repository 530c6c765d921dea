//! Task options: attempts, backoff, jitter, delay, lease, idempotency, component.

use std::time::Duration;

use coordkit_core::time::duration_ms;
use coordkit_core::wire::Packed;
use coordkit_core::{Error as CoreError, validate_name};

use crate::code;

use crate::error::Result;

/// The longest delay, backoff or lease accepted: 2^35 ms (about a year), so the scripts' integer
/// arithmetic stays exact.
pub const MAX_DURATION_MS: u64 = 1 << 35;

/// The highest task priority ([`TaskOptions::priority`]): levels 0 (the default) to 9.
pub const MAX_PRIORITY: u8 = 9;

/// How long to wait before the next attempt, applied by the script when an attempt fails.
#[derive(Debug, Clone, PartialEq)]
pub enum Backoff {
    /// `base × factor^(attempt-1)`, capped at `max` (each step rounded down to whole ms).
    Exponential {
        /// The first delay.
        base: Duration,
        /// The growth per attempt (1 to 100).
        factor: f64,
        /// The cap.
        max: Duration,
    },
    /// The same delay every time.
    Fixed(Duration),
    /// An explicit schedule: the n-th failure waits the n-th entry; the last entry repeats.
    Schedule(Vec<Duration>),
}

impl Default for Backoff {
    /// Exponential from 1 s, doubling, capped at 5 minutes.
    fn default() -> Self {
        Backoff::Exponential {
            base: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(300),
        }
    }
}

/// Randomisation of the backoff delay `d`; the random draw is made in Rust and passed to the
/// script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// Exactly `d`.
    None,
    /// Uniform in `[0, d)`. The default: it spreads a thundering herd best.
    #[default]
    Full,
    /// Uniform in `[d/2, d)`.
    Equal,
    /// AWS's decorrelated jitter: uniform in `[base, 3 × previous delay)`, capped. Only with
    /// [`Backoff::Exponential`].
    Decorrelated,
}

/// How one task is run: attempts, backoff, delay, lease, idempotency, component, priority,
/// group.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskOptions {
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) jitter: Jitter,
    pub(crate) delay: Duration,
    pub(crate) lease: Duration,
    pub(crate) idempotency: Option<(String, Duration)>,
    pub(crate) component: Option<String>,
    pub(crate) priority: u8,
    pub(crate) group: Option<String>,
}

impl Default for TaskOptions {
    /// 5 attempts, [`Backoff::default`] with [`Jitter::Full`], no delay, a 30 s lease.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff: Backoff::default(),
            jitter: Jitter::Full,
            delay: Duration::ZERO,
            lease: Duration::from_secs(30),
            idempotency: None,
            component: None,
            priority: 0,
            group: None,
        }
    }
}

impl TaskOptions {
    /// How many times the task may fail before it is dead-lettered (1 to 10,000; default 5).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// The backoff policy.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The jitter applied to each backoff delay.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Wait this long before the first attempt.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// How long a claim holds the task before it counts as stalled and is handed out again
    /// (the worker runtime renews it while the handler runs).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Another enqueue with the same key within `ttl` is not enqueued: the caller is told the
    /// existing task's id.
    pub fn idempotency_key(mut self, key: impl Into<String>, ttl: Duration) -> Self {
        self.idempotency = Some((key.into(), ttl));
        self
    }

    /// The component the task calls (with the `circuit-breaker` feature the worker defers it
    /// while that component's breaker is open).
    pub fn component(mut self, component: impl Into<String>) -> Self {
        self.component = Some(component.into());
        self
    }

    /// Its priority, 0 (the default) to [`MAX_PRIORITY`]: claims take the ready tasks of the
    /// highest priority first, first in first out within a priority. A task that comes back to
    /// ready (a retry, a stall, a requeue) goes behind the tasks of its priority ready then.
    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = priority;
        self
    }

    /// Its group (a name: an API key, a downstream, a tenant): the limits set for the group
    /// with [`Queue::set_group_limits`](crate::Queue::set_group_limits) hold for its tasks
    /// across every worker. A group's ready tasks wait in the group's own lane, by priority,
    /// then first in first out; a group at its limit holds back only its own tasks.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Checks every field; the error names the one at fault.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: String| {
            Err(CoreError::invalid_config(field, reason).into())
        };
        if !(1..=10_000).contains(&self.max_attempts) {
            return bad(
                "max_attempts",
                format!("must be 1 to 10000, got {}", self.max_attempts),
            );
        }
        let ms = duration_ms;
        if ms(self.delay) > MAX_DURATION_MS {
            return bad("delay", format!("must be at most {MAX_DURATION_MS} ms"));
        }
        if ms(self.lease) == 0 || ms(self.lease) > MAX_DURATION_MS {
            return bad("lease", format!("must be 1 to {MAX_DURATION_MS} ms"));
        }
        match &self.backoff {
            Backoff::Exponential { base, factor, max } => {
                if !(1.0..=100.0).contains(factor) {
                    return bad("backoff", format!("factor must be 1 to 100, got {factor}"));
                }
                if ms(*max) > MAX_DURATION_MS || ms(*base) > ms(*max) {
                    return bad(
                        "backoff",
                        format!("needs base <= max <= {MAX_DURATION_MS} ms"),
                    );
                }
            }
            Backoff::Fixed(d) => {
                if ms(*d) > MAX_DURATION_MS {
                    return bad("backoff", format!("must be at most {MAX_DURATION_MS} ms"));
                }
            }
            Backoff::Schedule(list) => {
                if list.is_empty() || list.len() > 1000 {
                    return bad("backoff", "a schedule needs 1 to 1000 entries".into());
                }
                if list.iter().any(|d| ms(*d) > MAX_DURATION_MS) {
                    return bad(
                        "backoff",
                        format!("entries must be at most {MAX_DURATION_MS} ms"),
                    );
                }
            }
        }
        if self.jitter == Jitter::Decorrelated
            && !matches!(self.backoff, Backoff::Exponential { .. })
        {
            return bad(
                "jitter",
                "decorrelated jitter needs an exponential backoff".into(),
            );
        }
        if let Some((key, ttl)) = &self.idempotency {
            validate_name("idempotency key", key)?;
            if ms(*ttl) == 0 || ms(*ttl) > MAX_DURATION_MS {
                return bad(
                    "idempotency_key",
                    format!("ttl must be 1 to {MAX_DURATION_MS} ms"),
                );
            }
        }
        if let Some(component) = &self.component {
            validate_name("component", component)?;
        }
        if let Some(group) = &self.group {
            validate_name("group", group)?;
        }
        if self.priority > MAX_PRIORITY {
            return bad(
                "priority",
                format!("must be 0 to {MAX_PRIORITY}, got {}", self.priority),
            );
        }
        Ok(())
    }

    /// The policy as the script reads it (little-endian): kind (`code::POLICY_*`: exponential:
    /// base ms, factor as a double, cap ms; fixed: delay ms; schedule: u16 count, then each delay
    /// ms), then jitter (`code::JITTER_*`), then the kind's numbers.
    pub(crate) fn policy(&self) -> Vec<u8> {
        let jitter = match self.jitter {
            Jitter::None => code::JITTER_NONE,
            Jitter::Full => code::JITTER_FULL,
            Jitter::Equal => code::JITTER_EQUAL,
            Jitter::Decorrelated => code::JITTER_DECORRELATED,
        };
        match &self.backoff {
            Backoff::Exponential { base, factor, max } => Packed::new()
                .bytes(&[code::POLICY_EXPONENTIAL, jitter])
                .u64_le(duration_ms(*base))
                .bytes(&factor.to_le_bytes())
                .u64_le(duration_ms(*max)),
            Backoff::Fixed(d) => Packed::new()
                .bytes(&[code::POLICY_FIXED, jitter])
                .u64_le(duration_ms(*d)),
            Backoff::Schedule(list) => list.iter().fold(
                Packed::new()
                    .bytes(&[code::POLICY_SCHEDULE, jitter])
                    .bytes(&(list.len() as u16).to_le_bytes()),
                |p, d| p.u64_le(duration_ms(*d)),
            ),
        }
        .into_bytes()
    }
}

/// The delay before the next attempt after failure number `attempt` (1-based), `previous` the
/// delay chosen last time (0 at first) and `draw` the jitter draw in `0..65536`: exactly what the
/// script computes.
pub fn backoff_delay_ms(
    backoff: &Backoff,
    jitter: Jitter,
    attempt: u32,
    previous: u64,
    draw: u32,
) -> u64 {
    let ms = |d: &Duration| duration_ms(*d);
    let r = u64::from(draw.min(65_535));
    let (d, lo, cap) = match backoff {
        Backoff::Exponential { base, factor, max } => {
            let cap = ms(max);
            let mut d = ms(base).min(cap);
            let lo = d;
            for _ in 2..=attempt {
                if d >= cap {
                    break;
                }
                d = cap.min((d as f64 * factor).floor() as u64);
            }
            (d, lo, cap)
        }
        Backoff::Fixed(f) => (ms(f), 0, 0),
        Backoff::Schedule(list) => {
            let i = (attempt.max(1) as usize).min(list.len()) - 1;
            (ms(&list[i]), 0, 0)
        }
    };
    match jitter {
        Jitter::None => d,
        Jitter::Full => d * r / 65_536,
        Jitter::Equal => {
            let h = d / 2;
            h + (d - h) * r / 65_536
        }
        Jitter::Decorrelated => {
            let hi = lo.max(previous * 3);
            cap.min(lo + (hi - lo) * r / 65_536)
        }
    }
}
