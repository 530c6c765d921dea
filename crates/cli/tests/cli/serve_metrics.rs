//! `coordkit serve-metrics`: scraped over HTTP, the page parsed, values against the primitives.

use std::io::{Read, Write};
use std::net::TcpStream;

use coordkit_circuit_breaker::{CircuitBreaker, Forced};
use coordkit_context::{AgentStatus, ContextStore, Status};
use coordkit_errors::{ErrorEvent, ErrorTracker};
use coordkit_retry_queue::{Queue, Settle, TaskOptions};

use crate::cli_test;
use crate::common::{Live, spawn_live};

/// The address the live command said it serves on.
fn address(live: &Live) -> String {
    let line = &live.started;
    let start = line
        .find("http://")
        .unwrap_or_else(|| panic!("no address in {line}"))
        + 7;
    let end = line[start..].find("/metrics").unwrap() + start;
    line[start..end].to_owned()
}

/// `GET /metrics`: the status and the body.
fn scrape(addr: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_owned(),
    )
}

/// The value of the sample of `metric` with these labels.
fn value(body: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let found: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(found.len(), 1, "{metric} {labels:?} in {body}");
    match found[0].value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{other:?}"),
    }
}

cli_test! {
    fn a_scrape_matches_the_primitives(t) {
        let q = Queue::builder(&t.pool, &t.keyspace, "emails").build().unwrap();
        let breaker = CircuitBreaker::builder(&t.pool, &t.keyspace, "llm").build().unwrap();
        t.block_on(async {
            for i in 0..4 {
                q.enqueue_json(&i, TaskOptions::default()).await.unwrap();
            }
            let claim = q.claim(2).await.unwrap();
            let poison = Settle::DeadLetter { reason: "poison".into(), error: "bad".into() };
            q.settle(&[(&claim.tasks[0], poison)]).await.unwrap();
            breaker.force(Forced::Open).await.unwrap();
        });
        let tracker = ErrorTracker::builder(&t.pool, &t.keyspace, "agents").build().unwrap();
        let fleet = ContextStore::builder(&t.pool, &t.keyspace).build().unwrap().agents("fleet").unwrap();
        let signature = t.block_on(async {
            let mut signature = String::new();
            for i in 0..3 {
                let event = ErrorEvent::new("fetcher", "Timeout", format!("timed out after {i}s")).task(format!("t-{i}"));
                signature = tracker.record(&event).await.unwrap().signature;
            }
            fleet.set_status("a1", &AgentStatus::new(Status::Idle)).await.unwrap();
            fleet.set_status("a2", &AgentStatus::new(Status::Busy)).await.unwrap();
            signature
        });
        let live = t.spawn_live(&[
            "serve-metrics", "--listen", "127.0.0.1:0", "--queue", "emails", "--breaker", "llm",
            "--errors", "agents", "--registry", "fleet", "--top-signatures", "3",
        ]);
        assert!(live.started.contains(&format!("namespace {}", t.ns())), "{}", live.started);
        let addr = address(&live);
        let (status, body) = scrape(&addr);
        assert_eq!(status, 200, "{body}");
        let stats = t.block_on(q.stats()).unwrap();
        assert_eq!((stats.ready, stats.leased, stats.dead), (2, 1, 1));
        for (state, n) in [("ready", stats.ready), ("leased", stats.leased), ("dead", stats.dead), ("delayed", stats.delayed)] {
            assert_eq!(value(&body, "coordkit_queue_tasks", &[("queue", "emails"), ("state", state)]), n as f64, "{state}");
        }
        let snap = t.block_on(breaker.snapshot()).unwrap();
        assert_eq!(value(&body, "coordkit_breaker_state", &[("breaker", "llm"), ("state", snap.state.as_str())]), 1.0);
        assert_eq!(value(&body, "coordkit_breaker_state", &[("breaker", "llm"), ("state", "closed")]), 0.0);
        let top = t.block_on(tracker.top(std::time::Duration::from_secs(3600), 3)).unwrap();
        assert_eq!(top.signatures[0].signature, signature);
        assert_eq!(value(&body, "coordkit_errors_signature_window_occurrences", &[("tracker", "agents"), ("signature", &signature)]), top.signatures[0].in_window as f64);
        assert_eq!(top.signatures[0].in_window, 3);
        let alive = t.block_on(fleet.all()).unwrap().len();
        assert_eq!(value(&body, "coordkit_agents_alive", &[("registry", "fleet")]), alive as f64);
        assert_eq!(value(&body, "coordkit_agents", &[("registry", "fleet"), ("status", "busy")]), 1.0);
        // Each scrape reads again.
        t.block_on(q.enqueue_json(&9, TaskOptions::default())).unwrap();
        let (_, body) = scrape(&addr);
        assert_eq!(value(&body, "coordkit_queue_tasks", &[("queue", "emails"), ("state", "ready")]), 3.0);
        assert_eq!(live.interrupt(), Some(0));
    }
}

cli_test! {
    fn naming_nothing_exports_every_indexed_instance_as_it_appears(t) {
        let first = Queue::builder(&t.pool, &t.keyspace, "first").build().unwrap();
        t.block_on(first.enqueue_json(&1, TaskOptions::default())).unwrap();
        let live = t.spawn_live(&["serve-metrics", "--listen", "127.0.0.1:0"]);
        let addr = address(&live);
        let (status, body) = scrape(&addr);
        assert_eq!(status, 200, "{body}");
        assert_eq!(value(&body, "coordkit_queue_tasks", &[("queue", "first"), ("state", "ready")]), 1.0);
        // A queue created after the start is found at the next scrape.
        let later = Queue::builder(&t.pool, &t.keyspace, "later").build().unwrap();
        t.block_on(later.enqueue_json(&1, TaskOptions::default())).unwrap();
        t.block_on(later.enqueue_json(&2, TaskOptions::default())).unwrap();
        let (_, body) = scrape(&addr);
        assert_eq!(value(&body, "coordkit_queue_tasks", &[("queue", "later"), ("state", "ready")]), 2.0);
        assert_eq!(live.interrupt(), Some(0));
        let err = t.fails(2, &["serve-metrics", "--queue", "bad{name}"]);
        assert!(err.contains("bad{name}"), "{err}");
    }
}

/// A server that is down: the exporter starts anyway, says so, and answers 503 with one line.
#[test]
fn a_server_that_is_down_answers_503() {
    let mut server = coordkit_testkit::RedisServer::start().unwrap();
    let url = server.url();
    server.stop();
    let mut live = spawn_live(
        &url,
        "down",
        &["serve-metrics", "--listen", "127.0.0.1:0", "--queue", "q"],
    );
    assert!(
        live.started.contains("serving 503 until it answers"),
        "{}",
        live.started
    );
    live.started = live.error_line();
    let (status, body) = scrape(&address(&live));
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("coordkit: cannot read the store: "),
        "{body}"
    );
    assert_eq!(body.lines().count(), 1, "{body}");
    assert_eq!(live.interrupt(), Some(0));
}
