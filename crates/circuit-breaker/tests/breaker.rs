//! The breaker against real Redis, standalone and cluster: transitions and their events,
//! probe limits under concurrency (tasks and OS processes), leases, epochs, store policies,
//! bad input, expiry, round trips.

use std::collections::BTreeMap;
use std::time::Duration;

use coordkit_circuit_breaker::{
    Admission, BreakerConfig, BreakerRegistry, CallError, CircuitBreaker, CircuitBreakerBuilder,
    Forced, OpenDuration, Outcome, PermitKind, RecordStatus, State, StorePolicy, Window,
};
use coordkit_core::{Clock, Error, Keyspace, ManualClock, Pool, PoolConfig};
use coordkit_testkit::{TestRedis, redis_test};

const WAIT: Duration = Duration::from_secs(15);

fn config(clock: &ManualClock, permits: u32) -> BreakerConfig {
    BreakerConfig::builder()
        .window(Window::Count(10))
        .minimum_calls(4)
        .failure_rate(0.5)
        .open_duration(OpenDuration::Fixed(Duration::from_secs(10)))
        .half_open_permits(permits)
        .half_open_successes(2)
        .permit_lease(Duration::from_secs(5))
        .half_open_max_wait(None)
        .clock(Clock::Manual(clock.clone()))
        .build()
        .unwrap()
}

async fn admitted(breaker: &CircuitBreaker) -> coordkit_circuit_breaker::Permit {
    match breaker.acquire().await.unwrap() {
        Admission::Admitted(permit) => permit,
        Admission::Rejected(r) => panic!("rejected: {r:?}"),
    }
}

/// `tasks` tasks each try `tries` acquires at once and keep every permit they get.
async fn grab_permits(
    breaker: &CircuitBreaker,
    tasks: usize,
    tries: usize,
) -> Vec<coordkit_circuit_breaker::Permit> {
    let tasks: Vec<_> = (0..tasks)
        .map(|_| {
            let breaker = breaker.clone();
            tokio::spawn(async move {
                let mut held = Vec::new();
                for _ in 0..tries {
                    if let Admission::Admitted(p) = breaker.acquire().await.unwrap() {
                        held.push(p);
                    }
                }
                held
            })
        })
        .collect();
    let mut held = Vec::new();
    for task in tasks {
        held.extend(task.await.unwrap());
    }
    held
}

/// Asserts `result` is the corrupt-data error naming `key` and, in its detail, `field`.
#[track_caller]
fn names<T: std::fmt::Debug>(result: Result<T, Error>, key: &coordkit_core::Key, field: &str) {
    match result {
        Err(Error::Corrupt { key: k, detail }) => {
            assert_eq!(k, key.as_str());
            assert!(detail.starts_with(field), "{detail}");
        }
        other => panic!("expected Corrupt naming {key} {field}, got {other:?}"),
    }
}

/// Trips `breaker` with four recorded failures.
async fn trip(breaker: &CircuitBreaker) {
    for _ in 0..4 {
        let permit = admitted(breaker).await;
        breaker.record(permit, Outcome::Failure).await.unwrap();
    }
    assert_eq!(breaker.snapshot().await.unwrap().state, State::Open);
}

