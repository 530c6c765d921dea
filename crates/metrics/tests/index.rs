//! The namespace's index of series: every series written to is listed by `Metrics::list` in
//! one call, by its encoded id, exactly under concurrent handles; a cleared one is forgotten.

use std::collections::BTreeSet;

use coordkit_metrics::{Metrics, SeriesId};
use coordkit_testkit::redis_test;

redis_test! {
    async fn series_are_listed_from_their_first_write(redis) {
        let pool = redis.pool().await;
        let m = Metrics::builder(&pool, &redis.keyspace()).build().unwrap();
        let latency = m.gauge("latency_ms", &[("route", "/chat"), ("model", "a=b")]).unwrap();
        let _unused = m.gauge("never", &[]).unwrap();
        assert!(m.list().await.unwrap().names.is_empty());
        latency.record(12.0).await.unwrap();
        m.counter("requests", &[]).unwrap().increment(1.0).await.unwrap();
        let sizes = m.histogram("sizes", &[("kind", "img")]).unwrap();
        sizes.observe(3.0).await.unwrap();
        let listing = m.list().await.unwrap();
        assert!(listing.malformed.is_empty());
        let latency_id = SeriesId::new("latency_ms", &[("route", "/chat"), ("model", "a=b")]).unwrap();
        assert_eq!(listing.names, [latency_id.encoded(), "requests", "sizes,kind=img"]);

        // Cleared: forgotten; written again: listed again.
        latency.clear().await.unwrap();
        sizes.clear().await.unwrap();
        assert_eq!(m.list().await.unwrap().names, ["requests"]);
        latency.record(1.0).await.unwrap();
        assert_eq!(m.list_page(None, 1).await.unwrap().names, [latency_id.encoded()]);

        // Concurrent handles of shared and own series.
        let mut tasks = Vec::new();
        for t in 0..8 {
            let m = m.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..4 {
                    let label = if i < 2 { format!("shared-{i}") } else { format!("own-{t}-{i}") };
                    let g = m.gauge("load", &[("host", &label)]).unwrap();
                    g.record(1.0).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let mut expected: BTreeSet<String> =
            [latency_id.encoded().to_owned(), "requests".to_owned()].into();
        for t in 0..8 {
            for i in 0..4 {
                let label = if i < 2 { format!("shared-{i}") } else { format!("own-{t}-{i}") };
                expected.insert(format!("load,host={label}"));
            }
        }
        let listed: BTreeSet<String> = m.list().await.unwrap().names.into_iter().collect();
        assert_eq!(listed, expected);
    }
}
