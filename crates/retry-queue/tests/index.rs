//! The namespace's index of queues: every queue a handle wrote to is listed by `Queue::list`
//! in one call, exactly, under concurrent handles.

use std::collections::BTreeSet;
use std::time::Duration;

use coordkit_core::redis;
use coordkit_retry_queue::{Limits, NewTask, Queue};
use coordkit_testkit::redis_test;

redis_test! {
    async fn every_queue_written_to_is_listed(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let queue = |name: &str| Queue::builder(&pool, &ks, name).build().unwrap();
        assert!(Queue::list(&pool, &ks).await.unwrap().names.is_empty());

        // Building a handle writes nothing and lists nothing.
        let idle = queue("idle");
        assert!(Queue::list(&pool, &ks).await.unwrap().names.is_empty());

        queue("emails").enqueue(NewTask::new("x")).await.unwrap();
        queue("emails").enqueue(NewTask::new("y")).await.unwrap();
        let claimed = queue("empty");
        assert!(claimed.claim(1).await.unwrap().tasks.is_empty());
        queue("paused").pause().await.unwrap();
        queue("limited").set_limits(Limits::default()).await.unwrap();
        queue("held").hold_component("db", Duration::from_secs(1)).await.unwrap();
        let listing = Queue::list(&pool, &ks).await.unwrap();
        assert!(listing.malformed.is_empty());
        assert_eq!(listing.names, ["emails", "empty", "held", "limited", "paused"]);

        // Pages walk the same names.
        let first = Queue::list_page(&pool, &ks, None, 3).await.unwrap();
        assert_eq!(first.names, ["emails", "empty", "held"]);
        let second = Queue::list_page(&pool, &ks, first.next.as_deref(), 3).await.unwrap();
        assert_eq!(second.names, ["limited", "paused"]);
        assert_eq!(second.next, None);

        // Another namespace has its own index.
        let other = coordkit_core::Keyspace::new("other-ns").unwrap();
        assert!(Queue::list(&pool, &other).await.unwrap().names.is_empty());
        drop(idle);
    }
}

redis_test! {
    async fn a_handle_records_once_and_heals_a_lost_entry(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let queue = Queue::builder(&pool, &ks, "jobs").build().unwrap();
        queue.enqueue(NewTask::new("a")).await.unwrap();
        // Its entry is lost (a process died between the calls, an operator deleted it): the
        // next handle that writes records it again; the same handle within its refresh
        // period does not (one lock, no call, on every later operation).
        let index = Queue::index(&ks).unwrap();
        assert!(index.forget(&pool, "jobs").await.unwrap());
        queue.enqueue(NewTask::new("b")).await.unwrap();
        assert!(Queue::list(&pool, &ks).await.unwrap().names.is_empty());
        let again = Queue::builder(&pool, &ks, "jobs").build().unwrap();
        again.claim(1).await.unwrap();
        assert_eq!(Queue::list(&pool, &ks).await.unwrap().names, ["jobs"]);
        // A queue's entry has no deadline.
        let deadline: Option<f64> = pool
            .query(redis::cmd("ZSCORE").arg(index.keys()[1]).arg("jobs"))
            .await
            .unwrap();
        assert_eq!(deadline, None);
    }
}

