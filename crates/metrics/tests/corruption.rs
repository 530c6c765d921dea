//! Corrupt stored data (#15): every key of a gauge, a counter and a histogram set to another
//! type, and their stored values (samples, totals, alert times, rollup buckets, histogram
//! fields) to bytes that do not decode. Every operation either works (it does not need the bad
//! value) or fails with an error naming the key; a failed write writes nothing, anywhere; the
//! other series are not affected; and once the keys are repaired everything works again.

use std::time::Duration;

use coordkit_core::redis;
use coordkit_core::{Key, KeyKind, Keyspace, ManualClock, Pool};
use coordkit_metrics::{
    Counter, Gauge, Histogram, Metrics, MetricsError, Sample, SampleWindow, SeriesConfig,
};
use coordkit_testkit::garbage::{TYPES, garbage, overwrite_with_type, wrong_type};
use coordkit_testkit::{TestRedis, Topology, redis_test};
use proptest::prelude::*;

const T0: u64 = 1_700_000_040_000; // a bucket start of the one-minute rollups
const MINUTE: u64 = 60_000;

/// Which series owns each key, in the order of [`Fixture::keys`].
const OWNERS: [&str; 8] = [
    "plain", "full", "full", "full", "counter", "counter", "counter", "hist",
];

/// A plain gauge, a gauge with age limit, rollups (three one-minute buckets) and alerts, a
/// counter with rollups, and a histogram, each with a few samples.
struct Fixture {
    pool: Pool,
    keyspace: Keyspace,
    plain: Gauge,
    full: Gauge,
    counter: Counter,
    hist: Histogram,
}

impl Fixture {
    async fn new(pool: Pool, keyspace: Keyspace) -> Self {
        let m = Metrics::builder(&pool, &keyspace)
            .clock(ManualClock::new(T0))
            .build()
            .unwrap();
        let full_config = SeriesConfig::builder()
            .max_age(Duration::from_secs(3600))
            .rollup(Duration::from_secs(60), 3)
            .alert_above(100.0)
            .build()
            .unwrap();
        let counter_config = SeriesConfig::builder()
            .rollup(Duration::from_secs(60), 3)
            .build()
            .unwrap();
        let f = Self {
            plain: m.gauge("plain", &[]).unwrap(),
            full: m.gauge_with("full", &[], full_config).unwrap(),
            counter: m.counter_with("tokens", &[], counter_config).unwrap(),
            hist: m.histogram("latency", &[]).unwrap(),
            pool,
            keyspace,
        };
        f.plain.record_batch(&[1.0, 2.0, 3.0]).await.unwrap();
        let samples: Vec<Sample> = (0..3)
            .map(|i| Sample::new(T0 - (2 - i) * MINUTE, 200.0 + i as f64))
            .collect();
        f.full.record_samples(&samples).await.unwrap();
        f.counter.increment_batch(&[1.0, 2.0]).await.unwrap();
        f.hist.observe_batch(&[1.0, 2.0]).await.unwrap();
        let keys = f.keys();
        assert_eq!(keys[0].as_str(), f.plain.samples_key().as_str());
        assert_eq!(keys[7].as_str(), f.hist.key().as_str());
        f
    }

    /// Every key: plain samples; full samples, meta, rollups; counter samples, meta, rollups;
    /// histogram.
    fn keys(&self) -> [Key; 8] {
        let key = |series: &str, suffix: &str, kind| {
            self.keyspace
                .instance("metric", series)
                .unwrap()
                .typed_key(suffix, kind)
        };
        [
            key("plain", "gauge", KeyKind::List),
            key("full", "gauge", KeyKind::List),
            key("full", "gauge-meta", KeyKind::Hash),
            key("full", "gauge-rollups", KeyKind::Hash),
            key("tokens", "counter", KeyKind::List),
            key("tokens", "counter-meta", KeyKind::Hash),
            key("tokens", "counter-rollups", KeyKind::Hash),
            key("latency", "histogram", KeyKind::Hash),
        ]
    }

    async fn dumps(&self) -> Vec<Option<Vec<u8>>> {
        let mut dumps = Vec::new();
        for key in self.keys() {
            dumps.push(self.pool.query(redis::cmd("DUMP").arg(&key)).await.unwrap());
        }
        dumps
    }

