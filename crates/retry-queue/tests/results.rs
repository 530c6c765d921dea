//! Results and progress: a handler's value is stored with the ack and `wait` returns it; a task
//! that exhausts its attempts resolves `wait` with its failure; waiting before the claim, after
//! the end, across a pub/sub reconnect, past a result's expiry and past the timeout; progress
//! events; and bad data in a result key, named.

use std::time::Duration;

use coordkit_core::{Clock, Error, Key, KeyKind, Keyspace, ManualClock, Pool, redis};
use coordkit_retry_queue::{
    Backoff, Jitter, NewTask, Queue, QueueError, QueueEventKind, TaskFailure, TaskOptions,
    TaskOutcome, Worker,
};
use coordkit_testkit::garbage::overwrite_with_type;
use coordkit_testkit::redis_test;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Summary {
    words: usize,
    title: String,
}

const LONG: Duration = Duration::from_secs(60);

/// The key of task `id`'s result (`<ns>:{queue:<name>}:result:<id>`).
fn result_key(keyspace: &Keyspace, queue: &Queue, id: &str) -> Key {
    let instance = keyspace.instance("queue", queue.name()).unwrap();
    instance.typed_key(&format!("result:{id}"), KeyKind::String)
}

async fn set(pool: &Pool, key: &Key, value: &[u8]) {
    let _: () = pool
        .query(redis::cmd("SET").arg(key).arg(value))
        .await
        .unwrap();
}

fn manual(pool: &Pool, keyspace: &Keyspace, name: &str) -> (Queue, ManualClock) {
    let clock = ManualClock::new(1_800_000_000_000);
    let queue = Queue::builder(pool, keyspace, name)
        .clock(Clock::Manual(clock.clone()))
        .result_ttl(Duration::from_secs(10))
        .build()
        .unwrap();
    (queue, clock)
}

redis_test! {
    async fn wait_returns_the_handlers_result(redis) {
        let pool = redis.pool().await;
        let keyspace = redis.keyspace();
        let queue = Queue::builder(&pool, &keyspace, "summaries").build().unwrap();
        let texts = ["one two three", "four five"];
        let mut handles = Vec::new();
        for text in texts {
            let e = queue.enqueue_json(text, TaskOptions::default()).await.unwrap();
            handles.push(e.handle(&queue));
        }
        // Both waits start before any task is claimed: no worker runs yet.
        let waits: Vec<_> = handles
            .iter()
            .map(|h| {
                let h = h.clone();
                tokio::spawn(async move { h.wait_json::<Summary>(LONG).await })
            })
            .collect();
        let worker = Worker::builder_json(&queue, |task, text: String| async move {
            Ok::<_, String>(Summary { words: text.split(' ').count(), title: format!("#{}", task.id) })
        })
        .start()
        .await
        .unwrap();
        for (wait, (h, text)) in waits.into_iter().zip(handles.iter().zip(texts)) {
            let outcome = wait.await.unwrap().unwrap();
            let expected = Summary { words: text.split(' ').count(), title: format!("#{}", h.id()) };
            assert_eq!(outcome, TaskOutcome::Succeeded(expected));
        }
        // After the end, the stored state answers at once, and again.
        let again = handles[0].wait_json::<Summary>(Duration::ZERO).await.unwrap();
        assert!(matches!(again, TaskOutcome::Succeeded(Summary { words: 3, .. })), "{again:?}");
        // The result expires by itself: Redis holds it with a TTL (default 1 hour).
        let ttl: i64 = pool
            .query(redis::cmd("PTTL").arg(result_key(&keyspace, &queue, handles[0].id())))
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 3_600_000, "{ttl}");
        assert!(worker.shutdown().await.clean);
    }
}

redis_test! {
    async fn a_task_that_exhausts_its_attempts_resolves_wait_with_the_failure(redis) {
        let pool = redis.pool().await;
        let keyspace = redis.keyspace();
        let queue = Queue::builder(&pool, &keyspace, "doomed").build().unwrap();
        let options = TaskOptions::default()
            .max_attempts(3)
            .backoff(Backoff::Fixed(Duration::from_millis(5)))
            .jitter(Jitter::None);
        let handle = queue.enqueue(NewTask::new("x").options(options)).await.unwrap().handle(&queue);
        // It waits through two retries: only the dead letter ends it.
        let wait = tokio::spawn({
            let handle = handle.clone();
            async move { handle.wait(LONG).await }
        });
        let worker = Worker::builder(&queue, |task| async move {
            Err::<Summary, _>(format!("boom {}", task.attempt))
        })
        .start()
        .await
        .unwrap();
        let TaskOutcome::Failed(failure) = wait.await.unwrap().unwrap() else {
            panic!("not a failure");
        };
        let TaskFailure { reason, attempts, last_error } = failure;
        assert_eq!((reason.as_str(), attempts), ("exhausted", 3));
        let last = last_error.expect("the last error");
        assert_eq!((last.attempt, last.error.as_str()), (3, "boom 3"));
        assert!(worker.shutdown().await.clean);
        // Purged from the dead-letter queue, it is gone.
        queue.purge_all().await.unwrap();
        assert_eq!(handle.wait(Duration::ZERO).await.unwrap(), TaskOutcome::Gone);
    }
}

