//! Every primitive from the facade is the primitive from its crate: the same builder, the same
//! keys, the same validation naming the setter. (The breaker has its own test, with its
//! registry, in `tests/breaker.rs`.)

use coordkit::Coordkit;
use coordkit::context::{ContextError, ContextStore};
use coordkit::core::Error;
use coordkit::errors::ErrorTracker;
use coordkit::mesh::{AgentError, Channel, MeshAgent, Reply};
use coordkit::metrics::Metrics;
use coordkit::retry_queue::{Queue, QueueError};
use coordkit_testkit::redis_test;
use std::time::Duration;

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

        // A mesh agent: the same name and keys; a message sent through one is received by the
        // other, and an ask through the facade's is answered by the crate's.
        let (a, b) = (
            kit.agent("planner").build().unwrap(),
            MeshAgent::builder(&pool, ks, "planner").build().unwrap(),
        );
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_eq!(a.keys(), b.keys());
        assert!(format!("{a:?}").contains("planner"));
        match kit.agent("planner").max_messages(0).build() {
            Err(AgentError::Core(Error::InvalidConfig { field, .. })) => assert_eq!(field, "max_messages"),
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
        let asker = kit.agent("asker").build().unwrap();
        asker.send("planner", &"hello").await.unwrap();
        let note = b.recv::<String>().await.unwrap();
        assert_eq!((note.from.as_str(), note.payload.as_str()), ("asker", "hello"));
        note.ack().await.unwrap();
        let server = b.serve(|n: u64| async move { Ok::<u64, String>(n * 2) }).await.unwrap();
        let reply: Reply<u64> = asker.ask(a.name(), &21u64, Duration::from_secs(30)).await.unwrap();
        assert_eq!(reply, Reply::Answer(42));
        server.shutdown().await;

        // A typed channel: the same Redis channel; a subscriber of one hears the other.
        let (a, b) = (
            kit.channel::<u32>("progress").build().unwrap(),
            Channel::<u32>::builder(&pool, ks, "progress").build().unwrap(),
        );
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_eq!(a.redis_channel(), b.redis_channel());
        match kit.channel::<u32>("progress").kind("bad kind").build() {
            Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, "kind"),
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
        let mut heard = b.subscribe().await.unwrap();
        assert_eq!(a.publish(&7).await.unwrap(), 1);
        assert_eq!(heard.recv().await.expect("a message").payload, 7);
    }
}
