//! [`BreakerConfig`]: the rules of a breaker, validated when built.

use std::time::Duration;

use coordkit_core::time::duration_ms;
use coordkit_core::{Clock, Error};

/// Which calls the failure and slow-call rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last `n` calls (1 to 10,000).
    Count(u32),
    /// The last `length`, in `buckets` equal buckets with running totals (length 1 s to 1 day,
    /// 1 to 120 buckets, each at least 1 ms).
    Time {
        /// The window's length.
        length: Duration,
        /// How many buckets it is cut into.
        buckets: u32,
    },
}

/// How long the breaker stays open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OpenDuration {
    /// Always the same time.
    Fixed(Duration),
    /// `base × factor^k` after the k-th consecutive re-opening, at most `max`.
    Exponential {
        /// The first open period.
        base: Duration,
        /// The growth per re-opening (≥ 1).
        factor: f64,
        /// The cap.
        max: Duration,
    },
}

/// What a breaker does when Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StorePolicy {
    /// Admit every call (the protected service matters more than the breaker).
    FailOpen,
    /// Reject every call.
    FailClosed,
    /// Apply the same rules in this process alone until Redis is back (the default).
    ///
    /// The local decisions start from the last shared state this handle (or a clone of it)
    /// saw in an answer from Redis, not from closed:
    /// - **open** stays open for what was left of the open period when Redis last answered
    ///   (the server's remaining milliseconds become a deadline on this process's monotonic
    ///   clock when the answer arrives), then goes half-open locally;
    /// - **half-open** admits up to K probes in this process, whose outcomes close or re-open
    ///   it locally;
    /// - **forced open**, **disabled** and **metrics-only** stay as the operator left them
    ///   (reject everything, admit everything, admit and count);
    /// - **closed** (or nothing seen yet) starts closed with an empty window.
    ///
    /// The first acquire that cannot reach Redis starts the outage (it waited for the
    /// failure); the acquires after it are decided locally at once, without asking Redis,
    /// while a background probe (`EXISTS` on the state key, 100 ms after the start, then
    /// backing off to every 2 s) waits for Redis to answer. Snapshots, forces, clears and the
    /// reports of permits Redis gave still go to Redis. [`BreakerStats`](crate::BreakerStats)
    /// shows it: `deciding_locally`, `store_calls`, `store_probes`, `local_decisions`.
    ///
    /// Outcomes of calls admitted locally count only locally and are never sent to Redis.
    /// Once Redis answers again (the probe, or any other operation of the handle) the shared
    /// state rules: the next acquire follows it, and the next outage starts again from what
    /// Redis last said.
    #[default]
    Local,
}

/// The rules of a circuit breaker, validated: a template a
/// [`BreakerRegistry`](crate::BreakerRegistry) makes breakers from, or that
/// [`CircuitBreakerBuilder::config`](crate::CircuitBreakerBuilder::config) starts from. Build
/// with [`BreakerConfig::builder`]; a single breaker is built with
/// [`CircuitBreaker::builder`](crate::CircuitBreaker::builder) and the same setters.
#[derive(Debug, Clone)]
pub struct BreakerConfig {
    pub(crate) window: Window,
    pub(crate) minimum_calls: u32,
    pub(crate) failure_rate: f64,
    pub(crate) slow_call_rate: f64,
    pub(crate) slow_call_duration: Duration,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) open: OpenDuration,
    pub(crate) half_open_permits: u32,
    pub(crate) half_open_successes: u32,
    pub(crate) permit_lease: Duration,
    pub(crate) half_open_max_wait: Option<Duration>,
    pub(crate) idle_expiry: Duration,
    pub(crate) store_policy: StorePolicy,
    pub(crate) clock: Clock,
}

/// Builds a [`BreakerConfig`]; every setter takes a plain value and [`build`](Self::build)
/// rejects out-of-range ones naming the field.
#[derive(Debug, Clone)]
pub struct BreakerConfigBuilder {
    config: BreakerConfig,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: Window::Count(100),
            minimum_calls: 10,
            failure_rate: 0.5,
            slow_call_rate: 1.0,
            slow_call_duration: Duration::from_secs(60),
            consecutive_failures: None,
            open: OpenDuration::Fixed(Duration::from_secs(30)),
            half_open_permits: 3,
            half_open_successes: 3,
            permit_lease: Duration::from_secs(30),
            half_open_max_wait: Some(Duration::from_secs(120)),
            idle_expiry: Duration::from_secs(24 * 3600),
            store_policy: StorePolicy::Local,
            clock: Clock::Server,
        }
    }
}

impl BreakerConfig {
    /// A builder starting from the defaults: the last 100 calls, at least 10 calls, trip at a
    /// 50% failure rate, slow-call rule off (rate 1.0 of calls over 60 s), open 30 s, 3 probes
    /// that all must succeed, 30 s probe leases, at most 2 min in half-open, idle closed
    /// breakers expire after a day, local fallback when Redis is unreachable.
    pub fn builder() -> BreakerConfigBuilder {
        BreakerConfigBuilder {
            config: BreakerConfig::default(),
        }
    }

