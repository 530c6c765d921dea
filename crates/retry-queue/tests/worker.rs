//! The worker runtime against a real Redis: fleets of workers on standalone and cluster (each
//! task completes or is dead-lettered exactly as the reference model says, never two holders
//! at once), 50
//! workers on 20,000 tasks, kill -9 of an AOF server during a run (nothing lost), graceful
//! shutdown, panics, wake-ups without polling.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coordkit_retry_queue::model::QueueModel;
use coordkit_retry_queue::{
    Backoff, Jitter, NewTask, Queue, RawSettle, Settle, Settled, TaskError, TaskOptions, Worker,
};
use coordkit_testkit::{RedisServer, ServerOptions, TestRedis, redis_test};
use rand::Rng;

#[derive(serde::Serialize, serde::Deserialize)]
struct Job {
    i: u32,
    fails: u32,
}

/// How a task must end: `None` = completed, or the dead-letter reason and attempts.
type End = Option<(&'static str, u32)>;

/// Task `i`'s plan: its payload, options, and how it must end (None = completed, or the
/// dead-letter reason and attempts), checked against the reference model.
fn plan(i: u32, lease: Duration, keyed: bool) -> (NewTask, End) {
    let (task, end) = planned(i, lease, keyed);
    let (fails, malformed) = match i % 10 {
        0 => (0, true),
        1 | 2 => (i % 4, false),
        3 => (99, false),
        _ => (0, false),
    };
    assert_eq!(
        model_end(&task, fails, malformed),
        end.map(|(reason, attempts)| (reason.to_owned(), attempts)),
        "task {i}: the plan disagrees with the reference model"
    );
    (task, end)
}

/// How the reference model says `task` ends when its handler fails `fails` times before it
/// succeeds, or when its payload cannot be decoded (`malformed`, which the worker dead-letters):
/// the worker's steps played on a [`QueueModel`].
fn model_end(task: &NewTask, fails: u32, malformed: bool) -> Option<(String, u32)> {
    let mut model = QueueModel::new(coordkit_retry_queue::QueueConfig::default());
    let mut now = 1_000_000;
    let id = model.enqueue(now, std::slice::from_ref(task))[0]
        .id()
        .to_owned();
    for _ in 0..1_000 {
        let claim = model.claim(now, 1);
        let Some(t) = claim.tasks.into_iter().next() else {
            now = claim.next_due_ms.expect("the task waits for its backoff");
            continue;
        };
        let settle = if malformed {
            Settle::DeadLetter {
                reason: "malformed".into(),
                error: "undecodable".into(),
            }
        } else if t.attempt <= fails {
            Settle::Fail(format!("planned failure {}", t.attempt))
        } else {
            Settle::Ack
        };
        let op = RawSettle {
            id: t.id,
            token: t.token,
            settle,
            draw: 0,
            attempt: t.attempt,
        };
        match model.settle(now, &[op])[0] {
            Settled::Acked => return None,
            Settled::DeadLettered { attempts } => {
                let reason = model.dump().dead.get(&id).cloned().unwrap_or_default();
                return Some((reason, attempts));
            }
            _ => {}
        }
    }
    panic!("the model never settled task {id}");
}

/// The hand-written plan of task `i` (see [`plan`]).
fn planned(i: u32, lease: Duration, keyed: bool) -> (NewTask, End) {
    let options = |max: u32| {
        let o = TaskOptions::default()
            .max_attempts(max)
            .backoff(Backoff::Fixed(Duration::from_millis(1)))
            .jitter(Jitter::None)
            .lease(lease);
        if keyed {
            // Retries of an enqueue that was applied answer the same id.
            o.idempotency_key(format!("task-{i}"), Duration::from_secs(600))
        } else {
            o
        }
    };
    match i % 10 {
        0 => (
            NewTask::new(format!("not json {i}{{")).options(options(3)),
            Some(("malformed", 0)),
        ),
        1 | 2 => {
            let fails = i % 4; // 0..=3 failures, 3 attempts
            let end = (fails >= 3).then_some(("exhausted", 3));
            (
                NewTask::json(&Job { i, fails })
                    .unwrap()
                    .options(options(3)),
                end,
            )
        }
        3 => (
            NewTask::json(&Job { i, fails: 99 })
                .unwrap()
                .options(options(2)),
            Some(("exhausted", 2)),
        ),
        _ => (
            NewTask::json(&Job { i, fails: 0 })
                .unwrap()
                .options(options(3)),
            None,
        ),
    }
}

#[derive(Default)]
struct Observed {
    running: Mutex<HashMap<String, u64>>,
    /// The (token, attempt) of each task's last run: a retry in place runs again under the
    /// same token, with the next attempt; any other run has a greater token.
    last_run: Mutex<HashMap<String, (u64, u32)>>,
    successes: Mutex<BTreeMap<u32, u32>>,
    overlaps: AtomicU64,
    token_regressions: AtomicU64,
}

async fn start_workers(
    queue: &Queue,
    n: usize,
    concurrency: usize,
    seen: Arc<Observed>,
) -> Vec<Worker> {
    let mut workers = Vec::new();
    for _ in 0..n {
        let seen = seen.clone();
        let w = Worker::builder_json(queue, move |task, job: Job| {
            let seen = seen.clone();
            async move {
                {
                    let mut running = seen.running.lock().unwrap();
                    if running.insert(task.id.clone(), task.token).is_some() {
                        seen.overlaps.fetch_add(1, Ordering::Relaxed);
                    }
                    let mut last = seen.last_run.lock().unwrap();
                    let run = (task.token, task.attempt);
                    let prev = last.insert(task.id.clone(), run).unwrap_or((0, 0));
                    if prev >= run {
                        seen.token_regressions.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::task::yield_now().await;
                let result = if task.attempt <= job.fails {
                    Err(TaskError::Retry(format!(
                        "planned failure {}",
                        task.attempt
                    )))
                } else {
                    *seen.successes.lock().unwrap().entry(job.i).or_default() += 1;
                    Ok(())
                };
                seen.running.lock().unwrap().remove(&task.id);
                result
            }
        })
        .concurrency(concurrency)
        .start()
        .await
        .unwrap();
        workers.push(w);
    }
    workers
}

/// Waits until nothing is ready, delayed or leased (and `done` tasks are accounted for).
async fn drain(queue: &Queue, done: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(100);
    loop {
        match queue.stats().await {
            Ok(s) if s.ready + s.delayed + s.leased == 0 && s.completed + s.dead >= done => return,
            _ => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the queue did not drain: {:?}",
            queue.stats().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn fleet(redis: &TestRedis, tasks: u32, workers: usize, concurrency: usize) {
    let pool = redis.pool().await;
    let queue = Queue::builder(&pool, &redis.keyspace(), "fleet")
        .build()
        .unwrap();
    let seen = Arc::new(Observed::default());
    // Start the workers first: they sleep on a wake-up until work arrives.
    let running = start_workers(&queue, workers, concurrency, seen.clone()).await;
    let mut expected: BTreeMap<String, (u32, End)> = BTreeMap::new();
    let mut batch = Vec::new();
    let mut ends = Vec::new();
    for i in 0..tasks {
        let (task, end) = plan(i, Duration::from_secs(30), false);
        batch.push(task);
        ends.push((i, end));
        if batch.len() == 250 || i + 1 == tasks {
            let ids = queue.enqueue_batch(&batch).await.unwrap();
            for (e, (i, end)) in ids.iter().zip(ends.drain(..)) {
                expected.insert(e.id().to_owned(), (i, end));
            }
            batch.clear();
        }
    }
    drain(&queue, u64::from(tasks)).await;
    let idle_claims: u64 = running.iter().map(|w| w.stats().claims).sum();
    // Idle: no timer is armed (nothing delayed, no lease), so no worker claims again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later: u64 = running.iter().map(|w| w.stats().claims).sum();
    assert!(
        later - idle_claims <= workers as u64,
        "idle workers polled: {idle_claims} -> {later}"
    );
    let mut totals = coordkit_retry_queue::WorkerStats::default();
    for w in running {
        let report = w.shutdown().await;
        assert!(report.clean);
        totals.acked += report.stats.acked;
        totals.lease_lost += report.stats.lease_lost;
    }
    assert_eq!(
        seen.overlaps.load(Ordering::Relaxed),
        0,
        "two holders at once"
    );
    assert_eq!(seen.token_regressions.load(Ordering::Relaxed), 0);
    assert_eq!(totals.lease_lost, 0);

    let dead: BTreeMap<String, (String, u32)> = queue
        .dead_letters(0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.id, (d.reason, d.attempts)))
        .collect();
    let successes = seen.successes.lock().unwrap().clone();
    let mut completed = 0u64;
    for (id, (i, end)) in &expected {
        match end {
            None => {
                assert_eq!(
                    successes.get(i),
                    Some(&1),
                    "task {i} must complete exactly once"
                );
                assert!(!dead.contains_key(id));
                completed += 1;
            }
            Some((reason, attempts)) => {
                assert_eq!(
                    dead.get(id),
                    Some(&(reason.to_string(), *attempts)),
                    "task {i}"
                );
                assert_eq!(successes.get(i), None);
            }
        }
    }
    assert_eq!(dead.len() as u64, u64::from(tasks) - completed);
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.completed, completed);
    assert_eq!(totals.acked, completed);
}

redis_test! {
    async fn a_fleet_completes_or_dead_letters_every_task_as_planned(redis) {
        fleet(&redis, 2_000, 10, 5).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_workers_process_twenty_thousand_tasks() {
    let redis = TestRedis::start(coordkit_testkit::Topology::Standalone);
    fleet(&redis, 20_000, 50, 1).await;
}

redis_test! {
    async fn graceful_shutdown_finishes_in_flight_tasks_then_stops(redis) {
        let pool = redis.pool().await;
        let queue = Queue::builder(&pool, &redis.keyspace(), "shutdown").build().unwrap();
        let started = Arc::new(tokio::sync::Semaphore::new(0));
        let release = Arc::new(tokio::sync::Notify::new());
        let (s, r) = (started.clone(), release.clone());
        let worker = Worker::builder(&queue, move |_task| {
            let (s, r) = (s.clone(), r.clone());
            async move {
                // Wait for the release before saying we started, so no release is missed.
                let released = r.notified();
                tokio::pin!(released);
                released.as_mut().enable();
                s.add_permits(1);
                released.await;
                Ok::<(), String>(())
            }
        }).concurrency(4).start()
        .await
        .unwrap();
        let batch: Vec<NewTask> = (0..4).map(|i| NewTask::new(format!("{i}"))).collect();
        queue.enqueue_batch(&batch).await.unwrap();
        let _all = started.acquire_many(4).await.unwrap();
        // Calling shutdown stops claiming at once; in-flight tasks finish after it, and the
        // task enqueued after it is not claimed.
        let shutdown = tokio::spawn(worker.shutdown());
        queue.enqueue(NewTask::new("late")).await.unwrap();
        release.notify_waiters();
        // (notify_waiters only wakes tasks already waiting; they all are.)
        let report = shutdown.await.unwrap();
        assert!(report.clean, "{report:?}");
        assert_eq!(report.stats.acked, 4);
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.completed, stats.ready, stats.leased), (4, 1, 0));

        // A handler that never ends is abandoned at the deadline; its lease stays for reclaim.
        let stuck = Worker::builder(&queue, |_task| async { std::future::pending::<Result<(), String>>().await }).concurrency(1).shutdown_timeout(Duration::from_millis(100)).start()
        .await
        .unwrap();
        while queue.stats().await.unwrap().leased == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let report = stuck.shutdown().await;
        assert!(!report.clean);
        assert_eq!(report.abandoned, 1);
        assert_eq!(queue.stats().await.unwrap().leased, 1);
    }
}

redis_test! {
    async fn panics_and_poison_never_stop_a_worker(redis) {
        let pool = redis.pool().await;
        let queue = Queue::builder(&pool, &redis.keyspace(), "poison").build().unwrap();
        let o = TaskOptions::default().max_attempts(1);
        let mut batch = vec![
            NewTask::new("panic").options(o.clone()),
            NewTask::new(vec![0xff, 0xfe]).options(o.clone()),
        ];
        batch.extend((0..20).map(|i| NewTask::json(&Job { i, fails: 0 }).unwrap().options(o.clone())));
        let ids = queue.enqueue_batch(&batch).await.unwrap();
        let worker = Worker::builder(&queue, |task| async move {
            if task.payload == b"panic" {
                panic!("poisoned input");
            }
            let _: Job = task.json().map_err(|e| TaskError::DeadLetter { reason: "malformed".into(), error: e.to_string() })?;
            Ok::<(), TaskError>(())
        }).concurrency(3).start()
        .await
        .unwrap();
        drain(&queue, 22).await;
        let report = worker.shutdown().await;
        assert_eq!(report.stats.panics, 1);
        assert_eq!(report.stats.acked, 20);
        let panicked = queue.inspect(ids[0].id()).await.unwrap().unwrap();
        assert_eq!(panicked.reason.as_deref(), Some("exhausted"));
        assert!(panicked.errors[0].error.contains("poisoned input"), "{:?}", panicked.errors);
        let poison = queue.inspect(ids[1].id()).await.unwrap().unwrap();
        assert_eq!(poison.reason.as_deref(), Some("malformed"));
        assert_eq!(poison.payload, vec![0xff, 0xfe]);
    }
}

redis_test! {
    async fn an_idle_worker_wakes_for_delayed_work_and_stalled_leases(redis) {
        let pool = redis.pool().await;
        let queue = Queue::builder(&pool, &redis.keyspace(), "wake").build().unwrap();
        let done = Arc::new(tokio::sync::Semaphore::new(0));
        let d = done.clone();
        let worker = Worker::builder(&queue, move |_t| {
            let d = d.clone();
            async move {
                d.add_permits(1);
                Ok::<(), String>(())
            }
        }).concurrency(2).start()
        .await
        .unwrap();
        // A delayed task: the enqueue script wakes the worker, whose claim arms a timer.
        queue.enqueue(NewTask::new("later").options(TaskOptions::default().delay(Duration::from_millis(200)))).await.unwrap();
        let _ = done.acquire().await.unwrap();
        // A lease abandoned by a crashed holder is reclaimed when it runs out.
        queue.enqueue(NewTask::new("orphan").options(TaskOptions::default().lease(Duration::from_millis(300)))).await.unwrap();
        let other = Queue::builder(queue.pool(), &redis.keyspace(), "wake").build().unwrap();
        let _ = other.claim(1).await.unwrap(); // may or may not win the race with the worker
        let _ = done.acquire().await.unwrap();
        drain(&queue, 2).await;
        let report = worker.shutdown().await;
        assert!(report.clean);
        assert!(report.stats.claims < 50, "{:?}", report.stats);
    }
}

/// kill -9 of an AOF server at random moments during a run of 50 workers on 20,000 tasks (some
/// failing, some malformed); after a restart every acknowledged enqueue ends completed or
/// dead-lettered, none with more attempts than its budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_during_a_run_loses_nothing() {
    kill_nine(Duration::ZERO).await;
}

/// The same with the failures retried in place (their 1 ms backoff is below the threshold):
/// the leases kept through a retry survive the kills, or run out and are reclaimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_during_a_run_with_retries_in_place_loses_nothing() {
    kill_nine(Duration::from_millis(500)).await;
}

async fn kill_nine(in_place: Duration) {
    let mut server = RedisServer::start_with(ServerOptions {
        aof: true,
        ..Default::default()
    })
    .unwrap();
    let pool = server.fault_pool(Duration::from_secs(2)).await;
    let keyspace = coordkit_core::Keyspace::new("fault").unwrap();
    let queue = Queue::builder(&pool, &keyspace, "aof")
        .max_stalls(20)
        .retry_in_place_below(in_place)
        .build()
        .unwrap();
    let seen = Arc::new(Observed::default());
    // The same run as `fifty_workers_process_twenty_thousand_tasks`: 50 workers, 20,000 tasks.
    let workers = start_workers(&queue, 50, 1, seen.clone()).await;

    const TASKS: u32 = 20_000;
    const BATCH: u32 = 200;
    let enqueuer = {
        let queue = queue.clone();
        tokio::spawn(async move {
            let mut acknowledged: BTreeMap<String, (u32, End)> = BTreeMap::new();
            let mut retries = 0u32;
            for start in (0..TASKS).step_by(BATCH as usize) {
                let plans: Vec<_> = (start..start + BATCH)
                    .map(|i| {
                        let (task, end) = plan(i, Duration::from_millis(1_000), true);
                        (task, i, end)
                    })
                    .collect();
                let batch: Vec<NewTask> = plans.iter().map(|p| p.0.clone()).collect();
                // Retry until acknowledged: the idempotency keys make a retry of an applied
                // batch answer the same ids.
                let ids = loop {
                    match queue.enqueue_batch(&batch).await {
                        Ok(ids) => break ids,
                        Err(_) => {
                            retries += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await
                        }
                    }
                };
                // Spread the enqueues over the kills.
                tokio::time::sleep(Duration::from_millis(10)).await;
                for (e, (_, i, end)) in ids.iter().zip(plans) {
                    acknowledged.insert(e.id().to_owned(), (i, end));
                }
            }
            (acknowledged, retries)
        })
    };
    let mut rng = rand::rng();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..500))).await;
        tokio::task::block_in_place(|| server.kill());
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..300))).await;
        tokio::task::block_in_place(|| server.restart()).unwrap();
    }
    let (acknowledged, retries) = enqueuer.await.unwrap();
    assert_eq!(acknowledged.len() as u32, TASKS);
    drain(&queue, u64::from(TASKS)).await;
    let (mut store_errors, mut retried_in_place) = (0, 0);
    for w in workers {
        let stats = w.shutdown().await.stats;
        store_errors += stats.store_errors;
        retried_in_place += stats.retried_in_place;
    }
    // The kills hit the run: calls failed and were retried.
    assert!(retries + store_errors as u32 > 0);
    assert_eq!(
        retried_in_place > 0,
        !in_place.is_zero(),
        "{retried_in_place}"
    );
    let letters = queue.dead_letters(0, 100_000).await.unwrap();
    for d in &letters {
        let (i, end) = acknowledged[&d.id];
        let max = if i % 10 == 3 { 2 } else { 3 };
        assert!(d.attempts <= max, "task {i}: {} attempts", d.attempts);
        // A task planned to succeed is never dead-lettered: no attempt counted twice (a settle
        // sent again after a kill records nothing again), none lost to a stall.
        assert!(
            end.is_some() || d.reason == "stalled",
            "task {i} planned to succeed was dead-lettered: {d:?}"
        );
    }
    let dead: BTreeSet<String> = letters.into_iter().map(|d| d.id).collect();
    let successes = seen.successes.lock().unwrap().clone();
    for (id, (i, end)) in &acknowledged {
        let finished = dead.contains(id)
            || (successes.contains_key(i) && queue.inspect(id).await.unwrap().is_none());
        assert!(finished, "task {i} (id {id}, planned {end:?}) was lost");
    }
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.ready + stats.delayed + stats.leased, 0);
}

