//! The limits every worker obeys, stored with the queue: at most K tasks leased at once and at
//! most R starts in any interval, decided by the claim script on server time. Worker *processes*
//! (this test binary run again with `LIMITS_WORKER` set) run one queue together; the starts they
//! record (server-stamped by the claim) never put more than R in any interval, and no more than
//! K handlers ever run at once; while the queue is paused they start nothing. The same with the
//! limits on one group.

use std::time::Duration;

use coordkit_core::{Error, Key, Keyspace, Pool, PoolConfig, redis};
use coordkit_retry_queue::{Limits, NewTask, Queue, QueueError, Rate, TaskOptions, Worker};
use coordkit_testkit::{TestRedis, Topology};

mod process;
use process::Process;

const ENV_ROLE: &str = "LIMITS_WORKER";
const ENV_URL: &str = "LIMITS_URL";
const ENV_NS: &str = "LIMITS_NS";

const QUEUE: &str = "limited";
const WORKERS: usize = 4;
const TASKS: u64 = 40;
const MAX_LEASED: u32 = 3;
const RATE: Rate = Rate {
    starts: 5,
    per: Duration::from_millis(300),
};
const LEASE: Duration = Duration::from_secs(30);
/// A guard against hangs only.
const GUARD: Duration = Duration::from_secs(120);

/// The keys where the worker processes log what they saw of the tasks of `group` (`-`: of no
/// group): each start's server time, and how many handlers of that group ran (their own
/// included) when each started.
fn logs(keyspace: &Keyspace, group: &str) -> (Key, Key, Key) {
    let instance = keyspace.instance("test", "limits").unwrap();
    (
        instance.key(&format!("starts-{group}")),
        instance.key(&format!("running-{group}")),
        instance.key(&format!("seen-{group}")),
    )
}

/// One worker process: runs the queue's tasks until its stdin closes.
#[test]
fn worker_process() {
    let Ok(name) = std::env::var(ENV_ROLE) else {
        return; // Run as a test of its own: nothing to do.
    };
    let url = std::env::var(ENV_URL).unwrap();
    let keyspace = Keyspace::new(&std::env::var(ENV_NS).unwrap()).unwrap();
    coordkit_testkit::blocking_runtime().block_on(async move {
        let pool = Pool::connect(PoolConfig::from_url(&url).unwrap())
            .await
            .unwrap();
        let queue = Queue::builder(&pool, &keyspace, QUEUE).build().unwrap();
        let p = pool.clone();
        let worker = Worker::builder(&queue, move |task| {
            let (starts, running, seen) = logs(&keyspace, task.group.as_deref().unwrap_or("-"));
            let pool = p.clone();
            async move {
                // The claim's server time: the deadline it gave, less the lease.
                let started = task.deadline_ms - LEASE.as_millis() as u64;
                let now_running: u64 = pool
                    .query(redis::cmd("INCR").arg(&running))
                    .await
                    .map_err(|e| e.to_string())?;
                let _: () = pool
                    .query(redis::cmd("RPUSH").arg(&starts).arg(started))
                    .await
                    .map_err(|e| e.to_string())?;
                let _: () = pool
                    .query(redis::cmd("RPUSH").arg(&seen).arg(now_running))
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _: () = pool
                    .query(redis::cmd("DECR").arg(&running))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<(), String>(())
            }
        })
        .concurrency(4)
        .start()
        .await
        .unwrap();
        process::ready_until_stdin_closes(&format!("limits: {name}")).await;
        worker.shutdown().await;
    });
}

