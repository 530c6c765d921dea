//! Every primitive from the facade is the primitive from its crate: the same builder, the same
//! keys, the same validation naming the setter. (The breaker has its own test, with its
//! registry, in `tests/breaker.rs`.)

use coordkit::Coordkit;
use coordkit::context::{ContextError, ContextStore};
use coordkit::core::Error;
use coordkit::errors::ErrorTracker;
use coordkit::metrics::Metrics;
use coordkit::retry_queue::{Queue, QueueError};
use coordkit_testkit::redis_test;

redis_test! {
    async fn each_primitive_from_the_facade_is_the_one_from_its_crate(redis) {
        let pool = redis.pool().await;
        let kit = Coordkit::from_pool(pool.clone(), redis.keyspace().namespace()).unwrap();
        let ks = kit.keyspace();

        let (a, b) = (kit.queue("jobs").build().unwrap(), Queue::builder(&pool, ks, "jobs").build().unwrap());
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert!(format!("{a:?}").contains("jobs"));
        match kit.queue("jobs").max_payload_bytes(0).build() {
            Err(QueueError::Core(Error::InvalidConfig { field, .. })) => assert_eq!(field, "max_payload_bytes"),
            other => panic!("expected InvalidConfig, got {other:?}"),
        }

        let (a, b) = (
            kit.error_tracker("agents").build().unwrap(),
            ErrorTracker::builder(&pool, ks, "agents").build().unwrap(),
        );
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert!(format!("{a:?}").contains("agents"));
        match kit.error_tracker("agents").max_tasks(0).build() {
            Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, "max_tasks"),
            other => panic!("expected InvalidConfig, got {other:?}"),
        }

        let (a, b) = (
            kit.context().actor("planner").build().unwrap(),
            ContextStore::builder(&pool, ks).actor("planner").build().unwrap(),
        );
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_eq!(a.actor(), "planner");
        match kit.context().history_len(0).build() {
            Err(ContextError::Core(Error::InvalidConfig { field, .. })) => assert_eq!(field, "history_len"),
            other => panic!("expected InvalidConfig, got {other:?}"),
        }

        let (a, b) = (kit.metrics().build().unwrap(), Metrics::builder(&pool, ks).build().unwrap());
        let (ga, gb) = (a.gauge("depth", &[("q", "jobs")]).unwrap(), b.gauge("depth", &[("q", "jobs")]).unwrap());
        assert_eq!(format!("{ga:?}"), format!("{gb:?}"));
        // A sample through one is read through the other.
        ga.record(7.0).await.unwrap();
        assert_eq!(gb.latest(1).await.unwrap().iter().map(|s| s.value).collect::<Vec<_>>(), [7.0]);
    }
}
