//! Bad stored data under a queue, each case once found to lose tasks: a key of the wrong type,
//! a fencing-token counter that is no number, a record whose policy or error history is
//! garbage inside a settle batch, a record with a lease of 2^64 − 1 ms under a worker, an
//! enqueue into a `ready` of the wrong type. Each fails with an error naming the key and
//! nothing written, or deals with the bad task alone; nothing is lost or left in two states,
//! and the worker keeps going and says why in `health()`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coordkit_core::{Clock, Error, Key, ManualClock, Pool, redis};
use coordkit_retry_queue::{
    NewTask, Queue, QueueError, Settle, Settled, TaskOptions, TaskState, Worker,
};
use coordkit_testkit::garbage::overwrite_with_type;
use coordkit_testkit::redis_test;

mod common;
use common::{hget, hset};

fn manual(name: &str, redis: &coordkit_testkit::TestRedis, pool: &Pool) -> (ManualClock, Queue) {
    let clock = ManualClock::new(1_800_000_000_000);
    let queue = Queue::builder(pool, &redis.keyspace(), name)
        .clock(Clock::Manual(clock.clone()))
        .build()
        .unwrap();
    (clock, queue)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn del(pool: &Pool, key: &Key) {
    let _: () = pool.query(redis::cmd("DEL").arg(key)).await.unwrap();
}

fn assert_wrong_type(err: QueueError, key: &Key) {
    match err {
        QueueError::Core(Error::WrongType { key: k, .. }) => assert_eq!(k, key.as_str()),
        other => panic!("expected WrongType naming {key}, got {other:?}"),
    }
}

fn assert_corrupt(err: QueueError, key: &Key, field: &str) {
    match err {
        QueueError::Core(Error::Corrupt { key: k, detail }) => {
            assert_eq!(k, key.as_str());
            assert!(detail.contains(field), "{detail}");
        }
        other => panic!("expected Corrupt naming {key}, got {other:?}"),
    }
}

/// Where each task is (ready, delayed, leased, dead), from the structures themselves: each id
/// must be in exactly one, and `leases` must hold exactly the leased ones.
async fn states(pool: &Pool, queue: &Queue, ids: &[String]) -> Vec<Option<&'static str>> {
    let k = queue.keys();
    let ready: Vec<String> = pool
        .query(redis::cmd("LRANGE").arg(&k[1]).arg(0).arg(-1))
        .await
        .unwrap();
    let mut out = Vec::new();
    for id in ids {
        let mut found = Vec::new();
        if ready.contains(id) {
            found.push("ready");
        }
        for (key, name) in [(&k[2], "delayed"), (&k[3], "leased"), (&k[5], "dead")] {
            let score: Option<f64> = pool
                .query(redis::cmd("ZSCORE").arg(key).arg(id))
                .await
                .unwrap();
            if score.is_some() {
                found.push(name);
            }
        }
        assert!(found.len() <= 1, "task {id} is in {found:?} at once");
        // A positive token exactly for a leased task (a negative one marks who settled it).
        let token = hget(pool, &k[4], id).await;
        let leased = token
            .as_deref()
            // (a group's task's: "<token>:<group>")
            .and_then(|t| {
                std::str::from_utf8(t)
                    .ok()?
                    .split(':')
                    .next()?
                    .parse::<i64>()
                    .ok()
            })
            .is_some_and(|t| t > 0);
        assert_eq!(
            leased,
            found == ["leased"],
            "task {id}: token {token:?}, {found:?}"
        );
        out.push(found.first().copied());
    }
    out
}

redis_test! {
    async fn a_leases_key_of_the_wrong_type_fails_the_reclaim_with_nothing_written(redis) {
        let pool = redis.pool().await;
        let (clock, queue) = manual("leases", &redis, &pool);
        let task = NewTask::new("a").options(TaskOptions::default().lease(ms(100)));
        let id = queue.enqueue(task).await.unwrap().id().to_owned();
        assert_eq!(queue.claim(1).await.unwrap().tasks.len(), 1);
        let leases = &queue.keys()[4];
        overwrite_with_type(&pool, leases, "string").await;
        clock.advance(ms(150));
        assert_wrong_type(queue.claim(1).await.unwrap_err(), leases);
        // Nothing written: still leased, the foreign value untouched.
        assert_eq!(queue.inspect(&id).await.unwrap().unwrap().state, TaskState::Leased);
        let kept: String = pool.query(redis::cmd("GET").arg(leases)).await.unwrap();
        assert_eq!(kept, "garbage");
        // Deleted, the expired lease is reclaimed and the task handed out again.
        del(&pool, leases).await;
        let again = queue.claim(1).await.unwrap();
        assert_eq!(again.tasks.len(), 1, "the task was lost");
        assert_eq!((again.tasks[0].id.as_str(), again.tasks[0].stalls), (id.as_str(), 1));
        assert_eq!(queue.ack(&again.tasks[0]).await.unwrap(), Settled::Acked);
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.ready, stats.leased, stats.dead, stats.completed), (0, 0, 0, 1));
    }
}

