//! [`Metrics::alerts`] and [`Series::alerts`]: threshold alerts, typed.

use coordkit_core::EventStream;
use serde::Deserialize;

use crate::error::Result;
use crate::metrics::{EVENT_SOURCE, Metrics};
use crate::series::{Kind, Series};

/// The kind of a threshold alert event (`ck_emit` in `lua/record.lua`), the last part of its
/// channel.
pub(crate) const THRESHOLD: &str = "threshold";

/// Which bound a value crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertDirection {
    /// It was above [`alert_above`](crate::SeriesConfigBuilder::alert_above).
    Above,
    /// It was below [`alert_below`](crate::SeriesConfigBuilder::alert_below).
    Below,
}

/// The payload of a `threshold` event (its `entity` is the series id, its `source` `metrics`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ThresholdAlert {
    /// The bound that was crossed.
    pub direction: AlertDirection,
    /// The bound's value.
    pub bound: f64,
    /// The value that crossed it (to 14 significant digits).
    pub value: f64,
    /// The sample's timestamp, in ms.
    #[serde(with = "coordkit_core::time::millis")]
    pub sample_ts_ms: u64,
}

/// One threshold alert of one series, from the write that crossed the bound (at most one per
/// the series' alert interval).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricAlert {
    /// The series, as [`SeriesId::encoded`](crate::SeriesId::encoded) (the event's `entity`).
    pub series: String,
    /// When the write ran, in ms since the Unix epoch on the server's clock (or the manual
    /// clock).
    pub ts_ms: u64,
    /// What crossed which bound.
    pub alert: ThresholdAlert,
}

/// A subscription to threshold alerts, from [`Metrics::alerts`] (every series of the
/// namespace) or [`Series::alerts`] (one series).
///
/// Every series of a namespace publishes on one channel; a series' subscription keeps those
/// whose entity is its id. An alert that does not decode (another version's) is counted in
/// the stream's stats and skipped. Pub/sub delivers to connected subscribers
/// only: alerts published while [`EventStream::reconnections`] is catching up are lost
/// (the series' samples are the truth).
pub type MetricAlerts = EventStream<MetricAlert>;

/// Subscribes to `channel`, keeping the alerts of `series` (of every series when `None`).
async fn subscribe(
    pool: &coordkit_core::Pool,
    channel: &str,
    series: Option<String>,
) -> Result<MetricAlerts> {
    let subscriber = pool.subscriber().channel(channel).subscribe().await?;
    Ok(EventStream::new(subscriber, move |received| {
        let event: coordkit_core::Event<ThresholdAlert> = received.event;
        let ours = series.as_ref().is_none_or(|s| *s == event.entity);
        (ours && event.source == EVENT_SOURCE && event.kind == THRESHOLD)
            .then_some(MetricAlert {
                series: event.entity,
                ts_ms: event.ts_ms,
                alert: event.payload,
            })
            .into()
    }))
}

impl Metrics {
    /// Subscribes to the threshold alerts of every series of this namespace, typed, on a
    /// connection of its own: every alert published after this returns is delivered (while
    /// connected).
    pub async fn alerts(&self) -> Result<MetricAlerts> {
        subscribe(self.pool(), self.alert_channel(), None).await
    }
}

impl<K: Kind> Series<K> {
    /// Subscribes to this series' threshold alerts, typed, on a connection of its own: every
    /// alert of this series published after this returns is delivered (while connected); those
    /// of other series are not. A gauge and a counter of the same name and labels share an id,
    /// so each sees the other's alerts.
    pub async fn alerts(&self) -> Result<MetricAlerts> {
        subscribe(
            self.pool(),
            self.alert_channel(),
            Some(self.id().encoded().to_owned()),
        )
        .await
    }
}