    async fn restore(&self, dumps: Vec<Option<Vec<u8>>>) {
        for (key, dumped) in self.keys().iter().zip(dumps) {
            let _: () = self.pool.query(redis::cmd("DEL").arg(key)).await.unwrap();
            if let Some(bytes) = dumped {
                let _: () = self
                    .pool
                    .query(redis::cmd("RESTORE").arg(key).arg(0).arg(bytes))
                    .await
                    .unwrap();
            }
        }
    }

    /// Runs every operation of every series; after each failure, checks that no key changed.
    async fn run_ops(&self) -> Vec<(&'static str, Result<(), MetricsError>)> {
        let ops = [
            "plain record",
            "plain batch",
            "plain latest",
            "plain aggregate",
            "full record",
            "full batch",
            "full latest",
            "full range",
            "full aggregate",
            "full rollups",
            "counter increment",
            "counter batch",
            "counter total",
            "counter rate",
            "counter rollups",
            "hist observe",
            "hist observe other",
            "hist batch",
            "hist snapshot",
        ];
        let mut outcomes = Vec::new();
        for op in ops {
            let before = self.dumps().await;
            let outcome = match op {
                "plain record" => self.plain.record(4.0).await.map(drop),
                "plain batch" => self.plain.record_batch(&[5.0, 6.0]).await.map(drop),
                "plain latest" => self.plain.latest(10).await.map(drop),
                "plain aggregate" => self
                    .plain
                    .aggregate(SampleWindow::Last(10), &[0.5])
                    .await
                    .map(drop),
                "full record" => self.full.record(7.0).await.map(drop),
                // A bucket of its own: new, so the rollups are trimmed.
                "full batch" => self
                    .full
                    .record_samples(&[Sample::new(T0 + MINUTE, 8.0)])
                    .await
                    .map(drop),
                "full latest" => self.full.latest(10).await.map(drop),
                "full range" => self.full.range(0, T0 + 10 * MINUTE).await.map(drop),
                "full aggregate" => self
                    .full
                    .aggregate(SampleWindow::Recent(Duration::from_secs(3600)), &[0.9])
                    .await
                    .map(drop),
                "full rollups" => self.full.rollups(0, u64::MAX).await.map(drop),
                "counter increment" => self.counter.increment(1.0).await.map(drop),
                "counter batch" => self.counter.increment_batch(&[1.0, 2.0]).await.map(drop),
                "counter total" => self.counter.total().await.map(drop),
                "counter rate" => self.counter.rate(Duration::from_secs(60)).await.map(drop),
                "counter rollups" => self.counter.rollups(0, u64::MAX).await.map(drop),
                "hist observe" => self.hist.observe(1.0).await.map(drop),
                "hist observe other" => self.hist.observe(1000.0).await.map(drop),
                "hist batch" => self.hist.observe_batch(&[1.0, 1000.0]).await.map(drop),
                _ => self.hist.snapshot().await.map(drop),
            };
            if outcome.is_err() {
                assert_eq!(before, self.dumps().await, "{op} failed and still wrote");
            }
            outcomes.push((op, outcome));
        }
        outcomes
    }
}