redis_test! {
    async fn a_token_counter_that_is_no_number_fails_the_claim_with_nothing_popped(redis) {
        let pool = redis.pool().await;
        let (_, queue) = manual("token", &redis, &pool);
        let batch: Vec<NewTask> = (0..3).map(|i| NewTask::new(format!("t{i}"))).collect();
        let ids: Vec<String> =
            queue.enqueue_batch(&batch).await.unwrap().iter().map(|e| e.id().to_owned()).collect();
        let info = &queue.keys()[10];
        for bad in [&b"x"[..], b"-1", b"1.5", b"9007199254740991", b"5.0", b" 5", b"0x10", b"1e3"] {
            hset(&pool, info, "token", bad).await;
            assert_corrupt(queue.claim(3).await.unwrap_err(), info, "token");
            assert_eq!(hget(&pool, info, "token").await.as_deref(), Some(bad));
            assert_eq!(states(&pool, &queue, &ids).await, vec![Some("ready"); 3]);
        }
        hset(&pool, info, "token", b"41").await;
        let claim = queue.claim(3).await.unwrap();
        let tokens: Vec<u64> = claim.tasks.iter().map(|t| t.token).collect();
        assert_eq!(tokens, [42, 43, 44]);
        let items: Vec<_> = claim.tasks.iter().map(|t| (t, Settle::Ack)).collect();
        assert_eq!(queue.settle(&items).await.unwrap(), vec![Settled::Acked; 3]);
    }
}

redis_test! {
    async fn info_counters_in_forms_hincrby_refuses_fail_with_nothing_written(redis) {
        let pool = redis.pool().await;
        let (_, queue) = manual("counters", &redis, &pool);
        let info = queue.keys()[10].clone();
        let once = TaskOptions::default().max_attempts(1);
        let batch = [NewTask::new("a").options(once.clone()), NewTask::new("b").options(once)];
        let ids: Vec<String> =
            queue.enqueue_batch(&batch).await.unwrap().iter().map(|e| e.id().to_owned()).collect();
        let claim = queue.claim(2).await.unwrap();
        let t = &claim.tasks;
        for bad in [&b"5.0"[..], b" 5", b"0x10", b"1e3"] {
            // seq: an enqueue writes no record.
            hset(&pool, &info, "seq", bad).await;
            assert_corrupt(queue.enqueue(NewTask::new("c")).await.unwrap_err(), &info, "seq");
            let records: u64 = pool.query(redis::cmd("HLEN").arg(&queue.keys()[0])).await.unwrap();
            assert_eq!(records, 2);
            hset(&pool, &info, "seq", b"2").await;
            // completed: an ack beside a retry unleases nothing.
            hset(&pool, &info, "completed", bad).await;
            let items = [(&t[0], Settle::Ack), (&t[1], Settle::Defer(ms(10)))];
            assert_corrupt(queue.settle(&items).await.unwrap_err(), &info, "completed");
            assert_eq!(states(&pool, &queue, &ids).await, [Some("leased"); 2]);
            hset(&pool, &info, "completed", b"0").await;
            // dead: a last failure dead-letters nothing.
            hset(&pool, &info, "dead", bad).await;
            let items = [(&t[0], Settle::Fail("x".into())), (&t[1], Settle::Fail("y".into()))];
            assert_corrupt(queue.settle(&items).await.unwrap_err(), &info, "dead");
            assert_eq!(states(&pool, &queue, &ids).await, [Some("leased"); 2]);
            hset(&pool, &info, "dead", b"0").await;
        }
        let items = [(&t[0], Settle::Ack), (&t[1], Settle::Fail("z".into()))];
        let done = queue.settle(&items).await.unwrap();
        assert_eq!(done, [Settled::Acked, Settled::DeadLettered { attempts: 1 }]);
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.completed, stats.dead_lettered_total, stats.dead), (1, 1, 1));
    }
}

