//! A half-open breaker whose probe permits are all taken answers a short `retry_after` (the
//! probes' likely time, capped), not the whole permit lease: a caller that waits it is
//! admitted once the probes have closed the breaker.

use std::time::Duration;

use coordkit_circuit_breaker::{
    Admission, BreakerConfig, CircuitBreaker, HALF_OPEN_RETRY_CAP, OpenDuration, Outcome, Permit,
    PermitKind, Rejection, State,
};
use coordkit_core::{Clock, ManualClock};
use coordkit_testkit::redis_test;

/// The defaults (30 s open, 30 s probe leases) with one probe that closes it.
fn config(clock: &ManualClock, open: Duration) -> BreakerConfig {
    BreakerConfig::builder()
        .consecutive_failures(Some(1))
        .open_duration(OpenDuration::Fixed(open))
        .half_open_permits(1)
        .half_open_successes(1)
        .clock(Clock::Manual(clock.clone()))
        .build()
        .unwrap()
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

/// Trips `breaker`, waits out its open period and takes its one probe.
async fn probe_taken(breaker: &CircuitBreaker, clock: &ManualClock, open: Duration) -> Permit {
    let permit = admitted(breaker).await;
    breaker.record(permit, Outcome::Failure).await.unwrap();
    clock.advance(open);
    let probe = admitted(breaker).await;
    assert_eq!(probe.kind(), PermitKind::Probe);
    probe
}

redis_test! {
    async fn a_caller_that_waits_retry_after_is_admitted_once_the_probes_closed_it(redis) {
        let pool = redis.pool().await;
        let clock = ManualClock::new(1_700_000_000_000);
        let open = Duration::from_secs(30);
        let lease = Duration::from_secs(30); // the default permit lease
        let breaker =
            CircuitBreaker::builder(&pool, &redis.keyspace(), "llm").config(config(&clock, open)).build().unwrap();
        let probe = probe_taken(&breaker, &clock, open).await;

        let r = rejected(&breaker).await;
        assert_eq!(r.state, State::HalfOpen);
        assert!(r.retry_after <= HALF_OPEN_RETRY_CAP, "{r:?}");
        assert!(r.retry_after < lease, "the whole lease: {r:?}");
        assert!(r.retry_after > Duration::ZERO);

        // The probe succeeds meanwhile; the caller comes back after retry_after.
        clock.advance(Duration::from_millis(10));
        assert_eq!(breaker.record(probe, Outcome::Success).await.unwrap().state, State::Closed);
        clock.advance(r.retry_after - Duration::from_millis(10));
        assert_eq!(admitted(&breaker).await.kind(), PermitKind::Normal);
    }
}

redis_test! {
    async fn retry_after_is_the_base_open_duration_when_shorter(redis) {
        let pool = redis.pool().await;
        let clock = ManualClock::new(1_700_000_000_000);
        let open = Duration::from_millis(300);
        let breaker =
            CircuitBreaker::builder(&pool, &redis.keyspace(), "fast").config(config(&clock, open)).build().unwrap();
        let _probe = probe_taken(&breaker, &clock, open).await;
        assert_eq!(rejected(&breaker).await.retry_after, open);
        // Within a few ms of the lease's end, no later than it.
        let lease = Duration::from_secs(30); // the default permit lease
        clock.advance(lease - Duration::from_millis(5));
        assert_eq!(rejected(&breaker).await.retry_after, Duration::from_millis(5));
    }
}
