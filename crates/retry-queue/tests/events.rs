//! `Queue::events`: one queue's events, typed, without building channel names.

use std::time::Duration;

use coordkit_core::{Clock, ManualClock};
use coordkit_retry_queue::{Backoff, Jitter, NewTask, Queue, QueueEventKind, Settle, TaskOptions};
use coordkit_testkit::redis_test;

redis_test! {
    async fn a_queue_hears_its_own_events_typed_and_no_other_queues(redis) {
        let pool = redis.pool().await;
        let keyspace = redis.keyspace();
        let clock = ManualClock::new(1_800_000_000_000);
        let builder = |name: &str| {
            Queue::builder(&pool, &keyspace, name)
                .clock(Clock::Manual(clock.clone()))
                .succeeded_events(true)
                .build()
                .unwrap()
        };
        let mine = builder("mine");
        let other = builder("other");
        let mut events = mine.events().await.unwrap();
        let twice = TaskOptions::default()
            .max_attempts(2)
            .backoff(Backoff::Fixed(Duration::from_millis(100)))
            .jitter(Jitter::None);
        for queue in [&other, &mine] {
            queue.enqueue(NewTask::new("x").options(twice.clone())).await.unwrap();
            let t = queue.claim(1).await.unwrap().tasks.remove(0);
            queue.settle(&[(&t, Settle::Fail("boom".into()))]).await.unwrap();
            clock.advance(Duration::from_millis(100));
            let t = queue.claim(1).await.unwrap().tasks.remove(0);
            queue.fail(&t, "boom again").await.unwrap();
            queue.requeue(&[t.id.as_str()], true).await.unwrap();
            let t = queue.claim(1).await.unwrap().tasks.remove(0);
            queue.ack(&t).await.unwrap();
        }
        let now = clock.now_ms();
        let mut got = Vec::new();
        while got.len() < 4 {
            let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .expect("an event within 10 s")
                .expect("the subscription is open");
            got.push(event);
        }
        // Each kind has its own channel: on a cluster they may arrive in another order.
        let mut kinds: Vec<QueueEventKind> = got.iter().map(|e| e.kind.clone()).collect();
        let order = |k: &QueueEventKind| format!("{k:?}");
        kinds.sort_by_key(order);
        let mut expected = vec![
                QueueEventKind::RetryScheduled {
                    task: "1".into(),
                    attempt: 1,
                    delay_ms: 100,
                    due_ms: now,
                    in_place: false,
                },
                QueueEventKind::DeadLettered {
                    task: "1".into(),
                    reason: "exhausted".into(),
                    attempts: 2,
                    stalls: 0,
                },
                QueueEventKind::Requeued { task: "1".into(), reset: true },
                QueueEventKind::Succeeded { task: "1".into(), attempt: 1 },
        ];
        expected.sort_by_key(order);
        assert_eq!(kinds, expected);
        assert!(got.iter().all(|e| e.at_ms >= now - 100 && e.at_ms <= now));
        assert_eq!(events.undecodable(), 0);
        // Nothing of the other queue's (its events came first).
        assert!(tokio::time::timeout(Duration::from_millis(300), events.recv()).await.is_err());
    }
}
