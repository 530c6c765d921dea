//! With the `circuit-breaker` feature: a task naming a component whose breaker is open is
//! deferred (no attempt spent, handler not run); once the breaker closes it runs.
#![cfg(feature = "circuit-breaker")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coordkit_circuit_breaker::{Admission, CircuitBreaker, Forced, OpenDuration, Outcome};
use coordkit_retry_queue::{
    NewTask, Queue, QueueConfig, TaskOptions, TaskState, Worker, WorkerConfig,
};
use coordkit_testkit::redis_test;

/// Enqueues one task (one attempt) naming `component`, and starts a worker that consults
/// `breaker` for it and counts its handler's runs. Returns the task's id, the run count and the
/// worker.
async fn guarded_worker(
    queue: &Queue,
    breaker: &CircuitBreaker,
    component: &'static str,
) -> (String, Arc<AtomicU64>, Worker) {
    let options = TaskOptions::default().component(component).max_attempts(1);
    let id = queue
        .enqueue(NewTask::new("call").options(options))
        .await
        .unwrap()
        .id()
        .to_owned();
    let runs = Arc::new(AtomicU64::new(0));
    let (r, b) = (runs.clone(), breaker.clone());
    let worker = Worker::start(
        queue.clone(),
        WorkerConfig::default().breakers(move |name| (name == component).then(|| b.clone())),
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
    (id, runs, worker)
}

redis_test! {
    async fn an_open_breaker_defers_tasks_without_spending_attempts(redis) {
        let pool = redis.pool().await;
        let keyspace = redis.keyspace();
        let queue = Queue::new(pool.clone(), &keyspace, "guarded", QueueConfig::default()).unwrap();
        let breaker = CircuitBreaker::builder(&pool, &keyspace, "llm-api").build().unwrap();
        breaker.force(Forced::Open).await.unwrap();
        let (id, runs, worker) = guarded_worker(&queue, &breaker, "llm-api").await;
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

redis_test! {
    async fn a_deferred_task_runs_once_its_breaker_closes(redis) {
        let pool = redis.pool().await;
        let keyspace = redis.keyspace();
        let queue = Queue::new(pool.clone(), &keyspace, "reopened", QueueConfig::default()).unwrap();
        let breaker = CircuitBreaker::builder(&pool, &keyspace, "vector-db")
            .minimum_calls(1)
            .consecutive_failures(Some(1))
            .open_duration(OpenDuration::Fixed(Duration::from_millis(300)))
            .build()
            .unwrap();
        // One failure opens it for 300 ms.
        let Admission::Admitted(permit) = breaker.acquire().await.unwrap() else {
            panic!("a new breaker admits");
        };
        breaker.record(permit, Outcome::Failure).await.unwrap();
        assert!(matches!(breaker.acquire().await.unwrap(), Admission::Rejected(_)));

        let (id, runs, worker) = guarded_worker(&queue, &breaker, "vector-db").await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while queue.stats().await.unwrap().completed == 0 {
            assert!(tokio::time::Instant::now() < deadline, "the task never ran: {:?}", worker.stats());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let report = worker.shutdown().await;
        assert!(report.clean);
        // Deferred while open (no attempt spent: it had only one), then run once, as the probe.
        assert!(report.stats.deferred >= 1, "{:?}", report.stats);
        assert_eq!((runs.load(Ordering::Relaxed), report.stats.acked), (1, 1));
        assert_eq!(queue.inspect(&id).await.unwrap(), None);
        assert!(queue.dead_letters(0, 10).await.unwrap().is_empty());
    }
}

redis_test! {
    async fn tasks_deferred_by_a_half_open_breaker_come_back_soon_not_after_the_lease(redis) {
        let pool = redis.pool().await;
        let keyspace = redis.keyspace();
        let queue = Queue::new(pool.clone(), &keyspace, "herd", QueueConfig::default()).unwrap();
        let breaker = CircuitBreaker::builder(&pool, &keyspace, "search")
            .minimum_calls(1)
            .consecutive_failures(Some(1))
            .open_duration(OpenDuration::Fixed(Duration::from_millis(300)))
            .build()
            .unwrap();
        let Admission::Admitted(permit) = breaker.acquire().await.unwrap() else {
            panic!("a new breaker admits");
        };
        breaker.record(permit, Outcome::Failure).await.unwrap();
        let options = TaskOptions::default().component("search").max_attempts(1);
        let batch: Vec<NewTask> = (0..10).map(|_| NewTask::new("call").options(options.clone())).collect();
        queue.enqueue_batch(&batch).await.unwrap();
        // How long each deferral put its task off: due time minus the claim's time.
        let delays = Arc::new(std::sync::Mutex::new(Vec::new()));
        let d = delays.clone();
        let b = breaker.clone();
        let config = WorkerConfig::default()
            .breakers(move |name| (name == "search").then(|| b.clone()))
            .on_settled(move |task, settled| {
                if let coordkit_retry_queue::Settled::Deferred { due_ms } = settled {
                    let claimed = task.deadline_ms - 30_000;
                    d.lock().unwrap().push(due_ms.saturating_sub(claimed));
                }
            });
        let worker = Worker::start(queue.clone(), config, |_task| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<(), String>(())
        })
        .await
        .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while queue.stats().await.unwrap().completed < 10 {
            assert!(tokio::time::Instant::now() < deadline, "{:?}", worker.stats());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(worker.shutdown().await.clean);
        let delays = delays.lock().unwrap().clone();
        assert!(!delays.is_empty(), "nothing was deferred");
        // Open: until it half-opens (300 ms); half-open with its probe taken: at most the cap,
        // never the 30 s permit lease.
        let cap = coordkit_circuit_breaker::HALF_OPEN_RETRY_CAP.as_millis() as u64;
        assert!(delays.iter().all(|&d| d <= cap), "{delays:?}");
    }
}
