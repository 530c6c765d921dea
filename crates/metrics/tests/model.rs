//! The Lua scripts against the pure-Rust reference model: random record / query /
//! time-advance sequences (manual clock), and many concurrent writers on one series.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coordkit_core::ManualClock;
use coordkit_metrics::model::SeriesModel;
use coordkit_metrics::{Kind, Metrics, Sample, SampleWindow, Series, SeriesConfig, Written};
use coordkit_testkit::redis_test;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const T0: u64 = 1_700_000_000_000;

#[derive(Debug, Clone)]
enum Op {
    /// Samples with an optional timestamp offset from T0 (may be old, out of order, repeated).
    Record(Vec<(Option<u64>, f64)>),
    Advance(u64),
    Latest(usize),
    Range(u64, u64),
    Recent(u64),
    Aggregate(SampleWindow, Vec<f64>),
    Rollups,
    Total,
}

#[derive(Debug, Clone)]
struct Case {
    config: SeriesConfig,
    counter: bool,
    ops: Vec<Op>,
}

fn value(counter: bool) -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(1.0),
        Just(0.5),
        Just(0.0),
        (-1000i32..1000).prop_map(|i| f64::from(i) / 8.0),
        -1.0e6f64..1.0e6,
    ]
    .prop_map(move |v: f64| if counter { v.abs() } else { v })
}

fn window() -> impl Strategy<Value = SampleWindow> {
    prop_oneof![
        (0usize..30).prop_map(SampleWindow::Last),
        (0u64..3_000).prop_map(|ms| SampleWindow::Recent(Duration::from_millis(ms))),
        (0u64..3_000, 0u64..3_000).prop_map(|(a, b)| SampleWindow::Range {
            from_ms: T0 + a,
            to_ms: T0 + b
        }),
    ]
}

fn op(counter: bool) -> impl Strategy<Value = Op> {
    let sample = (proptest::option::of(0u64..3_000), value(counter));
    prop_oneof![
        4 => proptest::collection::vec(sample, 1..6).prop_map(Op::Record),
        2 => (0u64..400).prop_map(Op::Advance),
        1 => (0usize..25).prop_map(Op::Latest),
        1 => (0u64..3_000, 0u64..3_000).prop_map(|(a, b)| Op::Range(a, b)),
        1 => (0u64..2_000).prop_map(Op::Recent),
        2 => (window(), proptest::collection::vec(prop_oneof![Just(0.0), Just(0.5), Just(0.95), Just(0.99), Just(1.0), 0.0f64..1.0], 0..4))
            .prop_map(|(w, q)| Op::Aggregate(w, q)),
        1 => Just(Op::Rollups),
        1 => Just(Op::Total),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        1u32..40,
        proptest::option::of(50u64..1_500),
        proptest::option::of((1u64..500, 1u32..6)),
        any::<bool>(),
    )
        .prop_flat_map(|(max_samples, max_age, rollup, counter)| {
            let mut b = SeriesConfig::builder().max_samples(max_samples);
            if let Some(age) = max_age {
                b = b.max_age(Duration::from_millis(age));
            }
            if let Some((res, keep)) = rollup {
                b = b.rollup(Duration::from_millis(res), keep);
            }
            let config = b.build().expect("valid config");
            proptest::collection::vec(op(counter), 1..40).prop_map(move |ops| Case {
                config: config.clone(),
                counter,
                ops,
            })
        })
}

/// Writes through the typed handle of either kind.
enum Handle {
    Gauge(coordkit_metrics::Gauge),
    Counter(coordkit_metrics::Counter),
}

async fn check_queries<K: Kind>(
    s: &Series<K>,
    model: &SeriesModel,
    now: u64,
    op: &Op,
) -> Result<(), TestCaseError> {
    match op {
        Op::Latest(n) => {
            prop_assert_eq!(
                s.latest(*n).await.unwrap(),
                model.select(now, SampleWindow::Last(*n))
            );
        }
        Op::Range(a, b) => {
            prop_assert_eq!(
                s.range(T0 + a, T0 + b).await.unwrap(),
                model.select(
                    now,
                    SampleWindow::Range {
                        from_ms: T0 + a,
                        to_ms: T0 + b
                    }
                )
            );
        }
        Op::Recent(ms) => {
            let w = SampleWindow::Recent(Duration::from_millis(*ms));
            prop_assert_eq!(s.samples(w).await.unwrap(), model.select(now, w));
        }
        Op::Aggregate(w, qs) => {
            prop_assert_eq!(
                s.aggregate(*w, qs).await.unwrap(),
                model.aggregate(now, *w, qs)
            );
        }
        Op::Rollups => {
            prop_assert_eq!(
                s.rollups(0, u64::MAX).await.unwrap(),
                model.rollups(0, u64::MAX)
            );
        }
        _ => {}
    }
    Ok(())
}

