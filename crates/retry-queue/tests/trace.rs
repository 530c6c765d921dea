//! Tracing in a worker: a `coordkit.task` span per attempt (queue, task id, attempt, outcome),
//! the handler's own events inside it, and the queue's script calls as `coordkit.script`
//! spans naming the queue (targets and fields: `coordkit_core::trace`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use coordkit_core::trace::{SCRIPT_TARGET, TASK_TARGET};
use coordkit_retry_queue::{Backoff, Jitter, NewTask, Queue, TaskError, TaskOptions, Worker};
use coordkit_testkit::redis_test;
use coordkit_testkit::spans::Spans;

redis_test! {
    async fn each_attempt_is_a_task_span_with_its_outcome(redis) {
        let spans = Spans::global();
        let pool = redis.pool().await;
        let name = format!("traced-{}", redis.keyspace().namespace());
        let queue = Queue::builder(&pool, &redis.keyspace(), &name).build().unwrap();
        let runs = Arc::new(AtomicU32::new(0));
        let seen = runs.clone();
        let queue_name = name.clone();
        let worker = Worker::builder(&queue, move |task| {
            let seen = seen.clone();
            let queue_name = queue_name.clone();
            async move {
                let run = seen.fetch_add(1, Ordering::SeqCst) + 1;
                tracing::info!(target: "handler", queue = %queue_name, run, "handling");
                match run {
                    1 => Err(TaskError::Retry("first".into())),
                    2 => panic!("second"),
                    _ => {
                        assert_eq!(task.attempt, 3);
                        Ok(())
                    }
                }
            }
        })
        .start()
        .await
        .unwrap();
        let options = TaskOptions::default()
            .max_attempts(5)
            .backoff(Backoff::Fixed(Duration::from_millis(5)))
            .jitter(Jitter::None);
        let id = queue.enqueue(NewTask::new("x").options(options)).await.unwrap();
        // (Waits up to a minute: a slow machine still gets there.)
        for _ in 0..6_000 {
            if worker.stats().acked == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let report = worker.shutdown().await;
        assert!(report.clean, "{report:?}");
        assert_eq!(runs.load(Ordering::SeqCst), 3);

        let mut attempts: Vec<_> = spans
            .closed("coordkit.task")
            .into_iter()
            .filter(|s| s.fields.get("queue") == Some(&name))
            .collect();
        attempts.sort_by_key(|s| s.fields["attempt"].clone());
        let seen: Vec<(&str, &str)> = attempts
            .iter()
            .map(|s| (s.fields["attempt"].as_str(), s.fields["outcome"].as_str()))
            .collect();
        assert_eq!(seen, [("1", "failed"), ("2", "panicked"), ("3", "completed")]);
        for span in &attempts {
            assert_eq!(span.target, TASK_TARGET);
            assert_eq!(span.level, tracing::Level::INFO);
            assert_eq!(span.fields["task_id"], id.id());
            assert!(span.fields["duration_us"].parse::<u64>().is_ok(), "{span:?}");
        }
        // The handler's events happen inside its attempt's span.
        let handled: Vec<_> = spans
            .events("handler")
            .into_iter()
            .filter(|e| e.fields.get("queue") == Some(&name))
            .collect();
        assert_eq!(handled.len(), 3, "{handled:?}");
        assert!(handled.iter().all(|e| e.span.as_deref() == Some("coordkit.task")), "{handled:?}");

        // The queue's own calls: at least the enqueue, a claim and the settles, each naming
        // the queue as its instance.
        let instance = format!("queue:{name}");
        let scripts: Vec<String> = spans
            .closed("coordkit.script")
            .into_iter()
            .filter(|s| s.fields.get("instance") == Some(&instance))
            .inspect(|s| assert_eq!(s.target, SCRIPT_TARGET))
            .map(|s| s.fields["operation"].clone())
            .collect();
        for script in ["retry-queue-enqueue", "retry-queue-claim", "retry-queue-settle"] {
            assert!(scripts.iter().any(|s| s == script), "{script} in {scripts:?}");
        }
    }
}
