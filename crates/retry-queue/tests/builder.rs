//! The builders validate every setting and name the setter at fault; a queue's `Debug` shows
//! its name and keys, never the server's address.

use std::time::Duration;

use coordkit_core::Error;
use coordkit_retry_queue::{Queue, QueueError, Worker};
use coordkit_testkit::redis_test;

fn field(e: QueueError) -> &'static str {
    match e {
        QueueError::Core(Error::InvalidConfig { field, .. }) => field,
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

redis_test! {
    async fn queue_settings_out_of_range_name_their_setter(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let b = || Queue::builder(&pool, &ks, "q");
        let cases = [
            (b().max_stalls(1_001), "max_stalls"),
            (b().errors_kept(0), "errors_kept"),
            (b().errors_kept(101), "errors_kept"),
            (b().promote_limit(0), "promote_limit"),
            (b().reclaim_limit(10_001), "reclaim_limit"),
            (b().dlq_max_age(Duration::from_millis((1 << 35) + 1)), "dlq_max_age"),
            (b().max_payload_bytes(0), "max_payload_bytes"),
        ];
        for (builder, expected) in cases {
            assert_eq!(field(builder.build().unwrap_err()), expected);
        }
        // At the edges of each range it builds.
        b().max_stalls(1_000).errors_kept(100).promote_limit(10_000).reclaim_limit(1).build().unwrap();
        assert!(matches!(
            Queue::builder(&pool, &ks, "bad name").build(),
            Err(QueueError::Core(Error::InvalidName { .. }))
        ));
    }
}

redis_test! {
    async fn worker_settings_out_of_range_name_their_setter(redis) {
        let pool = redis.pool().await;
        let queue = Queue::builder(&pool, &redis.keyspace(), "w").build().unwrap();
        let handler = |_task| async { Ok::<(), String>(()) };
        let cases = [
            (Worker::builder(&queue, handler).concurrency(0), "concurrency"),
            (Worker::builder(&queue, handler).concurrency(10_001), "concurrency"),
            (Worker::builder(&queue, handler).batch(501), "batch"),
            (Worker::builder(&queue, handler).shutdown_timeout(Duration::MAX), "shutdown_timeout"),
        ];
        for (builder, expected) in cases {
            assert_eq!(field(builder.start().await.unwrap_err()), expected);
        }
        let worker = Worker::builder(&queue, handler).concurrency(10_000).batch(500).start().await.unwrap();
        assert!(worker.shutdown().await.clean);
    }
}

redis_test! {
    async fn a_queue_debug_shows_its_name_and_keys_not_the_server(redis) {
        let pool = redis.pool().await;
        let queue = Queue::builder(&pool, &redis.keyspace(), "emails").build().unwrap();
        let shown = format!("{queue:?}");
        assert!(shown.contains("\"emails\""), "{shown}");
        for key in queue.keys() {
            assert!(shown.contains(key.as_str()), "{shown} lacks {key}");
        }
        let address = pool.address().to_string();
        assert!(!shown.contains(&address), "{shown} shows the server {address}");
        let builder = format!("{:?}", Worker::builder(&queue, |_task| async { Ok::<(), String>(()) }));
        assert!(builder.contains("emails"), "{builder}");
    }
}
