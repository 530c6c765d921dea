//! Finite inputs whose sum is not (issue #15). Regressions: a counter's total, a rollup
//! bucket's sum and a histogram's sum used to be stored as "inf" by a write that worked, and
//! every later write failed with CORRUPT. Such a write is now refused (BADVALUE, naming the
//! input) with nothing written, and the series goes on.

use std::time::Duration;

use coordkit_core::{Key, ManualClock, Pool, redis};
use coordkit_metrics::{Metrics, MetricsError, SeriesConfig};
use coordkit_testkit::redis_test;

const T0: u64 = 1_700_000_040_000;

async fn dump(pool: &Pool, key: &Key) -> Option<Vec<u8>> {
    pool.query(redis::cmd("DUMP").arg(key)).await.unwrap()
}

/// A BADVALUE naming `input`.
#[track_caller]
fn refused<T: std::fmt::Debug>(r: Result<T, MetricsError>, input: &str) {
    match r {
        Err(MetricsError::Core(coordkit_core::Error::Script { code, detail, .. }))
            if code == "BADVALUE" && detail.contains(input) && detail.contains("largest") => {}
        other => panic!("want BADVALUE about {input}, got {other:?}"),
    }
}

redis_test! {
    async fn a_counter_total_past_the_largest_number_is_refused(redis) {
        let pool = redis.pool().await;
        let m = Metrics::builder(&pool, &redis.keyspace()).clock(ManualClock::new(T0)).build().unwrap();
        let rollups = SeriesConfig::builder().rollup(Duration::from_secs(60), 3).build().unwrap();

        // A counter's total.
        let c = m.counter_with("tokens", &[], rollups.clone()).unwrap();
        c.increment(f64::MAX).await.unwrap();
        let before = dump(&pool, c.samples_key()).await;
        refused(c.increment_batch(&[1.0, f64::MAX]).await, "increment 1.79");
        assert_eq!(dump(&pool, c.samples_key()).await, before, "nothing written");
        assert_eq!(c.total().await.unwrap(), f64::MAX);
        assert_eq!(c.rollups(0, u64::MAX).await.unwrap()[0].count, 1);
        c.increment(0.0).await.unwrap();
        assert_eq!(c.total().await.unwrap(), f64::MAX);
    }
}

redis_test! {
    async fn a_rollup_sum_past_the_largest_number_is_refused(redis) {
        let pool = redis.pool().await;
        let m = Metrics::builder(&pool, &redis.keyspace()).clock(ManualClock::new(T0)).build().unwrap();
        let rollups = SeriesConfig::builder().rollup(Duration::from_secs(60), 3).build().unwrap();

        // A gauge's rollup bucket, either way.
        let g = m.gauge_with("level", &[], rollups).unwrap();
        g.record(f64::MAX).await.unwrap();
        let before = dump(&pool, g.samples_key()).await;
        refused(g.record(f64::MAX).await, "value 1.79");
        assert_eq!(dump(&pool, g.samples_key()).await, before, "nothing written");
        g.record(-f64::MAX).await.unwrap();
        refused(g.record_batch(&[-f64::MAX, -f64::MAX]).await, "value -1.79");
        let bucket = &g.rollups(0, u64::MAX).await.unwrap()[0];
        assert_eq!((bucket.count, bucket.sum), (2, 0.0));
    }
}

redis_test! {
    async fn a_histogram_sum_past_the_largest_number_is_refused(redis) {
        let pool = redis.pool().await;
        let m = Metrics::builder(&pool, &redis.keyspace()).clock(ManualClock::new(T0)).build().unwrap();

        // A histogram's sum.
        let h = m.histogram("size", &[]).unwrap();
        h.observe(f64::MAX).await.unwrap();
        let before = dump(&pool, h.key()).await;
        refused(h.observe_batch(&[2.0, f64::MAX]).await, "observation 1.79");
        assert_eq!(dump(&pool, h.key()).await, before, "nothing written");
        assert_eq!(h.observe(1.0).await.unwrap(), 2);
        assert_eq!(h.snapshot().await.unwrap().count, 2);
    }
}
