//! The queue's operations against a real Redis, standalone and a 3-master cluster: enqueue and
//! idempotency, claim/ack, retries and dead letters with their events, fencing tokens, stalls,
//! the DLQ operations and caps, stats, bad input.

use std::time::Duration;

use coordkit_core::{Clock, Event, ManualClock, redis};
use coordkit_retry_queue::{
    Backoff, Enqueued, Jitter, NewTask, Queue, Settle, Settled, TaskOptions, TaskState,
};
use coordkit_testkit::redis_test;

/// A queue `name` on a manual clock, with `succeeded` events on.
fn manual(
    pool: &coordkit_core::Pool,
    keyspace: &coordkit_core::Keyspace,
    name: &str,
) -> (ManualClock, Queue) {
    let clock = ManualClock::new(1_800_000_000_000);
    let queue = Queue::builder(pool, keyspace, name)
        .clock(Clock::Manual(clock.clone()))
        .succeeded_events(true)
        .build()
        .unwrap();
    (clock, queue)
}

/// A subscription to every queue event of the keyspace.
async fn queue_events(
    pool: &coordkit_core::Pool,
    keyspace: &coordkit_core::Keyspace,
) -> coordkit_core::Subscriber<serde_json::Value> {
    pool.subscriber()
        .pattern(keyspace.channel_pattern(Some("queue")).unwrap())
        .subscribe::<serde_json::Value>()
        .await
        .unwrap()
}

fn fixed(ms: u64, max: u32) -> TaskOptions {
    TaskOptions::default()
        .max_attempts(max)
        .backoff(Backoff::Fixed(Duration::from_millis(ms)))
        .jitter(Jitter::None)
}

redis_test! {
    async fn enqueue_claim_ack_and_idempotency(redis) {
        let pool = redis.pool().await;
        let (_, queue) = manual(&pool, &redis.keyspace(), "basic");
        let opts = TaskOptions::default().idempotency_key("order-1", Duration::from_secs(60));
        let first = queue.enqueue(NewTask::new(b"a".to_vec()).options(opts.clone())).await.unwrap();
        let again = queue.enqueue(NewTask::new(b"a2".to_vec()).options(opts)).await.unwrap();
        assert_eq!(again, Enqueued::Duplicate(first.id().to_owned()));
        let batch: Vec<NewTask> = (0..5).map(|i| NewTask::new(format!("t{i}"))).collect();
        let ids = queue.enqueue_batch(&batch).await.unwrap();
        assert!(ids.iter().all(|e| !e.is_duplicate()));

        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.ready, stats.delayed, stats.leased, stats.dead), (6, 0, 0, 0));
        assert_eq!(stats.oldest_ready_age, Some(Duration::ZERO));

        let claim = queue.claim(4).await.unwrap();
        assert_eq!(claim.tasks.len(), 4);
        assert_eq!(claim.tasks[0].payload, b"a");
        assert_eq!(claim.tasks[0].attempt, 1);
        let tokens: Vec<u64> = claim.tasks.iter().map(|t| t.token).collect();
        assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
        let items: Vec<_> = claim.tasks.iter().map(|t| (t, Settle::Ack)).collect();
        assert_eq!(queue.settle(&items).await.unwrap(), vec![Settled::Acked; 4]);
        // A second ack of the same lease changes nothing, and says the task was settled already
        // (not that someone else took the lease).
        assert_eq!(queue.ack(&claim.tasks[0]).await.unwrap(), Settled::AlreadySettled);
        assert_eq!(queue.inspect(&claim.tasks[0].id).await.unwrap(), None);

        let rest = queue.claim(10).await.unwrap();
        assert_eq!(rest.tasks.len(), 2);
        let info = queue.inspect(&rest.tasks[0].id).await.unwrap().unwrap();
        assert_eq!(info.state, TaskState::Leased);
        assert_eq!(info.at_ms, Some(rest.tasks[0].deadline_ms));
        for t in &rest.tasks {
            assert_eq!(queue.ack(t).await.unwrap(), Settled::Acked);
        }
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.ready, stats.leased, stats.completed), (0, 0, 6));
        assert!(queue.claim(10).await.unwrap().tasks.is_empty());
    }
}

