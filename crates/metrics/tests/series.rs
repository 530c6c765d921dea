//! Behaviour of gauges, counters and histograms on a real server, standalone and cluster.

use std::time::Duration;

use coordkit_core::{Clock, ManualClock, Script};
use coordkit_metrics::model::SeriesModel;
use coordkit_metrics::{
    AlertDirection, HistogramSnapshot, MetricAlert, MetricAlerts, Metrics, MetricsError,
    RollupBucket, Sample, SampleWindow, SeriesConfig, ThresholdAlert,
};
use coordkit_testkit::{TestRedis, redis_test};

const T0: u64 = 1_700_000_000_000;

async fn metrics(redis: &TestRedis, clock: &ManualClock) -> Metrics {
    let pool = redis.pool().await;
    Metrics::builder(&pool, &redis.keyspace())
        .clock(clock.clone())
        .build()
        .unwrap()
}

fn values(samples: &[Sample]) -> Vec<f64> {
    samples.iter().map(|s| s.value).collect()
}

redis_test! {
    async fn equal_values_and_equal_timestamps_are_all_kept(redis) {
        let clock = ManualClock::new(T0);
        let m = metrics(&redis, &clock).await;
        let g = m.gauge("depth", &[("queue", "emails")]).unwrap();
        for _ in 0..3 {
            g.record(7.0).await.unwrap(); // same value, same (manual) time
        }
        g.record_samples(&[Sample::new(T0, 7.0), Sample::new(T0, 8.0)]).await.unwrap();
        let r = g.record_batch(&[7.0, 7.0]).await.unwrap();
        assert_eq!(r.retained, 7);
        assert_eq!(r.now_ms, T0);
        let all = g.latest(100).await.unwrap();
        assert_eq!(values(&all), [7.0, 7.0, 7.0, 7.0, 8.0, 7.0, 7.0]);
        assert!(all.iter().all(|s| s.ts_ms == T0));
        let a = g.aggregate(SampleWindow::Range { from_ms: T0, to_ms: T0 }, &[0.5, 1.0]).await.unwrap();
        assert_eq!((a.count, a.sum, a.quantile(1.0)), (7, 50.0, Some(8.0)));
    }
}

redis_test! {
    async fn retention_by_count_and_by_age_happens_in_the_write(redis) {
        let clock = ManualClock::new(T0);
        let m = metrics(&redis, &clock).await;
        let config = SeriesConfig::builder()
            .max_samples(5)
            .max_age(Duration::from_secs(10))
            .build()
            .unwrap();
        let g = m.gauge_with("loss", &[("run", "r1")], config).unwrap();
        for i in 0..8 {
            let r = g.record(f64::from(i)).await.unwrap();
            assert_eq!(r.retained, (i as u64 + 1).min(5));
            clock.advance(Duration::from_secs(1));
        }
        assert_eq!(values(&g.latest(10).await.unwrap()), [3.0, 4.0, 5.0, 6.0, 7.0]);
        // Samples past max_age are invisible at once and gone at the next write.
        clock.advance(Duration::from_millis(4_500)); // now = T0 + 12.5 s; cutoff T0 + 2.5 s
        assert_eq!(values(&g.latest(10).await.unwrap()), [3.0, 4.0, 5.0, 6.0, 7.0]);
        clock.advance(Duration::from_secs(2)); // cutoff T0 + 4.5 s
        assert_eq!(values(&g.latest(10).await.unwrap()), [5.0, 6.0, 7.0]);
        assert_eq!(g.latest(2).await.unwrap().len(), 2);
        let r = g.record(8.0).await.unwrap();
        assert_eq!(r.retained, 4);
        let pool = m.pool();
        let len: u64 = pool.query(coordkit_core::redis::cmd("LLEN").arg(g.samples_key())).await.unwrap();
        assert_eq!(len, 8, "4 (timestamp, value) pairs");
        // Everything ages out: the key disappears.
        clock.advance(Duration::from_secs(60));
        assert!(g.latest(10).await.unwrap().is_empty());
        let r = g.record(9.0).await.unwrap();
        assert_eq!(r.retained, 1);
    }
}