redis_test! {
    async fn a_paused_queue_starts_nothing_until_it_resumes(redis) {
        let pool = redis.pool().await;
        let queue = Queue::builder(&pool, &redis.keyspace(), "paused").build().unwrap();
        let mut events = queue.events().await.unwrap();
        // A task leased before the pause runs to its settle.
        queue.enqueue(NewTask::new("early")).await.unwrap();
        let early = queue.claim(1).await.unwrap().tasks.remove(0);
        assert!(queue.pause().await.unwrap());
        assert!(!queue.pause().await.unwrap(), "paused already");
        assert!(queue.stats().await.unwrap().paused);
        assert_eq!(queue.ack(&early).await.unwrap(), Settled::Acked);
        let batch: Vec<NewTask> = (0..5).map(|i| NewTask::new(format!("{i}"))).collect();
        queue.enqueue_batch(&batch).await.unwrap();
        assert!(queue.claim(10).await.unwrap().tasks.is_empty(), "a paused claim takes nothing");

        let started = Arc::new(AtomicU64::new(0));
        let s = started.clone();
        let worker = Worker::builder(&queue, move |_task| {
            let s = s.clone();
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                Ok::<(), String>(())
            }
        })
        .concurrency(2)
        .start()
        .await
        .unwrap();
        // The worker's first claim came after the pause: it took nothing.
        while worker.stats().claims == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(started.load(Ordering::SeqCst), 0);
        assert_eq!(queue.stats().await.unwrap().ready, 5);

        // The resume wakes the worker, which runs every task.
        assert!(queue.resume().await.unwrap());
        assert!(!queue.resume().await.unwrap(), "running already");
        tokio::time::timeout(Duration::from_secs(30), async {
            while queue.stats().await.unwrap().completed < 6 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the resumed queue's tasks never completed");
        assert_eq!(started.load(Ordering::SeqCst), 5);
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.ready, stats.leased, stats.paused), (0, 0, false));
        let report = worker.shutdown().await;
        assert_eq!(report.stats.acked, 5);
        let mut kinds = Vec::new();
        while kinds.len() < 2 {
            let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .expect("the pause and resume events")
                .expect("the event stream ended");
            kinds.push(event.kind);
        }
        // (Each kind has its own channel: on a cluster they may arrive in either order.)
        kinds.sort_by_key(|k| format!("{k:?}"));
        use coordkit_retry_queue::QueueEventKind;
        assert_eq!(kinds, vec![QueueEventKind::Paused {}, QueueEventKind::Resumed {}]);
    }
}