redis_test! {
    async fn a_wait_started_before_the_claim_wakes_on_the_ack(redis) {
        let pool = redis.pool().await;
        let keyspace = redis.keyspace();
        let (queue, _clock) = manual(&pool, &keyspace, "manual");
        let handle = queue.enqueue(NewTask::new("x")).await.unwrap().handle(&queue);
        let mut wait = Box::pin(handle.wait(LONG));
        // Subscribed and found it still to run (no timing is asserted: it just has not ended).
        assert!(tokio::time::timeout(Duration::from_millis(200), &mut wait).await.is_err());
        let task = queue.claim(1).await.unwrap().tasks.remove(0);
        // A retry does not end the wait.
        queue.fail(&task, "once").await.unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(100), &mut wait).await.is_err());
        _clock.advance(Duration::from_secs(60));
        let task = queue.claim(1).await.unwrap().tasks.remove(0);
        queue.ack_with(&task, &serde_json::json!({"ok": true})).await.unwrap();
        assert_eq!(wait.await.unwrap(), TaskOutcome::Succeeded(br#"{"ok":true}"#.to_vec()));
    }
}

redis_test! {
    async fn a_wait_survives_a_pubsub_reconnect(redis) {
        let pool = redis.pool().await;
        let keyspace = redis.keyspace();
        let (queue, _clock) = manual(&pool, &keyspace, "reconnect");
        let handle = queue.enqueue(NewTask::new("x")).await.unwrap().handle(&queue);
        let task = queue.claim(1).await.unwrap().tasks.remove(0);
        let mut wait = Box::pin(handle.wait(LONG));
        assert!(tokio::time::timeout(Duration::from_millis(200), &mut wait).await.is_err());
        // The waiter's connection drops; the ack's event is published while it may be down.
        let _: Vec<redis::Value> = redis.on_every_server(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        queue.ack_with(&task, "done").await.unwrap();
        assert_eq!(wait.await.unwrap(), TaskOutcome::Succeeded(br#""done""#.to_vec()));
    }
}

redis_test! {
    async fn a_result_expires_a_plain_ack_is_gone_and_a_timeout_says_so(redis) {
        let pool = redis.pool().await;
        let keyspace = redis.keyspace();
        let (queue, clock) = manual(&pool, &keyspace, "expiry");
        let batch: Vec<NewTask> = (0..3).map(|i| NewTask::new(format!("{i}"))).collect();
        let ids: Vec<String> = queue.enqueue_batch(&batch).await.unwrap().iter().map(|e| e.id().to_owned()).collect();
        let mut tasks = queue.claim(2).await.unwrap().tasks;
        queue.ack_with(&tasks[0], &42).await.unwrap();
        queue.ack(&tasks[1]).await.unwrap();
        let wait = |id: &str| {
            let handle = queue.task(id);
            async move { handle.wait_json::<u32>(Duration::ZERO).await }
        };
        assert_eq!(wait(&ids[0]).await.unwrap(), TaskOutcome::Succeeded(42));
        // Acknowledged without a result (a handler returning `()`): nothing stored.
        assert_eq!(wait(&ids[1]).await.unwrap(), TaskOutcome::Gone);
        // Never claimed: the timeout ends the wait, with a clear answer.
        let pending = queue.task(&ids[2]).wait(Duration::from_millis(50)).await.unwrap();
        assert_eq!(pending, TaskOutcome::TimedOut);
        assert_eq!(queue.task(&ids[2]).outcome().await.unwrap(), None);
        // The result lives 10 s on the queue's clock.
        clock.advance(Duration::from_millis(9_999));
        assert_eq!(wait(&ids[0]).await.unwrap(), TaskOutcome::Succeeded(42));
        clock.advance(Duration::from_millis(1));
        assert_eq!(wait(&ids[0]).await.unwrap(), TaskOutcome::Gone);
        // Ids this queue never hands out.
        assert_eq!(queue.task("nope").wait(LONG).await.unwrap(), TaskOutcome::Gone);
        tasks.clear();
    }
}

redis_test! {
    async fn handlers_report_progress_as_events_while_they_hold_the_lease(redis) {
        let pool = redis.pool().await;
        let keyspace = redis.keyspace();
        let queue = Queue::builder(&pool, &keyspace, "progress").build().unwrap();
        let mut events = queue.events().await.unwrap();
        let handle = queue.enqueue(NewTask::new("x")).await.unwrap().handle(&queue);
        let worker = Worker::builder(&queue, {
            let queue = queue.clone();
            move |task| {
                let queue = queue.clone();
                async move {
                    let sent = queue.progress(&task, &serde_json::json!({"step": 1})).await;
                    if sent.map_err(|e| e.to_string())? { Ok(task.attempt) } else { Err("not sent".to_string()) }
                }
            }
        })
        .start()
        .await
        .unwrap();
        assert_eq!(handle.wait_json::<u32>(LONG).await.unwrap(), TaskOutcome::Succeeded(1));
        let mut kinds = Vec::new();
        while kinds.len() < 2 {
            let e = tokio::time::timeout(LONG, events.recv()).await.unwrap().unwrap();
            kinds.push(e.kind);
        }
        assert!(kinds.contains(&QueueEventKind::Progress {
            task: handle.id().to_owned(),
            progress: serde_json::json!({"step": 1}),
        }), "{kinds:?}");
        // An ack with a result always publishes `succeeded` (what wakes a waiter).
        assert!(kinds.contains(&QueueEventKind::Succeeded { task: handle.id().to_owned(), attempt: 1 }));
        assert!(worker.shutdown().await.clean);
        // A lease no longer held publishes nothing; an oversized report is refused.
        let (queue, _clock) = manual(&pool, &keyspace, "progress-manual");
        queue.enqueue(NewTask::new("y")).await.unwrap();
        let task = queue.claim(1).await.unwrap().tasks.remove(0);
        assert!(queue.progress(&task, &1).await.unwrap());
        let big = "x".repeat(coordkit_retry_queue::MAX_PROGRESS_BYTES);
        assert!(matches!(queue.progress(&task, &big).await, Err(QueueError::ProgressTooLarge { .. })));
        queue.ack(&task).await.unwrap();
        assert!(!queue.progress(&task, &2).await.unwrap());
    }
}

redis_test! {
    async fn a_result_too_large_dead_letters_the_task(redis) {
        let pool = redis.pool().await;
        let keyspace = redis.keyspace();
        let queue = Queue::builder(&pool, &keyspace, "big")
            .max_payload_bytes(64)
            .build()
            .unwrap();
        let handle = queue.enqueue(NewTask::new("x")).await.unwrap().handle(&queue);
        let worker = Worker::builder(&queue, |_task| async { Ok::<_, String>("y".repeat(100)) })
            .start()
            .await
            .unwrap();
        let TaskOutcome::Failed(f) = handle.wait(LONG).await.unwrap() else { panic!("not failed") };
        assert_eq!(f.reason, "result_too_large");
        assert!(worker.shutdown().await.clean);
    }
}

redis_test! {
    async fn bad_data_in_a_result_key_is_named_and_repairable(redis) {
        let pool = redis.pool().await;
        let keyspace = redis.keyspace();
        let (queue, _clock) = manual(&pool, &keyspace, "bad");
        let handle = queue.enqueue(NewTask::new("x")).await.unwrap().handle(&queue);
        let task = queue.claim(1).await.unwrap().tasks.remove(0);
        queue.ack_with(&task, &7).await.unwrap();
        let key = result_key(&keyspace, &queue, handle.id());
        let named = |e: QueueError| match e {
            QueueError::Core(Error::WrongType { key: k, .. } | Error::Corrupt { key: k, .. }) => k,
            other => panic!("unexpected {other:?}"),
        };
        // A key of another type.
        for ty in ["hash", "list", "zset", "set"] {
            overwrite_with_type(&pool, &key, ty).await;
            assert_eq!(named(handle.wait(LONG).await.unwrap_err()), key.as_str(), "{ty}");
        }
        // Bytes: too short for the expiry, an expiry out of bounds, not JSON of the type asked.
        for raw in [&b"abc"[..], &[0xff; 12][..]] {
            set(&pool, &key, raw).await;
            let e = handle.wait(LONG).await.unwrap_err();
            assert!(e.to_string().contains(key.as_str()), "{e}");
            assert_eq!(named(e), key.as_str());
        }
        let mut raw = (1_900_000_000_000u64).to_le_bytes().to_vec();
        raw.extend_from_slice(b"\xff not json");
        set(&pool, &key, &raw).await;
        assert_eq!(handle.wait(LONG).await.unwrap(), TaskOutcome::Succeeded(b"\xff not json".to_vec()));
        let e = handle.wait_json::<u32>(LONG).await.unwrap_err();
        assert!(e.to_string().contains("u32"), "{e}");
        assert_eq!(named(e), key.as_str());
        // Deleted: the task is gone (it was acknowledged); a fresh result over garbage replaces it.
        let _: () = pool.query(redis::cmd("DEL").arg(&key)).await.unwrap();
        assert_eq!(handle.wait(LONG).await.unwrap(), TaskOutcome::Gone);
        let second = queue.enqueue(NewTask::new("y")).await.unwrap().handle(&queue);
        overwrite_with_type(&pool, &result_key(&keyspace, &queue, second.id()), "hash").await;
        let task = queue.claim(1).await.unwrap().tasks.remove(0);
        queue.ack_with(&task, &8).await.unwrap();
        assert_eq!(second.wait_json::<u32>(LONG).await.unwrap(), TaskOutcome::Succeeded(8));
        // Nothing else was touched: the queue is empty and counted both.
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.ready, stats.leased, stats.dead, stats.completed), (0, 0, 0, 2));
    }
}