redis_test! {
    async fn queries_select_by_count_range_and_recent_past(redis) {
        let clock = ManualClock::new(T0);
        let m = metrics(&redis, &clock).await;
        let g = m.gauge("latency", &[]).unwrap();
        let samples: Vec<Sample> = (0..100).map(|i| Sample::new(T0 + i * 10, (i % 7) as f64)).collect();
        g.record_samples(&samples).await.unwrap();
        clock.set(T0 + 990);
        let mut model = SeriesModel::new(SeriesConfig::default(), false);
        let batch: Vec<_> = samples.iter().map(|s| (Some(s.ts_ms), s.value)).collect();
        model.record(T0, &batch).unwrap();
        let now = clock.now_ms();

        assert_eq!(g.latest(3).await.unwrap(), model.select(now, SampleWindow::Last(3)));
        assert_eq!(g.range(T0 + 100, T0 + 150).await.unwrap().len(), 6);
        assert_eq!(g.range(T0 + 100, T0 + 150).await.unwrap(), model.select(now, SampleWindow::Range { from_ms: T0 + 100, to_ms: T0 + 150 }));
        let recent = g.samples(SampleWindow::Recent(Duration::from_millis(50))).await.unwrap();
        assert_eq!(recent.iter().map(|s| s.ts_ms).collect::<Vec<_>>(), [T0 + 950, T0 + 960, T0 + 970, T0 + 980, T0 + 990]);
        for window in [SampleWindow::Last(10), SampleWindow::Last(1_000), SampleWindow::Recent(Duration::from_millis(333)), SampleWindow::Range { from_ms: 0, to_ms: u64::MAX }] {
            let got = g.aggregate(window, &[0.5, 0.95, 0.99]).await.unwrap();
            assert_eq!(got, model.aggregate(now, window, &[0.5, 0.95, 0.99]), "{window:?}");
        }
        let a = g.aggregate(SampleWindow::Last(100), &[0.5]).await.unwrap();
        assert_eq!((a.count, a.min, a.max), (100, Some(0.0), Some(6.0)));
        assert_eq!(g.moving_average(7).await.unwrap(), Some(3.0));
        assert_eq!(g.latest(0).await.unwrap(), []);
        assert_eq!(g.aggregate(SampleWindow::Range { from_ms: 0, to_ms: 5 }, &[0.5]).await.unwrap().count, 0);
        assert_eq!(g.moving_average(0).await.unwrap(), None);
    }
}

redis_test! {
    async fn counters_keep_a_total_and_a_rate(redis) {
        let clock = ManualClock::new(T0);
        let m = metrics(&redis, &clock).await;
        let c = m.counter_with("tokens", &[("agent", "a1")], SeriesConfig::builder().max_samples(3).build().unwrap()).unwrap();
        assert_eq!(c.total().await.unwrap(), 0.0);
        for i in 1..=10 {
            let r = c.increment(f64::from(i)).await.unwrap();
            assert_eq!(r.total, Some(f64::from(i * (i + 1) / 2)));
            clock.advance(Duration::from_secs(1));
        }
        // The total survives trimming; the rate sees the last samples only.
        assert_eq!(c.total().await.unwrap(), 55.0);
        assert_eq!(c.latest(10).await.unwrap().len(), 3);
        // now = T0 + 10 s; increments 8, 9, 10 at T0 + 7, 8, 9 s.
        assert_eq!(c.rate(Duration::from_secs(3)).await.unwrap(), (9.0 + 10.0) / 3.0);
        assert_eq!(c.rate(Duration::from_secs(10)).await.unwrap(), 27.0 / 10.0);
        assert_eq!(c.increment_batch(&[0.5, 0.25]).await.unwrap().total, Some(55.75));
        let err = c.increment(-1.0).await.unwrap_err();
        assert!(matches!(err, MetricsError::InvalidSample { what: "increment", .. }), "{err}");
        assert_eq!(c.total().await.unwrap(), 55.75);
    }
}

redis_test! {
    async fn rollups_outlive_raw_samples(redis) {
        let clock = ManualClock::new(T0);
        let m = metrics(&redis, &clock).await;
        let config = SeriesConfig::builder()
            .max_samples(10)
            .rollup(Duration::from_secs(60), 3)
            .build()
            .unwrap();
        let g = m.gauge_with("temp", &[("gpu", "0")], config.clone()).unwrap();
        let mut model = SeriesModel::new(config, false);
        let minute = T0 - T0 % 60_000;
        for i in 0..300u64 {
            let ts = minute + i * 1_000; // 5 minutes, one sample per second
            let v = (i % 13) as f64 - 4.0;
            g.record_at(ts, v).await.unwrap();
            model.record(clock.now_ms(), &[(Some(ts), v)]).unwrap();
        }
        let rollups = g.rollups(0, u64::MAX).await.unwrap();
        assert_eq!(rollups.len(), 3, "only the newest 3 minutes are kept");
        assert_eq!(rollups, model.rollups(0, u64::MAX));
        assert_eq!(rollups[0].start_ms, minute + 120_000);
        assert!(rollups.iter().all(|b: &RollupBucket| b.count == 60));
        // The raw series holds 10 samples, the rollups 180.
        assert_eq!(g.latest(1_000).await.unwrap().len(), 10);
        assert_eq!(g.rollups(minute + 180_000, minute + 180_000).await.unwrap().len(), 1);
        // A batch spanning buckets updates each once.
        g.record_samples(&[Sample::new(minute + 299_500, 100.0), Sample::new(minute + 300_000, -100.0)]).await.unwrap();
        model.record(clock.now_ms(), &[(Some(minute + 299_500), 100.0), (Some(minute + 300_000), -100.0)]).unwrap();
        assert_eq!(g.rollups(0, u64::MAX).await.unwrap(), model.rollups(0, u64::MAX));
    }
}