/// `Worker::stats_handle` reads what `stats` reads, from anywhere, and still after shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stats_handle_reads_the_worker_s_counters_after_shutdown_too() {
    let redis = TestRedis::start(coordkit_testkit::Topology::Standalone);
    let pool = redis.pool().await;
    let queue = Queue::builder(&pool, &redis.keyspace(), "handle")
        .build()
        .unwrap();
    for i in 0..4u32 {
        queue
            .enqueue_json(&i, TaskOptions::default())
            .await
            .unwrap();
    }
    let worker = Worker::builder(&queue, |task| async move {
        match task.json::<u32>() {
            Ok(3) => Err(TaskError::DeadLetter {
                reason: "three".into(),
                error: "no".into(),
            }),
            _ => Ok(()),
        }
    })
    .start()
    .await
    .unwrap();
    let handle = worker.stats_handle();
    let copy = handle.clone();
    for _ in 0..500 {
        if handle.get().acked + handle.get().dead_lettered == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(handle.get(), worker.stats());
    assert_eq!((handle.get().acked, handle.get().dead_lettered), (3, 1));
    assert_eq!(handle.queue(), "handle");
    assert!(format!("{handle:?}").contains("acked: 3"), "{handle:?}");
    let report = worker.shutdown().await;
    assert_eq!(copy.get(), report.stats);
}