    /// The window.
    pub fn window(&self) -> Window {
        self.window
    }

    /// What happens when Redis is unreachable.
    pub fn store_policy(&self) -> StorePolicy {
        self.store_policy
    }

    /// The slow-call threshold.
    pub fn slow_call_duration(&self) -> Duration {
        self.slow_call_duration
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub(crate) fn open_ms(&self) -> (u64, f64, u64) {
        match self.open {
            OpenDuration::Fixed(d) => (duration_ms(d), 1.0, duration_ms(d)),
            OpenDuration::Exponential { base, factor, max } => {
                (duration_ms(base), factor, duration_ms(max))
            }
        }
    }

    /// `(size, bucket_ms)` as the script takes them: calls, or buckets and their length.
    pub(crate) fn window_args(&self) -> (u64, u64) {
        match self.window {
            Window::Count(n) => (u64::from(n), 0),
            Window::Time { length, buckets } => {
                (u64::from(buckets), duration_ms(length) / u64::from(buckets))
            }
        }
    }
}

/// The longest duration a rule takes (100 years): the script stores times as whole numbers
/// below 2^48 ms and writes `now + duration` as an integer, so none may go beyond.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The rule setters, shared by [`BreakerConfigBuilder`] and
/// [`CircuitBreakerBuilder`](crate::CircuitBreakerBuilder): one list, one set of docs, so the
/// two cannot drift apart. `$config` names the builder's [`BreakerConfig`] field.
macro_rules! rule_setters {
    ($config:ident) => {
        /// The window the rates are computed over: [`Window::Count`](crate::Window::Count) of 1 to 10,000 calls, or
        /// [`Window::Time`](crate::Window::Time) of 1 s to 1 day in 1 to 120 buckets of at least 1 ms. Default: the
        /// last 100 calls.
        pub fn window(mut self, window: $crate::Window) -> Self {
            self.$config.window = window;
            self
        }

        /// Calls needed in the window before the rates can trip it (at least 1). Default: 10.
        pub fn minimum_calls(mut self, n: u32) -> Self {
            self.$config.minimum_calls = n;
            self
        }

        /// Trip when this share of the window's calls failed (0 < rate ≤ 1). Default: 0.5.
        pub fn failure_rate(mut self, rate: f64) -> Self {
            self.$config.failure_rate = rate;
            self
        }

        /// Trip when this share of the window's calls was slow (0 < rate ≤ 1). Default: 1.0
        /// (with the default slow-call duration, the rule is in effect off).
        pub fn slow_call_rate(mut self, rate: f64) -> Self {
            self.$config.slow_call_rate = rate;
            self
        }

        /// A call at least this long is slow (1 ms to 100 years). Default: 60 s.
        pub fn slow_call_duration(mut self, d: std::time::Duration) -> Self {
            self.$config.slow_call_duration = d;
            self
        }

        /// Also trip after this many failures in a row, whatever the window says (at least 1;
        /// `None` turns the rule off). Default: `None`.
        pub fn consecutive_failures(mut self, n: Option<u32>) -> Self {
            self.$config.consecutive_failures = n;
            self
        }

        /// How long it stays open: [`OpenDuration::Fixed`](crate::OpenDuration::Fixed) or
        /// [`OpenDuration::Exponential`](crate::OpenDuration::Exponential) (each duration 1 ms
        /// to 100 years, factor finite and at least 1, max at least base). Default: fixed 30 s.
        pub fn open_duration(mut self, open: $crate::OpenDuration) -> Self {
            self.$config.open = open;
            self
        }

        /// How many probe calls may run at once in half-open, across all processes (K at
        /// least 1). Default: 3.
        pub fn half_open_permits(mut self, k: u32) -> Self {
            self.$config.half_open_permits = k;
            self
        }

        /// How many probe successes close it (at least 1). Default: 3.
        pub fn half_open_successes(mut self, n: u32) -> Self {
            self.$config.half_open_successes = n;
            self
        }

        /// How long a probe permit stays reserved if its holder never reports (1 ms to 100
        /// years): a process that dies holding one does not wedge the breaker. Default: 30 s.
        pub fn permit_lease(mut self, d: std::time::Duration) -> Self {
            self.$config.permit_lease = d;
            self
        }

        /// The longest stay in half-open before it opens again (1 ms to 100 years; `None`: no
        /// limit). Default: 2 min.
        pub fn half_open_max_wait(mut self, d: Option<std::time::Duration>) -> Self {
            self.$config.half_open_max_wait = d;
            self
        }

        /// A closed breaker with no recorded call for this long is forgotten (1 s to 100
        /// years). Default: 1 day.
        pub fn idle_expiry(mut self, d: std::time::Duration) -> Self {
            self.$config.idle_expiry = d;
            self
        }

        /// What to do when Redis is unreachable. Default: [`StorePolicy::Local`](crate::StorePolicy::Local).
        pub fn store_policy(mut self, policy: $crate::StorePolicy) -> Self {
            self.$config.store_policy = policy;
            self
        }

        /// The clock: the server's, or a manual one (tests). Default: the server's.
        pub fn clock(mut self, clock: coordkit_core::Clock) -> Self {
            self.$config.clock = clock;
            self
        }
    };
}
pub(crate) use rule_setters;

impl BreakerConfigBuilder {
    rule_setters!(config);

