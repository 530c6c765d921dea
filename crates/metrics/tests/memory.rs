//! Memory: a capped series stays at its capped size whatever the number of samples.

use coordkit_core::{Keyspace, ManualClock, Pool, Script};
use coordkit_metrics::{Gauge, Metrics, SeriesConfig};
use coordkit_testkit::redis_test;

static MEMORY_USAGE: Script = Script::new(
    "test.memory_usage",
    "-- KEYS[1] any key. Returns MEMORY USAGE of it, every element counted (SAMPLES 0).\n\
     return redis.call('MEMORY', 'USAGE', KEYS[1], 'SAMPLES', 0)",
);

/// A gauge capped at 1,000 samples on a manual clock.
fn capped_gauge(pool: &Pool, keyspace: &Keyspace, name: &str) -> (ManualClock, Gauge) {
    let clock = ManualClock::new(1_700_000_000_000);
    let metrics = Metrics::builder(pool, keyspace)
        .clock(clock.clone())
        .build()
        .unwrap();
    let config = SeriesConfig::builder().max_samples(1_000).build().unwrap();
    let gauge = metrics
        .gauge_with(name, &[("test", "memory")], config)
        .unwrap();
    (clock, gauge)
}

/// MEMORY USAGE of the gauge's samples list.
async fn memory_usage(pool: &Pool, gauge: &Gauge) -> u64 {
    MEMORY_USAGE
        .prepare()
        .key(gauge.samples_key())
        .invoke(pool)
        .await
        .unwrap()
}

redis_test! {
    async fn a_million_samples_into_a_series_capped_at_a_thousand_stay_capped(redis) {
        let pool = redis.pool().await;
        let (clock, gauge) = capped_gauge(&pool, &redis.keyspace(), "capped");
        const BATCH: usize = 5_000;
        const TOTAL: usize = 1_000_000;
        let mut recorded = 0usize;
        let mut at_cap = None;
        while recorded < TOTAL {
            // Values of varying width, like real measurements.
            let batch: Vec<f64> = (recorded..recorded + BATCH).map(|i| (i as f64) * 1.000_1 / 7.0).collect();
            let r = gauge.record_batch(&batch).await.unwrap();
            recorded += BATCH;
            assert_eq!(r.retained, 1_000);
            if at_cap.is_none() {
                at_cap = Some(memory_usage(&pool, &gauge).await);
            }
            clock.advance(std::time::Duration::from_millis(1));
        }
        let at_cap = at_cap.unwrap_or_default();
        let after: u64 = memory_usage(&pool, &gauge).await;
        let len: u64 = pool.query(coordkit_core::redis::cmd("LLEN").arg(gauge.samples_key())).await.unwrap();
        eprintln!(
            "MEMORY USAGE ({:?}): {after} bytes after {TOTAL} samples capped at 1,000 \
             ({at_cap} bytes after the first {BATCH}); {:.1} bytes per sample",
            redis.topology(),
            after as f64 / 1_000.0
        );
        assert_eq!(len, 2_000, "1,000 (timestamp, value) pairs");
        // The newest 1,000 values, no more.
        let kept = gauge.latest(usize::MAX).await.unwrap();
        assert_eq!(kept.len(), 1_000);
        assert_eq!(kept[999].value, ((TOTAL - 1) as f64) * 1.000_1 / 7.0);
        // Bounded: the same size (within the allocator's slack) as when first capped, and small.
        assert!(after <= at_cap + at_cap / 4, "{after} bytes now vs {at_cap} when first capped");
        assert!(after < 100_000, "{after} bytes for 1,000 samples");
    }
}

redis_test! {
    async fn single_samples_into_a_capped_plain_gauge_stay_capped(redis) {
        // record_one.lua's path: one sample per call, 50 calls at a time.
        let pool = redis.pool().await;
        let (clock, gauge) = capped_gauge(&pool, &redis.keyspace(), "capped-singles");
        const TOTAL: usize = 20_000;
        let mut at_cap = None;
        for round in 0..TOTAL / 50 {
            let mut writes = tokio::task::JoinSet::new();
            for k in 0..50 {
                let gauge = gauge.clone();
                let value = ((round * 50 + k) as f64) * 1.000_1 / 7.0;
                writes.spawn(async move { gauge.record(value).await });
            }
            while let Some(r) = writes.join_next().await {
                let retained = r.unwrap().unwrap().retained as usize;
                assert!((round * 50 + 1).min(1_000) <= retained && retained <= ((round + 1) * 50).min(1_000), "{retained}");
            }
            if round * 50 >= 2_000 && at_cap.is_none() {
                at_cap = Some(memory_usage(&pool, &gauge).await);
            }
            clock.advance(std::time::Duration::from_millis(1));
        }
        let at_cap = at_cap.unwrap_or_default();
        let after: u64 = memory_usage(&pool, &gauge).await;
        let len: u64 = pool.query(coordkit_core::redis::cmd("LLEN").arg(gauge.samples_key())).await.unwrap();
        eprintln!("MEMORY USAGE ({:?}): {after} bytes after {TOTAL} single samples capped at 1,000", redis.topology());
        // At most the cap plus the amortised trim's slack (1,000 / 16 samples).
        assert!((2_000..=2 * (1_000 + 62)).contains(&len), "{len} list entries");
        let kept = gauge.latest(usize::MAX).await.unwrap();
        assert_eq!(kept.len(), 1_000);
        let mut kept_values: Vec<f64> = kept.iter().map(|s| s.value).collect();
        let mut expected: Vec<f64> = (TOTAL - 1_000..TOTAL).map(|i| (i as f64) * 1.000_1 / 7.0).collect();
        // Concurrent calls of one round may land in any order: compare as sets.
        kept_values.sort_by(f64::total_cmp);
        expected.sort_by(f64::total_cmp);
        assert_eq!(kept_values, expected);
        assert!(after <= at_cap + at_cap / 4, "{after} bytes now vs {at_cap} when first capped");
        assert!(after < 100_000, "{after} bytes for 1,000 samples");
    }
}