redis_test! {
    async fn failures_back_off_then_dead_letter_with_history_and_events(redis) {
        let pool = redis.pool().await;
        let keyspace = redis.keyspace();
        let (clock, queue) = manual(&pool, &keyspace, "retries");
        let mut events = queue_events(&pool, &keyspace).await;
        let options = TaskOptions::default()
            .max_attempts(3)
            .backoff(Backoff::Exponential { base: Duration::from_millis(100), factor: 2.0, max: Duration::from_secs(10) })
            .jitter(Jitter::None);
        let id = queue.enqueue(NewTask::new("x").options(options)).await.unwrap().id().to_owned();

        let t = queue.claim(1).await.unwrap().tasks.remove(0);
        let r = queue.fail(&t, "timeout 1").await.unwrap();
        assert_eq!(r, Settled::RetryScheduled { attempts: 1, due_ms: clock.now_ms() + 100 });
        // Not due yet: nothing to claim, and the claim says when.
        let c = queue.claim(1).await.unwrap();
        assert!(c.tasks.is_empty());
        assert_eq!(c.next_wakeup(), Some(Duration::from_millis(100)));
        clock.advance(Duration::from_millis(100));
        let t = queue.claim(1).await.unwrap().tasks.remove(0);
        assert_eq!(t.attempt, 2);
        assert_eq!(queue.fail(&t, "timeout 2").await.unwrap(), Settled::RetryScheduled { attempts: 2, due_ms: clock.now_ms() + 200 });
        clock.advance(Duration::from_millis(200));
        let t = queue.claim(1).await.unwrap().tasks.remove(0);
        assert_eq!(queue.fail(&t, "timeout 3").await.unwrap(), Settled::DeadLettered { attempts: 3 });

        let dead = queue.dead_letters(0, 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].id.as_str(), dead[0].reason.as_str(), dead[0].attempts), (id.as_str(), "exhausted", 3));
        let info = queue.inspect(&id).await.unwrap().unwrap();
        assert_eq!(info.state, TaskState::Dead);
        let errors: Vec<&str> = info.errors.iter().map(|e| e.error.as_str()).collect();
        assert_eq!(errors, ["timeout 1", "timeout 2", "timeout 3"]);

        // Requeue with a fresh budget, then succeed.
        assert_eq!(queue.requeue(&[id.as_str()], true).await.unwrap(), vec![id.clone()]);
        let t = queue.claim(1).await.unwrap().tasks.remove(0);
        assert_eq!(t.attempt, 1);
        assert_eq!(queue.ack(&t).await.unwrap(), Settled::Acked);

        let mut kinds = Vec::new();
        while kinds.len() < 5 {
            let got = tokio::time::timeout(Duration::from_secs(10), events.recv()).await.unwrap().unwrap();
            let e: Event = got.event;
            assert_eq!(e.source, "retry-queue", "{e:?}");
            if e.kind == "wake" { continue; }
            assert_eq!(e.entity, "retries");
            assert_eq!(e.payload["task"], id.as_str());
            if e.kind == "succeeded" {
                assert_eq!(e.payload["attempt"], 1);
            }
            if e.kind == "retry_scheduled" {
                assert_eq!(e.payload["attempt"], kinds.len() + 1);
            }
            kinds.push(e.kind);
        }
        assert_eq!(kinds, ["retry_scheduled", "retry_scheduled", "dead_lettered", "requeued", "succeeded"]);
    }
}

