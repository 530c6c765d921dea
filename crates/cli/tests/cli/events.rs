//! `coordkit events tail`: what the primitives' scripts publish, live.

use coordkit_circuit_breaker::{CircuitBreaker, Forced};
use coordkit_retry_queue::{Queue, TaskOptions};

use crate::cli_test;

cli_test! {
    fn tail_prints_the_events_of_its_pattern(t) {
        let mut live = t.spawn_live(&["--json", "events", "tail", "cb:*"]);
        assert!(live.started.contains(":events:cb:*"), "{}", live.started);
        let breaker = CircuitBreaker::builder(&t.pool, &t.keyspace, "llm").build().unwrap();
        let queue = Queue::builder(&t.pool, &t.keyspace, "q").build().unwrap();
        t.block_on(async {
            // A queue event first: not of the pattern, not printed.
            queue.enqueue_json("x", TaskOptions::default()).await.unwrap();
            queue.pause().await.unwrap();
            breaker.force(Forced::Open).await.unwrap();
        });
        let event: serde_json::Value = serde_json::from_str(&live.line()).unwrap();
        assert_eq!(event["kind"], "forced");
        assert_eq!(event["source"], "circuit-breaker");
        assert_eq!(event["entity"], "llm");
        assert_eq!(event["channel"], format!("{}:events:cb:forced", t.ns()));
        assert!(event["ts_ms"].as_u64().unwrap() > 0);
        assert_eq!(live.interrupt(), Some(0));

        let mut all = t.spawn_live(&["events", "tail"]);
        t.block_on(queue.resume()).unwrap();
        // On a cluster, events published on another node before this tail subscribed can
        // still be crossing the bus: the earlier pause and force may come first, nothing else.
        let mut line = all.line();
        for _ in 0..2 {
            if !line.contains("queue:paused retry-queue q") && !line.contains("cb:forced") {
                break;
            }
            line = all.line();
        }
        assert!(line.contains("queue:resumed retry-queue q"), "{line}");
        drop(all);
    }
}

/// On a server of its own: killing its pub/sub connections would disturb the other tests.
#[test]
fn tail_says_when_events_were_missed_and_goes_on() {
    let server = coordkit_testkit::RedisServer::start().unwrap();
    let mut live = crate::common::spawn_live(&server.url(), "solo", &["events", "tail"]);
    let killed: u64 = server
        .command(&["CLIENT", "KILL", "TYPE", "pubsub"])
        .unwrap();
    assert!(killed >= 1);
    let note = live.error_line();
    assert!(
        note.contains("events published meanwhile were missed"),
        "{note}"
    );
    let rt = coordkit_testkit::blocking_runtime();
    rt.block_on(async {
        let pool = coordkit_core::Pool::connect(
            coordkit_core::PoolConfig::from_url(&server.url()).unwrap(),
        )
        .await
        .unwrap();
        let keyspace = coordkit_core::Keyspace::new("solo").unwrap();
        let breaker = CircuitBreaker::builder(&pool, &keyspace, "b")
            .build()
            .unwrap();
        breaker.force(Forced::Open).await.unwrap();
    });
    let line = live.line();
    assert!(line.contains("cb:forced circuit-breaker b"), "{line}");
    assert_eq!(live.interrupt(), Some(0));
}
