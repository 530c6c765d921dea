//! # coordkit-metrics
//!
//! Time-series metrics for agents, over plain Redis 7: training loss, latencies, token counts,
//! queue depths recorded by many agents at once, and read back as recent values, moving
//! averages, percentiles and long-window rollups, with memory that stays bounded by itself.
//!
//! - A series is a metric name plus labels ([`SeriesId`]), all of whose keys share one hash tag,
//!   so it works on Redis Cluster.
//! - Every write is **one** Lua script call (one round trip): it stamps the sample with the
//!   server's clock (unless the caller gives a timestamp), appends it, trims the series by count
//!   and by age ([`SeriesConfig`]), adds a counter's increment to its total, updates the
//!   rollups, and emits a threshold alert (at most once per interval): no janitor, no
//!   read-modify-write race between agents. [`Metrics::alerts`] and [`Series::alerts`]
//!   subscribe to them, typed ([`MetricAlert`]).
//! - Samples are kept in a list of (timestamp, value) pairs in recording order, so two samples
//!   with the same value or the same timestamp are both kept.
//! - Kinds: [`Gauge`] samples; [`Counter`] increments with a total and a rate over a window;
//!   [`Histogram`] observations in fixed, documented buckets with p50/p95/p99 estimates that
//!   merge across series.
//! - Queries ([`SampleWindow`]): the latest N, a time range, the recent past; [`Aggregate`]s (count,
//!   sum, min, max, avg, nearest-rank percentiles) computed by the server in one call; moving
//!   averages; [`RollupBucket`]s kept longer than raw samples.
//! - Bad input is refused with a clear error: NaN or infinite values ([`MetricsError::InvalidSample`]),
//!   invalid names or labels, a key of another type ([`coordkit_core::Error::WrongType`]),
//!   finite values whose counter total, rollup sum or histogram sum would pass the largest
//!   finite number ([`coordkit_core::Error::Script`] with code `BADVALUE`, nothing written).
//! - Stored data is checked before it is used: a total, alert time, rollup bucket, histogram
//!   field or sample that does not decode is [`coordkit_core::Error::Corrupt`] naming the key,
//!   and a write that fails so writes nothing (each write script reads and checks what it
//!   needs before its first write).
//!
//! # Layout and costs
//!
//! A gauge `loss{run=r42}` in namespace `app` lives in `app:{metric:loss,run=r42}:gauge`, a list
//! `[ts1, v1, ts2, v2, …]` (about 30 bytes per sample: 1,000 samples take ~30 KB), plus
//! `…:gauge-meta` (counter total, last alert) and `…:gauge-rollups` (one hash field per bucket)
//! when used; counters use `…:counter*`, histograms one hash `…:histogram` of at most 566
//! fields. Retention by count is amortised: the list may hold `max_samples / 16` extra samples
//! between two trims, which queries never see. Recording one sample into a plain gauge (no age
//! limit, rollups or alerts) runs `record_one.lua`: `TIME` (on the server clock) and `RPUSH`,
//! and `LTRIM` once every `max_samples / 16 + 1` writes, in one script call that makes no Lua
//! string; batches and configured series run `record.lua`;
//! an aggregate reads the window once (`LRANGE`) and sorts it only when percentiles are asked.
//! The scripts are in `lua/*.lua`, each documenting its keys, arguments and reply.
//!
//! ```
//! use std::time::Duration;
//! use coordkit_core::{Keyspace, Pool, PoolConfig};
//! use coordkit_metrics::{Metrics, SeriesConfig, SampleWindow};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = coordkit_testkit::RedisServer::start()?;
//! # let url = server.url(); // e.g. "redis://127.0.0.1:6379"
//! let pool = Pool::connect(PoolConfig::from_url(&url)?).await?;
//! let metrics = Metrics::builder(&pool, &Keyspace::new("myapp")?).build()?;
//!
//! // A gauge keeping its last 1,000 samples of the last hour, with per-minute rollups for a day.
//! let config = SeriesConfig::builder()
//!     .max_samples(1_000)
//!     .max_age(Duration::from_secs(3_600))
//!     .rollup(Duration::from_secs(60), 1_440)
//!     .build()?;
//! let loss = metrics.gauge_with("training_loss", &[("run", "r42")], config)?;
//! for value in [0.9, 0.75, 0.75, 0.5] {
//!     loss.record(value).await?; // one round trip each, stamped by the server's clock
//! }
//! loss.record_batch(&[0.5, 0.25]).await?; // or many at once
//!
//! let last = loss.latest(3).await?;
//! assert_eq!(last.iter().map(|s| s.value).collect::<Vec<_>>(), [0.5, 0.5, 0.25]);
//! let stats = loss.aggregate(SampleWindow::Last(6), &[0.5, 0.95]).await?;
//! assert_eq!(stats.count, 6);
//! assert_eq!(stats.quantile(0.5), Some(0.5));
//! assert_eq!(loss.moving_average(2).await?, Some(0.375));
//!
//! let tokens = metrics.counter("tokens", &[("agent", "planner")])?;
//! tokens.increment(120.0).await?;
//! assert_eq!(tokens.increment(30.0).await?.total, Some(150.0));
//! assert!(tokens.rate(Duration::from_secs(60)).await? > 0.0); // per second
//!
//! let latency = metrics.histogram("latency_ms", &[("route", "/chat")])?;
//! latency.observe_batch(&[12.0, 15.0, 18.0, 250.0]).await?;
//! let p99 = latency.snapshot().await?.p99().unwrap_or_default();
//! assert!((p99 - 250.0).abs() / 250.0 < 0.05);
//!
//! assert!(loss.record(f64::NAN).await.is_err());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod aggregate;
mod alerts;
mod config;
mod error;
pub mod histogram;
mod metrics;
#[cfg(feature = "model")]
pub mod model;
mod sample;
mod scripts;
mod series;
mod series_id;

pub use aggregate::Aggregate;
pub use alerts::{AlertDirection, MetricAlert, MetricAlerts, ThresholdAlert};
pub use config::{
    AlertConfig, MAX_ROLLUP_BUCKETS, MAX_SAMPLES_LIMIT, RollupConfig, SeriesConfig,
    SeriesConfigBuilder,
};
pub use error::{MAX_TIMESTAMP_MS, MetricsError, Result};
pub use histogram::{Histogram, HistogramSnapshot};
pub use metrics::{EVENT_SOURCE, INSTANCE_KIND, Metrics, MetricsBuilder};
pub use sample::{RollupBucket, Sample, SampleWindow};
pub use series::{Counter, CounterKind, Gauge, GaugeKind, Kind, Series, Written, rate_per_second};
pub use series_id::SeriesId;

pub use coordkit_core;