async fn next_alert(alerts: &mut MetricAlerts) -> MetricAlert {
    tokio::time::timeout(Duration::from_secs(15), alerts.recv())
        .await
        .expect("no alert arrived")
        .expect("the subscription ended")
}

redis_test! {
    async fn typed_alerts_of_one_series_and_of_the_namespace(redis) {
        let clock = ManualClock::new(T0);
        let m = metrics(&redis, &clock).await;
        let config = SeriesConfig::builder()
            .alert_above(0.9)
            .alert_below(0.1)
            .alert_interval(Duration::from_secs(1))
            .build()
            .unwrap();
        let g = m.gauge_with("gpu_util", &[("node", "n1")], config.clone()).unwrap();
        let tokens = m.counter_with("tokens", &[], config).unwrap();
        let mut one = g.alerts().await.unwrap();
        let mut all = m.alerts().await.unwrap();

        // Another series' alert first: the series' subscription skips it.
        tokens.increment(5.0).await.unwrap();
        g.record(0.95).await.unwrap();
        clock.advance(Duration::from_secs(1));
        g.record(0.05).await.unwrap();

        let above = MetricAlert {
            series: "gpu_util,node=n1".into(),
            ts_ms: T0,
            alert: ThresholdAlert { direction: AlertDirection::Above, bound: 0.9, value: 0.95, sample_ts_ms: T0 },
        };
        let below = MetricAlert {
            series: "gpu_util,node=n1".into(),
            ts_ms: T0 + 1_000,
            alert: ThresholdAlert { direction: AlertDirection::Below, bound: 0.1, value: 0.05, sample_ts_ms: T0 + 1_000 },
        };
        assert_eq!(next_alert(&mut one).await, above);
        assert_eq!(next_alert(&mut one).await, below);
        let counter = next_alert(&mut all).await;
        assert_eq!((counter.series.as_str(), counter.alert.direction, counter.alert.value), ("tokens", AlertDirection::Above, 5.0));
        assert_eq!(next_alert(&mut all).await, above);
        assert_eq!(next_alert(&mut all).await, below);
        assert_eq!(one.stats().decode_errors, 0);
        assert!(one.try_recv().is_none());
        one.shutdown().await;
        all.shutdown().await;
    }
}

redis_test! {
    async fn threshold_alerts_come_at_most_once_per_interval(redis) {
        let clock = ManualClock::new(T0);
        let m = metrics(&redis, &clock).await;
        let config = SeriesConfig::builder()
            .alert_above(0.9)
            .alert_below(0.1)
            .alert_interval(Duration::from_secs(60))
            .build()
            .unwrap();
        let g = m.gauge_with("gpu_util", &[("node", "n1")], config).unwrap();
        let mut sub = m.pool().subscriber().channel(m.alert_channel()).subscribe::<ThresholdAlert>().await.unwrap();

        g.record(0.5).await.unwrap(); // no crossing
        g.record(0.95).await.unwrap(); // alert
        g.record_batch(&[0.99, 0.05, 1.0]).await.unwrap(); // within the interval: none
        clock.advance(Duration::from_secs(59));
        g.record(0.97).await.unwrap(); // still within
        clock.advance(Duration::from_secs(1));
        g.record_batch(&[0.5, 0.02, 0.99]).await.unwrap(); // one alert: the first crossing, below

        let mut got = Vec::new();
        for _ in 0..2 {
            let r = tokio::time::timeout(Duration::from_secs(15), sub.recv()).await.expect("no alert arrived").expect("subscriber ended");
            assert_eq!(r.event.kind, "threshold");
            assert_eq!(r.event.source, "metrics");
            assert_eq!(r.event.entity, "gpu_util,node=n1");
            got.push((r.event.ts_ms, r.event.payload));
        }
        assert_eq!(got, vec![
            (T0, ThresholdAlert { direction: AlertDirection::Above, bound: 0.9, value: 0.95, sample_ts_ms: T0 }),
            (T0 + 60_000, ThresholdAlert { direction: AlertDirection::Below, bound: 0.1, value: 0.02, sample_ts_ms: T0 + 60_000 }),
        ]);
        // Nothing else was published: a later alert is the next event.
        clock.advance(Duration::from_secs(60));
        g.record(2.0).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(15), sub.recv()).await.unwrap().unwrap();
        assert_eq!(r.event.payload.value, 2.0);
        assert_eq!(r.event.ts_ms, T0 + 120_000);
    }
}