/// Every operation worked or failed naming key `k` of the fixture (and those of the other
/// series worked); the names of those that failed.
fn failed_naming(
    f: &Fixture,
    outcomes: &[(&'static str, Result<(), MetricsError>)],
    k: usize,
) -> Vec<&'static str> {
    let key = f.keys()[k].as_str().to_owned();
    for (op, outcome) in outcomes {
        match outcome {
            Ok(()) => {}
            Err(MetricsError::Core(
                coordkit_core::Error::WrongType { key: got, .. }
                | coordkit_core::Error::Corrupt { key: got, .. },
            )) if *got == key && op.starts_with(OWNERS[k]) => {}
            Err(e) => panic!("{op}: {e:?} does not name {key}"),
        }
    }
    outcomes
        .iter()
        .filter(|(_, o)| o.is_err())
        .map(|(op, _)| *op)
        .collect()
}

/// Repaired (every key as first written), everything works.
async fn check_recovered(f: &Fixture, original: Vec<Option<Vec<u8>>>) {
    f.restore(original).await;
    for (op, outcome) in f.run_ops().await {
        assert!(
            outcome.is_ok(),
            "after the repair, {op} failed: {outcome:?}"
        );
    }
}

redis_test! {
    async fn keys_of_another_type_are_named_and_left_alone(redis) {
        let pool = redis.pool().await;
        for (k, owner) in OWNERS.iter().enumerate() {
            let kind = if k == 0 || k == 1 || k == 4 { "list" } else { "hash" };
            for type_name in TYPES.into_iter().filter(|t| *t != kind) {
                let f = Fixture::new(pool.clone(), redis.keyspace()).await;
                let original = f.dumps().await;
                let key = &f.keys()[k];
                overwrite_with_type(&pool, key, type_name).await;
                let garbage: Option<Vec<u8>> = pool.query(redis::cmd("DUMP").arg(key)).await.unwrap();
                let outcomes = f.run_ops().await;
                let failed = failed_naming(&f, &outcomes, k);
                // Every write of the key's series touches it.
                for (op, _) in outcomes.iter().filter(|(op, _)| op.starts_with(owner)) {
                    let write = ["record", "batch", "increment", "observe"].iter().any(|w| op.contains(w));
                    assert!(!write || failed.contains(op), "{op} worked over a {type_name} at {key}");
                }
                for (_, outcome) in &outcomes {
                    if let Err(MetricsError::Core(coordkit_core::Error::WrongType { found, .. })) = outcome {
                        assert_eq!(found, type_name);
                    }
                }
                let after: Option<Vec<u8>> = pool.query(redis::cmd("DUMP").arg(key)).await.unwrap();
                assert_eq!(after, garbage);
                check_recovered(&f, original).await;
            }
        }
    }
}

/// A stored value made bad.
#[derive(Debug, Clone)]
enum Bad {
    /// A hash field set to these bytes.
    Field(String, Vec<u8>),
    /// A list entry set to these bytes.
    Entry(i64, Vec<u8>),
    /// One more entry at the head of a list (it no longer holds pairs).
    Orphan,
}

async fn spoil(f: &Fixture, k: usize, bad: &Bad) {
    let key = &f.keys()[k];
    let cmd = match bad {
        Bad::Field(field, bytes) => redis::cmd("HSET")
            .arg(key)
            .arg(field)
            .arg(bytes.as_slice())
            .clone(),
        Bad::Entry(index, bytes) => redis::cmd("LSET")
            .arg(key)
            .arg(*index)
            .arg(bytes.as_slice())
            .clone(),
        Bad::Orphan => redis::cmd("LPUSH").arg(key).arg("orphan").clone(),
    };
    let _: () = f.pool.query(&cmd).await.unwrap();
}

fn field(name: &str, bytes: &[u8]) -> Bad {
    Bad::Field(name.to_owned(), bytes.to_vec())
}

redis_test! {
    async fn stored_values_that_do_not_decode_are_corrupt_naming_the_key(redis) {
        let pool = redis.pool().await;
        let t0 = T0.to_string();
        let cases: Vec<(usize, Bad, &[&str])> = vec![
            // A rollup bucket: writes into that bucket fail, writes into another work.
            (3, field(&t0, b"3 6 x 1"), &["full record", "full rollups"]),
            (3, field(&t0, b"18446744073709551616 1 1 1"), &["full record", "full rollups"]),
            // A field that is no bucket start: only a trim (a new bucket) reads every start.
            (3, field("garbage", b"1 1 1 1"), &["full batch", "full rollups"]),
            (2, field("alert_ms", b"soon"), &["full record", "full batch"]),
            (2, field("alert_ms", b"-1"), &["full record", "full batch"]),
            (5, field("total", b"lots"), &["counter increment", "counter batch", "counter total"]),
            (5, field("total", b"inf"), &["counter increment", "counter batch", "counter total"]),
            (6, field(&t0, b""), &["counter increment", "counter batch", "counter rollups"]),
            // Samples: a read that decodes them says which key; writes do not read them.
            (0, Bad::Entry(0, b"yesterday".to_vec()), &["plain latest"]),
            (0, Bad::Entry(1, b"\xff\xfe".to_vec()), &["plain latest", "plain aggregate"]),
            (0, Bad::Orphan, &["plain latest", "plain aggregate"]),
            (1, Bad::Entry(1, b"inf".to_vec()), &["full latest", "full range", "full aggregate"]),
            (1, Bad::Entry(2, b"1e300".to_vec()), &["full latest", "full range", "full aggregate"]),
            (4, Bad::Entry(-1, b"nan".to_vec()), &["counter rate"]),
            // The histogram: its totals and the bucket an observation falls in.
            (7, field("count", b"-1"), &["hist observe", "hist observe other", "hist batch", "hist snapshot"]),
            (7, field("sum", b"1e400"), &["hist observe", "hist observe other", "hist batch", "hist snapshot"]),
            (7, field("min", b"not a number"), &["hist observe", "hist observe other", "hist batch", "hist snapshot"]),
            (7, field("b241", b"many"), &["hist observe", "hist batch", "hist snapshot"]),
            (7, field("b241", b"9007199254740993"), &["hist observe", "hist batch", "hist snapshot"]),
            (7, field("garbage", b"1"), &["hist snapshot"]),
        ];
        for (k, bad, expected) in cases {
            let f = Fixture::new(pool.clone(), redis.keyspace()).await;
            let original = f.dumps().await;
            spoil(&f, k, &bad).await;
            let outcomes = f.run_ops().await;
            assert_eq!(failed_naming(&f, &outcomes, k), expected, "{bad:?} at {}", f.keys()[k]);
            for (op, outcome) in &outcomes {
                assert!(matches!(outcome, Ok(()) | Err(MetricsError::Core(coordkit_core::Error::Corrupt { .. }))), "{op}: {outcome:?}");
            }
            check_recovered(&f, original).await;
        }
    }
}

/// One corruption of one key of the fixture.
fn corruption() -> impl Strategy<Value = (usize, Option<&'static str>, Bad)> {
    let hash_field = |k: usize| -> Vec<String> {
        match k {
            2 => vec!["alert_ms".into(), "garbage".into()],
            3 | 6 => vec![T0.to_string(), (T0 - MINUTE).to_string(), "garbage".into()],
            5 => vec!["total".into()],
            _ => vec![
                "count".into(),
                "sum".into(),
                "min".into(),
                "max".into(),
                "b241".into(),
                "b249".into(),
                "garbage".into(),
            ],
        }
    };
    (
        0usize..8,
        garbage(),
        -4i64..4,
        prop_oneof![Just(0u8), Just(1), Just(2)],
        any::<proptest::sample::Index>(),
    )
        .prop_flat_map(move |(k, g, index, shape, pick)| {
            let kind = if k == 0 || k == 1 || k == 4 {
                KeyKind::List
            } else {
                KeyKind::Hash
            };
            let fields = hash_field(k);
            wrong_type(kind).prop_map(move |t| {
                let bad = match (kind, shape) {
                    (KeyKind::List, 2) => Bad::Orphan,
                    (KeyKind::List, _) => Bad::Entry(index, g.apply(b"1700000040000")),
                    _ => Bad::Field(pick.get(&fields).clone(), g.apply(b"3 6 1 2")),
                };
                (k, (shape == 0).then_some(t), bad)
            })
        })
}

fn generated_corruptions(topology: Topology, cases: u32) {
    let rt = coordkit_testkit::blocking_runtime();
    let redis = TestRedis::start(topology);
    let pool = rt.block_on(redis.pool());
    proptest!(ProptestConfig::with_cases(cases), |((k, type_name, bad) in corruption())| {
        rt.block_on(async {
            let f = Fixture::new(pool.clone(), redis.keyspace()).await;
            let original = f.dumps().await;
            match type_name {
                Some(t) => overwrite_with_type(&pool, &f.keys()[k], t).await,
                None => spoil(&f, k, &bad).await,
            }
            failed_naming(&f, &f.run_ops().await, k);
            check_recovered(&f, original).await;
        });
    });
}

#[test]
fn generated_corruptions_are_named_and_repairable_standalone() {
    generated_corruptions(Topology::Standalone, 96);
}

#[test]
fn generated_corruptions_are_named_and_repairable_on_a_cluster() {
    generated_corruptions(Topology::Cluster, 32);
}
