//! The `ls` commands against the primitives' own listings (the namespace's index), and the
//! proof that `queue ls` answers in one script call however many keys the namespace holds.

use coordkit_circuit_breaker::{CircuitBreaker, Forced};
use coordkit_core::{Keyspace, redis};
use coordkit_errors::ErrorTracker;
use coordkit_metrics::Metrics;
use coordkit_retry_queue::{NewTask, Queue};
use coordkit_workflow::{NewWorkflow, WorkflowStore};

use crate::cli_test;
use crate::common::bare;
use coordkit_testkit::{TestRedis, Topology};

cli_test! {
    fn every_ls_answers_what_the_primitives_list(t) {
        t.block_on(async {
            for (name, tasks) in [("emails", 3), ("llm", 1), ("search", 0)] {
                let queue = Queue::builder(&t.pool, &t.keyspace, name).build().unwrap();
                for i in 0..tasks {
                    queue.enqueue(NewTask::new(format!("t{i}"))).await.unwrap();
                }
                if tasks == 0 {
                    queue.pause().await.unwrap();
                }
            }
            let breaker = CircuitBreaker::builder(&t.pool, &t.keyspace, "llm-api").build().unwrap();
            breaker.force(Forced::Open).await.unwrap();
            let tracker = ErrorTracker::builder(&t.pool, &t.keyspace, "agents").build().unwrap();
            tracker
                .record(&coordkit_errors::ErrorEvent::new("llm", "Timeout", "the model timed out"))
                .await
                .unwrap();
            let metrics = Metrics::builder(&t.pool, &t.keyspace).build().unwrap();
            metrics.gauge("loss", &[("run", "r1")]).unwrap().record(0.5).await.unwrap();
            let store = WorkflowStore::builder(&t.pool, &t.keyspace, "research").build().unwrap();
            store.create(NewWorkflow::new("research", "x")).await.unwrap();
        });

        let queues = t.json(&["queue", "ls"]);
        let own = t.block_on(Queue::list(&t.pool, &t.keyspace)).unwrap();
        assert_eq!(queues["names"], serde_json::json!(own.names));
        assert_eq!(queues["names"], serde_json::json!(["emails", "llm", "search"]));
        let with_stats = t.json(&["queue", "ls", "--stats"]);
        let ready: Vec<(String, u64, bool)> = with_stats["queues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| {
                (
                    q["queue"].as_str().unwrap().to_owned(),
                    q["ready"].as_u64().unwrap(),
                    q["paused"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            ready,
            [
                ("emails".to_owned(), 3, false),
                ("llm".to_owned(), 1, false),
                ("search".to_owned(), 0, true)
            ]
        );
        let human = t.ok(&["queue", "ls", "--stats"]);
        assert!(human.contains("3 queue(s) in namespace"), "{human}");

        let breakers = t.json(&["breaker", "ls", "--state"]);
        assert_eq!(breakers["names"], serde_json::json!(["llm-api"]));
        assert_eq!(breakers["breakers"][0]["state"], "forced_open");
        assert_eq!(
            t.json(&["errors", "ls"])["names"],
            serde_json::json!(t.block_on(ErrorTracker::list(&t.pool, &t.keyspace)).unwrap().names)
        );
        assert_eq!(t.json(&["errors", "ls"])["names"], serde_json::json!(["agents"]));
        let series = t.json(&["metrics", "ls"]);
        let metrics = Metrics::builder(&t.pool, &t.keyspace).build().unwrap();
        assert_eq!(series["names"], serde_json::json!(t.block_on(metrics.list()).unwrap().names));
        assert_eq!(series["names"].as_array().unwrap().len(), 1);
        assert_eq!(t.json(&["workflow", "stores"])["names"], serde_json::json!(["research"]));
    }
}

/// 100,000 queues' worth of keys, written server-side in batches: each queue's entry in the
/// index and a key of its own.
const QUEUES: u32 = 100_000;

static FILL: &str = "for i = ARGV[1], ARGV[2] do \
    local name = string.format('q%06d', i) \
    redis.call('ZADD', KEYS[1], 0, name) \
    redis.call('SET', ARGV[3] .. name .. '}:info', 'x') \
  end \
  return 0";

#[test]
fn queue_ls_answers_in_one_call_with_100_000_queues() {
    // A server of its own: its command counts are this test's alone.
    let server = TestRedis::start(Topology::Standalone);
    let url = server.url();
    let rt = coordkit_testkit::blocking_runtime();
    let keyspace = Keyspace::new("fleet").unwrap();
    let pool = rt.block_on(server.pool());
    // The index's key, as the queue crate names it (a real queue records itself there).
    let real = Queue::builder(&pool, &keyspace, "q000000").build().unwrap();
    rt.block_on(real.enqueue(NewTask::new("x"))).unwrap();
    let names_key = Queue::index(&keyspace).unwrap().keys()[0].clone();
    for start in (1..QUEUES).step_by(20_000) {
        let end = (start + 19_999).min(QUEUES - 1);
        let _: i64 = rt
            .block_on(
                pool.query(
                    redis::cmd("EVAL")
                        .arg(FILL)
                        .arg(1)
                        .arg(&names_key)
                        .arg(start)
                        .arg(end)
                        .arg("fleet:{queue:"),
                ),
            )
            .unwrap();
    }
    let keys: u64 = rt.block_on(pool.query(&redis::cmd("DBSIZE"))).unwrap();
    assert!(keys > u64::from(QUEUES), "{keys} keys");
    // The listing script known to the server (a fresh one would be loaded first).
    rt.block_on(Queue::list(&pool, &keyspace)).unwrap();
    server.reset_stats();

    let out = bare()
        .args(["--url", &url, "-n", "fleet", "--json", "queue", "ls"])
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names = listed["names"].as_array().unwrap();
    assert_eq!(names.len(), QUEUES as usize);
    assert_eq!(names[0], "q000000");
    assert_eq!(names[names.len() - 1], format!("q{:06}", QUEUES - 1));

    // One script call answered it: no SCAN, no KEYS, no call per queue.
    let calls = |command: &str| server.command_calls(command);
    assert_eq!(calls("evalsha"), 1);
    assert_eq!((calls("scan"), calls("keys")), (0, 0));
    assert_eq!(calls("eval"), 0);
}