    /// Validates every field, failing with [`Error::InvalidConfig`] naming the setter.
    pub fn build(self) -> Result<BreakerConfig, Error> {
        self.config.validate()
    }
}

impl BreakerConfig {
    /// Checks every rule against the ranges the setters document.
    pub(crate) fn validate(self) -> Result<Self, Error> {
        let c = self;
        let bad = |field: &'static str, reason: String| Err(Error::invalid_config(field, reason));
        match c.window {
            Window::Count(n) if !(1..=10_000).contains(&n) => {
                return bad(
                    "window",
                    format!("a count window holds 1 to 10000 calls, got {n}"),
                );
            }
            Window::Time { length, buckets } => {
                if length < Duration::from_secs(1) || length > Duration::from_secs(86_400) {
                    return bad(
                        "window",
                        format!("a time window lasts 1s to 1 day, got {length:?}"),
                    );
                }
                if !(1..=120).contains(&buckets)
                    || duration_ms(length) / u64::from(buckets.max(1)) == 0
                {
                    return bad(
                        "window",
                        format!(
                            "a time window has 1 to 120 buckets of at least 1ms, got {buckets}"
                        ),
                    );
                }
            }
            Window::Count(_) => {}
        }
        if c.minimum_calls == 0 {
            return bad("minimum_calls", "must be at least 1, got 0".into());
        }
        for (field, rate) in [
            ("failure_rate", c.failure_rate),
            ("slow_call_rate", c.slow_call_rate),
        ] {
            if !(rate > 0.0 && rate <= 1.0) {
                return bad(field, format!("must be in (0, 1], got {rate}"));
            }
        }
        if c.slow_call_duration < Duration::from_millis(1) {
            return bad(
                "slow_call_duration",
                format!("must be at least 1ms, got {:?}", c.slow_call_duration),
            );
        }
        if c.consecutive_failures == Some(0) {
            return bad(
                "consecutive_failures",
                "must be at least 1 (or None), got 0".into(),
            );
        }
        match c.open {
            OpenDuration::Fixed(d) if d < Duration::from_millis(1) => {
                return bad("open_duration", format!("must be at least 1ms, got {d:?}"));
            }
            OpenDuration::Exponential { base, factor, max } => {
                if base < Duration::from_millis(1)
                    || max < base
                    || !(factor >= 1.0 && factor.is_finite())
                {
                    return bad(
                        "open_duration",
                        format!(
                            "needs base ≥ 1ms, max ≥ base and a finite factor ≥ 1, got {base:?}, {factor}, {max:?}"
                        ),
                    );
                }
            }
            OpenDuration::Fixed(_) => {}
        }
        if c.half_open_permits == 0 {
            return bad("half_open_permits", "K must be at least 1, got 0".into());
        }
        if c.half_open_successes == 0 {
            return bad("half_open_successes", "must be at least 1, got 0".into());
        }
        if c.permit_lease < Duration::from_millis(1) {
            return bad(
                "permit_lease",
                format!("must be at least 1ms, got {:?}", c.permit_lease),
            );
        }
        if let Some(d) = c.half_open_max_wait
            && d < Duration::from_millis(1)
        {
            return bad(
                "half_open_max_wait",
                format!("must be at least 1ms, got {d:?}"),
            );
        }
        if c.idle_expiry < Duration::from_secs(1) {
            return bad(
                "idle_expiry",
                format!("must be at least 1s, got {:?}", c.idle_expiry),
            );
        }
        let (open_base, open_max) = match c.open {
            OpenDuration::Fixed(d) => (d, d),
            OpenDuration::Exponential { base, max, .. } => (base, max),
        };
        for (field, d) in [
            ("slow_call_duration", c.slow_call_duration),
            ("open_duration", open_base),
            ("open_duration", open_max),
            ("permit_lease", c.permit_lease),
            (
                "half_open_max_wait",
                c.half_open_max_wait.unwrap_or_default(),
            ),
            ("idle_expiry", c.idle_expiry),
        ] {
            if d > MAX_DURATION {
                return bad(field, format!("must be at most 100 years, got {d:?}"));
            }
        }
        Ok(c)
    }
}
