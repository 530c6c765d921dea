//! [`Metrics`]: the entry point that builds series handles over one pool and keyspace.

use coordkit_core::{Clock, IndexPage, InstanceIndex, Keyspace, Listing, Pool, Registration};

use crate::alerts::THRESHOLD;
use crate::config::SeriesConfig;
use crate::error::Result;
use crate::histogram::Histogram;
use crate::series::{Counter, Gauge, Kind, Series, SeriesParts};
use crate::series_id::SeriesId;

/// The instance kind of every metric key: `<namespace>:{metric:<name,labels>}:<suffix>`.
pub const INSTANCE_KIND: &str = "metric";

/// The `source` of this crate's events, and the kind part of their channels; the same name is
/// written in `lua/record.lua`.
pub const EVENT_SOURCE: &str = "metrics";

/// Builds gauge, counter and histogram handles over one shared [`Pool`] and [`Keyspace`].
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    pool: Pool,
    keyspace: Keyspace,
    clock: Clock,
    channel: String,
}

/// Builds [`Metrics`]: see [`Metrics::builder`].
#[derive(Debug, Clone)]
pub struct MetricsBuilder {
    pool: Pool,
    keyspace: Keyspace,
    clock: Clock,
}

impl MetricsBuilder {
    /// The clock the write scripts stamp samples with (default: the server's `TIME`; a
    /// [`ManualClock`](coordkit_core::ManualClock) in tests).
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.clock = clock.into();
        self
    }

    /// Builds the handle: fails when the keyspace cannot name the alert channel.
    pub fn build(self) -> Result<Metrics> {
        let channel = self.keyspace.channel(EVENT_SOURCE, THRESHOLD)?;
        Ok(Metrics {
            pool: self.pool,
            keyspace: self.keyspace,
            clock: self.clock,
            channel,
        })
    }
}

impl Metrics {
    /// A builder for metrics under `keyspace` over `pool`. Threshold alerts are published on
    /// `<namespace>:events:metrics:threshold`, with source `metrics`.
    pub fn builder(pool: &Pool, keyspace: &Keyspace) -> MetricsBuilder {
        MetricsBuilder {
            pool: pool.clone(),
            keyspace: keyspace.clone(),
            clock: Clock::Server,
        }
    }

    /// The channel threshold alerts are published on; [`alerts`](Self::alerts) subscribes to
    /// it, typed.
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
        let registration = self.registration(&id)?;
        Ok(Histogram::new(self.pool.clone(), id, &keys, registration))
    }

    /// The index of the series of this keyspace (gauges, counters, histograms): every series
    /// written to is listed there by its encoded id ([`SeriesId::encoded`]), recorded by its
    /// handle before its first write (see [`coordkit_core::index`]); a series' `clear`
    /// forgets it. Series keep their keys until cleared: no deadline.
    pub fn index(&self) -> Result<InstanceIndex> {
        Ok(InstanceIndex::new(&self.keyspace, INSTANCE_KIND)?)
    }

    /// The encoded ids of every series of the keyspace, sorted, in one call (no `SCAN`), and
    /// the index's entries that are not series names, if any.
    pub async fn list(&self) -> Result<Listing> {
        Ok(self.index()?.list(&self.pool).await?)
    }

    /// One page of [`Metrics::list`]: up to `count` (1..=1000) ids after `after` (`None`: from
    /// the first, then each page's `next`), in one call.
    pub async fn list_page(&self, after: Option<&str>, count: u32) -> Result<IndexPage> {
        Ok(self.index()?.page(&self.pool, after, count).await?)
    }

    fn registration(&self, id: &SeriesId) -> Result<Registration> {
        Ok(Registration::new(self.index()?, id.encoded()))
    }

    fn series<K: Kind>(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        config: SeriesConfig,
    ) -> Result<Series<K>> {
        let id = SeriesId::new(name, labels)?;
        let keys = self.keyspace.instance(INSTANCE_KIND, id.encoded())?;
        let registration = self.registration(&id)?;
        Ok(Series::new(SeriesParts {
            registration,
            pool: self.pool.clone(),
            clock: self.clock.clone(),
            id,
            config,
            channel: self.channel.clone(),
            keys,
        }))
    }
}
