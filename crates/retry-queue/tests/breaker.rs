//! With the `circuit-breaker` feature (required by this target): a task naming a component
//! whose breaker is open is deferred (no attempt spent, handler not run); once the breaker
//! closes it runs, at once rather than when its deferral ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coordkit_circuit_breaker::{Admission, CircuitBreaker, Forced, OpenDuration, Outcome};
use coordkit_core::{Clock, ManualClock};
use coordkit_retry_queue::{NewTask, Queue, TaskOptions, TaskState, Worker};
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
    let worker = Worker::builder(queue, move |_task| {
        let r = r.clone();
        async move {
            r.fetch_add(1, Ordering::Relaxed);
            Ok::<(), String>(())
        }
    })
    .breakers(move |name| (name == component).then(|| b.clone()))
    .start()
    .await
    .unwrap();
    (id, runs, worker)
}

redis_test! {
    async fn an_open_breaker_defers_tasks_without_spending_attempts(redis) {
        let pool = redis.pool().await;
        let keyspace = redis.keyspace();
        let queue = Queue::builder(&pool, &keyspace, "guarded").build().unwrap();
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
        let queue = Queue::builder(&pool, &keyspace, "reopened").build().unwrap();
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
        let queue = Queue::builder(&pool, &keyspace, "herd").build().unwrap();
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
        let worker = Worker::builder(&queue, |_task| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<(), String>(())
        }).breakers(move |name| (name == "search").then(|| b.clone()))
            .on_settled(move |task, settled| {
                if let coordkit_retry_queue::Settled::Deferred { due_ms } = settled {
                    let claimed = task.deadline_ms - 30_000;
                    d.lock().unwrap().push(due_ms.saturating_sub(claimed));
                }
            }).start()
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

// The tasks are deferred for the breaker's 60 s open period; they must run once it closes,
// not when the deferral runs out. The 10 s guard tells the two apart without a timed
// assertion (the project has none): with the resume on `closed` disabled, it fails.
redis_test! {
    async fn tasks_a_breaker_deferred_run_as_soon_as_it_closes(redis) {
        let pool = redis.pool().await;
        let keyspace = redis.keyspace();
        let queue = Queue::builder(&pool, &keyspace, "resumed").build().unwrap();
        // The breaker runs on a manual clock: its 60 s open period ends when the test says.
        let clock = ManualClock::new(1_800_000_000_000);
        let breaker = CircuitBreaker::builder(&pool, &keyspace, "payments")
            .minimum_calls(1)
            .consecutive_failures(Some(1))
            .open_duration(OpenDuration::Fixed(Duration::from_secs(60)))
            .half_open_permits(1)
            .half_open_successes(1)
            .clock(Clock::Manual(clock.clone()))
            .build()
            .unwrap();
        let mut events = breaker.events().await.unwrap();
        let Admission::Admitted(permit) = breaker.acquire().await.unwrap() else {
            panic!("a new breaker admits");
        };
        breaker.record(permit, Outcome::Failure).await.unwrap();

        let options = TaskOptions::default().component("payments").max_attempts(1);
        let batch: Vec<NewTask> = (0..5).map(|_| NewTask::new("charge").options(options.clone())).collect();
        queue.enqueue_batch(&batch).await.unwrap();
        let runs = Arc::new(AtomicU64::new(0));
        let deferrals = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (r, d, b) = (runs.clone(), deferrals.clone(), breaker.clone());
        let worker = Worker::builder(&queue, move |_task| {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::Relaxed);
                Ok::<(), String>(())
            }
        })
        .breakers(move |name| (name == "payments").then(|| b.clone()))
        .on_settled(move |task, settled| {
            if let coordkit_retry_queue::Settled::Deferred { due_ms } = settled {
                let claimed = task.deadline_ms - 30_000;
                d.lock().unwrap().push(due_ms.saturating_sub(claimed));
            }
        })
        .start()
        .await
        .unwrap();
        let guard = tokio::time::Instant::now() + Duration::from_secs(10);
        while worker.stats().deferred < 5 {
            assert!(tokio::time::Instant::now() < guard, "not all deferred: {:?}", worker.stats());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Each was put off for the whole open period.
        let deferrals = deferrals.lock().unwrap().clone();
        assert!(deferrals.iter().all(|&ms| ms >= 59_000), "{deferrals:?}");
        assert_eq!(runs.load(Ordering::Relaxed), 0);

        // The open period ends; one probe succeeds and the breaker closes.
        clock.advance(Duration::from_secs(60));
        let Admission::Admitted(probe) = breaker.acquire().await.unwrap() else {
            panic!("a breaker past its open period admits a probe");
        };
        breaker.record(probe, Outcome::Success).await.unwrap();
        loop {
            let event = tokio::time::timeout_at(guard, events.recv()).await.expect("a closed event").unwrap();
            if event.kind == coordkit_circuit_breaker::BreakerEventKind::Closed {
                break;
            }
        }
        // Deferred for 60 s, they run now: made due by the close, not by their deferral.
        while queue.stats().await.unwrap().completed < 5 {
            assert!(
                tokio::time::Instant::now() < guard,
                "the deferred tasks did not run after the close: {:?} {:?}",
                worker.stats(),
                queue.stats().await.unwrap()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let report = worker.shutdown().await;
        assert!(report.clean);
        assert_eq!((runs.load(Ordering::Relaxed), report.stats.deferred, report.stats.acked), (5, 5, 5));
        assert!(queue.dead_letters(0, 10).await.unwrap().is_empty());
    }
}

// While a breaker is open, its component's tasks are not handed out at all: the first
// rejection holds the component, and every claim after it moves the component's tasks to the
// delayed set (due when the breaker may half-open) instead of leasing them. Without the hold,
// every worker claimed and deferred them one by one, again and again (861 rejections in one
// short run). Tasks of other components run meanwhile.
redis_test! {
    async fn an_open_breakers_tasks_are_not_claimed_at_all(redis) {
        let pool = redis.pool().await;
        let keyspace = redis.keyspace();
        let queue = Queue::builder(&pool, &keyspace, "held").build().unwrap();
        let clock = ManualClock::new(1_800_000_000_000);
        let breaker = CircuitBreaker::builder(&pool, &keyspace, "search")
            .open_duration(OpenDuration::Fixed(Duration::from_secs(30)))
            .clock(Clock::Manual(clock.clone()))
            .build()
            .unwrap();
        breaker.force(Forced::Open).await.unwrap();
        const TASKS: u64 = 300;
        let search = TaskOptions::default().component("search");
        let mut batch: Vec<NewTask> = (0..TASKS).map(|_| NewTask::new("q").options(search.clone())).collect();
        batch.extend((0..50).map(|_| NewTask::new("other").options(TaskOptions::default().component("db"))));
        queue.enqueue_batch(&batch).await.unwrap();
        let runs = Arc::new(AtomicU64::new(0));
        let mut workers = Vec::new();
        for _ in 0..4 {
            let (r, b) = (runs.clone(), breaker.clone());
            let worker = Worker::builder(&queue, move |_task| {
                let r = r.clone();
                async move {
                    r.fetch_add(1, Ordering::Relaxed);
                    Ok::<(), String>(())
                }
            })
            .breakers(move |name| (name == "search").then(|| b.clone()))
            .concurrency(8)
            .start()
            .await
            .unwrap();
            workers.push(worker);
        }
        let guard = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let s = queue.stats().await.unwrap();
            if s.completed == 50 && s.delayed == TASKS && s.ready + s.leased == 0 {
                break;
            }
            let health: Vec<_> = workers.iter().map(|w| (w.health(), w.stats())).collect();
            assert!(tokio::time::Instant::now() < guard, "{s:?} {health:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut deferred = 0;
        for w in workers {
            deferred += w.shutdown().await.stats.deferred;
        }
        // At most the tasks leased before the first hold landed: one claim batch per worker.
        assert!(deferred <= 4 * 8, "{deferred} rejections");
        assert_eq!(runs.load(Ordering::Relaxed), 50, "only the other component's tasks ran");
    }
}
