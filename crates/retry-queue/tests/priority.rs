//! Priorities against a real Redis, standalone and a 3-master cluster: claims take the highest
//! priority first and first in first out within one; a task that comes back to ready (retry,
//! stall, requeue, make-due) goes behind the tasks of its priority ready then; the stats count
//! and age both lanes; a priority out of range names the field.

use std::time::Duration;

use coordkit_core::{Clock, ManualClock};
use coordkit_retry_queue::{
    Backoff, Jitter, MAX_PRIORITY, NewTask, Queue, QueueError, Settle, TaskOptions,
};
use coordkit_testkit::redis_test;

fn at(priority: u8) -> TaskOptions {
    TaskOptions::default()
        .priority(priority)
        .backoff(Backoff::Fixed(Duration::from_millis(100)))
        .jitter(Jitter::None)
        .lease(Duration::from_secs(5))
}

/// Enqueues one task per priority (named by its payload), in this order.
async fn enqueue_all(queue: &Queue, tasks: &[(&str, u8)]) {
    let batch: Vec<NewTask> = tasks
        .iter()
        .map(|(name, p)| NewTask::new(name.as_bytes().to_vec()).options(at(*p)))
        .collect();
    queue.enqueue_batch(&batch).await.unwrap();
}

/// The payloads of the tasks claimed one at a time until none is left, acking each.
async fn drain_one_by_one(queue: &Queue) -> Vec<String> {
    let mut order = Vec::new();
    loop {
        let claim = queue.claim(1).await.unwrap();
        let Some(task) = claim.tasks.first() else {
            return order;
        };
        order.push(String::from_utf8(task.payload.clone()).unwrap());
        queue.settle(&[(task, Settle::Ack)]).await.unwrap();
    }
}

redis_test! {
    async fn claims_take_the_highest_priority_first_fifo_within_one(redis) {
        let pool = redis.pool().await;
        let queue = Queue::builder(&pool, &redis.keyspace(), "prio").build().unwrap();
        enqueue_all(&queue, &[("a0", 0), ("b5", 5), ("c9", 9), ("d5", 5), ("e0", 0), ("f9", 9)])
            .await;
        enqueue_all(&queue, &[("g1", 1), ("h9", 9)]).await;
        let stats = queue.stats().await.unwrap();
        assert_eq!(stats.ready, 8, "both lanes count as ready");
        assert_eq!(
            drain_one_by_one(&queue).await,
            ["c9", "f9", "h9", "b5", "d5", "g1", "a0", "e0"]
        );

        // A batch claim takes them in the same order, its priority on each task.
        enqueue_all(&queue, &[("x0", 0), ("y3", 3), ("z7", 7)]).await;
        let claim = queue.claim(10).await.unwrap();
        let got: Vec<(Vec<u8>, u8)> =
            claim.tasks.iter().map(|t| (t.payload.clone(), t.priority)).collect();
        assert_eq!(got, [(b"z7".to_vec(), 7), (b"y3".to_vec(), 3), (b"x0".to_vec(), 0)]);
        let info = queue.inspect(&claim.tasks[0].id).await.unwrap().unwrap();
        assert_eq!(info.priority, 7);
    }
}

redis_test! {
    async fn a_task_back_in_ready_goes_behind_its_priority(redis) {
        let pool = redis.pool().await;
        let clock = ManualClock::new(1_800_000_000_000);
        let queue = Queue::builder(&pool, &redis.keyspace(), "back")
            .clock(Clock::Manual(clock.clone()))
            .build()
            .unwrap();
        // r5 fails and is retried after 100 ms; s5 waits meanwhile; l5 stalls.
        enqueue_all(&queue, &[("r5", 5), ("l5", 5)]).await;
        let claim = queue.claim(2).await.unwrap();
        let r5 = &claim.tasks[0];
        assert_eq!(r5.payload, b"r5");
        queue.settle(&[(r5, Settle::Fail("boom".into()))]).await.unwrap();
        enqueue_all(&queue, &[("s5", 5), ("t0", 0), ("u9", 9)]).await;
        // Both come back with this claim: r5 promoted, l5 reclaimed (its lease is 5 s).
        clock.advance(Duration::from_secs(6));
        let first = queue.claim(1).await.unwrap();
        assert_eq!(first.tasks[0].payload, b"u9");
        queue.settle(&[(&first.tasks[0], Settle::Ack)]).await.unwrap();
        let rest = drain_one_by_one(&queue).await;
        // Within priority 5: s5 was ready before the two came back; the two came back in one
        // call, so they rank the same and go by id (r5 was enqueued first).
        assert_eq!(rest, ["s5", "r5", "l5", "t0"]);
    }
}

redis_test! {
    async fn requeued_and_made_due_tasks_keep_their_priority(redis) {
        let pool = redis.pool().await;
        let queue = Queue::builder(&pool, &redis.keyspace(), "requeue").build().unwrap();
        let once = at(8).max_attempts(1);
        queue.enqueue(NewTask::new(b"dead8".to_vec()).options(once)).await.unwrap();
        let claim = queue.claim(1).await.unwrap();
        queue.settle(&[(&claim.tasks[0], Settle::Fail("no".into()))]).await.unwrap();
        assert_eq!(queue.stats().await.unwrap().dead, 1);
        let later = at(6).delay(Duration::from_secs(3600));
        let delayed = queue.enqueue(NewTask::new(b"late6".to_vec()).options(later)).await.unwrap();
        enqueue_all(&queue, &[("a0", 0), ("b4", 4)]).await;
        assert_eq!(queue.requeue_all(false).await.unwrap(), 1);
        assert_eq!(queue.make_due(&[delayed.id()]).await.unwrap(), [delayed.id().to_owned()]);
        assert_eq!(drain_one_by_one(&queue).await, ["dead8", "late6", "b4", "a0"]);
    }
}

redis_test! {
    async fn the_oldest_ready_age_looks_at_every_priority(redis) {
        let pool = redis.pool().await;
        let clock = ManualClock::new(1_800_000_000_000);
        let queue = Queue::builder(&pool, &redis.keyspace(), "age")
            .clock(Clock::Manual(clock.clone()))
            .build()
            .unwrap();
        enqueue_all(&queue, &[("old3", 3)]).await;
        clock.advance(Duration::from_secs(10));
        enqueue_all(&queue, &[("new9", 9), ("new0", 0)]).await;
        clock.advance(Duration::from_secs(5));
        let stats = queue.stats().await.unwrap();
        assert_eq!(stats.ready, 3);
        assert_eq!(stats.oldest_ready_age, Some(Duration::from_secs(15)));
    }
}

redis_test! {
    async fn a_priority_out_of_range_names_the_field(redis) {
        let pool = redis.pool().await;
        let queue = Queue::builder(&pool, &redis.keyspace(), "range").build().unwrap();
        let bad = NewTask::new(b"x".to_vec()).options(at(MAX_PRIORITY + 1));
        match queue.enqueue(bad).await {
            Err(QueueError::Core(e)) => assert!(e.to_string().contains("priority"), "{e}"),
            other => panic!("expected an invalid priority, got {other:?}"),
        }
        assert_eq!(queue.stats().await.unwrap().ready, 0, "nothing enqueued");
    }
}
