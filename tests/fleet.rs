//! The primitives together, through the umbrella: a queue worker guarded by a breaker, reporting
//! errors and metrics, agents in the context store, asking a planner over the mesh, on
//! standalone and cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use coordkit::Coordkit;
use coordkit::circuit_breaker::{BreakerConfig, OpenDuration, State, Window};
use coordkit::context::{AgentStatus, Status};
use coordkit::errors::ErrorEvent;
use coordkit::mesh::Reply;
use coordkit::retry_queue::{Backoff, NewTask, TaskOptions, Worker};
use coordkit_testkit::redis_test;

const WAIT: Duration = Duration::from_secs(60);

redis_test! {
    async fn a_guarded_worker_rides_out_an_outage_and_reports_it(redis) {
        let kit = Coordkit::from_pool(redis.pool().await, redis.keyspace().namespace()).unwrap();
        let breakers = kit
            .breakers()
            .default_config(
                BreakerConfig::builder()
                    .window(Window::Count(10))
                    .minimum_calls(5)
                    .failure_rate(0.5)
                    .open_duration(OpenDuration::Fixed(Duration::from_millis(200)))
                    .half_open_permits(1)
                    .half_open_successes(1)
                    .permit_lease(Duration::from_millis(500))
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let queue = kit.queue("jobs").build().unwrap();
        let errors = kit.error_tracker("jobs").build().unwrap();
        let metrics = kit.metrics().build().unwrap();
        let agents = kit.context().build().unwrap().agents("workers").unwrap();

        const TASKS: u32 = 120;
        let options = TaskOptions::default()
            .max_attempts(50)
            .backoff(Backoff::Fixed(Duration::from_millis(5)))
            .component("flaky-api");
        let tasks: Vec<NewTask> = (0..TASKS)
            .map(|n| NewTask::json(&n).unwrap().options(options.clone()))
            .collect();
        queue.enqueue_batch(&tasks).await.unwrap();

        // A planner serves the `advice` capability: the breaker's state, as the fleet sees it.
        let planner = kit.agent("planner").build().unwrap();
        let advice = {
            let breakers = breakers.clone();
            planner
                .serve_capability("advice", move |component: String| {
                    let breakers = breakers.clone();
                    async move {
                        let snapshot = breakers.get("dep", &component).map_err(|e| e.to_string())?.snapshot().await.map_err(|e| e.to_string())?;
                        Ok::<_, String>(format!("{component}: {:?}", snapshot.state))
                    }
                })
                .await
                .unwrap()
        };
        // Every failed call asks it; each outcome is counted.
        let (asked, answered) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let mesh = kit.agent("w1").build().unwrap();

        // The downstream is down until the test says otherwise.
        let down = Arc::new(AtomicBool::new(true));
        let registry = breakers.clone();
        let worker = {
            let (down, errors, metrics, agents) = (down.clone(), errors.clone(), metrics.clone(), agents.clone());
            let (mesh, asked, answered) = (mesh.clone(), asked.clone(), answered.clone());
            Worker::builder_json(&queue, move |task, n: u32| {
                let (down, errors, metrics, agents) = (down.clone(), errors.clone(), metrics.clone(), agents.clone());
                let (mesh, asked, answered) = (mesh.clone(), asked.clone(), answered.clone());
                async move {
                    agents.set_status("w1", &AgentStatus::new(Status::Busy).task(format!("t{n}"))).await.unwrap();
                    let latency = metrics.histogram("latency_ms", &[("component", "flaky-api")]).unwrap();
                    latency.observe(1.0 + f64::from(n % 5)).await.unwrap();
                    if down.load(Ordering::SeqCst) {
                        errors
                            .record(&ErrorEvent::new("flaky-api", "Timeout", format!("timeout after {}ms", 100 + n)).task(format!("t{n}")))
                            .await
                            .unwrap();
                        asked.fetch_add(1, Ordering::SeqCst);
                        let reply: Reply<String> = mesh.ask_capability("advice", &"flaky-api", WAIT).await.unwrap();
                        match reply {
                            Reply::Answer(advice) if advice.starts_with("flaky-api: ") => {
                                answered.fetch_add(1, Ordering::SeqCst);
                            }
                            other => panic!("the planner did not answer: {other:?}"),
                        }
                        return Err(format!("timeout on attempt {}", task.attempt));
                    }
                    Ok::<(), String>(())
                }
            }).concurrency(4)
            .breakers(move |component| registry.get("dep", component).ok()).start()
            .await
            .unwrap()
        };

        // The breaker opens on the outage and tasks wait instead of burning their attempts.
        let breaker = breakers.get("dep", "flaky-api").unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let snapshot = breaker.snapshot().await.unwrap();
            if snapshot.epoch >= 2 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the breaker never opened: {snapshot:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        down.store(false, Ordering::SeqCst);

        // Everything completes once the downstream is back; nothing is dead-lettered.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let stats = queue.stats().await.unwrap();
            if stats.completed == u64::from(TASKS) {
                assert_eq!(stats.dead_lettered_total, 0);
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "stuck: {stats:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let report = worker.shutdown().await;
        assert!(report.clean);

        // Every failure is in the tracker, under one signature; the breaker closed again.
        let counts = errors.counts().await.unwrap();
        let failures = counts.by_component.get("flaky-api").copied().unwrap_or(0);
        assert!(failures >= 5, "only {failures} failures were recorded");
        let top = errors.top(Duration::from_secs(600), 5).await.unwrap();
        assert_eq!(top.signatures.len(), 1, "the timeouts must share one signature");
        assert_eq!(top.signatures[0].total, failures);
        let snapshot = breaker.snapshot().await.unwrap();
        assert_eq!(snapshot.state, State::Closed);
        assert!(snapshot.epoch >= 4, "open, half-open, closed: {snapshot:?}");
        // Every call's latency was observed (successes and failures alike).
        let latency = metrics.histogram("latency_ms", &[("component", "flaky-api")]).unwrap().snapshot().await.unwrap();
        assert_eq!(latency.count, u64::from(TASKS) + failures);
        // Every failed call asked the planner, and every ask got an answer.
        let (asked, answered) = (asked.load(Ordering::SeqCst), answered.load(Ordering::SeqCst));
        assert_eq!(asked, failures, "one ask per failure");
        assert_eq!(answered, asked, "every ask got an Answer");
        assert_eq!(advice.served(), asked);
        let stats = mesh.stats();
        assert_eq!((stats.replies, stats.timeouts, stats.no_responders), (asked, 0, 0));
        advice.shutdown().await;
        let agent = agents.get("w1").await.unwrap().unwrap();
        assert_eq!(agent.status.status, Status::Busy);
    }
}