redis_test! {
    async fn scores_no_lease_or_delay_can_have_are_due_now_not_never(redis) {
        let pool = redis.pool().await;
        let (clock, queue) = manual("scores", &redis, &pool);
        let k = queue.keys().to_vec();
        let delayed = TaskOptions::default().delay(ms(1_000));
        let batch = [NewTask::new("leased"), NewTask::new("delayed").options(delayed)];
        let ids: Vec<String> =
            queue.enqueue_batch(&batch).await.unwrap().iter().map(|e| e.id().to_owned()).collect();
        assert_eq!(queue.claim(1).await.unwrap().tasks[0].id, ids[0]);
        for score in ["inf", "1e300"] {
            for (key, id) in [(&k[3], &ids[0]), (&k[2], &ids[1])] {
                let _: () = pool
                    .query(redis::cmd("ZADD").arg(key).arg("XX").arg(score).arg(id))
                    .await
                    .unwrap();
            }
            // The stalled lease comes back, the delayed task is due: both handed out now.
            let claim = queue.claim(10).await.unwrap();
            let got: Vec<&str> = claim.tasks.iter().map(|t| t.id.as_str()).collect();
            assert_eq!(got, [ids[0].as_str(), ids[1].as_str()], "{score}");
            let now = clock.now_ms();
            assert!(claim.next_deadline_ms.is_some_and(|d| d > now && d <= now + 30_000), "{claim:?}");
            assert_eq!(claim.next_due_ms, None);
            // Put the second back in delayed for the next round.
            queue.defer(&claim.tasks[1], ms(1_000)).await.unwrap();
        }
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.ready, stats.delayed, stats.leased, stats.dead), (0, 1, 1, 0));
    }
}

/// Claims [one-attempt, poisoned, good, good] and settles [fail, fail, ack, ack] after
/// `poison` spoiled the second task's stored data; checks the answers and states.
async fn settle_around_a_poisoned_task(
    pool: &Pool,
    queue: &Queue,
    poison: impl AsyncFnOnce(&Pool, &Queue, &str),
) -> Vec<String> {
    let once = TaskOptions::default().max_attempts(1);
    let tasks = vec![
        NewTask::new("once").options(once),
        NewTask::new(Vec::new()),
        NewTask::new("good 1"),
        NewTask::new("good 2"),
    ];
    let ids: Vec<String> = queue
        .enqueue_batch(&tasks)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id().to_owned())
        .collect();
    let claim = queue.claim(4).await.unwrap();
    assert_eq!(claim.tasks.len(), 4);
    poison(pool, queue, &ids[1]).await;
    let t = &claim.tasks;
    let items = [
        (&t[0], Settle::Fail("boom".into())),
        (&t[1], Settle::Fail("boom".into())),
        (&t[2], Settle::Ack),
        (&t[3], Settle::Ack),
    ];
    // The poisoned task alone is dead-lettered as malformed; the rest of the batch applies.
    let answers = queue.settle(&items).await.unwrap();
    assert_eq!(
        answers,
        [
            Settled::DeadLettered { attempts: 1 },
            Settled::DeadLettered { attempts: 0 },
            Settled::Acked,
            Settled::Acked
        ]
    );
    assert_eq!(
        states(pool, queue, &ids).await,
        [Some("dead"), Some("dead"), None, None]
    );
    ids
}

redis_test! {
    async fn a_garbage_policy_in_a_settle_batch_dead_letters_that_task_alone(redis) {
        let pool = redis.pool().await;
        let (_, queue) = manual("policy", &redis, &pool);
        // Lengths that look right (policy length 2, the record ends there) but no delays.
        settle_around_a_poisoned_task(&pool, &queue, async |pool, queue, id| {
            let tasks = &queue.keys()[0];
            let mut rec = hget(pool, tasks, id).await.unwrap();
            rec.truncate(50);
            rec[44..46].copy_from_slice(&2u16.to_le_bytes());
            rec[46..48].copy_from_slice(&0u16.to_le_bytes());
            hset(pool, tasks, id, &rec).await;
        })
        .await;
        let dead = queue.dead_letters(0, 10).await.unwrap();
        let reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
        assert_eq!(reasons, ["exhausted", "malformed"]);
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.leased, stats.dead, stats.completed), (0, 2, 2));
    }
}

