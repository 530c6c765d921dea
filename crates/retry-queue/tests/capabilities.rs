//! Capabilities and blocking claims against a real Redis, standalone and a 3-master cluster: a
//! worker claims only the groups it can run, in its order of preference, and the tasks of no
//! group; a blocking claim waits for a wake-up (or its timeout), not a polling interval.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coordkit_core::Error;
use coordkit_retry_queue::{NewTask, Queue, QueueError, Settle, TaskOptions, Worker};
use coordkit_testkit::redis_test;

mod common;
use common::names;

fn task(name: &str, group: Option<&str>) -> NewTask {
    let options = TaskOptions::default();
    NewTask::new(name.to_owned()).options(match group {
        Some(g) => options.group(g),
        None => options,
    })
}

redis_test! {
    async fn a_claim_by_capabilities_takes_only_those_groups_in_order(redis) {
        let pool = redis.pool().await;
        let queue = Queue::builder(&pool, &redis.keyspace(), "caps").build().unwrap();
        let batch = [
            task("gpu1", Some("gpu")),
            task("cpu1", Some("cpu")),
            task("free1", None),
            task("gpu2", Some("gpu")),
            task("cpu2", Some("cpu")),
        ];
        queue.enqueue_batch(&batch).await.unwrap();
        // A cpu worker: the cpu group, then the tasks of no group; never gpu.
        let cpu = queue.claim_capable(10, &["cpu"]).await.unwrap();
        assert_eq!(names(&cpu), ["cpu1", "cpu2", "free1"]);
        assert!(queue.claim_capable(10, &["cpu"]).await.unwrap().tasks.is_empty());
        // Order of preference: gpu first, one at a time.
        let both = queue.claim_capable(1, &["gpu", "cpu"]).await.unwrap();
        assert_eq!(names(&both), ["gpu1"]);
        assert_eq!(queue.group_stats("gpu").await.unwrap().ready, 1);
        let rest = queue.claim(10).await.unwrap();
        assert_eq!(names(&rest), ["gpu2"]);
    }
}

redis_test! {
    async fn workers_run_only_the_tasks_they_are_capable_of(redis) {
        let pool = redis.pool().await;
        let queue = Queue::builder(&pool, &redis.keyspace(), "fleet").build().unwrap();
        let ran: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
        let mut workers = Vec::new();
        for (name, caps) in [("gpu-worker", vec!["gpu"]), ("cpu-worker", vec!["cpu"])] {
            let ran = ran.clone();
            let worker = Worker::builder(&queue, move |t| {
                let ran = ran.clone();
                async move {
                    let group = t.group.clone().unwrap_or_else(|| "none".into());
                    ran.lock().unwrap().entry(group).or_default().push(name.to_owned());
                    Ok::<(), String>(())
                }
            })
            .capabilities(caps)
            .start()
            .await
            .unwrap();
            workers.push(worker);
        }
        let mut batch = Vec::new();
        for i in 0..20 {
            batch.push(task(&format!("g{i}"), Some("gpu")));
            batch.push(task(&format!("c{i}"), Some("cpu")));
            batch.push(task(&format!("n{i}"), None));
        }
        queue.enqueue_batch(&batch).await.unwrap();
        let guard = tokio::time::Instant::now() + Duration::from_secs(30);
        while queue.stats().await.unwrap().completed < 60 {
            assert!(tokio::time::Instant::now() < guard, "{:?}", queue.stats().await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for w in workers {
            assert!(w.shutdown().await.clean);
        }
        let ran = ran.lock().unwrap();
        assert!(ran["gpu"].iter().all(|w| w == "gpu-worker"), "{ran:?}");
        assert!(ran["cpu"].iter().all(|w| w == "cpu-worker"), "{ran:?}");
        assert_eq!((ran["gpu"].len(), ran["cpu"].len(), ran["none"].len()), (20, 20, 20));
    }
}

redis_test! {
    async fn a_blocking_claim_wakes_on_new_work_or_times_out_empty(redis) {
        let pool = redis.pool().await;
        let queue = Queue::builder(&pool, &redis.keyspace(), "blocking").build().unwrap();
        // Nothing comes: the timeout answers an empty claim.
        let empty = queue.claim_blocking(5, Duration::from_millis(200)).await.unwrap();
        assert!(empty.tasks.is_empty());
        // A claim waiting for up to a minute gets the task enqueued while it waits: woken by
        // the enqueue, not by its timeout.
        let waiting = {
            let queue = queue.clone();
            tokio::spawn(async move {
                queue.claim_capable_blocking(5, &["gpu"], Duration::from_secs(60)).await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        queue.enqueue(task("cpu-only", Some("cpu"))).await.unwrap();
        queue.enqueue(task("for-gpu", Some("gpu"))).await.unwrap();
        let claim = tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .expect("woken, well before its minute")
            .unwrap()
            .unwrap();
        assert_eq!(names(&claim), ["for-gpu"]);
        queue.settle(&[(&claim.tasks[0], Settle::Ack)]).await.unwrap();
        assert_eq!(queue.group_stats("cpu").await.unwrap().ready, 1, "left to a cpu worker");
    }
}

redis_test! {
    async fn bad_capabilities_are_named(redis) {
        let pool = redis.pool().await;
        let queue = Queue::builder(&pool, &redis.keyspace(), "bad").build().unwrap();
        for caps in [&[][..], &["has space"][..]] {
            match queue.claim_capable(1, caps).await {
                Err(QueueError::Core(Error::InvalidConfig { field, .. })) => {
                    assert_eq!(field, "capabilities")
                }
                Err(QueueError::Core(Error::InvalidName { what, .. })) => {
                    assert_eq!(what, "capabilities")
                }
                other => panic!("{caps:?}: {other:?}"),
            }
        }
        let worker = Worker::builder(&queue, |_t| async { Ok::<(), String>(()) })
            .capabilities(Vec::<String>::new())
            .start()
            .await;
        assert!(matches!(
            worker,
            Err(QueueError::Core(Error::InvalidConfig { field: "capabilities", .. }))
        ));
    }
}