static SET_STRING: Script = Script::new(
    "test.set_string",
    "-- KEYS[1] any key. Sets it to a string.\nreturn redis.call('SET', KEYS[1], 'garbage')",
);

redis_test! {
    async fn bad_input_is_refused_with_a_clear_error(redis) {
        let clock = ManualClock::new(T0);
        let m = metrics(&redis, &clock).await;
        let g = m.gauge("loss", &[]).unwrap();
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let err = g.record(bad).await.unwrap_err();
            assert!(matches!(err, MetricsError::InvalidSample { what: "value", .. }), "{err}");
            assert!(err.to_string().contains("not a finite number"), "{err}");
        }
        let err = g.record_batch(&[1.0, f64::NAN]).await.unwrap_err();
        assert!(matches!(err, MetricsError::InvalidSample { .. }));
        assert!(g.latest(10).await.unwrap().is_empty(), "a refused batch writes nothing");
        assert!(matches!(g.record_batch(&[]).await, Err(MetricsError::InvalidSample { what: "batch", .. })));
        assert!(matches!(g.record_at(u64::MAX, 1.0).await, Err(MetricsError::InvalidSample { what: "timestamp", .. })));
        let err = g.aggregate(SampleWindow::Last(3), &[1.5]).await.unwrap_err();
        assert!(matches!(err, MetricsError::Core(coordkit_core::Error::InvalidConfig { field: "quantiles", .. })), "{err}");

        for (name, labels) in [("", vec![]), ("a b", vec![]), ("x{y}", vec![]), ("ok", vec![("l", "")]), ("ok", vec![("l\n", "v")])] {
            let err = m.gauge(name, &labels).unwrap_err();
            assert!(matches!(err, MetricsError::Core(coordkit_core::Error::InvalidName { .. })), "{err}");
        }
        let h = m.histogram("lat", &[]).unwrap();
        assert!(matches!(h.observe(-1.0).await, Err(MetricsError::InvalidSample { what: "observation", .. })));
        assert!(matches!(h.observe(f64::NAN).await, Err(MetricsError::InvalidSample { .. })));
    }
}

redis_test! {
    async fn a_key_of_the_wrong_type_is_reported_and_left_alone(redis) {
        let clock = ManualClock::new(T0);
        let m = metrics(&redis, &clock).await;
        let g = m.gauge("foreign", &[]).unwrap();
        let _: String = SET_STRING.prepare().key(g.samples_key()).invoke(m.pool()).await.unwrap();
        let check = |err: MetricsError| match err {
            MetricsError::Core(coordkit_core::Error::WrongType { key, found }) => {
                assert_eq!(key, g.samples_key().as_str());
                assert_eq!(found, "string");
            }
            other => panic!("expected WrongType, got {other:?}"),
        };
        check(g.record(1.0).await.unwrap_err());
        check(g.latest(5).await.unwrap_err());
        check(g.aggregate(SampleWindow::Last(5), &[0.5]).await.unwrap_err());

        let h = m.histogram("foreign", &[]).unwrap();
        let _: String = SET_STRING.prepare().key(h.key()).invoke(m.pool()).await.unwrap();
        match h.observe(1.0).await.unwrap_err() {
            MetricsError::Core(coordkit_core::Error::WrongType { key, found }) => {
                assert_eq!(key, h.key().as_str());
                assert_eq!(found, "string");
            }
            other => panic!("expected WrongType, got {other:?}"),
        }
        assert!(h.snapshot().await.is_err());
        let v: String = m.pool().query(coordkit_core::redis::cmd("GET").arg(g.samples_key())).await.unwrap();
        assert_eq!(v, "garbage");
    }
}