async fn run_case(
    metrics: &Metrics,
    clock: &ManualClock,
    name: &str,
    case: Case,
) -> Result<(), TestCaseError> {
    clock.set(T0 + 1_000);
    let handle = if case.counter {
        Handle::Counter(
            metrics
                .counter_with(name, &[], case.config.clone())
                .unwrap(),
        )
    } else {
        Handle::Gauge(metrics.gauge_with(name, &[], case.config.clone()).unwrap())
    };
    let mut model = SeriesModel::new(case.config.clone(), case.counter);
    for op in &case.ops {
        let now = clock.now_ms();
        match op {
            Op::Record(batch) => {
                let batch: Vec<_> = batch
                    .iter()
                    .map(|&(off, v)| (off.map(|o| T0 + o), v))
                    .collect();
                let got: Written = match &handle {
                    Handle::Gauge(g) => g.record_mixed(&batch).await.unwrap(),
                    Handle::Counter(c) => c.increment_mixed(&batch).await.unwrap(),
                };
                prop_assert_eq!(got, model.record(now, &batch).unwrap());
            }
            Op::Advance(ms) => clock.advance(Duration::from_millis(*ms)),
            Op::Total => {
                if let Handle::Counter(c) = &handle {
                    prop_assert_eq!(c.total().await.unwrap(), model.total());
                }
            }
            query => match &handle {
                Handle::Gauge(g) => check_queries(g, &model, now, query).await?,
                Handle::Counter(c) => check_queries(c, &model, now, query).await?,
            },
        }
    }
    // Finally the whole list, visible or not yet trimmed, holds the model's samples.
    let key = match &handle {
        Handle::Gauge(g) => g.samples_key().clone(),
        Handle::Counter(c) => c.samples_key().clone(),
    };
    let raw: Vec<String> = metrics
        .pool()
        .query(coordkit_core::redis::cmd("LRANGE").arg(&key).arg(0).arg(-1))
        .await
        .unwrap();
    let stored: Vec<Sample> = raw
        .chunks_exact(2)
        .map(|p| Sample::new(p[0].parse().unwrap(), p[1].parse().unwrap()))
        .collect();
    prop_assert_eq!(stored, model.stored().copied().collect::<Vec<_>>());
    Ok(())
}

redis_test! {
    async fn lua_matches_the_model_on_random_sequences(redis) {
        let pool = redis.pool().await;
        let clock = ManualClock::new(T0);
        let metrics = Metrics::builder(&pool, &redis.keyspace()).clock(clock.clone()).build().unwrap();
        let runtime = tokio::runtime::Handle::current();
        let next = AtomicU64::new(0);
        tokio::task::block_in_place(|| {
            let mut runner = TestRunner::new(Config { cases: 150, failure_persistence: None, ..Config::default() });
            let outcome = runner.run(&case(), |case| {
                let name = format!("prop-{}", next.fetch_add(1, Ordering::Relaxed));
                runtime.block_on(run_case(&metrics, &clock, &name, case))
            });
            if let Err(e) = outcome {
                panic!("{e}");
            }
        });
    }
}

redis_test! {
    async fn many_writers_on_one_series_lose_nothing(redis) {
        let pool = redis.pool().await;
        let clock = ManualClock::new(T0);
        let metrics = Metrics::builder(&pool, &redis.keyspace()).clock(clock.clone()).build().unwrap();
        const WRITERS: u32 = 16;
        const EACH: u32 = 200;
        let config = SeriesConfig::builder().max_samples(2 * WRITERS * EACH).build().unwrap();
        let gauge = metrics.gauge_with("shared", &[("test", "writers")], config.clone()).unwrap();
        let counter = metrics.counter_with("shared", &[("test", "writers")], config.clone()).unwrap();
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (gauge, counter, clock) = (gauge.clone(), counter.clone(), clock.clone());
                tokio::spawn(async move {
                    for i in 0..EACH {
                        let v = f64::from(w * 1_000 + i) / 3.0;
                        if i % 10 == 0 {
                            gauge.record_batch(&[v, v]).await.unwrap(); // a duplicate on purpose
                        } else {
                            gauge.record(v).await.unwrap();
                        }
                        counter.increment(f64::from(i % 7) * 0.1).await.unwrap();
                        if i % 50 == 0 {
                            clock.advance(Duration::from_millis(1));
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let now = clock.now_ms();
        let stored = gauge.latest(usize::MAX).await.unwrap();
        let dupes = (WRITERS * EACH / 10) as usize;
        assert_eq!(stored.len(), (WRITERS * EACH) as usize + dupes, "no sample lost");
        // Each writer's samples appear in its own order, all of them.
        for w in 0..WRITERS {
            let mine: Vec<f64> = stored.iter().map(|s| s.value).filter(|v| (v * 3.0 / 1_000.0).floor() as u32 == w).collect();
            let mut expected = Vec::new();
            for i in 0..EACH {
                let v = f64::from(w * 1_000 + i) / 3.0;
                expected.push(v);
                if i % 10 == 0 {
                    expected.push(v);
                }
            }
            assert_eq!(mine, expected, "writer {w}");
        }
        // Aggregations are exact against a model fed the same samples in the stored order.
        let mut model = SeriesModel::new(config.clone(), false);
        let batch: Vec<_> = stored.iter().map(|s| (Some(s.ts_ms), s.value)).collect();
        model.record(now, &batch).unwrap();
        for w in [SampleWindow::Last(usize::MAX), SampleWindow::Last(777), SampleWindow::Recent(Duration::from_millis(3)), SampleWindow::Range { from_ms: T0 + 1, to_ms: T0 + 2 }] {
            let qs = [0.0, 0.5, 0.95, 0.99, 1.0];
            assert_eq!(gauge.aggregate(w, &qs).await.unwrap(), model.aggregate(now, w, &qs), "{w:?}");
        }
        // The counter's total is the sum in the order the server applied the increments.
        let increments = counter.latest(usize::MAX).await.unwrap();
        assert_eq!(increments.len(), (WRITERS * EACH) as usize);
        let mut counter_model = SeriesModel::new(config, true);
        let batch: Vec<_> = increments.iter().map(|s| (Some(s.ts_ms), s.value)).collect();
        counter_model.record(now, &batch).unwrap();
        assert_eq!(counter.total().await.unwrap(), counter_model.total());
        let expected_total: u32 = (0..EACH).map(|i| i % 7).sum::<u32>() * WRITERS;
        assert!((counter.total().await.unwrap() - f64::from(expected_total) * 0.1).abs() < 1e-6);
    }
}