redis_test! {
    async fn a_garbage_error_history_in_a_settle_batch_dead_letters_that_task_alone(redis) {
        let pool = redis.pool().await;
        let (_, queue) = manual("history", &redis, &pool);
        let garbage = b"\xffgarbage".to_vec();
        let stored = garbage.clone();
        let ids = settle_around_a_poisoned_task(&pool, &queue, async move |pool, queue, id| {
            hset(pool, &queue.keys()[6], id, &stored).await;
        })
        .await;
        // The history nobody can read is kept as it was, for an operator.
        assert_eq!(hget(&pool, &queue.keys()[6], &ids[1]).await, Some(garbage));
        let info = queue.inspect(&ids[1]).await.unwrap().unwrap();
        assert_eq!(info.reason.as_deref(), Some("malformed"));
        // The exhausted task's history has its error.
        let info = queue.inspect(&ids[0]).await.unwrap().unwrap();
        assert_eq!(info.errors.len(), 1);
        assert_eq!(info.errors[0].error, "boom");
    }
}

redis_test! {
    async fn a_lease_of_u64_max_is_malformed_and_the_worker_keeps_working(redis) {
        let pool = redis.pool().await;
        let queue = Queue::builder(&pool, &redis.keyspace(), "lease").build().unwrap();
        let batch: Vec<NewTask> = (0..5).map(|i| NewTask::new(format!("t{i}"))).collect();
        let ids: Vec<String> =
            queue.enqueue_batch(&batch).await.unwrap().iter().map(|e| e.id().to_owned()).collect();
        let tasks = &queue.keys()[0];
        let mut rec = hget(&pool, tasks, &ids[2]).await.unwrap();
        rec[36..44].copy_from_slice(&u64::MAX.to_le_bytes());
        hset(&pool, tasks, &ids[2], &rec).await;

        let acked = Arc::new(AtomicU64::new(0));
        let seen = acked.clone();
        let worker = Worker::builder(&queue, move |_task| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                Ok::<(), String>(())
            }
        }).concurrency(8).start()
        .await
        .unwrap();
        for _ in 0..500 {
            if worker.stats().acked == 4 {
                break;
            }
            tokio::time::sleep(ms(20)).await;
        }
        assert_eq!(worker.stats().acked, 4, "{:?}", worker.health());
        let health = worker.health();
        assert!(health.is_healthy(), "{health:?}");
        assert!(health.last_claim_ago.is_some());
        let report = worker.shutdown().await;
        assert!(report.clean, "{report:?}");
        assert_eq!((report.unsettled, report.claim_loop_failed), (0, false));
        assert_eq!(acked.load(Ordering::SeqCst), 4);
        let dead = queue.dead_letters(0, 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].id.as_str(), dead[0].reason.as_str()), (ids[2].as_str(), "malformed"));
        // Its bytes are kept as they were.
        assert_eq!(hget(&pool, tasks, &ids[2]).await, Some(rec));
    }
}

redis_test! {
    async fn an_enqueue_into_keys_of_the_wrong_type_writes_nothing(redis) {
        let pool = redis.pool().await;
        let (_, queue) = manual("enqueue", &redis, &pool);
        let k = queue.keys().to_vec();
        let keyed = TaskOptions::default().idempotency_key("order-7", Duration::from_secs(60));
        for (key, delay) in [(&k[1], 0), (&k[2], 500), (&k[0], 0), (&k[10], 0), (&k[8], 0), (&k[9], 0)] {
            overwrite_with_type(&pool, key, "string").await;
            let task = NewTask::new("a").options(keyed.clone().delay(ms(delay)));
            let answer = queue.enqueue(task).await;
            assert_wrong_type(answer.expect_err(key.as_str()), key);
            // Nothing written anywhere but the foreign key.
            for other in &k {
                let exists: u64 = pool.query(redis::cmd("EXISTS").arg(other)).await.unwrap();
                assert_eq!(exists, u64::from(other == key), "{other} after a failed enqueue into {key}");
            }
            del(&pool, key).await;
        }
        let id = queue.enqueue(NewTask::new("a").options(keyed)).await.unwrap();
        assert_eq!(id.id(), "1");
        let claim = queue.claim(1).await.unwrap();
        assert_eq!(claim.tasks[0].id, "1");
    }
}

