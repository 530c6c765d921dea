//! `metrics-record` (one sample, one round trip), `metrics-record-batch` (100 samples per
//! call; reports samples/s) and `metrics-aggregate` (count, sum, min, max and p50/p95/p99 of a
//! window of 1,000 samples), each on one gauge series capped at 1,000 samples.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use coordkit_core::{Keyspace, Pool};
use coordkit_metrics::{Gauge, Metrics, SampleWindow, SeriesConfig};

use super::{BoxFuture, Result, Workload, memory_usage};

/// Samples per call of `metrics-record-batch`.
const BATCH: usize = 100;
/// The series' cap, and the window `metrics-aggregate` reads.
const CAP: u32 = 1_000;

async fn gauge(pool: &Pool, keyspace: &Keyspace, name: &str) -> Result<Gauge> {
    let metrics = Metrics::builder(pool, keyspace).build()?;
    let config = SeriesConfig::builder().max_samples(CAP).build()?;
    let gauge = metrics.gauge_with(name, &[("bench", "metrics")], config)?;
    gauge.clear().await?;
    Ok(gauge)
}

/// The series' size, for every scenario's report.
async fn series_report(
    pool: &Pool,
    gauge: &Gauge,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut extra = serde_json::Map::new();
    let bytes = memory_usage(pool, [gauge.samples_key()]).await?;
    let retained = gauge.latest(usize::MAX).await?.len();
    extra.insert("series_memory_bytes".into(), bytes.into());
    extra.insert("series_samples".into(), retained.into());
    Ok(extra)
}

struct Record {
    gauge: Gauge,
}

impl Workload for Record {
    fn op<'a>(&'a self, _pool: &'a Pool, i: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.gauge.record((i % 997) as f64 * 0.25).await?;
            Ok(())
        })
    }

    fn report<'a>(
        &'a self,
        pool: &'a Pool,
    ) -> BoxFuture<'a, Result<serde_json::Map<String, serde_json::Value>>> {
        Box::pin(series_report(pool, &self.gauge))
    }
}

/// Times the measured run itself (it restarts at op 0) to report samples per second.
struct RecordBatch {
    gauge: Gauge,
    values: Vec<f64>,
    started: Mutex<Option<Instant>>,
    finished: Mutex<Option<Instant>>,
    samples: AtomicU64,
}

impl Workload for RecordBatch {
    fn op<'a>(&'a self, _pool: &'a Pool, i: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if i == 0 {
                if let Ok(mut started) = self.started.lock() {
                    *started = Some(Instant::now());
                }
                self.samples.store(0, Ordering::SeqCst);
            }
            self.gauge.record_batch(&self.values).await?;
            self.samples.fetch_add(BATCH as u64, Ordering::SeqCst);
            if let Ok(mut finished) = self.finished.lock() {
                *finished = Some(Instant::now());
            }
            Ok(())
        })
    }

    fn report<'a>(
        &'a self,
        pool: &'a Pool,
    ) -> BoxFuture<'a, Result<serde_json::Map<String, serde_json::Value>>> {
        Box::pin(async move {
            let mut extra = series_report(pool, &self.gauge).await?;
            let started = self.started.lock().ok().and_then(|s| *s);
            let finished = self.finished.lock().ok().and_then(|f| *f);
            if let (Some(started), Some(finished)) = (started, finished) {
                let secs = finished.duration_since(started).as_secs_f64();
                let samples = self.samples.load(Ordering::SeqCst) as f64;
                if secs > 0.0 {
                    extra.insert(
                        "samples_per_sec".into(),
                        ((samples / secs * 10.0).round() / 10.0).into(),
                    );
                }
            }
            extra.insert("batch_size".into(), BATCH.into());
            Ok(extra)
        })
    }
}

struct Aggregate {
    gauge: Gauge,
}

impl Workload for Aggregate {
    fn op<'a>(&'a self, _pool: &'a Pool, _i: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let a = self
                .gauge
                .aggregate(SampleWindow::Last(CAP as usize), &[0.5, 0.95, 0.99])
                .await?;
            if a.count != u64::from(CAP) {
                return Err(format!("the window held {} samples, not {CAP}", a.count).into());
            }
            Ok(())
        })
    }

    fn report<'a>(
        &'a self,
        pool: &'a Pool,
    ) -> BoxFuture<'a, Result<serde_json::Map<String, serde_json::Value>>> {
        Box::pin(async move {
            let mut extra = series_report(pool, &self.gauge).await?;
            extra.insert("window_samples".into(), CAP.into());
            Ok(extra)
        })
    }
}

pub(crate) async fn prepare_record(pool: &Pool, keyspace: &Keyspace) -> Result<Arc<dyn Workload>> {
    Ok(Arc::new(Record {
        gauge: gauge(pool, keyspace, "record").await?,
    }))
}

pub(crate) async fn prepare_record_batch(
    pool: &Pool,
    keyspace: &Keyspace,
) -> Result<Arc<dyn Workload>> {
    Ok(Arc::new(RecordBatch {
        gauge: gauge(pool, keyspace, "record-batch").await?,
        values: (0..BATCH).map(|i| i as f64 * 1.5).collect(),
        started: Mutex::new(None),
        finished: Mutex::new(None),
        samples: AtomicU64::new(0),
    }))
}

pub(crate) async fn prepare_aggregate(
    pool: &Pool,
    keyspace: &Keyspace,
) -> Result<Arc<dyn Workload>> {
    let gauge = gauge(pool, keyspace, "aggregate").await?;
    let values: Vec<f64> = (0..CAP).map(|i| f64::from(i % 113) * 0.75).collect();
    gauge.record_batch(&values).await?;
    Ok(Arc::new(Aggregate { gauge }))
}