redis_test! {
    async fn fencing_tokens_stalls_and_extension(redis) {
        let pool = redis.pool().await;
        let keyspace = redis.keyspace();
        let (clock, queue) = manual(&pool, &keyspace, "leases");
        let mut events = queue_events(&pool, &keyspace).await;
        let opts = fixed(10, 5).lease(Duration::from_millis(1_000));
        queue.enqueue(NewTask::new("x").options(opts)).await.unwrap();
        let first = queue.claim(1).await.unwrap().tasks.remove(0);
        // Extension moves the deadline.
        clock.advance(Duration::from_millis(900));
        assert_eq!(queue.extend(&first, None).await.unwrap(), Some(clock.now_ms() + 1_000));
        clock.advance(Duration::from_millis(900));
        assert!(queue.claim(1).await.unwrap().tasks.is_empty(), "lease still valid");
        // The holder pauses past its deadline: the task is reclaimed (a stall) with a new token.
        clock.advance(Duration::from_millis(200));
        let second = queue.claim(1).await.unwrap().tasks.remove(0);
        assert!(second.token > first.token);
        assert_eq!((second.stalls, second.attempt), (1, 1));
        // The old holder is fenced off for every operation.
        assert_eq!(queue.ack(&first).await.unwrap(), Settled::LeaseLost);
        assert_eq!(queue.fail(&first, "late").await.unwrap(), Settled::LeaseLost);
        assert_eq!(queue.defer(&first, Duration::from_secs(1)).await.unwrap(), Settled::LeaseLost);
        assert_eq!(queue.extend(&first, None).await.unwrap(), None);
        // Two more stalls (max 2) dead-letter it as stalled.
        clock.advance(Duration::from_millis(1_000));
        let third = queue.claim(1).await.unwrap().tasks.remove(0);
        assert_eq!(third.stalls, 2);
        clock.advance(Duration::from_millis(1_000));
        assert!(queue.claim(1).await.unwrap().tasks.is_empty());
        let dead = queue.dead_letters(0, 10).await.unwrap();
        assert_eq!((dead[0].reason.as_str(), dead[0].stalls, dead[0].attempts), ("stalled", 3, 0));
        // Each stall was announced, then the dead-lettering.
        let mut seen = Vec::new();
        while seen.len() < 4 {
            let got = tokio::time::timeout(Duration::from_secs(10), events.recv()).await.unwrap().unwrap();
            let e: Event = got.event;
            if e.kind == "wake" || e.kind == "succeeded" { continue; }
            assert_eq!(e.payload["task"], first.id.as_str());
            seen.push((e.kind, e.payload["stalls"].as_u64()));
        }
        let stalled = |n| ("stalled".to_string(), Some(n));
        assert_eq!(seen, [stalled(1), stalled(2), stalled(3), ("dead_lettered".to_string(), Some(3))]);
        // Defer spends no attempt.
        queue.enqueue(NewTask::new("y").options(fixed(10, 1))).await.unwrap();
        let y = queue.claim(1).await.unwrap().tasks.remove(0);
        assert_eq!(queue.defer(&y, Duration::from_millis(50)).await.unwrap(), Settled::Deferred { due_ms: clock.now_ms() + 50 });
        clock.advance(Duration::from_millis(50));
        let y = queue.claim(1).await.unwrap().tasks.remove(0);
        assert_eq!(y.attempt, 1);
        assert_eq!(queue.dead_letter(&y, "malformed", "not json").await.unwrap(), Settled::DeadLettered { attempts: 0 });
        let reasons: Vec<String> = queue.dead_letters(0, 10).await.unwrap().into_iter().map(|d| d.reason).collect();
        assert_eq!(reasons, ["stalled", "malformed"]);
    }
}