redis_test! {
    async fn transitions_emit_one_event_each(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let clock = ManualClock::new(1_700_000_000_000);
        let breaker = CircuitBreaker::builder(&pool, &ks, "payments").config(config(&clock, 2)).build().unwrap();
        let mut events = pool
            .subscriber()
            .pattern(ks.channel_pattern(Some("cb")).unwrap())
            .subscribe::<serde_json::Value>()
            .await
            .unwrap();

        trip(&breaker).await;
        match breaker.acquire().await.unwrap() {
            Admission::Rejected(r) => {
                assert_eq!(r.state, State::Open);
                assert_eq!(r.retry_after, Duration::from_secs(10));
            }
            Admission::Admitted(_) => panic!("an open breaker admitted a call"),
        }
        clock.advance(Duration::from_secs(10));
        let p1 = admitted(&breaker).await;
        let p2 = admitted(&breaker).await;
        assert_eq!(p1.kind(), PermitKind::Probe);
        assert!(matches!(breaker.acquire().await.unwrap(), Admission::Rejected(_)), "a third probe");
        breaker.record(p1, Outcome::Success).await.unwrap();
        let answer = breaker.record(p2, Outcome::Success).await.unwrap();
        assert_eq!(answer.state, State::Closed);
        breaker.force(Forced::Open).await.unwrap();
        breaker.clear().await.unwrap();

        let mut kinds = Vec::new();
        while kinds.len() < 5 {
            let got = tokio::time::timeout(WAIT, events.recv())
                .await
                .unwrap_or_else(|_| panic!("events stopped after {kinds:?}"))
                .unwrap();
            assert_eq!(got.event.entity, "payments");
            assert_eq!(got.event.source, "circuit-breaker");
            if got.event.kind == "opened" {
                assert_eq!(got.event.payload["reason"], "failure_rate");
                assert_eq!(got.event.payload["calls"], 4);
                assert_eq!(got.event.payload["failures"], 4);
                assert_eq!(got.event.payload["failure_rate"], 1.0);
            }
            kinds.push(got.event.kind);
        }
        assert_eq!(kinds, vec!["opened", "half_opened", "closed", "forced", "cleared"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(events.try_recv().is_none(), "an extra event");
    }
}

redis_test! {
    async fn fifty_tasks_never_get_more_than_k_probes(redis) {
        let pool = redis.pool().await;
        let clock = ManualClock::new(1_700_000_000_000);
        let breaker = CircuitBreaker::builder(&pool, &redis.keyspace(), "llm").config(config(&clock, 3)).build().unwrap();
        trip(&breaker).await;
        clock.advance(Duration::from_secs(11));
        let mut held = grab_permits(&breaker, 50, 5).await;
        assert_eq!(held.len(), 3, "admitted {} probes with K = 3", held.len());
        assert_eq!(breaker.snapshot().await.unwrap().probes_in_flight, 3);

        // A holder that dies never reports: its lease runs out on the server clock.
        std::mem::forget(held.pop());
        drop(held); // the others release themselves on drop
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(breaker.snapshot().await.unwrap().probes_in_flight, 1);
        clock.advance(Duration::from_secs(6));
        assert_eq!(breaker.snapshot().await.unwrap().probes_in_flight, 0);
        let permits: Vec<_> = {
            let mut v = Vec::new();
            for _ in 0..5 {
                if let Admission::Admitted(p) = breaker.acquire().await.unwrap() {
                    v.push(p);
                }
            }
            v
        };
        assert_eq!(permits.len(), 3);
    }
}

redis_test! {
    async fn an_outcome_from_an_older_epoch_does_not_count(redis) {
        let pool = redis.pool().await;
        let clock = ManualClock::new(1_700_000_000_000);
        let breaker = CircuitBreaker::builder(&pool, &redis.keyspace(), "slow").config(config(&clock, 1)).build().unwrap();
        let old = admitted(&breaker).await; // admitted while closed
        trip(&breaker).await;
        clock.advance(Duration::from_secs(10));
        let probe = admitted(&breaker).await;
        // The slow call from the closed period reports success: it must not count as a probe.
        let answer = breaker.record(old, Outcome::Success).await.unwrap();
        assert_eq!(answer.status, RecordStatus::Stale);
        let snapshot = breaker.snapshot().await.unwrap();
        assert_eq!(snapshot.state, State::HalfOpen);
        assert_eq!(snapshot.half_open_successes, 0);
        // A failing probe re-opens it, with the next epoch.
        let epoch = probe.epoch();
        let answer = breaker.record(probe, Outcome::Failure).await.unwrap();
        assert_eq!(answer.state, State::Open);
        assert_eq!(answer.epoch, epoch + 1);
    }
}

redis_test! {
    async fn one_evalsha_per_acquire_and_per_record(redis) {
        let pool = Pool::connect(redis.config().pool_size(2)).await.unwrap();
        let breaker = CircuitBreaker::builder(&pool, &redis.keyspace(), "trips").build().unwrap();
        for _ in 0..5 {
            let p = admitted(&breaker).await;
            breaker.record(p, Outcome::Success).await.unwrap();
        }
        let _: Vec<String> = redis.on_every_server(&["CONFIG", "RESETSTAT"]);
        for _ in 0..40 {
            let p = admitted(&breaker).await;
            breaker.record(p, Outcome::Success).await.unwrap();
        }
        let infos: Vec<String> = redis.on_every_server(&["INFO", "commandstats"]);
        let calls = |cmd: &str| -> u64 {
            infos
                .iter()
                .flat_map(|i| i.lines())
                .filter_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
                .filter_map(|r| r.split(',').next()?.parse::<u64>().ok())
                .sum()
        };
        assert_eq!(calls("evalsha"), 80);
        assert_eq!(calls("ping"), 0);
    }
}

redis_test! {
    async fn every_background_report_arrives_however_calls_are_spaced(redis) {
        // Reports leave with the next acquire, or with the flusher, which ticks while reports
        // come and sleeps after an idle tick: calls spaced around its tick (2 ms) must not
        // strand a report between the two.
        let pool = redis.pool().await;
        let clock = ManualClock::new(1_700_000_000_000);
        let config = BreakerConfig::builder()
            .window(Window::Count(1000))
            .clock(Clock::Manual(clock.clone()))
            .build()
            .unwrap();
        let breaker = CircuitBreaker::builder(&pool, &redis.keyspace(), "spaced").config(config).build().unwrap();
        const CALLS: u64 = 120;
        for i in 0..CALLS {
            let _: Result<(), CallError<()>> = breaker.call(async { Ok(()) }).await;
            tokio::time::sleep(Duration::from_micros(i % 6 * 700)).await;
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = breaker.snapshot().await.unwrap();
            if s.calls == CALLS {
                break;
            }
            assert!(s.calls < CALLS, "more reports than calls: {s:?}");
            assert!(tokio::time::Instant::now() < deadline, "reports stranded: {s:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(breaker.stats().store_errors, 0);
    }
}

redis_test! {
    async fn guarded_calls_classify_and_record_in_the_background(redis) {
        let pool = redis.pool().await;
        let clock = ManualClock::new(1_700_000_000_000);
        let breaker = CircuitBreaker::builder(&pool, &redis.keyspace(), "tool").config(config(&clock, 1)).build().unwrap();
        let ok: Result<u32, CallError<String>> = breaker.call(async { Ok(7) }).await;
        assert_eq!(ok.unwrap(), 7);
        // A 404 is not the downstream's fault: the classifier says success.
        for _ in 0..6 {
            let r: Result<(), CallError<u16>> = breaker
                .call_classified(async { Err(404) }, |r| match r {
                    Err(404) => Outcome::Success,
                    Err(_) => Outcome::Failure,
                    Ok(_) => Outcome::Success,
                })
                .await;
            assert!(matches!(r, Err(CallError::Failed(404))));
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = breaker.snapshot().await.unwrap();
            if s.calls == 7 {
                assert_eq!(s.failures, 0);
                assert_eq!(s.state, State::Closed);
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "background reports missing: {s:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The last 10 calls: 4 successes and 6 failures, so the rate reaches 0.5 on the way.
        for _ in 0..6 {
            let _ = breaker.call(async { Err::<(), _>(500) }).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        while breaker.snapshot().await.unwrap().state != State::Open {
            assert!(tokio::time::Instant::now() < deadline, "never opened");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(matches!(breaker.call(async { Ok::<_, u16>(()) }).await, Err(CallError::Rejected(_))));
    }
}

redis_test! {
    async fn bad_state_is_a_clear_error(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let breaker = CircuitBreaker::builder(&pool, &ks, "broken").build().unwrap();
        let key = breaker.state_key().clone();
        let _: () = pool.query(redis::cmd("SET").arg(&key).arg("x")).await.unwrap();
        match breaker.acquire().await {
            Err(Error::WrongType { key: k, found }) => {
                assert_eq!(k, key.as_str());
                assert_eq!(found, "string");
            }
            other => panic!("expected WrongType, got {other:?}"),
        }
        // A guarded call tells the store's fault from a rejection and from its own error, and
        // does not run.
        let ran = std::sync::atomic::AtomicBool::new(false);
        let call = breaker.call(async { ran.store(true, std::sync::atomic::Ordering::Relaxed); Ok::<_, String>(()) }).await;
        assert!(matches!(call, Err(CallError::Core(Error::WrongType { .. }))), "{call:?}");
        assert!(!ran.load(std::sync::atomic::Ordering::Relaxed));
        let _: () = pool.query(redis::cmd("DEL").arg(&key)).await.unwrap();
        // The hot numbers field `s` holds 7 big-endian doubles: state code, epoch, consecutive
        // failures, next slot, calls, failures, slow calls.
        let packed = |numbers: [f64; 7]| -> Vec<u8> { numbers.iter().flat_map(|n| n.to_be_bytes()).collect() };
        let _: () = pool.query(redis::cmd("HSET").arg(&key).arg("s").arg("sideways")).await.unwrap();
        names(breaker.acquire().await, &key, "field s");
        let mut sideways = [0.0; 7];
        sideways[0] = 9.0; // no such state
        sideways[1] = 1.0;
        let _: () = pool.query(redis::cmd("HSET").arg(&key).arg("s").arg(packed(sideways))).await.unwrap();
        names(breaker.acquire().await, &key, "field s");
        let p = breaker.raw_record("x", 1, PermitKind::Normal, Outcome::Success, 1).await;
        names(p, &key, "field s");
        let mut many = [0.0; 7];
        many[1] = f64::NAN; // closed, but the epoch is no number
        let _: () = pool.query(redis::cmd("HSET").arg(&key).arg("s").arg(packed(many))).await.unwrap();
        names(breaker.acquire().await, &key, "field s");
        names(breaker.snapshot().await, &key, "field s");
        let mut negative = [0.0; 7];
        negative[1] = 1.0;
        negative[4] = -3.0; // closed, epoch 1, -3 calls in the window
        let _: () = pool.query(redis::cmd("HSET").arg(&key).arg("s").arg(packed(negative))).await.unwrap();
        names(breaker.snapshot().await, &key, "field s");
        let p = breaker.raw_record("x", 1, PermitKind::Normal, Outcome::Success, 1).await;
        names(p, &key, "field s");
        // The numbers of transitions, `c`: 5 doubles.
        let _: () = pool.query(redis::cmd("DEL").arg(&key)).await.unwrap();
        let _: () = pool.query(redis::cmd("HSET").arg(&key).arg("c").arg("short")).await.unwrap();
        names(breaker.snapshot().await, &key, "field c");
    }
}

redis_test! {
    async fn idle_closed_breakers_expire_and_forced_ones_stay(redis) {
        let pool = redis.pool().await;
        let config = BreakerConfig::builder().idle_expiry(Duration::from_secs(3600)).build().unwrap();
        let breaker = CircuitBreaker::builder(&pool, &redis.keyspace(), "idle").config(config).build().unwrap();
        let p = admitted(&breaker).await;
        breaker.record(p, Outcome::Success).await.unwrap();
        let ttl: i64 = pool.query(redis::cmd("PTTL").arg(breaker.state_key())).await.unwrap();
        assert!(ttl > 0 && ttl <= 3_600_000, "PTTL {ttl}");
        breaker.force(Forced::MetricsOnly).await.unwrap();
        let ttl: i64 = pool.query(redis::cmd("PTTL").arg(breaker.state_key())).await.unwrap();
        assert_eq!(ttl, -1, "a forced state must not expire");
        let memory: i64 = pool.query(redis::cmd("MEMORY").arg("USAGE").arg(breaker.state_key())).await.unwrap();
        assert!(memory < 2048, "one breaker takes {memory} bytes");
    }
}

redis_test! {
    async fn a_registry_hands_out_one_breaker_per_name_from_templates(redis) {
        let pool = redis.pool().await;
        let strict = BreakerConfig::builder().consecutive_failures(Some(2)).build().unwrap();
        let registry = BreakerRegistry::builder(&pool, &redis.keyspace())
            .template("llm", strict)
            .build()
            .unwrap();
        let a = registry.get("llm", "gpt-4").unwrap();
        let b = registry.get("llm", "gpt-4").unwrap();
        assert_eq!(a.name(), "llm:gpt-4");
        for _ in 0..2 {
            let p = admitted(&a).await;
            a.record(p, Outcome::Failure).await.unwrap();
        }
        assert_eq!(b.snapshot().await.unwrap().state, State::Open);
        let other = registry.get("host", "api.example.com").unwrap();
        assert_eq!(other.config().window(), Window::Count(100));
        assert!(registry.get("llm", "bad name").is_err());

        // A template set later applies to breakers handed out after it; a default template
        // applies to the rest.
        let lenient = BreakerConfig::builder().window(Window::Count(7)).build().unwrap();
        let registry = BreakerRegistry::builder(&pool, &redis.keyspace())
            .default_config(lenient)
            .build()
            .unwrap();
        assert_eq!(registry.get("any", "x").unwrap().config().window(), Window::Count(7));
        let wide = BreakerConfig::builder().window(Window::Count(500)).build().unwrap();
        registry.template("wide", wide).unwrap();
        assert_eq!(registry.get("wide", "x").unwrap().config().window(), Window::Count(500));
        let bad = BreakerRegistry::builder(&pool, &redis.keyspace())
            .template("bad name", BreakerConfig::default())
            .build();
        assert!(matches!(bad, Err(Error::InvalidName { .. })), "{bad:?}");
    }
}

#[tokio::test]
async fn invalid_configuration_names_the_field() {
    let field = |b: coordkit_circuit_breaker::BreakerConfigBuilder| match b.build() {
        Err(Error::InvalidConfig { field, .. }) => field,
        other => panic!("expected InvalidConfig, got {other:?}"),
    };
    let b = BreakerConfig::builder;
    assert_eq!(field(b().failure_rate(1.5)), "failure_rate");
    assert_eq!(field(b().failure_rate(0.0)), "failure_rate");
    assert_eq!(field(b().slow_call_rate(f64::NAN)), "slow_call_rate");
    assert_eq!(field(b().window(Window::Count(0))), "window");
    assert_eq!(
        field(b().window(Window::Time {
            length: Duration::ZERO,
            buckets: 10
        })),
        "window"
    );
    assert_eq!(field(b().half_open_permits(0)), "half_open_permits");
    assert_eq!(field(b().minimum_calls(0)), "minimum_calls");
    assert_eq!(
        field(b().consecutive_failures(Some(0))),
        "consecutive_failures"
    );
    assert_eq!(
        field(b().open_duration(OpenDuration::Exponential {
            base: Duration::from_secs(2),
            factor: 0.5,
            max: Duration::from_secs(1)
        })),
        "open_duration"
    );
}

redis_test! {
    async fn the_breaker_builder_validates_every_rule_naming_the_setter(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let field = |b: CircuitBreakerBuilder| match b.build() {
            Err(Error::InvalidConfig { field, .. }) => field,
            other => panic!("expected InvalidConfig, got {other:?}"),
        };
        let b = || CircuitBreaker::builder(&pool, &ks, "checked");
        assert_eq!(field(b().failure_rate(1.5)), "failure_rate");
        assert_eq!(field(b().slow_call_rate(0.0)), "slow_call_rate");
        assert_eq!(field(b().window(Window::Count(10_001))), "window");
        assert_eq!(field(b().minimum_calls(0)), "minimum_calls");
        assert_eq!(field(b().slow_call_duration(Duration::ZERO)), "slow_call_duration");
        assert_eq!(field(b().consecutive_failures(Some(0))), "consecutive_failures");
        assert_eq!(field(b().open_duration(OpenDuration::Fixed(Duration::ZERO))), "open_duration");
        assert_eq!(field(b().half_open_permits(0)), "half_open_permits");
        assert_eq!(field(b().half_open_successes(0)), "half_open_successes");
        assert_eq!(field(b().permit_lease(Duration::ZERO)), "permit_lease");
        assert_eq!(field(b().half_open_max_wait(Some(Duration::ZERO))), "half_open_max_wait");
        assert_eq!(field(b().idle_expiry(Duration::from_millis(999))), "idle_expiry");
        // A setter after a template changes that rule alone, and is checked too.
        let template = BreakerConfig::builder().minimum_calls(3).build().unwrap();
        assert_eq!(field(b().config(template.clone()).failure_rate(-1.0)), "failure_rate");
        let built = b().config(template).window(Window::Count(9)).build().unwrap();
        assert_eq!(built.config().window(), Window::Count(9));
        // Debug shows the name and keys, not the pool.
        let shown = format!("{built:?}");
        assert!(shown.contains("checked") && shown.contains("state_key") && !shown.contains("redis://"), "{shown}");
        assert!(matches!(
            CircuitBreaker::builder(&pool, &ks, "bad name").build(),
            Err(Error::InvalidName { .. })
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_follows_the_store_policy() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let config = PoolConfig::from_url(&format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .connection_timeout(Duration::from_millis(100));
    let pool = Pool::connect_lazy(config).unwrap();
    let ks = Keyspace::new("down").unwrap();
    let with = |policy| {
        BreakerConfig::builder()
            .store_policy(policy)
            .consecutive_failures(Some(3))
            .build()
            .unwrap()
    };

    let open = CircuitBreaker::builder(&pool, &ks, "a")
        .config(with(StorePolicy::FailOpen))
        .build()
        .unwrap();
    let p = admitted(&open).await;
    assert_eq!(p.kind(), PermitKind::Unrecorded);
    assert_eq!(
        open.record(p, Outcome::Failure).await.unwrap().status,
        RecordStatus::NotCounted
    );

    let closed = CircuitBreaker::builder(&pool, &ks, "b")
        .config(with(StorePolicy::FailClosed))
        .build()
        .unwrap();
    assert!(matches!(
        closed.acquire().await.unwrap(),
        Admission::Rejected(_)
    ));

    let local = CircuitBreaker::builder(&pool, &ks, "c")
        .config(with(StorePolicy::Local))
        .build()
        .unwrap();
    for _ in 0..3 {
        let p = admitted(&local).await;
        local.record(p, Outcome::Failure).await.unwrap();
    }
    match local.acquire().await.unwrap() {
        Admission::Rejected(r) => assert_eq!(r.state, State::Open),
        Admission::Admitted(_) => panic!("the local fallback did not trip"),
    }
    let stats = local.stats();
    // Only the first acquire asked Redis; the rest were decided at once.
    assert_eq!((stats.store_calls, stats.store_errors), (1, 1));
    assert_eq!(stats.local_decisions, 4);
    assert!(stats.deciding_locally);
    assert!(
        stats
            .last_store_error
            .unwrap()
            .contains(&format!("127.0.0.1:{port}"))
    );
}

/// Several OS processes hammer one half-open breaker: the probes admitted across all of them
/// never exceed K. The child processes are this test binary, run again with
/// `COORDKIT_CB_CHILD` set (see `child_process`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_processes_never_get_more_than_k_probes() {
    let redis = TestRedis::start(coordkit_testkit::Topology::Standalone);
    let pool = redis.pool().await;
    let ks = redis.keyspace();
    let clock = ManualClock::new(1_700_000_000_000);
    let breaker = CircuitBreaker::builder(&pool, &ks, "shared")
        .config(config(&clock, 4))
        .build()
        .unwrap();
    trip(&breaker).await;
    clock.advance(Duration::from_secs(11));
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "child_process",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(
                    "COORDKIT_CB_CHILD",
                    format!("{}|{}|{}", redis.url(), ks.namespace(), clock.now_ms()),
                )
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut total = 0;
    let mut per_child = BTreeMap::new();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "child {i} failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let n: u64 = text
            .lines()
            .find_map(|l| l.split("ADMITTED=").nth(1))
            .expect("the child did not report")
            .trim()
            .parse()
            .unwrap();
        per_child.insert(i, n);
        total += n;
    }
    assert_eq!(total, 4, "probes admitted per process: {per_child:?}");
}

/// Not a test of its own: the body of the child processes of
/// `several_processes_never_get_more_than_k_probes`. Without `COORDKIT_CB_CHILD` it returns at
/// once.
#[test]
fn child_process() {
    let Ok(spec) = std::env::var("COORDKIT_CB_CHILD") else {
        return;
    };
    let mut parts = spec.split('|');
    let (url, ns, now) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admitted = rt.block_on(async {
        let pool = Pool::connect(PoolConfig::from_url(url).unwrap())
            .await
            .unwrap();
        let clock = ManualClock::new(now.parse().unwrap());
        let breaker = CircuitBreaker::builder(&pool, &Keyspace::new(ns).unwrap(), "shared")
            .config(config(&clock, 4))
            .build()
            .unwrap();
        let held = grab_permits(&breaker, 20, 5).await;
        let n = held.len();
        // Hold the permits until exit: the process ends without reporting them.
        std::mem::forget(held);
        n
    });
    #[allow(clippy::print_stdout)] // the parent reads it
    {
        println!("ADMITTED={admitted}");
    }
}
