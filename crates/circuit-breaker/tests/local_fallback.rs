//! `StorePolicy::Local` when Redis dies: the local decisions start from the last shared state
//! the handle saw (open stays open for what was left of it, forced and disabled stay, half-open
//! probes locally, closed admits), and once Redis is back the shared state rules again.

use std::time::Duration;

use coordkit_circuit_breaker::{
    Admission, BreakerConfig, CircuitBreaker, Forced, OpenDuration, Outcome, Permit, PermitKind,
    Rejection, State, StorePolicy,
};
use coordkit_core::{Clock, Keyspace, ManualClock, Pool};
use coordkit_testkit::{RedisServer, ServerOptions};

/// Calls to a killed server fail within this.
const FAULT_TIMEOUT: Duration = Duration::from_millis(500);

fn config(open: Duration, clock: Option<&ManualClock>) -> BreakerConfig {
    let mut b = BreakerConfig::builder()
        .consecutive_failures(Some(2))
        .open_duration(OpenDuration::Fixed(open))
        .half_open_permits(1)
        .half_open_successes(1)
        .half_open_max_wait(None)
        .store_policy(StorePolicy::Local);
    if let Some(clock) = clock {
        b = b.clock(Clock::Manual(clock.clone()));
    }
    b.build().unwrap()
}

async fn admitted(breaker: &CircuitBreaker) -> Permit {
    match breaker.acquire().await.unwrap() {
        Admission::Admitted(permit) => permit,
        Admission::Rejected(r) => panic!("rejected: {r:?}"),
    }
}

async fn rejected(breaker: &CircuitBreaker) -> Rejection {
    match breaker.acquire().await.unwrap() {
        Admission::Rejected(r) => r,
        Admission::Admitted(p) => panic!("admitted a {:?} permit", p.kind()),
    }
}

async fn trip(breaker: &CircuitBreaker) {
    for _ in 0..2 {
        let permit = admitted(breaker).await;
        breaker.record(permit, Outcome::Failure).await.unwrap();
    }
}

/// Two handles on one server: `operator` changes the shared state, `local` only acquires.
async fn handles(
    server: &RedisServer,
    name: &str,
    config: BreakerConfig,
) -> (CircuitBreaker, CircuitBreaker) {
    let ks = Keyspace::new("fallback").unwrap();
    let operator_pool = server.fault_pool(FAULT_TIMEOUT).await;
    let local_pool: Pool = server.fault_pool(FAULT_TIMEOUT).await;
    let operator = CircuitBreaker::builder(&operator_pool, &ks, name)
        .config(config.clone())
        .build()
        .unwrap();
    let local = CircuitBreaker::builder(&local_pool, &ks, name)
        .config(config)
        .build()
        .unwrap();
    (operator, local)
}