redis_test! {
    async fn make_due_into_a_ready_key_of_the_wrong_type_writes_nothing(redis) {
        let pool = redis.pool().await;
        let (_, queue) = manual("make-due", &redis, &pool);
        let k = queue.keys().to_vec();
        let id = queue.enqueue(NewTask::new("a").options(TaskOptions::default().delay(ms(60_000)))).await.unwrap();
        let id = id.id();
        overwrite_with_type(&pool, &k[1], "string").await;
        assert_wrong_type(queue.make_due(&[id]).await.expect_err("a string as ready"), &k[1]);
        assert_eq!(queue.inspect(id).await.unwrap().unwrap().state, TaskState::Delayed);
        del(&pool, &k[1]).await;
        // Repaired: it moves, once; an id that is not delayed is skipped.
        assert_eq!(queue.make_due(&[id, id, "77"]).await.unwrap(), vec![id.to_owned()]);
        assert_eq!(queue.make_due(&[id]).await.unwrap(), Vec::<String>::new());
        assert_eq!(queue.claim(1).await.unwrap().tasks[0].id, id);
    }
}

redis_test! {
    async fn the_worker_outlives_a_claim_error_and_reports_it(redis) {
        let pool = redis.pool().await;
        let queue = Queue::builder(&pool, &redis.keyspace(), "health").build().unwrap();
        let info = queue.keys()[10].clone();
        hset(&pool, &info, "token", b"not a number").await;
        let worker = Worker::builder(&queue, |_task| async {
            Ok::<(), String>(())
        }).start()
        .await
        .unwrap();
        let batch: Vec<NewTask> = (0..3).map(|i| NewTask::new(format!("t{i}"))).collect();
        queue.enqueue_batch(&batch).await.unwrap();
        let mut health = worker.health();
        for _ in 0..500 {
            health = worker.health();
            if health.failing_claims >= 2 {
                break;
            }
            tokio::time::sleep(ms(20)).await;
        }
        assert!(health.running, "{health:?}");
        assert!(health.failing_claims >= 2, "{health:?}");
        assert!(!health.is_healthy());
        let last = health.last_error.expect("the claim error is reported");
        assert_eq!(last.during, "claim");
        assert!(last.message.contains(info.as_str()) && last.message.contains("token"), "{}", last.message);
        assert_eq!(worker.stats().acked, 0);
        // Repaired, the same worker goes on and does the work.
        hset(&pool, &info, "token", b"0").await;
        for _ in 0..500 {
            if worker.stats().acked == 3 {
                break;
            }
            tokio::time::sleep(ms(20)).await;
        }
        assert_eq!(worker.stats().acked, 3, "{:?}", worker.health());
        let health = worker.health();
        assert!(health.is_healthy(), "{health:?}");
        let report = worker.shutdown().await;
        assert!(report.clean, "{report:?}");
        assert!(!report.claim_loop_failed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_with_redis_down_reports_the_outcomes_it_could_not_save() {
    let mut server = coordkit_testkit::RedisServer::start().unwrap();
    let pool = server.fault_pool(ms(300)).await;
    let keyspace = coordkit_core::Keyspace::new("down").unwrap();
    let queue = Queue::builder(&pool, &keyspace, "down").build().unwrap();
    queue.enqueue(NewTask::new("a")).await.unwrap();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Arc::new(std::sync::Mutex::new(Some(started_tx)));
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let worker = Worker::builder(&queue, move |_task| {
        let started = started.clone();
        let mut go = go_rx.clone();
        async move {
            if let Some(tx) = started.lock().unwrap().take() {
                let _ = tx.send(());
            }
            let _ = go.wait_for(|go| *go).await;
            Ok::<(), String>(())
        }
    })
    .shutdown_timeout(Duration::from_secs(1))
    .start()
    .await
    .unwrap();
    started_rx.await.unwrap();
    // Redis dies while the handler runs; the handler then finishes, and its ack cannot be
    // written before the shutdown deadline.
    tokio::task::block_in_place(|| server.kill());
    go_tx.send(true).unwrap();
    let report = worker.shutdown().await;
    assert!(!report.clean, "{report:?}");
    assert_eq!((report.abandoned, report.unsettled), (0, 1), "{report:?}");
    assert_eq!(report.stats.acked, 0);
}