redis_test! {
    async fn histograms_are_exact_in_count_and_merge_across_series(redis) {
        let clock = ManualClock::new(T0);
        let m = metrics(&redis, &clock).await;
        let routes = ["/chat", "/embed", "/tools"];
        let mut expected = HistogramSnapshot::new();
        let mut handles = Vec::new();
        for (r, route) in routes.iter().enumerate() {
            let h = m.histogram("latency_ms", &[("route", route)]).unwrap();
            let mut model = HistogramSnapshot::new();
            let values: Vec<f64> = (0..1_000).map(|i| f64::from((i * 37 + r as i32 * 11) % 500) * 0.5).collect();
            for chunk in values.chunks(100) {
                h.observe_batch(chunk).await.unwrap();
            }
            assert_eq!(h.observe(0.0).await.unwrap(), 1_001);
            for v in values.iter().copied().chain([0.0]) {
                model.observe(v);
                expected.observe(v);
            }
            assert_eq!(h.snapshot().await.unwrap(), model);
            handles.push(h);
        }
        let merged = coordkit_metrics::Histogram::merged(&handles).await.unwrap();
        assert_eq!(merged.buckets, expected.buckets);
        assert_eq!((merged.count, merged.min, merged.max), (3_003, Some(0.0), Some(249.5)));
        for q in [0.5, 0.95, 0.99] {
            let est = merged.quantile(q).unwrap();
            assert_eq!(Some(est), expected.quantile(q));
            let mut all: Vec<f64> = Vec::new();
            for r in 0..3 {
                all.extend((0..1_000).map(|i| f64::from((i * 37 + r * 11) % 500) * 0.5));
                all.push(0.0);
            }
            all.sort_by(f64::total_cmp);
            let exact = all[((q * all.len() as f64).ceil() as usize) - 1];
            assert!((est - exact).abs() <= exact * 0.045, "q {q}: estimate {est}, exact {exact}");
        }
        handles[0].clear().await.unwrap();
        assert_eq!(handles[0].snapshot().await.unwrap(), HistogramSnapshot::new());
    }
}

redis_test! {
    async fn writes_use_the_server_clock_by_default(redis) {
        let pool = redis.pool().await;
        let m = Metrics::builder(&pool, &redis.keyspace()).clock(Clock::Server).build().unwrap();
        let g = m.gauge("clock", &[]).unwrap();
        let before = pool.server_time_ms().await.unwrap();
        let r = g.record(1.0).await.unwrap();
        let after = pool.server_time_ms().await.unwrap();
        assert!(before <= r.now_ms && r.now_ms <= after, "{before} <= {} <= {after}", r.now_ms);
        assert_eq!(g.latest(1).await.unwrap()[0].ts_ms, r.now_ms);
    }
}

redis_test! {
    async fn a_record_is_one_round_trip(redis) {
        let clock = ManualClock::new(T0);
        let m = metrics(&redis, &clock).await;
        let config = SeriesConfig::builder().max_samples(10).max_age(Duration::from_secs(5)).rollup(Duration::from_secs(1), 5).alert_above(10.0).build().unwrap();
        let g = m.gauge_with("trips", &[], config).unwrap();
        // A plain gauge's single samples go through their own lean script.
        let plain = m.gauge_with("plain-trips", &[], SeriesConfig::builder().max_samples(10).build().unwrap()).unwrap();
        g.record(1.0).await.unwrap(); // loads the scripts if needed
        plain.record(1.0).await.unwrap();
        let _: Vec<String> = redis.on_every_server(&["CONFIG", "RESETSTAT"]);
        for i in 0..50 {
            g.record(f64::from(i)).await.unwrap();
            let r = plain.record(f64::from(i)).await.unwrap();
            assert_eq!((r.retained, r.now_ms), ((i as u64 + 2).min(10), clock.now_ms()));
            clock.advance(Duration::from_millis(300));
        }
        assert_eq!(redis.command_calls("evalsha"), 100);
        assert_eq!(redis.command_calls("eval"), 0);
        assert_eq!(redis.command_calls("ping"), 0);
    }
}

redis_test! {
    async fn handles_are_clone_and_debug_naming_their_series(redis) {
        let clock = ManualClock::new(T0);
        let m = metrics(&redis, &clock).await;
        let g = m.gauge("shown", &[("run", "r1")]).unwrap();
        let c = m.counter("counted", &[]).unwrap();
        let h = m.histogram("spread", &[]).unwrap();
        let shown = format!("{:?} {:?} {:?} {:?}", m.clone(), g.clone(), c.clone(), h.clone());
        for part in ["shown", "run=r1", "counted", "spread", g.samples_key().as_str()] {
            assert!(shown.contains(part), "{part} not in {shown}");
        }
        // The builder's clock stamps the samples.
        assert_eq!(g.record(1.0).await.unwrap().now_ms, T0);
        assert!(m.alert_channel().ends_with(":events:metrics:threshold"), "{}", m.alert_channel());
    }
}