redis_test! {
    async fn dead_letter_queue_operations_and_caps(redis) {
        let pool = redis.pool().await;
        let clock = ManualClock::new(1_800_000_000_000);
        let queue = Queue::builder(&pool, &redis.keyspace(), "dlq")
            .clock(Clock::Manual(clock.clone()))
            .dlq_max_count(3)
            .dlq_max_age(Duration::from_secs(60))
            .build()
            .unwrap();
        let batch: Vec<NewTask> = (0..5).map(|i| NewTask::new(format!("{i}")).options(fixed(1, 1))).collect();
        queue.enqueue_batch(&batch).await.unwrap();
        for _ in 0..5 {
            let t = queue.claim(1).await.unwrap().tasks.remove(0);
            clock.advance(Duration::from_millis(1));
            assert!(matches!(queue.fail(&t, "no").await.unwrap(), Settled::DeadLettered { .. }));
        }
        // Count cap: the oldest two were dropped.
        let dead: Vec<String> = queue.dead_letters(0, 10).await.unwrap().into_iter().map(|d| d.id).collect();
        assert_eq!(dead, ["3", "4", "5"]);
        assert_eq!(queue.stats().await.unwrap().dead_lettered_total, 5);
        assert_eq!(queue.dead_letters(1, 1).await.unwrap()[0].id, "4");
        // Requeue one (not reset: one more attempt), purge one, requeue the rest.
        assert_eq!(queue.requeue(&["4", "nope"], false).await.unwrap(), vec!["4".to_string()]);
        assert_eq!(queue.purge(&["3"]).await.unwrap(), 1);
        assert_eq!(queue.inspect("3").await.unwrap(), None);
        assert_eq!(queue.requeue_all(false).await.unwrap(), 1);
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.ready, stats.dead), (2, 0));
        // Age cap: dead letters older than a minute go at the next claim, even one that finds
        // nothing to do and dead-letters nothing.
        for t in queue.claim(2).await.unwrap().tasks {
            assert!(matches!(queue.fail(&t, "again").await.unwrap(), Settled::DeadLettered { .. }));
        }
        clock.advance(Duration::from_secs(59));
        assert!(queue.claim(1).await.unwrap().tasks.is_empty());
        assert_eq!(queue.stats().await.unwrap().dead, 2);
        clock.advance(Duration::from_secs(2));
        assert!(queue.claim(1).await.unwrap().tasks.is_empty());
        assert_eq!(queue.stats().await.unwrap().dead, 0);
        // And with other tasks dying meanwhile.
        queue.enqueue(NewTask::new("old").options(fixed(1, 1))).await.unwrap();
        let old = queue.claim(1).await.unwrap().tasks.remove(0);
        queue.fail(&old, "x").await.unwrap();
        clock.advance(Duration::from_secs(61));
        queue.enqueue(NewTask::new("late").options(fixed(1, 1))).await.unwrap();
        let t = queue.claim(1).await.unwrap().tasks.remove(0);
        queue.fail(&t, "x").await.unwrap();
        let dead: Vec<String> = queue.dead_letters(0, 10).await.unwrap().into_iter().map(|d| d.id).collect();
        assert_eq!(dead, std::slice::from_ref(&t.id));
        assert_eq!(queue.purge_all().await.unwrap(), 1);
        assert_eq!(queue.stats().await.unwrap().dead, 0);
    }
}

redis_test! {
    async fn delays_idempotency_expiry_and_bad_input(redis) {
        let pool = redis.pool().await;
        let (clock, queue) = manual(&pool, &redis.keyspace(), "delays");
        let o = TaskOptions::default()
            .delay(Duration::from_millis(500))
            .idempotency_key("k", Duration::from_millis(100));
        let a = queue.enqueue(NewTask::new("a").options(o.clone())).await.unwrap();
        assert!(queue.claim(1).await.unwrap().tasks.is_empty());
        assert_eq!(queue.stats().await.unwrap().next_due_ms, Some(clock.now_ms() + 500));
        clock.advance(Duration::from_millis(100));
        // The key expired: a new task.
        let b = queue.enqueue(NewTask::new("b").options(o)).await.unwrap();
        assert!(!b.is_duplicate());
        assert_ne!(a.id(), b.id());
        clock.advance(Duration::from_millis(400));
        let c = queue.claim(5).await.unwrap();
        assert_eq!(c.tasks.len(), 1);
        assert_eq!(c.tasks[0].payload, b"a");
        // Invalid input fails before any write, naming the field.
        let e = queue.enqueue(NewTask::new("z").options(TaskOptions::default().max_attempts(0))).await.unwrap_err();
        assert!(e.to_string().contains("max_attempts"), "{e}");
        assert!(Queue::builder(&pool, &redis.keyspace(), "bad name").build().is_err());
        // Another writer's key of the wrong type is reported, naming it.
        let other = Queue::builder(&pool, &redis.keyspace(), "clobbered").build().unwrap();
        let _: () = pool.query(redis::cmd("SET").arg(&other.keys()[1]).arg("oops")).await.unwrap();
        let e = other.enqueue(NewTask::new("x")).await.unwrap_err();
        assert!(e.to_string().contains("ready"), "{e}");
    }
}

