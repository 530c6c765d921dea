//! Group commit: concurrent operations share calls, each applied exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use coordkit_core::{Error, GroupCommit, Key, Pool, Script};
use coordkit_testkit::redis_test;

static ADD_ALL: Script = Script::new(
    "add-all",
    "-- KEYS[1] a counter hash. ARGV: one field per operation. Returns each field's new count.\n\
     local out = {}\n\
     for i = 1, #ARGV do out[i] = redis.call('HINCRBY', KEYS[1], ARGV[i], 1) end\n\
     return out",
);

/// Group commit of increments of `field`s of one hash; counts the calls it makes.
fn adder(
    pool: &Pool,
    key: &Key,
    in_flight: usize,
    calls: Arc<AtomicUsize>,
) -> GroupCommit<String, i64> {
    let key = key.clone();
    GroupCommit::new(pool, in_flight, 16, move |pool, fields: Vec<String>| {
        let (key, calls) = (key.clone(), calls.clone());
        Box::pin(async move {
            calls.fetch_add(1, Ordering::Relaxed);
            let mut call = ADD_ALL.prepare();
            call.key(&key);
            for f in &fields {
                call.arg(f);
            }
            call.invoke::<Vec<i64>>(&pool).await
        })
    })
}

redis_test! {
    async fn concurrent_operations_are_each_applied_once(redis) {
        let pool = redis.pool().await;
        let key = redis.keyspace().instance("test", "gc").unwrap().key("h");
        let calls = Arc::new(AtomicUsize::new(0));
        let adder = adder(&pool, &key, 2, calls.clone());
        const OPS: usize = 400;
        let tasks: Vec<_> = (0..OPS)
            .map(|i| {
                let (adder, key) = (adder.clone(), key.clone());
                tokio::spawn(async move { adder.submit(&key, format!("f{}", i % 4)).await })
            })
            .collect();
        let mut answers: Vec<Vec<i64>> = vec![Vec::new(); 4];
        for (i, task) in tasks.into_iter().enumerate() {
            answers[i % 4].push(task.await.unwrap().unwrap());
        }
        // Every field counted to exactly its share, and every count was answered exactly once.
        for mut seen in answers {
            seen.sort();
            assert_eq!(seen, (1..=(OPS / 4) as i64).collect::<Vec<_>>());
        }
        let made = calls.load(Ordering::Relaxed);
        assert!(made <= OPS, "{made} calls for {OPS} operations");
        assert!(made >= OPS / 16, "{made} calls cannot carry {OPS} operations in batches of 16");
    }
}

redis_test! {
    async fn a_failed_call_fails_every_operation_of_its_batch(redis) {
        let pool = redis.pool().await;
        let key = redis.keyspace().instance("test", "gc-fail").unwrap().key("h");
        let _: () = pool.query(redis::cmd("SET").arg(&key).arg("not a hash")).await.unwrap();
        let adder = adder(&pool, &key, 2, Arc::new(AtomicUsize::new(0)));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (adder, key) = (adder.clone(), key.clone());
                tokio::spawn(async move { adder.submit(&key, "f".to_owned()).await })
            })
            .collect();
        for task in tasks {
            let answer = task.await.unwrap();
            assert!(matches!(answer, Err(Error::WrongType { .. })), "{answer:?}");
        }
        // A flush that answers too few results fails the operations left without one.
        let short: GroupCommit<u32, u32> = GroupCommit::new(&pool, 1, 8, |_pool, ops: Vec<u32>| {
            Box::pin(async move { Ok(ops.into_iter().take(0).collect()) })
        });
        assert!(matches!(short.submit(&key, 7).await, Err(Error::Unavailable { .. })));
    }
}

redis_test! {
    async fn an_operation_whose_caller_stops_waiting_is_still_applied(redis) {
        let pool = redis.pool().await;
        let key = redis.keyspace().instance("test", "gc-drop").unwrap().key("h");
        // One call on the wire at a time, so a last operation queues behind every earlier one.
        let adder = adder(&pool, &key, 1, Arc::new(AtomicUsize::new(0)));
        // Many callers, half of which give up at once: every operation is applied anyway.
        let mut kept = Vec::new();
        for i in 0..100 {
            let (adder, key) = (adder.clone(), key.clone());
            let task = tokio::spawn(async move { adder.submit(&key, "n".to_owned()).await });
            if i % 2 == 0 {
                task.abort();
            } else {
                kept.push(task);
            }
        }
        for task in kept {
            task.await.unwrap().unwrap();
        }
        // A last operation queues behind whatever is still on the wire, so once it is answered
        // every earlier batch has been applied; aborted tasks that never ran submitted nothing.
        let last = adder.submit(&key, "n".to_owned()).await.unwrap();
        let n: i64 = pool.query(redis::cmd("HGET").arg(&key).arg("n")).await.unwrap();
        assert_eq!(n, last, "the counter and the last answer disagree");
        assert!((51..=101).contains(&n), "{n} increments for 51 to 101 submitted");
    }
}
