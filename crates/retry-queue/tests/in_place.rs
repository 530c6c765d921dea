//! Retry in place against a real Redis, standalone and a 3-master cluster: a worker runs a
//! failure whose backoff is below the queue's threshold again itself, under the same lease,
//! with the attempt, error and event recorded; longer backoffs, paused and rate-limited queues
//! and groups and plain `Settle::Fail` go through the delayed set; a holder that dies during the backoff
//! loses nothing (the lease runs out and the task is reclaimed with its attempts).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use coordkit_core::{Clock, ManualClock};
use coordkit_retry_queue::{
    Backoff, Jitter, Limits, NewTask, Queue, QueueEventKind, Rate, Settle, Settled, TaskError,
    TaskOptions, Worker,
};
use coordkit_testkit::redis_test;

fn fixed(ms: u64) -> TaskOptions {
    TaskOptions::default()
        .max_attempts(5)
        .backoff(Backoff::Fixed(Duration::from_millis(ms)))
        .jitter(Jitter::None)
        .lease(Duration::from_secs(2))
}

/// Runs one task that fails twice, then succeeds, on a worker; answers the worker's stats.
async fn fail_twice(queue: &Queue, backoff_ms: u64) -> coordkit_retry_queue::WorkerStats {
    let runs = Arc::new(AtomicU32::new(0));
    let seen = runs.clone();
    let worker = Worker::builder(queue, move |task| {
        let seen = seen.clone();
        async move {
            let run = seen.fetch_add(1, Ordering::SeqCst) + 1;
            assert_eq!(task.attempt, run, "each run is the next attempt");
            if run <= 2 {
                Err(TaskError::Retry(format!("failure {run}")))
            } else {
                Ok(())
            }
        }
    })
    .start()
    .await
    .unwrap();
    queue
        .enqueue(NewTask::new("x").options(fixed(backoff_ms)))
        .await
        .unwrap();
    for _ in 0..500 {
        if worker.stats().acked == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = worker.shutdown().await;
    assert!(report.clean, "{report:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    report.stats
}

redis_test! {
    async fn a_worker_retries_a_short_backoff_in_place(redis) {
        let pool = redis.pool().await;
        let queue = Queue::builder(&pool, &redis.keyspace(), "short")
            .retry_in_place_below(Duration::from_millis(200))
            .build()
            .unwrap();
        let mut events = queue.events().await.unwrap();
        let stats = fail_twice(&queue, 50).await;
        // One claim, three runs: two failures settled in place, then the ack.
        assert_eq!((stats.claimed, stats.retried_in_place, stats.retried, stats.acked), (1, 2, 0, 1));
        let mut in_place = 0;
        while in_place < 2 {
            let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
                .await
                .expect("a retry event")
                .unwrap();
            if let QueueEventKind::RetryScheduled { attempt, in_place: kept, .. } = e.kind {
                assert!(kept, "{e:?}");
                assert_eq!(attempt, in_place + 1);
                in_place += 1;
            }
        }
        let s = queue.stats().await.unwrap();
        assert_eq!((s.ready, s.delayed, s.leased, s.completed), (0, 0, 0, 1));
    }
}

redis_test! {
    async fn a_longer_backoff_goes_through_the_delayed_set(redis) {
        let pool = redis.pool().await;
        let queue = Queue::builder(&pool, &redis.keyspace(), "long")
            .retry_in_place_below(Duration::from_millis(20))
            .build()
            .unwrap();
        let stats = fail_twice(&queue, 50).await;
        assert_eq!((stats.claimed, stats.retried_in_place, stats.retried, stats.acked), (3, 0, 2, 1));
    }
}

redis_test! {
    async fn a_holder_that_dies_during_the_backoff_loses_nothing(redis) {
        let pool = redis.pool().await;
        let clock = ManualClock::new(1_800_000_000_000);
        let queue = Queue::builder(&pool, &redis.keyspace(), "dies")
            .clock(Clock::Manual(clock.clone()))
            .retry_in_place_below(Duration::from_millis(500))
            .build()
            .unwrap();
        queue.enqueue(NewTask::new("x").options(fixed(100).max_attempts(2))).await.unwrap();
        let task = queue.claim(1).await.unwrap().tasks.remove(0);
        let answer = queue.settle(&[(&task, Settle::FailInPlace("first".into()))]).await.unwrap();
        assert_eq!(answer, [Settled::RetryingInPlace { attempts: 1, delay_ms: 100 }]);
        // Still leased to the same token, until the backoff and a whole lease are over.
        let info = queue.inspect(&task.id).await.unwrap().unwrap();
        assert_eq!(info.at_ms, Some(clock.now_ms() + 100 + 2_000));
        assert_eq!((info.attempts, info.errors.len()), (1, 1));
        clock.advance(Duration::from_millis(2_099));
        assert!(queue.claim(1).await.unwrap().tasks.is_empty(), "the lease holds");
        // The holder died: its lease runs out and the task comes back with its attempt spent.
        clock.advance(Duration::from_millis(1));
        let again = queue.claim(1).await.unwrap().tasks.remove(0);
        assert_eq!((again.id.as_str(), again.attempt, again.stalls), (task.id.as_str(), 2, 1));
        assert!(again.token > task.token);
        // The dead holder's late settle changes nothing; the last attempt is the budget's last.
        assert_eq!(queue.ack(&task).await.unwrap(), Settled::LeaseLost);
        let last = queue.settle(&[(&again, Settle::FailInPlace("second".into()))]).await.unwrap();
        assert_eq!(last, [Settled::DeadLettered { attempts: 2 }]);
    }
}

redis_test! {
    async fn paused_rate_limited_and_plain_fails_go_through_the_delayed_set(redis) {
        let pool = redis.pool().await;
        let clock = ManualClock::new(1_800_000_000_000);
        let queue = Queue::builder(&pool, &redis.keyspace(), "delayed")
            .clock(Clock::Manual(clock.clone()))
            .retry_in_place_below(Duration::from_millis(500))
            .build()
            .unwrap();
        let rate = Rate { starts: 10, per: Duration::from_secs(1) };
        let limited = Limits { max_leased: None, rate: Some(rate) };
        queue.set_group_limits("llm", limited).await.unwrap();
        let mut batch: Vec<NewTask> = (0..3).map(|i| NewTask::new(format!("{i}")).options(fixed(100))).collect();
        batch.push(NewTask::new("g").options(fixed(100).group("llm")));
        queue.enqueue_batch(&batch).await.unwrap();
        let tasks = queue.claim(4).await.unwrap().tasks;
        let grouped = tasks.iter().position(|t| t.group.is_some()).unwrap();
        let mut tasks = tasks;
        let in_group = tasks.remove(grouped);
        let due = clock.now_ms() + 100;
        let retry = Settled::RetryScheduled { attempts: 1, due_ms: due };
        // A plain fail: its holder did not say it can run it again.
        assert_eq!(queue.settle(&[(&tasks[0], Settle::Fail("e".into()))]).await.unwrap(), [retry]);
        // Paused: the claim decides when it starts again.
        queue.pause().await.unwrap();
        assert_eq!(queue.settle(&[(&tasks[1], Settle::FailInPlace("e".into()))]).await.unwrap(), [retry]);
        queue.resume().await.unwrap();
        // A group with a rate limit: each of its starts must go through a claim.
        assert_eq!(queue.settle(&[(&in_group, Settle::FailInPlace("e".into()))]).await.unwrap(), [retry]);
        // The queue rate-limited: the same for every task.
        queue.set_limits(limited).await.unwrap();
        assert_eq!(queue.settle(&[(&tasks[2], Settle::FailInPlace("e".into()))]).await.unwrap(), [retry]);
        assert_eq!(queue.stats().await.unwrap().delayed, 4);
    }
}

redis_test! {
    async fn a_retry_in_place_sent_again_is_recorded_once(redis) {
        let pool = redis.pool().await;
        let clock = ManualClock::new(1_800_000_000_000);
        let queue = Queue::builder(&pool, &redis.keyspace(), "again")
            .clock(Clock::Manual(clock.clone()))
            .build()
            .unwrap();
        queue.enqueue(NewTask::new("x").options(fixed(100).max_attempts(2))).await.unwrap();
        let task = queue.claim(1).await.unwrap().tasks.remove(0);
        let fail = [(&task, Settle::FailInPlace("first".into()))];
        let first = queue.settle(&fail).await.unwrap();
        assert_eq!(first, [Settled::RetryingInPlace { attempts: 1, delay_ms: 100 }]);
        // The worker sends the same settle again (its first try timed out, yet ran): the same
        // answer, and the attempt is not counted twice (it would be the last of 2: dead).
        clock.advance(Duration::from_millis(10));
        assert_eq!(queue.settle(&fail).await.unwrap(), first);
        let info = queue.inspect(&task.id).await.unwrap().unwrap();
        assert_eq!((info.attempts, info.errors.len()), (1, 1));
        assert_eq!(info.at_ms, Some(clock.now_ms() - 10 + 100 + 2_000), "the lease as the first try set it");
    }
}
