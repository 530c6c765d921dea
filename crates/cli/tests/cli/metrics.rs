//! `coordkit metrics …` against the series' own queries.

use std::time::Duration;

use coordkit_metrics::{Metrics, SampleWindow};

use crate::cli_test;

cli_test! {
    fn tail_and_agg_match_the_series(t) {
        let metrics = Metrics::builder(&t.pool, &t.keyspace).build().unwrap();
        let loss = metrics.gauge("loss", &[("run", "r42")]).unwrap();
        t.block_on(loss.record_batch(&[0.9, 0.5, 0.25, 0.75])).unwrap();

        let json = t.json(&["metrics", "tail", "loss{run=r42}", "--limit", "3"]);
        let latest = t.block_on(loss.latest(3)).unwrap();
        let samples: Vec<(u64, f64)> = json["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["ts_ms"].as_u64().unwrap(), s["value"].as_f64().unwrap()))
            .collect();
        assert_eq!(samples, latest.iter().map(|s| (s.ts_ms, s.value)).collect::<Vec<_>>());
        assert_eq!(samples.iter().map(|s| s.1).collect::<Vec<_>>(), vec![0.5, 0.25, 0.75]);
        assert_eq!(json["kind"], "gauge");
        assert_eq!(json["labels"]["run"], "r42");

        let agg = t.json(&["metrics", "agg", "loss{run=r42}", "--window", "1h", "--percentiles", "0.5,1"]);
        let expected = t
            .block_on(loss.aggregate(SampleWindow::Recent(Duration::from_secs(3600)), &[0.5, 1.0]))
            .unwrap();
        assert_eq!(agg["count"], expected.count);
        assert_eq!(agg["count"], 4);
        assert_eq!(agg["sum"], expected.sum);
        assert_eq!(agg["min"], 0.25);
        assert_eq!(agg["max"], 0.9);
        assert_eq!(agg["percentiles"][0]["q"], 0.5);
        assert_eq!(agg["percentiles"][0]["value"], expected.quantile(0.5).unwrap());
        assert_eq!(agg["percentiles"][1]["value"], 0.9);
        let human = t.ok(&["metrics", "agg", "loss{run=r42}", "--window", "1h"]);
        assert!(human.contains("p95") && human.contains("0.9"), "{human}");

        let tokens = metrics.counter("tokens", &[]).unwrap();
        t.block_on(tokens.increment_batch(&[100.0, 20.0])).unwrap();
        let json = t.json(&["metrics", "tail", "tokens", "--kind", "counter"]);
        assert_eq!(json["total"], 120.0);
        assert_eq!(json["samples"].as_array().unwrap().len(), 2);

        let latency = metrics.histogram("latency_ms", &[("route", "/chat")]).unwrap();
        t.block_on(latency.observe_batch(&[12.0, 15.0, 18.0, 250.0])).unwrap();
        let h = t.json(&["metrics", "agg", "latency_ms{route=/chat}", "--kind", "histogram", "--percentiles", "0.5,0.99"]);
        let snapshot = t.block_on(latency.snapshot()).unwrap();
        assert_eq!(h["count"], 4);
        assert_eq!(h["sum"], snapshot.sum);
        assert_eq!(h["max"], 250.0);
        assert_eq!(h["percentiles"][1]["value"], snapshot.quantile(0.99).unwrap());
        t.fails(2, &["metrics", "tail", "latency_ms{route=/chat}", "--kind", "histogram"]);
        t.fails(2, &["metrics", "agg", "latency_ms{route=/chat}", "--kind", "histogram", "--window", "1h"]);
        t.fails(1, &["metrics", "agg", "latency_ms", "--kind", "histogram"]);

        let err = t.fails(1, &["metrics", "tail", "tokens"]);
        assert!(err.contains("unknown gauge series"), "{err}");
        t.fails(1, &["metrics", "tail", "loss{run=other}"]);
        t.fails(2, &["metrics", "tail", "loss{run"]);
        t.usage(&["metrics", "agg", "loss", "--percentiles", "95"]);
    }
}