redis_test! {
    async fn concurrent_handles_list_exactly_their_queues(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        // 12 tasks, each with its own handles (as separate processes have), enqueue to 4
        // shared queues and 5 of their own, at the same time.
        let mut tasks = Vec::new();
        for t in 0..12 {
            let (pool, ks) = (pool.clone(), ks.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..9 {
                    let name = if i < 4 { format!("shared-{i}") } else { format!("own-{t}-{i}") };
                    let queue = Queue::builder(&pool, &ks, &name).build().unwrap();
                    queue.enqueue(NewTask::new("p")).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let mut expected = BTreeSet::new();
        for t in 0..12 {
            for i in 0..9 {
                expected.insert(if i < 4 { format!("shared-{i}") } else { format!("own-{t}-{i}") });
            }
        }
        let listed: BTreeSet<String> =
            Queue::list(&pool, &ks).await.unwrap().names.into_iter().collect();
        assert_eq!(listed, expected);
        // Every listed queue holds what was enqueued to it.
        for name in &listed {
            let stats = Queue::builder(&pool, &ks, name).build().unwrap().stats().await.unwrap();
            let want = if name.starts_with("shared") { 12 } else { 1 };
            assert_eq!(stats.ready, want, "{name}");
        }
    }
}

redis_test! {
    async fn listing_a_namespace_of_100_000_queues_is_one_call(redis) {
        // A debug build on a busy machine may take more than the default 2 s to read them.
        let config = redis.config().command_timeout(Duration::from_secs(60));
        let pool = coordkit_core::Pool::connect(config).await.unwrap();
        let ks = redis.keyspace();
        let index = Queue::index(&ks).unwrap();
        for chunk in 0..10 {
            let mut zadd = redis::cmd("ZADD");
            zadd.arg(index.keys()[0]);
            for i in 0..10_000 {
                zadd.arg(0).arg(format!("q{:06}", chunk * 10_000 + i));
            }
            let _: i64 = pool.query(&zadd).await.unwrap();
        }
        Queue::list(&pool, &ks).await.unwrap();
        redis.reset_stats();
        let listing = Queue::list(&pool, &ks).await.unwrap();
        assert_eq!(redis.command_calls("evalsha"), 1);
        assert_eq!(redis.command_calls("eval") + redis.command_calls("scan"), 0);
        assert_eq!(listing.names.len(), 100_000);
        assert_eq!(listing.names[99_999], "q099999");
    }
}

/// The child side of `processes_list_exactly_their_queues`: enqueues to 3 shared queues and
/// 3 of its own, then exits. Returns at once when not run as a child.
#[test]
fn index_child_process() {
    let (Ok(url), Ok(ns), Ok(id)) = (
        std::env::var("INDEX_CHILD_URL"),
        std::env::var("INDEX_CHILD_NS"),
        std::env::var("INDEX_CHILD_ID"),
    ) else {
        return;
    };
    let rt = coordkit_testkit::blocking_runtime();
    rt.block_on(async {
        let config = coordkit_core::PoolConfig::from_url(&url).unwrap();
        let pool = coordkit_core::Pool::connect(config).await.unwrap();
        let ks = coordkit_core::Keyspace::new(&ns).unwrap();
        let mut tasks = Vec::new();
        for name in (0..3)
            .map(|i| format!("shared-{i}"))
            .chain((0..3).map(|i| format!("own-{id}-{i}")))
        {
            let (pool, ks) = (pool.clone(), ks.clone());
            tasks.push(tokio::spawn(async move {
                let queue = Queue::builder(&pool, &ks, &name).build().unwrap();
                queue.enqueue(NewTask::new("p")).await.unwrap();
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
}

redis_test! {
    async fn processes_list_exactly_their_queues(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let children: Vec<_> = (0..4)
            .map(|id| {
                coordkit_testkit::rerun_test("index_child_process")
                    .env("INDEX_CHILD_URL", redis.url())
                    .env("INDEX_CHILD_NS", ks.namespace())
                    .env("INDEX_CHILD_ID", id.to_string())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
                .await
                .unwrap();
            assert!(out.status.success(), "a child failed: {:?}", out.status);
        }
        let mut expected: BTreeSet<String> = (0..3).map(|i| format!("shared-{i}")).collect();
        for id in 0..4 {
            expected.extend((0..3).map(|i| format!("own-{id}-{i}")));
        }
        let listed: BTreeSet<String> =
            Queue::list(&pool, &ks).await.unwrap().names.into_iter().collect();
        assert_eq!(listed, expected);
        let shared = Queue::builder(&pool, &ks, "shared-0").build().unwrap();
        assert_eq!(shared.stats().await.unwrap().ready, 4);
    }
}

redis_test! {
    async fn an_index_of_another_type_is_named_and_nothing_is_written(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let index = Queue::index(&ks).unwrap();
        let names = index.keys()[0].clone();
        let _: () = pool.query(redis::cmd("SET").arg(&names).arg("x")).await.unwrap();
        let queue = Queue::builder(&pool, &ks, "jobs").build().unwrap();
        let err = queue.enqueue(NewTask::new("a")).await.unwrap_err();
        assert!(
            matches!(&err, coordkit_retry_queue::QueueError::Core(coordkit_core::Error::WrongType { key, .. }) if key == names.as_str()),
            "{err:?}"
        );
        assert!(matches!(Queue::list(&pool, &ks).await, Err(coordkit_retry_queue::QueueError::Core(coordkit_core::Error::WrongType { .. }))));
        // The enqueue wrote nothing; once the key is repaired, everything works again.
        let exists: u64 = pool.query(redis::cmd("EXISTS").arg(&queue.keys()[0])).await.unwrap();
        assert_eq!(exists, 0);
        let _: u64 = pool.query(redis::cmd("DEL").arg(&names)).await.unwrap();
        queue.enqueue(NewTask::new("a")).await.unwrap();
        assert_eq!(Queue::list(&pool, &ks).await.unwrap().names, ["jobs"]);
        assert_eq!(queue.stats().await.unwrap().ready, 1);
    }
}
