//! The exporter scraped over HTTP, its text parsed with `prometheus-parse`, and the values
//! checked against the primitives' own queries; bounded labels; a store that is down.

use std::collections::BTreeSet;
use std::time::Duration;

use coordkit_circuit_breaker::{CircuitBreaker, Forced};
use coordkit_context::{AgentStatus, ContextStore, Status};
use coordkit_core::{Error, Pool, PoolConfig};
use coordkit_errors::{ErrorEvent, ErrorTracker};
use coordkit_prometheus::{BREAKER_STATES, Exporter};
use coordkit_retry_queue::{Queue, Settle, TaskOptions, Worker};
use coordkit_testkit::{RedisServer, redis_test};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A served exporter: its address, and the sender that stops it.
struct Served {
    addr: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve(exporter: &Exporter) -> Served {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let exporter = exporter.clone();
    tokio::spawn(async move {
        exporter
            .serve_on(listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Served { addr, _stop: stop }
}

/// `GET path` over plain HTTP/1.1: the status, the content type and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let head = head.to_ascii_lowercase();
    assert!(!head.contains("transfer-encoding: chunked"), "{head}");
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or_default()
        .to_owned();
    (status, content_type, body.to_owned())
}

/// The parsed samples of one scrape.
struct Page(Vec<prometheus_parse::Sample>);

impl Page {
    fn parse(text: &str) -> Self {
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        Page(prometheus_parse::Scrape::parse(lines).unwrap().samples)
    }

    /// The samples of `metric`.
    fn all(&self, metric: &str) -> Vec<&prometheus_parse::Sample> {
        self.0.iter().filter(|s| s.metric == metric).collect()
    }

    /// The value of the one sample of `metric` with these labels (and maybe others).
    fn value(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<_> = self
            .all(metric)
            .into_iter()
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{metric} {labels:?}: {} samples",
            found.len()
        );
        match &found[0].value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            other => panic!("{metric}: not a number: {other:?}"),
        }
    }
}

async fn scrape(served: &Served) -> Page {
    let (status, content_type, body) = get(served.addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, coordkit_prometheus::CONTENT_TYPE);
    assert!(body.ends_with("# EOF\n"), "{body}");
    Page::parse(&body)
}

redis_test! {
    async fn a_scrape_matches_the_primitives(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        // A queue with tasks in every state.
        let emails = Queue::builder(&pool, &ks, "emails").build().unwrap();
        for i in 0..5 {
            emails.enqueue_json(&i, TaskOptions::default()).await.unwrap();
        }
        emails.enqueue_json(&"later", TaskOptions::default().delay(Duration::from_secs(3600))).await.unwrap();
        let claim = emails.claim(3).await.unwrap();
        emails.settle(&[(&claim.tasks[0], Settle::Ack)]).await.unwrap();
        emails
            .settle(&[(&claim.tasks[1], Settle::DeadLetter { reason: "poison".into(), error: "bad".into() })])
            .await
            .unwrap();
        // A breaker forced open, another left closed.
        let llm = CircuitBreaker::builder(&pool, &ks, "llm").build().unwrap();
        llm.force(Forced::Open).await.unwrap();
        // An error tracker: 4 timeouts, 1 parse error.
        let tracker = ErrorTracker::builder(&pool, &ks, "agents").build().unwrap();
        let mut timeout = String::new();
        for i in 0..4 {
            let event = ErrorEvent::new("fetcher", "Timeout", format!("GET /x{i} timed out after {i}s")).task(format!("t-{i}"));
            timeout = tracker.record(&event).await.unwrap().signature;
        }
        tracker.record(&ErrorEvent::new("parser", "ParseError", "unexpected token")).await.unwrap();
        // Agents: two idle, one busy, one of a custom status.
        let fleet = ContextStore::builder(&pool, &ks).build().unwrap().agents("fleet").unwrap();
        fleet.set_status("a1", &AgentStatus::new(Status::Idle)).await.unwrap();
        fleet.set_status("a2", &AgentStatus::new(Status::Idle)).await.unwrap();
        fleet.set_status("a3", &AgentStatus::new(Status::Busy).task("t-9")).await.unwrap();
        fleet.set_status("a4", &AgentStatus::new(Status::Custom("warming".into()))).await.unwrap();
        // A worker of this process that acks 3 tasks of its own queue.
        let jobs = Queue::builder(&pool, &ks, "jobs").build().unwrap();
        for i in 0..3 {
            jobs.enqueue_json(&i, TaskOptions::default()).await.unwrap();
        }
        // Each handler run takes at least 5 ms: the handler time is at least 15 ms in all.
        let worker = Worker::builder(&jobs, |_task| async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok::<(), String>(())
        })
        .start()
        .await
        .unwrap();
        let handle = worker.stats_handle();
        for _ in 0..500 {
            if handle.get().acked == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(handle.get().acked, 3);

        // A queue whose stored data is broken: left out, the rest still exported.
        let broken = Queue::builder(&pool, &ks, "broken").build().unwrap();
        let info = broken.keys().iter().find(|k| k.as_str().ends_with(":info")).unwrap();
        let mut set = coordkit_core::redis::cmd("SET");
        set.arg(info).arg("not a queue");
        let () = pool.query(&set).await.unwrap();
        assert!(broken.stats().await.is_err());

        let exporter = Exporter::builder(&pool, &ks)
            .queues(["emails", "jobs", "broken"])
            .breakers(["llm", "idle"])
            .error_tracker("agents")
            .agent_registry("fleet")
            .worker("acker", handle.clone())
            .build()
            .unwrap();
        let served = serve(&exporter).await;
        let page = scrape(&served).await;

        let stats = emails.stats().await.unwrap();
        assert_eq!((stats.ready, stats.delayed, stats.leased, stats.dead), (2, 1, 1, 1));
        for (state, n) in [("ready", stats.ready), ("delayed", stats.delayed), ("leased", stats.leased), ("dead", stats.dead)] {
            assert_eq!(page.value("coordkit_queue_tasks", &[("queue", "emails"), ("state", state)]), n as f64, "{state}");
        }
        assert_eq!(page.value("coordkit_queue_completed_tasks_total", &[("queue", "emails")]), stats.completed as f64);
        assert_eq!(page.value("coordkit_queue_dead_lettered_tasks_total", &[("queue", "emails")]), 1.0);
        assert_eq!(page.value("coordkit_queue_paused", &[("queue", "emails")]), 0.0);
        let age = page.value("coordkit_queue_oldest_ready_age_seconds", &[("queue", "emails")]);
        let later = emails.stats().await.unwrap().oldest_ready_age.unwrap().as_secs_f64();
        assert!(age >= 0.0 && age <= later, "{age} > {later}");
        let jobs_stats = jobs.stats().await.unwrap();
        assert_eq!(page.value("coordkit_queue_completed_tasks_total", &[("queue", "jobs")]), jobs_stats.completed as f64);
        assert_eq!(jobs_stats.completed, 3);

        let snap = llm.snapshot().await.unwrap();
        for state in BREAKER_STATES {
            let want = if state == snap.state.as_str() { 1.0 } else { 0.0 };
            assert_eq!(page.value("coordkit_breaker_state", &[("breaker", "llm"), ("state", state)]), want, "{state}");
        }
        assert_eq!(snap.state.as_str(), "forced_open");
        assert_eq!(page.value("coordkit_breaker_transitions_total", &[("breaker", "llm")]), snap.epoch as f64);
        assert_eq!(page.value("coordkit_breaker_state", &[("breaker", "idle"), ("state", "closed")]), 1.0);

        let top = tracker.top(Duration::from_secs(3600), 10).await.unwrap();
        assert_eq!(top.signatures[0].signature, timeout);
        assert_eq!(page.value("coordkit_errors_signature_window_occurrences", &[("tracker", "agents"), ("signature", &timeout)]), 4.0);
        assert_eq!(page.value("coordkit_errors_signature_occurrences_total", &[("tracker", "agents"), ("signature", &timeout)]), top.signatures[0].total as f64);
        assert_eq!(page.all("coordkit_errors_signature_window_occurrences").len(), top.signatures.len());
        let counts = tracker.counts().await.unwrap();
        assert_eq!(page.value("coordkit_errors_occurrences_total", &[("tracker", "agents")]), counts.total() as f64);
        assert_eq!(counts.total(), 5);

        let alive = fleet.all().await.unwrap().len();
        assert_eq!(page.value("coordkit_agents_alive", &[("registry", "fleet")]), alive as f64);
        assert_eq!(alive, 4);
        for (status, n) in [("idle", 2.0), ("busy", 1.0), ("failed", 0.0), ("other", 1.0)] {
            assert_eq!(page.value("coordkit_agents", &[("registry", "fleet"), ("status", status)]), n, "{status}");
        }

        let w = handle.get();
        let worker_labels = [("queue", "jobs"), ("worker", "acker")];
        assert_eq!(page.value("coordkit_worker_claimed_tasks_total", &worker_labels), w.claimed as f64);
        assert_eq!(page.value("coordkit_worker_settled_tasks_total", &[("queue", "jobs"), ("worker", "acker"), ("outcome", "acked")]), 3.0);
        assert_eq!(page.value("coordkit_worker_panics_total", &worker_labels), 0.0);
        assert_eq!(page.value("coordkit_worker_handler_runs_total", &worker_labels), w.handler_runs as f64);
        assert_eq!(w.handler_runs, 3);
        let seconds = page.value("coordkit_worker_handler_seconds_total", &worker_labels);
        assert_eq!(seconds, w.handler_micros as f64 / 1e6);
        assert!(seconds >= 0.015, "{seconds}");

        for (primitive, name) in [("queue", "emails"), ("breaker", "llm"), ("error_tracker", "agents"), ("agent_registry", "fleet")] {
            assert_eq!(page.value("coordkit_exporter_instance_up", &[("primitive", primitive), ("name", name)]), 1.0);
        }
        assert_eq!(page.value("coordkit_exporter_instance_up", &[("primitive", "queue"), ("name", "broken")]), 0.0);
        assert!(page.all("coordkit_queue_tasks").iter().all(|s| s.labels.get("queue") != Some("broken")));
        // The library's render is the page the server answers.
        let text = exporter.render().await.unwrap();
        assert_eq!(Page::parse(&text).value("coordkit_queue_tasks", &[("queue", "emails"), ("state", "dead")]), 1.0);
        // Anything but GET /metrics is not found.
        assert_eq!(get(served.addr, "/").await.0, 404);
        worker.shutdown().await;
    }
}

redis_test! {
    async fn labels_stay_bounded_with_many_tasks_and_signatures(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let queue = Queue::builder(&pool, &ks, "busy").build().unwrap();
        let tracker = ErrorTracker::builder(&pool, &ks, "noisy").build().unwrap();
        let mut task_ids = BTreeSet::new();
        for i in 0..200 {
            let id = queue.enqueue_json(&i, TaskOptions::default()).await.unwrap().id().to_owned();
            task_ids.insert(id);
        }
        queue.claim(50).await.unwrap();
        // 40 signatures (each kind is its own), over 200 occurrences with their own task ids.
        let mut signatures = BTreeSet::new();
        for i in 0..200 {
            let event = ErrorEvent::new("worker", format!("Kind{}", i % 40), "failed").task(format!("task-{i}"));
            signatures.insert(tracker.record(&event).await.unwrap().signature);
        }
        assert_eq!(signatures.len(), 40);
        let exporter = Exporter::builder(&pool, &ks)
            .queue("busy")
            .error_tracker("noisy")
            .top_signatures(5)
            .build()
            .unwrap();
        let served = serve(&exporter).await;
        let page = scrape(&served).await;
        // 4 states, 5 signatures: the series do not grow with tasks or signatures.
        assert_eq!(page.all("coordkit_queue_tasks").len(), 4);
        assert_eq!(page.all("coordkit_errors_signature_window_occurrences").len(), 5);
        assert_eq!(page.all("coordkit_errors_signature_occurrences_total").len(), 5);
        assert!(page.0.len() < 40, "{} series", page.0.len());
        for sample in &page.0 {
            for (key, value) in sample.labels.iter() {
                assert!(!task_ids.contains(value) && !value.starts_with("task-"), "{key}={value}");
                if key == "signature" {
                    assert!(signatures.contains(value), "{value}");
                }
            }
        }
        // Each exported signature is among the most frequent (5 occurrences each here).
        for s in page.all("coordkit_errors_signature_window_occurrences") {
            assert!(matches!(s.value, prometheus_parse::Value::Gauge(v) if v == 5.0), "{s:?}");
        }
    }
}

redis_test! {
    async fn a_breaker_is_read_under_its_own_stored_rules(redis) {
        use coordkit_circuit_breaker::{Admission, BreakerConfig, OpenDuration, Outcome, Window};
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        // Rules unlike the defaults: a window of 20 calls, a 10-minute open period.
        let rules = BreakerConfig::builder()
            .window(Window::Count(20))
            .minimum_calls(50)
            .open_duration(OpenDuration::Fixed(Duration::from_secs(600)))
            .build()
            .unwrap();
        let breaker = CircuitBreaker::builder(&pool, &ks, "search").config(rules).build().unwrap();
        let calls = |n: usize, outcome: Outcome| {
            let breaker = breaker.clone();
            async move {
                for _ in 0..n {
                    if let Admission::Admitted(permit) = breaker.acquire().await.unwrap() {
                        breaker.record(permit, outcome).await.unwrap();
                    }
                }
            }
        };
        calls(7, Outcome::Failure).await;
        let exporter = Exporter::builder(&pool, &ks).breaker("search").build().unwrap();
        let page = Page::parse(&exporter.render().await.unwrap());
        let own = breaker.snapshot().await.unwrap();
        assert_eq!((own.calls, own.failures), (7, 7));
        assert_eq!(page.value("coordkit_breaker_window_calls", &[("breaker", "search")]), own.calls as f64);
        assert_eq!(page.value("coordkit_breaker_window_failures", &[("breaker", "search")]), own.failures as f64);
        // The scrapes leave the application's handle recording without a fault, in its window.
        calls(25, Outcome::Success).await;
        let page = Page::parse(&exporter.render().await.unwrap());
        let own = breaker.snapshot().await.unwrap();
        assert_eq!(own.calls, 20);
        assert_eq!(page.value("coordkit_breaker_window_calls", &[("breaker", "search")]), 20.0);
        assert_eq!(page.value("coordkit_breaker_state", &[("breaker", "search"), ("state", own.state.as_str())]), 1.0);
    }
}

redis_test! {
    async fn the_builder_validates_every_option(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let field = |r: coordkit_core::Result<Exporter>| match r {
            Err(Error::InvalidConfig { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(Exporter::builder(&pool, &ks).top_signatures(0).build()), "top_signatures");
        assert_eq!(field(Exporter::builder(&pool, &ks).top_signatures(101).build()), "top_signatures");
        assert_eq!(field(Exporter::builder(&pool, &ks).signature_window(Duration::from_millis(10)).build()), "signature_window");
        assert_eq!(field(Exporter::builder(&pool, &ks).queues(["a", "a"]).build()), "queue");
        assert_eq!(field(Exporter::builder(&pool, &ks).breakers(["b", "b"]).build()), "breaker");
        assert!(matches!(
            Exporter::builder(&pool, &ks).queue("bad{name}").build(),
            Err(Error::InvalidName { .. })
        ));
        let exporter = Exporter::builder(&pool, &ks).queue("q").breaker("b").build().unwrap();
        let debug = format!("{:?}", exporter.clone());
        assert!(debug.contains("\"q\"") && debug.contains("\"b\"") && !debug.contains("redis://"), "{debug}");
        // Nothing watched: an empty page, not an error.
        let empty = Exporter::builder(&pool, &ks).build().unwrap().render().await.unwrap();
        assert!(empty.ends_with("# EOF\n"), "{empty}");
    }
}

/// A store that goes down: 503 with one line, never a panic; back up, 200 again. And a store
/// that was never up: the same 503 from the first scrape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_is_down_answers_503_with_one_line() {
    let mut server = RedisServer::start().unwrap();
    let pool = Pool::connect(PoolConfig::from_url(&server.url()).unwrap())
        .await
        .unwrap();
    let ks = coordkit_core::Keyspace::new("down").unwrap();
    let queue = Queue::builder(&pool, &ks, "q").build().unwrap();
    queue
        .enqueue_json(&1, TaskOptions::default())
        .await
        .unwrap();
    let exporter = Exporter::builder(&pool, &ks)
        .queue("q")
        .breaker("b")
        .build()
        .unwrap();
    let served = serve(&exporter).await;
    let page = scrape(&served).await;
    assert_eq!(
        page.value(
            "coordkit_queue_tasks",
            &[("queue", "q"), ("state", "ready")]
        ),
        1.0
    );

    tokio::task::block_in_place(|| server.stop());
    let (status, content_type, body) = get(served.addr, "/metrics").await;
    assert_eq!(status, 503, "{body}");
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert!(
        body.starts_with("coordkit: cannot read the store: "),
        "{body}"
    );
    assert_eq!(body.lines().count(), 1, "{body}");
    assert!(matches!(exporter.render().await, Err(e) if e.is_retryable()));

    tokio::task::block_in_place(|| server.restart().unwrap());
    let mut status = 0;
    for _ in 0..200 {
        status = get(served.addr, "/metrics").await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200);

    // Never up: a lazy pool, the same answer.
    let url = server.url();
    tokio::task::block_in_place(|| server.stop());
    let lazy = Pool::connect_lazy(PoolConfig::from_url(&url).unwrap()).unwrap();
    let exporter = Exporter::builder(&lazy, &ks).queue("q").build().unwrap();
    let served = serve(&exporter).await;
    let (status, _, body) = get(served.addr, "/metrics").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("cannot read the store"), "{body}");
}

redis_test! {
    async fn discovery_watches_every_indexed_instance_at_each_scrape(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let named = Queue::builder(&pool, &ks, "named").build().unwrap();
        named.enqueue_json(&1, TaskOptions::default()).await.unwrap();
        let exporter = Exporter::builder(&pool, &ks).queue("named").discover(true).build().unwrap();
        let page = Page::parse(&exporter.render().await.unwrap());
        assert_eq!(page.value("coordkit_queue_tasks", &[("queue", "named"), ("state", "ready")]), 1.0);
        // Created after the exporter: found at the next scrape, and a named one once only.
        let later = Queue::builder(&pool, &ks, "later").build().unwrap();
        for i in 0..3 {
            later.enqueue_json(&i, TaskOptions::default()).await.unwrap();
        }
        let breaker = CircuitBreaker::builder(&pool, &ks, "llm").build().unwrap();
        breaker.force(Forced::Open).await.unwrap();
        let text = exporter.render().await.unwrap();
        let page = Page::parse(&text);
        assert_eq!(page.value("coordkit_queue_tasks", &[("queue", "later"), ("state", "ready")]), 3.0);
        assert_eq!(page.value("coordkit_breaker_state", &[("breaker", "llm"), ("state", "forced_open")]), 1.0);
        let named_series = text
            .lines()
            .filter(|l| l.starts_with("coordkit_queue_tasks{") && l.contains("queue=\"named\"") && l.contains("ready"))
            .count();
        assert_eq!(named_series, 1, "{text}");
        // Without discovery, only the named one.
        let only = Exporter::builder(&pool, &ks).queue("named").build().unwrap();
        assert!(!only.render().await.unwrap().contains("queue=\"later\""));
    }
}
