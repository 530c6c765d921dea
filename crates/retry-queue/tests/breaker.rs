//! With the `circuit-breaker` feature: a task naming a component whose breaker is open is
//! deferred (no attempt spent, handler not run); once the breaker closes it runs.
#![cfg(feature = "circuit-breaker")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coordkit_circuit_breaker::{BreakerConfig, CircuitBreaker, Forced};
use coordkit_retry_queue::{
    NewTask, Queue, QueueConfig, TaskOptions, TaskState, Worker, WorkerConfig,
};
use coordkit_testkit::redis_test;

redis_test! {
    async fn an_open_breaker_defers_tasks_without_spending_attempts(redis) {
        let pool = redis.pool().await;
        let keyspace = redis.keyspace();
        let queue = Queue::new(pool.clone(), &keyspace, "guarded", QueueConfig::default()).unwrap();
        let breaker = CircuitBreaker::new(pool, &keyspace, "llm-api", BreakerConfig::default()).unwrap();
        breaker.force(Forced::Open).await.unwrap();
        let id = queue
            .enqueue(NewTask::new("call").options(TaskOptions::default().component("llm-api").max_attempts(1)))
            .await
            .unwrap()
            .id()
            .to_owned();
        let runs = Arc::new(AtomicU64::new(0));
        let (r, b) = (runs.clone(), breaker.clone());
        let worker = Worker::start(
            queue.clone(),
            WorkerConfig::default().breakers(move |name| (name == "llm-api").then(|| b.clone())),
            move |_task| {
                let r = r.clone();
                async move {
                    r.fetch_add(1, Ordering::Relaxed);
                    Ok::<(), String>(())
                }
            },
        )
        .await
        .unwrap();
        while worker.stats().deferred == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let report = worker.shutdown().await;
        assert!(report.clean);
        assert_eq!(runs.load(Ordering::Relaxed), 0);
        let info = queue.inspect(&id).await.unwrap().unwrap();
        assert_eq!((info.state, info.attempts), (TaskState::Delayed, 0));
        assert!(queue.dead_letters(0, 10).await.unwrap().is_empty());
    }
}
