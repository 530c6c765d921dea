//! [`Metrics`]: the entry point that builds series handles over one pool and keyspace.

use coordkit_core::{Clock, Keyspace, Pool};
use serde::{Deserialize, Deserializer};

use crate::config::SeriesConfig;
use crate::error::Result;
use crate::histogram::Histogram;
use crate::series::{Counter, Gauge, Kind, Series, SeriesParts};
use crate::series_id::SeriesId;

/// The instance kind of every metric key: `<namespace>:{metric:<name,labels>}:<suffix>`.
pub const INSTANCE_KIND: &str = "metric";

/// Builds gauge, counter and histogram handles over one shared [`Pool`] and [`Keyspace`].
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    pool: Pool,
    keyspace: Keyspace,
    clock: Clock,
    channel: String,
}

impl Metrics {
    /// Metrics under `keyspace`, on the server's clock. Threshold alerts are published on
    /// `<namespace>:events:metrics:threshold`.
    pub fn new(pool: &Pool, keyspace: &Keyspace) -> Result<Self> {
        Ok(Self {
            pool: pool.clone(),
            keyspace: keyspace.clone(),
            clock: Clock::Server,
            channel: keyspace.channel("metrics", "threshold")?,
        })
    }

    /// Uses `clock` instead of the server's (a [`ManualClock`](coordkit_core::ManualClock) in
    /// tests). Handles built afterwards use it.
    pub fn with_clock(mut self, clock: impl Into<Clock>) -> Self {
        self.clock = clock.into();
        self
    }

    /// The channel threshold alerts are published on; subscribe with
    /// `pool.subscriber().channel(metrics.alert_channel()).subscribe::<ThresholdAlert>()`.
    pub fn alert_channel(&self) -> &str {
        &self.channel
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A gauge with the default configuration (the last 1,000 samples).
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Result<Gauge> {
        self.series(name, labels, SeriesConfig::default())
    }

    /// A gauge with its own retention, rollups and alerts.
    pub fn gauge_with(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        config: SeriesConfig,
    ) -> Result<Gauge> {
        self.series(name, labels, config)
    }

    /// A counter with the default configuration (the last 1,000 increments).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Result<Counter> {
        self.series(name, labels, SeriesConfig::default())
    }

    /// A counter with its own retention, rollups and alerts (alerts look at increments).
    pub fn counter_with(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        config: SeriesConfig,
    ) -> Result<Counter> {
        self.series(name, labels, config)
    }

    /// A histogram with the fixed bucket layout (see [`crate::histogram`]).
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Result<Histogram> {
        let id = SeriesId::new(name, labels)?;
        let keys = self.keyspace.instance(INSTANCE_KIND, id.encoded())?;
        Ok(Histogram::new(self.pool.clone(), id, &keys))
    }

    fn series<K: Kind>(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        config: SeriesConfig,
    ) -> Result<Series<K>> {
        let id = SeriesId::new(name, labels)?;
        let keys = self.keyspace.instance(INSTANCE_KIND, id.encoded())?;
        Ok(Series::new(SeriesParts {
            pool: self.pool.clone(),
            clock: self.clock.clone(),
            id,
            config,
            channel: self.channel.clone(),
            keys,
        }))
    }
}

/// The payload of a `threshold` event (its `entity` is the series id, its `source` `metrics`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ThresholdAlert {
    /// `"above"` or `"below"`.
    pub direction: String,
    /// The bound that was crossed.
    pub bound: f64,
    /// The value that crossed it (to 14 significant digits).
    pub value: f64,
    /// The sample's timestamp, in ms.
    #[serde(deserialize_with = "millis")]
    pub sample_ts_ms: u64,
}

/// Accepts integers and the floats Lua's cjson may write for them.
fn millis<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<u64, D::Error> {
    let value = f64::deserialize(deserializer)?;
    if value.is_finite() && value >= 0.0 {
        Ok(value.round() as u64)
    } else {
        Err(serde::de::Error::custom(format!(
            "{value} is not a timestamp"
        )))
    }
}