redis_test! {
    async fn unreadable_records_are_dead_lettered_as_malformed_without_stopping_a_claim(redis) {
        let pool = redis.pool().await;
        let (_, queue) = manual(&pool, &redis.keyspace(), "records");
        let batch: Vec<NewTask> = (0..4).map(|i| NewTask::new(format!("t{i}"))).collect();
        let ids: Vec<String> = queue
            .enqueue_batch(&batch)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id().to_owned())
            .collect();
        // Task 2's record is cut short, task 3's is gone.
        let tasks = &queue.keys()[0];
        let _: () = pool.query(redis::cmd("HSET").arg(tasks).arg(&ids[1]).arg("short")).await.unwrap();
        let _: () = pool.query(redis::cmd("HDEL").arg(tasks).arg(&ids[2])).await.unwrap();
        let claim = queue.claim(10).await.unwrap();
        let got: Vec<&str> = claim.tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(got, [ids[0].as_str(), ids[3].as_str()]);
        assert_eq!(claim.tasks[1].payload, b"t3");
        // Tokens stay distinct and increasing across the skipped tasks.
        assert!(claim.tasks[0].token < claim.tasks[1].token);
        for t in &claim.tasks {
            assert_eq!(queue.ack(t).await.unwrap(), Settled::Acked);
        }
        let dead = queue.dead_letters(0, 10).await.unwrap();
        let rows: Vec<(&str, &str)> = dead.iter().map(|d| (d.id.as_str(), d.reason.as_str())).collect();
        assert_eq!(rows, [(ids[1].as_str(), "malformed"), (ids[2].as_str(), "malformed")]);
        // The unreadable bytes are kept for an operator; the missing record has a stand-in.
        assert_eq!(dead[0].raw_record.as_deref(), Some(&b"short"[..]));
        assert_eq!(dead[1].raw_record, None);
        let info = queue.inspect(&ids[1]).await.unwrap().unwrap();
        assert_eq!((info.state, info.raw_record.as_deref()), (TaskState::Dead, Some(&b"short"[..])));
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.ready, stats.leased, stats.dead, stats.completed), (0, 0, 2, 2));
        // A dead-lettered stand-in can be requeued and processed like any task.
        assert_eq!(queue.requeue(&[ids[2].as_str()], true).await.unwrap(), vec![ids[2].clone()]);
        let t = queue.claim(1).await.unwrap().tasks.remove(0);
        assert_eq!((t.id.as_str(), t.payload.as_slice()), (ids[2].as_str(), &b""[..]));
        assert_eq!(queue.ack(&t).await.unwrap(), Settled::Acked);
        // Requeued unreadable bytes come back to the DLQ at the next claim, still kept.
        assert_eq!(queue.requeue(&[ids[1].as_str()], true).await.unwrap(), vec![ids[1].clone()]);
        assert!(queue.claim(1).await.unwrap().tasks.is_empty());
        let dead = queue.dead_letters(0, 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].raw_record.as_deref(), Some(&b"short"[..]));
    }
}

redis_test! {
    async fn a_settle_tells_already_settled_from_lease_lost(redis) {
        let pool = redis.pool().await;
        let (clock, queue) = manual(&pool, &redis.keyspace(), "twice");
        let short = fixed(100, 5).lease(Duration::from_millis(1_000));
        for _ in 0..3 {
            queue.enqueue(NewTask::new("x").options(short.clone())).await.unwrap();
        }
        let c = queue.claim(3).await.unwrap();
        let (a, b, t) = (&c.tasks[0], &c.tasks[1], &c.tasks[2]);
        // The same outcome twice in one batch, then again later: settled already.
        let first = queue.settle(&[(a, Settle::Fail("x".into())), (a, Settle::Fail("x".into()))]).await.unwrap();
        assert!(matches!(first[..], [Settled::RetryScheduled { .. }, Settled::AlreadySettled]), "{first:?}");
        assert_eq!(queue.fail(a, "again").await.unwrap(), Settled::AlreadySettled);
        assert_eq!(queue.defer(b, Duration::from_secs(1)).await.unwrap(), Settled::Deferred { due_ms: clock.now_ms() + 1_000 });
        assert_eq!(queue.ack(b).await.unwrap(), Settled::AlreadySettled);
        assert_eq!(queue.inspect(&a.id).await.unwrap().unwrap().attempts, 1, "the second fail counted");
        // A lease that ran out, its task claimed by someone else: lost, not settled.
        clock.advance(Duration::from_millis(1_500));
        let again = queue.claim(3).await.unwrap();
        assert!(again.tasks.iter().any(|x| x.id == t.id));
        assert_eq!(queue.ack(t).await.unwrap(), Settled::LeaseLost);
        // The new holder's ack works; the old holder's, after it, finds the task gone.
        let mine = again.tasks.iter().find(|x| x.id == t.id).unwrap();
        assert_eq!(queue.ack(mine).await.unwrap(), Settled::Acked);
        assert_eq!(queue.ack(t).await.unwrap(), Settled::AlreadySettled);
    }
}
