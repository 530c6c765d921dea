//! A worker tied to an agent record (feature `agents`): registered idle, busy while a task
//! runs, idle after, registered again after its record expired, removed at shutdown.

use std::time::Duration;

use coordkit_context::{ContextStore, Status};
use coordkit_core::{Clock, ManualClock};
use coordkit_retry_queue::{AgentBinding, NewTask, Queue, Worker};
use coordkit_testkit::redis_test;

/// Polls `check` every 20 ms for at most 10 s (a bound on waiting, not a timing assertion).
async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    for _ in 0..500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never: {what}");
}

redis_test! {
    async fn a_worker_keeps_its_agent_record(redis) {
        let pool = redis.pool().await;
        let keyspace = redis.keyspace();
        let clock = ManualClock::new(1_800_000_000_000);
        let store = ContextStore::builder(&pool, &keyspace)
            .agent_ttl(Duration::from_millis(300))
            .clock(Clock::Manual(clock.clone()))
            .build()
            .unwrap();
        let registry = store.agents("fleet").unwrap();
        let queue = Queue::builder(&pool, &keyspace, "jobs").build().unwrap();
        let (go_tx, go_rx) = tokio::sync::watch::channel(false);
        let binding = AgentBinding::new(registry.clone(), "worker-1").capability("search");
        let worker = Worker::builder(&queue, move |_task| {
            let mut go = go_rx.clone();
            async move {
                let _ = go.wait_for(|go| *go).await;
                Ok::<(), String>(())
            }
        }).agent(binding).start()
        .await
        .unwrap();
        let record = registry.get("worker-1").await.unwrap().expect("registered at start");
        assert_eq!(record.status.status, Status::Idle);
        assert!(record.status.capabilities.contains("search"));

        // Busy with the task while it runs, idle again after.
        let id = queue.enqueue(NewTask::new("x")).await.unwrap().id().to_owned();
        eventually("busy with the task", async || {
            let r = registry.get("worker-1").await.unwrap();
            r.is_some_and(|r| r.status.status == Status::Busy && r.status.current_task.as_deref() == Some(id.as_str()))
        })
        .await;
        assert_eq!(registry.with_capability("search").await.unwrap(), vec!["worker-1"]);
        go_tx.send(true).unwrap();
        eventually("idle after the task", async || {
            let r = registry.get("worker-1").await.unwrap();
            r.is_some_and(|r| r.status.status == Status::Idle && r.status.current_task.is_none())
        })
        .await;

        // Its record expires (an outage longer than the TTL): the worker comes back by itself.
        clock.advance(Duration::from_secs(5));
        assert!(registry.get("worker-1").await.unwrap().is_none(), "expired");
        eventually("registered again", async || registry.get("worker-1").await.unwrap().is_some()).await;
        let health = worker.health();
        assert!(health.is_healthy(), "{health:?}");

        let report = worker.shutdown().await;
        assert!(report.clean, "{report:?}");
        assert!(registry.get("worker-1").await.unwrap().is_none(), "removed at shutdown");
    }
}