fn start_worker(redis: &TestRedis, ns: &str, name: &str) -> Process {
    let url = redis.url();
    let env = [(ENV_ROLE, name), (ENV_URL, url.as_str()), (ENV_NS, ns)];
    Process::start("worker_process", &env, &format!("limits: {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_processes_never_exceed_the_queue_limits() {
    worker_processes_obey(None).await;
}

/// The same with the limits on one group (`llm`), and as many tasks of no group, which its
/// limits do not hold back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_processes_never_exceed_a_groups_limits() {
    worker_processes_obey(Some("llm")).await;
}

async fn worker_processes_obey(group: Option<&str>) {
    for topology in [Topology::Standalone, Topology::Cluster] {
        let redis = TestRedis::start(topology);
        let pool = redis.pool().await;
        let keyspace = redis.keyspace();
        let queue = Queue::builder(&pool, &keyspace, QUEUE).build().unwrap();
        let limits = Limits {
            max_leased: Some(MAX_LEASED),
            rate: Some(RATE),
        };
        let options = TaskOptions::default().lease(LEASE);
        let mut batch: Vec<NewTask> = Vec::new();
        match group {
            None => {
                queue.set_limits(limits).await.unwrap();
                assert_eq!(queue.stats().await.unwrap().limits, limits);
            }
            Some(g) => {
                queue.set_group_limits(g, limits).await.unwrap();
                assert_eq!(queue.group_stats(g).await.unwrap().limits, limits);
                let free = (0..TASKS).map(|i| NewTask::new(format!("free {i}")));
                batch.extend(free.map(|t| t.options(options.clone())));
            }
        }
        let options = match group {
            Some(g) => options.group(g),
            None => options,
        };
        batch.extend((0..TASKS).map(|i| NewTask::new(format!("{i}")).options(options.clone())));
        let total = batch.len() as u64;
        // Paused, the workers start nothing: they claim (their first claim, and again on any
        // wake-up) and get no task, until the resume wakes them.
        queue.pause().await.unwrap();
        queue.enqueue_batch(&batch).await.unwrap();
        let workers: Vec<Process> = (0..WORKERS)
            .map(|i| start_worker(&redis, keyspace.namespace(), &format!("w{i}")))
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let paused = queue.stats().await.unwrap();
        assert_eq!(
            (paused.leased, paused.completed),
            (0, 0),
            "{topology:?}: started while paused"
        );
        let (starts, _, _) = logs(&keyspace, group.unwrap_or("-"));
        let logged: u64 = pool.query(redis::cmd("LLEN").arg(&starts)).await.unwrap();
        assert_eq!(logged, 0, "{topology:?}: started while paused");
        queue.resume().await.unwrap();
        tokio::time::timeout(GUARD, async {
            while queue.stats().await.unwrap().completed < total {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{topology:?}: the tasks did not all complete"));
        drop(workers);

        let (starts, _, seen) = logs(&keyspace, group.unwrap_or("-"));
        let mut starts: Vec<u64> = pool
            .query(redis::cmd("LRANGE").arg(&starts).arg(0).arg(-1))
            .await
            .unwrap();
        let seen: Vec<u64> = pool
            .query(redis::cmd("LRANGE").arg(&seen).arg(0).arg(-1))
            .await
            .unwrap();
        assert_eq!(
            starts.len() as u64,
            TASKS,
            "{topology:?}: one start per task"
        );
        // No R + 1 starts within one interval: any R + 1 in a row span at least the interval.
        starts.sort_unstable();
        let (r, per) = (RATE.starts as usize, RATE.per.as_millis() as u64);
        for w in starts.windows(r + 1) {
            assert!(
                w[r] - w[0] >= per,
                "{topology:?}: {} starts within {per} ms: {w:?}",
                r + 1
            );
        }
        let most = seen.iter().copied().max().unwrap();
        assert!(
            most <= u64::from(MAX_LEASED),
            "{topology:?}: {most} handlers ran at once"
        );
        let stats = queue.stats().await.unwrap();
        assert_eq!(
            (stats.ready, stats.leased, stats.completed),
            (0, 0, total),
            "{topology:?}"
        );
        if let Some(g) = group {
            let s = queue.group_stats(g).await.unwrap();
            assert_eq!((s.ready, s.leased), (0, 0), "{topology:?}");
            // The tasks of no group ran too, none held back by the group's limits.
            let (_, _, seen) = logs(&keyspace, "-");
            let seen: Vec<u64> = pool
                .query(redis::cmd("LRANGE").arg(&seen).arg(0).arg(-1))
                .await
                .unwrap();
            assert_eq!(seen.len() as u64, TASKS, "{topology:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_out_of_range_are_refused_naming_them() {
    let redis = TestRedis::start(Topology::Standalone);
    let pool = redis.pool().await;
    let queue = Queue::builder(&pool, &redis.keyspace(), QUEUE)
        .build()
        .unwrap();
    let bad = [
        (
            Limits {
                max_leased: Some(0),
                rate: None,
            },
            "max_leased",
        ),
        (
            Limits {
                max_leased: Some(1_000_001),
                rate: None,
            },
            "max_leased",
        ),
        (
            Limits {
                max_leased: None,
                rate: Some(Rate {
                    starts: 0,
                    per: Duration::from_secs(1),
                }),
            },
            "rate.starts",
        ),
        (
            Limits {
                max_leased: None,
                rate: Some(Rate {
                    starts: 1,
                    per: Duration::ZERO,
                }),
            },
            "rate.per",
        ),
        (
            Limits {
                max_leased: None,
                rate: Some(Rate {
                    starts: 1,
                    per: Duration::MAX,
                }),
            },
            "rate.per",
        ),
    ];
    for (limits, field) in bad {
        match queue.set_limits(limits).await {
            Err(QueueError::Core(Error::InvalidConfig { field: f, .. })) => assert_eq!(f, field),
            other => panic!("{limits:?}: {other:?}"),
        }
    }
    assert_eq!(
        queue.stats().await.unwrap().limits,
        Limits::default(),
        "nothing written"
    );
    // Cleared limits let every claim through again.
    let limits = Limits {
        max_leased: Some(1),
        rate: Some(RATE),
    };
    queue.set_limits(limits).await.unwrap();
    queue
        .enqueue_batch(&[NewTask::new("a"), NewTask::new("b")])
        .await
        .unwrap();
    assert_eq!(
        queue.claim(10).await.unwrap().tasks.len(),
        1,
        "one lease at most"
    );
    queue.set_limits(Limits::default()).await.unwrap();
    assert_eq!(
        queue.claim(10).await.unwrap().tasks.len(),
        1,
        "the other, unlimited"
    );
    assert_eq!(queue.stats().await.unwrap().limits, Limits::default());
}
