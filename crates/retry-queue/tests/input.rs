//! Bad input to a queue: payloads over the queue's limit, and payloads a JSON worker cannot
//! decode. Each fails clearly and loses nothing else.

use std::time::Duration;

use coordkit_retry_queue::{DEFAULT_MAX_PAYLOAD_BYTES, NewTask, Queue, QueueError, Worker};
use coordkit_testkit::redis_test;

redis_test! {
    async fn a_payload_over_the_limit_fails_the_enqueue_with_nothing_enqueued(redis) {
        let pool = redis.pool().await;
        let queue = Queue::builder(&pool, &redis.keyspace(), "limits").max_payload_bytes(1_000).build().unwrap();
        let batch = vec![NewTask::new(vec![b'a'; 1_000]), NewTask::new(vec![b'b'; 1_001])];
        match queue.enqueue_batch(&batch).await {
            Err(e @ QueueError::PayloadTooLarge { index: 1, len: 1_001, max: 1_000 }) => {
                assert!(e.to_string().contains("max_payload_bytes"), "{e}");
            }
            other => panic!("expected PayloadTooLarge, got {other:?}"),
        }
        assert_eq!(queue.stats().await.unwrap().ready, 0, "part of the batch was enqueued");
        // At the limit it goes through.
        queue.enqueue(batch[0].clone()).await.unwrap();
        assert_eq!(queue.stats().await.unwrap().ready, 1);
        // The default is 1 MiB.
        let queue = Queue::builder(&pool, &redis.keyspace(), "default").build().unwrap();
        let over = NewTask::new(vec![0u8; DEFAULT_MAX_PAYLOAD_BYTES + 1]);
        assert!(matches!(queue.enqueue(over).await, Err(QueueError::PayloadTooLarge { .. })));
        queue.enqueue(NewTask::new(vec![0u8; DEFAULT_MAX_PAYLOAD_BYTES])).await.unwrap();
    }
}

redis_test! {
    async fn the_payload_limit_is_validated(redis) {
        let pool = redis.pool().await;
        for bad in [0, (512 << 20) + 1] {
            let err = Queue::builder(&pool, &redis.keyspace(), "limits")
                .max_payload_bytes(bad)
                .build()
                .unwrap_err();
            assert!(err.to_string().contains("max_payload_bytes"), "{err}");
        }
    }
}

#[derive(Debug, serde::Deserialize)]
struct Invoice {
    #[allow(dead_code)]
    number: u64,
}

redis_test! {
    async fn a_malformed_payload_is_dead_lettered_naming_the_expected_type(redis) {
        let pool = redis.pool().await;
        let queue = Queue::builder(&pool, &redis.keyspace(), "json").build().unwrap();
        let id = queue.enqueue(NewTask::new("{\"number\": \"seven\"}")).await.unwrap().id().to_owned();
        let good = queue.enqueue(NewTask::new("{\"number\": 7}")).await.unwrap().id().to_owned();
        let worker = Worker::builder_json(&queue, |_task, _invoice: Invoice| async {
            Ok::<(), String>(())
        }).start()
        .await
        .unwrap();
        for _ in 0..500 {
            if worker.stats().acked == 1 && worker.stats().dead_lettered == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(worker.shutdown().await.clean);
        assert_eq!(queue.inspect(&good).await.unwrap(), None, "the good task was not acked");
        let info = queue.inspect(&id).await.unwrap().unwrap();
        assert_eq!(info.reason.as_deref(), Some("malformed"));
        let error = &info.errors.last().unwrap().error;
        assert!(error.contains("Invoice") && error.contains("invalid type"), "{error}");
    }
}

#[test]
fn a_payload_that_cannot_be_json_is_an_encode_error_with_its_source() {
    // JSON object keys must be strings: a map keyed by pairs does not encode.
    let value: std::collections::BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
    let err = NewTask::json(&value).unwrap_err();
    assert!(matches!(err, QueueError::Encode(_)), "{err:?}");
    assert!(std::error::Error::source(&err).is_some());
}
