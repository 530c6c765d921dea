//! [`CircuitBreaker::events`]: one breaker's transitions, typed.

use coordkit_core::time::millis;
use coordkit_core::{EventStream, Result};
use serde::{Deserialize, Deserializer};

use crate::breaker::CircuitBreaker;
use crate::state::State;

/// The `source` of the breaker's events (`ck_envelope` in `lua/breaker.lua`).
pub(crate) const SOURCE: &str = "circuit-breaker";

/// What a transition was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerEventKind {
    /// It opened (a trip rule, a failed probe, or too long in half-open).
    Opened,
    /// The open period ended: probes may go.
    HalfOpened,
    /// The probes succeeded.
    Closed,
    /// An operator put it in forced-open, disabled or metrics-only.
    Forced,
    /// An operator cleared it.
    Cleared,
}

impl BreakerEventKind {
    /// Every kind, in the order of the channel names.
    pub const ALL: [BreakerEventKind; 5] = [
        BreakerEventKind::Opened,
        BreakerEventKind::HalfOpened,
        BreakerEventKind::Closed,
        BreakerEventKind::Forced,
        BreakerEventKind::Cleared,
    ];

    /// The name the script publishes it under (the last part of its channel).
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerEventKind::Opened => "opened",
            BreakerEventKind::HalfOpened => "half_opened",
            BreakerEventKind::Closed => "closed",
            BreakerEventKind::Forced => "forced",
            BreakerEventKind::Cleared => "cleared",
        }
    }
}

/// One transition of one breaker, from the script that made it (exactly once per transition
/// while the subscriber is connected).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerEvent {
    /// What happened.
    pub kind: BreakerEventKind,
    /// The breaker's name.
    pub breaker: String,
    /// The state after it.
    pub state: State,
    /// The epoch after it.
    pub epoch: u64,
    /// When, in ms since the Unix epoch on the server's clock (or the manual clock).
    pub ts_ms: u64,
    /// Why: `opened` (`failure_rate`, `slow_call_rate`, `consecutive_failures`,
    /// `probe_failed`, `half_open_timeout`) and `closed` (`probes_succeeded`) only.
    pub reason: Option<String>,
    /// `opened`: when the open period ends (ms, same clock as `ts_ms`).
    pub open_until_ms: Option<u64>,
    /// `opened`: consecutive re-openings (drives an exponential open duration).
    pub reopenings: Option<u64>,
    /// `opened` by a trip rule: the window's figures that tripped it.
    pub figures: Option<TripFigures>,
}

/// The window's figures when a trip rule opened the breaker.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TripFigures {
    /// Calls in the window.
    pub calls: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Slow calls in the window.
    pub slow: u64,
    /// Failures in a row.
    pub consecutive_failures: u64,
    /// Failed share (absent below the minimum number of calls).
    pub failure_rate: Option<f64>,
    /// Slow share (absent below the minimum number of calls).
    pub slow_rate: Option<f64>,
}

/// The payload the script publishes (see `emit` in `lua/breaker.lua`).
#[derive(Debug, Deserialize)]
struct Payload {
    #[serde(deserialize_with = "state")]
    state: State,
    #[serde(with = "millis")]
    epoch: u64,
    reason: Option<String>,
    #[serde(default, with = "millis::option")]
    open_until: Option<u64>,
    #[serde(default, with = "millis::option")]
    reopenings: Option<u64>,
    #[serde(flatten)]
    figures: Option<TripFigures>,
}

fn state<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<State, D::Error> {
    let name = String::deserialize(deserializer)?;
    State::parse(&name).ok_or_else(|| serde::de::Error::custom(format!("no state {name:?}")))
}

/// A subscription to one breaker's transitions, from [`CircuitBreaker::events`].
///
/// Every breaker of a namespace publishes on the same channels (one per kind); this one keeps
/// those whose entity is its breaker's name. A message that does not decode is counted in
/// the stream's stats and skipped. Pub/sub delivers to connected subscribers only: after
/// [`EventStream::reconnections`] fires, re-read the state with [`CircuitBreaker::snapshot`].
pub type BreakerEvents = EventStream<BreakerEvent>;

/// The breaker `name`'s event, typed; `None` for another breaker's or another kind.
fn typed(name: &str, event: coordkit_core::Event<Payload>) -> Option<BreakerEvent> {
    if !event.is_from(SOURCE, name) {
        return None;
    }
    let kind = BreakerEventKind::ALL
        .into_iter()
        .find(|k| k.as_str() == event.kind)?;
    let p = event.payload;
    Some(BreakerEvent {
        kind,
        breaker: event.entity,
        state: p.state,
        epoch: p.epoch,
        ts_ms: event.ts_ms,
        reason: p.reason,
        open_until_ms: p.open_until,
        reopenings: p.reopenings,
        figures: p.figures,
    })
}

impl CircuitBreaker {
    /// Subscribes to this breaker's transitions, on a connection of its own: every event
    /// published after this returns is delivered (while connected), those of other breakers
    /// are not. Each kind has a channel of its own: on a cluster two kinds may arrive in
    /// either order (each channel's subscription can sit on another node); the `epoch`
    /// orders them.
    pub async fn events(&self) -> Result<BreakerEvents> {
        let mut builder = self.pool().subscriber();
        for kind in BreakerEventKind::ALL {
            builder = builder.channel(self.channel(kind.as_str()));
        }
        let name = self.name().to_owned();
        let subscriber = builder.subscribe::<Payload>().await?;
        Ok(EventStream::new(subscriber, move |received| {
            typed(&name, received.event).into()
        }))
    }
}