/// Waits until Redis decides `breaker`'s acquires again after a restart (the pool replaces
/// its dead connections; a call that meets one is decided locally once more).
async fn redis_decides(breaker: &CircuitBreaker) -> Admission {
    for _ in 0..100 {
        let before = breaker.stats().local_decisions;
        let admission = breaker.acquire().await.unwrap();
        if breaker.stats().local_decisions == before {
            return admission;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Redis never answered again");
}

/// The proof of issue #15: open in Redis, Redis killed, a `Local` handle rejects calls (it
/// used to start closed and admit them); back up, the shared state rules again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_open_in_redis_stays_open_locally_when_redis_dies() {
    let mut server = RedisServer::start_with(ServerOptions {
        aof: true,
        ..Default::default()
    })
    .unwrap();
    let hour = Duration::from_secs(3600);
    let (operator, local) = handles(&server, "open", config(hour, None)).await;
    // The local handle takes part while it is closed, then sees it open.
    let permit = admitted(&local).await;
    local.record(permit, Outcome::Success).await.unwrap();
    trip(&operator).await;
    assert_eq!(rejected(&local).await.state, State::Open);
    assert_eq!(local.stats().local_decisions, 0);

    tokio::task::block_in_place(|| server.kill());
    for decided in 1..=3 {
        let r = rejected(&local).await;
        assert_eq!(r.state, State::Open);
        // What was left of the hour when Redis last answered, less the time since.
        assert!(r.retry_after <= hour && r.retry_after > hour / 2, "{r:?}");
        assert_eq!(local.stats().local_decisions, decided);
    }
    // Only the first asked Redis: the others were decided at once.
    assert_eq!(local.stats().store_errors, 1);

    // Back up (AOF on): Redis decides again, and what it says goes.
    tokio::task::block_in_place(|| server.restart()).unwrap();
    match redis_decides(&local).await {
        Admission::Rejected(r) => assert_eq!(r.state, State::Open),
        Admission::Admitted(p) => panic!("admitted a {:?} permit", p.kind()),
    }
    let decided = local.stats().local_decisions;
    let mut cleared = false;
    for _ in 0..50 {
        if operator.clear().await.is_ok() {
            cleared = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cleared, "the operator could not clear the breaker");
    let permit = admitted(&local).await;
    assert_eq!(permit.kind(), PermitKind::Normal);
    assert_eq!(local.stats().local_decisions, decided, "decided by Redis");
    local.record(permit, Outcome::Success).await.unwrap();

    // The next outage starts from what Redis said last: closed.
    tokio::task::block_in_place(|| server.kill());
    let permit = admitted(&local).await;
    assert_eq!(permit.kind(), PermitKind::Normal);
    assert_eq!(local.stats().local_decisions, decided + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_closed_in_redis_admits_locally_when_redis_dies() {
    let mut server = RedisServer::start().unwrap();
    let (_operator, local) =
        handles(&server, "closed", config(Duration::from_secs(60), None)).await;
    let permit = admitted(&local).await;
    local.record(permit, Outcome::Failure).await.unwrap();
    let epoch = local.snapshot().await.unwrap().epoch;

    tokio::task::block_in_place(|| server.kill());
    let permit = admitted(&local).await;
    assert_eq!(permit.kind(), PermitKind::Normal);
    assert_eq!(
        permit.epoch(),
        epoch,
        "the local fallback goes on from the shared epoch"
    );
    // Locally the same rules apply from an empty window: two failures trip it.
    local.record(permit, Outcome::Failure).await.unwrap();
    let permit = admitted(&local).await;
    local.record(permit, Outcome::Failure).await.unwrap();
    assert_eq!(rejected(&local).await.state, State::Open);
    assert_eq!(local.stats().local_decisions, 3);
}

/// On a manual clock: the open period left carries over to the local clock, half-open probes
/// locally, and the operator states stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shared_state_carries_over_to_the_local_fallback() {
    let mut server = RedisServer::start().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let ten = Duration::from_secs(10);
    let cfg = || config(ten, Some(&clock));
    let (op_open, open) = handles(&server, "open", cfg()).await;
    let (op_half, half) = handles(&server, "half", cfg()).await;
    let (op_forced, forced) = handles(&server, "forced", cfg()).await;
    let (op_disabled, disabled) = handles(&server, "disabled", cfg()).await;

    trip(&op_half).await;
    clock.advance(ten);
    let probe = admitted(&half).await;
    assert_eq!(probe.kind(), PermitKind::Probe);
    drop(probe);
    trip(&op_open).await;
    clock.advance(Duration::from_secs(4));
    assert_eq!(rejected(&open).await.retry_after, Duration::from_secs(6));
    op_forced.force(Forced::Open).await.unwrap();
    assert_eq!(rejected(&forced).await.state, State::ForcedOpen);
    op_disabled.force(Forced::Disabled).await.unwrap();
    assert_eq!(admitted(&disabled).await.kind(), PermitKind::Bypass);

    tokio::task::block_in_place(|| server.kill());
    // Open: what was left, on the local clock, then half-open.
    let r = rejected(&open).await;
    assert_eq!(
        (r.state, r.retry_after),
        (State::Open, Duration::from_secs(6))
    );
    clock.advance(Duration::from_secs(5));
    assert_eq!(rejected(&open).await.retry_after, Duration::from_secs(1));
    // Half-open: K = 1 probe in this process; its success closes the breaker locally.
    let probe = admitted(&half).await;
    assert_eq!(probe.kind(), PermitKind::Probe);
    assert_eq!(rejected(&half).await.state, State::HalfOpen);
    half.record(probe, Outcome::Success).await.unwrap();
    assert_eq!(admitted(&half).await.kind(), PermitKind::Normal);
    clock.advance(Duration::from_secs(1));
    assert_eq!(admitted(&open).await.kind(), PermitKind::Probe);
    // The operator's states stay.
    for _ in 0..3 {
        assert_eq!(rejected(&forced).await.state, State::ForcedOpen);
        assert_eq!(admitted(&disabled).await.kind(), PermitKind::Bypass);
    }
    for handle in [&open, &half, &forced, &disabled] {
        assert!(handle.stats().local_decisions >= 2);
    }
}

/// Issue #16: after the first store failure, a `Local` handle decides at once (no connection
/// timeout per call) while a background probe waits for Redis; then Redis decides again.
/// Counted by store calls, not timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_first_store_failure_calls_are_decided_locally_at_once() {
    let mut server = RedisServer::start_with(ServerOptions {
        aof: true,
        ..Default::default()
    })
    .unwrap();
    let (operator, local) = handles(&server, "fast", config(Duration::from_secs(3600), None)).await;
    let permit = admitted(&local).await;
    local.record(permit, Outcome::Success).await.unwrap();
    assert!(!local.stats().deciding_locally);

    tokio::task::block_in_place(|| server.kill());
    let before = local.stats();
    for _ in 0..50 {
        let answer: Result<(), _> = local.call(async { Ok::<_, ()>(()) }).await;
        answer.unwrap();
    }
    let after = local.stats();
    assert_eq!(after.store_calls - before.store_calls, 1, "{after:?}");
    assert_eq!(after.store_errors - before.store_errors, 1, "{after:?}");
    assert_eq!(after.local_decisions - before.local_decisions, 50);
    assert!(after.deciding_locally);

    // Back up: the probe sees it, and the shared state rules again (open, set meanwhile).
    tokio::task::block_in_place(|| server.restart()).unwrap();
    let mut tripped = false;
    for _ in 0..100 {
        if operator.force(Forced::Open).await.is_ok() {
            tripped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(tripped, "the operator could not reach Redis again");
    match redis_decides(&local).await {
        Admission::Rejected(r) => assert_eq!(r.state, State::ForcedOpen),
        Admission::Admitted(p) => panic!("admitted a {:?} permit", p.kind()),
    }
    let stats = local.stats();
    assert!(!stats.deciding_locally);
    assert!(stats.store_probes >= 1, "{stats:?}");
}
