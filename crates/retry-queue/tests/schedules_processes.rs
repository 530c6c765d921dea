//! Three schedulers over 10 ticks enqueue exactly 10 tasks: three scheduler *processes* (this
//! test binary run again with `SCHED_PROCESS` set) run one queue's schedule of a short interval
//! together, on the server's clock. Once at least 10 ticks have passed by the server's clock
//! and the schedulers ran a little longer, they stop; every tick from the first to the last one
//! fired was enqueued exactly once (the `fired` events name each tick once, the queue holds one
//! task per tick), and none was missed.

use std::time::Duration;

use coordkit_core::{Keyspace, Pool, PoolConfig};
use coordkit_retry_queue::{NewTask, Queue, QueueEventKind, Schedule, Scheduler};
use coordkit_testkit::{TestRedis, Topology};

mod process;
use process::Process;

const ENV_ROLE: &str = "SCHED_PROCESS";
const ENV_URL: &str = "SCHED_URL";
const ENV_NS: &str = "SCHED_NS";

const QUEUE: &str = "scheduled";
const SCHEDULE: &str = "every-500ms";
const INTERVAL: u64 = 500;
const SCHEDULERS: usize = 3;
const TICKS: u64 = 10;
/// A guard against hangs only.
const GUARD: Duration = Duration::from_secs(120);

/// One scheduler process: runs a `SchedulerRunner` on the queue until its stdin closes.
#[test]
fn scheduler_process() {
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
        let runner = Scheduler::builder(&queue)
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        process::ready_until_stdin_closes(&format!("scheduler: {name}")).await;
        runner.shutdown().await;
    });
}

fn start_scheduler(redis: &TestRedis, ns: &str, name: &str) -> Process {
    let url = redis.url();
    let env = [(ENV_ROLE, name), (ENV_URL, url.as_str()), (ENV_NS, ns)];
    Process::start("scheduler_process", &env, &format!("scheduler: {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_schedulers_over_ten_ticks_enqueue_ten_tasks() {
    for topology in [Topology::Standalone, Topology::Cluster] {
        let redis = TestRedis::start(topology);
        let pool = redis.pool().await;
        let keyspace = redis.keyspace();
        let queue = Queue::builder(&pool, &keyspace, QUEUE).build().unwrap();
        let mut events = queue.events().await.unwrap();
        let scheduler = Scheduler::builder(&queue).build().unwrap();
        let schedule = Schedule::every(Duration::from_millis(INTERVAL))
            .task(NewTask::new("tick"))
            .build()
            .unwrap();
        let first = scheduler
            .upsert(SCHEDULE, &schedule)
            .await
            .unwrap()
            .next_ms();
        let processes: Vec<Process> = (0..SCHEDULERS)
            .map(|i| start_scheduler(&redis, keyspace.namespace(), &format!("s{i}")))
            .collect();
        // Until the 10th tick is due by the server's clock, then two more intervals.
        let until = first + (TICKS + 1) * INTERVAL;
        tokio::time::timeout(GUARD, async {
            while queue.stats().await.unwrap().now_ms < until {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{topology:?}: the server clock did not move"));
        for process in processes {
            process.stop();
        }

        let info = scheduler.list().await.unwrap().remove(0);
        let last = info.last_fired_ms.expect("ticks fired");
        let elapsed = (last - first) / INTERVAL + 1;
        assert!(
            elapsed >= TICKS,
            "{topology:?}: {elapsed} ticks fired by {last}"
        );
        assert_eq!(info.missed, 0, "{topology:?}: no tick missed");
        assert_eq!(info.fired, elapsed, "{topology:?}: one task per tick");
        let stats = queue.stats().await.unwrap();
        assert_eq!(
            stats.ready, elapsed,
            "{topology:?}: the queue holds one task per tick"
        );
        // Each tick once, by the scripts' events.
        let mut ticks = Vec::new();
        while (ticks.len() as u64) < elapsed {
            let event = tokio::time::timeout(GUARD, events.recv())
                .await
                .expect("the fired events")
                .unwrap();
            if let QueueEventKind::Fired {
                tick_ms, catch_up, ..
            } = event.kind
            {
                assert!(!catch_up);
                ticks.push(tick_ms);
            }
        }
        ticks.sort_unstable();
        let expected: Vec<u64> = (0..elapsed).map(|k| first + k * INTERVAL).collect();
        assert_eq!(ticks, expected, "{topology:?}: every tick once");
    }
}
