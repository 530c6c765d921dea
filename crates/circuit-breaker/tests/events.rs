//! `CircuitBreaker::events`: one breaker's transitions, typed; another breaker's stay out.

use std::time::Duration;

use coordkit_circuit_breaker::{
    Admission, BreakerConfig, BreakerEventKind, CircuitBreaker, Forced, OpenDuration, Outcome,
    State,
};
use coordkit_core::{Clock, ManualClock};
use coordkit_testkit::redis_test;

const WAIT: Duration = Duration::from_secs(15);

fn config(clock: &ManualClock) -> BreakerConfig {
    BreakerConfig::builder()
        .minimum_calls(2)
        .consecutive_failures(Some(2))
        .open_duration(OpenDuration::Fixed(Duration::from_secs(10)))
        .half_open_permits(1)
        .half_open_successes(1)
        .clock(Clock::Manual(clock.clone()))
        .build()
        .unwrap()
}

async fn fail_twice(breaker: &CircuitBreaker) {
    for _ in 0..2 {
        match breaker.acquire().await.unwrap() {
            Admission::Admitted(p) => breaker.record(p, Outcome::Failure).await.unwrap(),
            Admission::Rejected(r) => panic!("rejected: {r:?}"),
        };
    }
}

redis_test! {
    async fn a_transition_is_one_typed_event_and_others_stay_out(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let clock = ManualClock::new(1_700_000_000_000);
        let mine = CircuitBreaker::builder(&pool, &ks, "mine").config(config(&clock)).build().unwrap();
        let other = CircuitBreaker::builder(&pool, &ks, "other").config(config(&clock)).build().unwrap();
        let mut events = mine.events().await.unwrap();

        // The other breaker trips and is forced first: none of it reaches `events`.
        fail_twice(&other).await;
        other.force(Forced::Open).await.unwrap();
        fail_twice(&mine).await;

        let got = tokio::time::timeout(WAIT, events.recv()).await.unwrap().unwrap();
        assert_eq!(got.kind, BreakerEventKind::Opened);
        assert_eq!(got.breaker, "mine");
        assert_eq!(got.state, State::Open);
        assert_eq!(got.epoch, mine.snapshot().await.unwrap().epoch);
        assert_eq!(got.ts_ms, clock.now_ms());
        assert_eq!(got.reason.as_deref(), Some("consecutive_failures"));
        assert_eq!(got.open_until_ms, Some(clock.now_ms() + 10_000));
        assert_eq!(got.reopenings, Some(0));
        let figures = got.figures.expect("the figures that tripped it");
        assert_eq!((figures.calls, figures.failures, figures.consecutive_failures), (2, 2, 2));

        // A probe's success: half-opened then closed, one event each.
        clock.advance(Duration::from_secs(10));
        match mine.acquire().await.unwrap() {
            Admission::Admitted(p) => mine.record(p, Outcome::Success).await.unwrap(),
            Admission::Rejected(r) => panic!("rejected: {r:?}"),
        };
        // Each kind has a channel of its own; on a cluster the subscriber's channels may sit on
        // different nodes, each reached by its own path over the cluster bus, so two kinds can
        // arrive in either order: the epochs order them.
        let mut two = Vec::new();
        for _ in 0..2 {
            two.push(tokio::time::timeout(WAIT, events.recv()).await.unwrap().unwrap());
        }
        two.sort_by_key(|e| e.epoch);
        let closed = two.pop().unwrap();
        let half = two.pop().unwrap();
        assert_eq!((half.kind, half.state), (BreakerEventKind::HalfOpened, State::HalfOpen));
        assert_eq!((half.reason, half.figures), (None, None));
        assert_eq!((closed.kind, closed.state), (BreakerEventKind::Closed, State::Closed));
        assert_eq!(closed.reason.as_deref(), Some("probes_succeeded"));
        assert_eq!(closed.epoch, half.epoch + 1);

        // Nothing else: the other breaker's three events were received and dropped.
        other.clear().await.unwrap();
        mine.force(Forced::Disabled).await.unwrap();
        let forced = tokio::time::timeout(WAIT, events.recv()).await.unwrap().unwrap();
        assert_eq!((forced.kind, forced.state), (BreakerEventKind::Forced, State::Disabled));
        // On a cluster the other's `cleared`, published on another node, may reach this
        // subscriber after mine: wait until it was received (and dropped).
        let deadline = tokio::time::Instant::now() + WAIT;
        while events.stats().received < 7 {
            assert!(tokio::time::Instant::now() < deadline, "{:?}", events.stats());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(events.try_recv().is_none(), "an extra event");
        assert_eq!(events.stats().received, 7, "4 of mine, 3 of the other's");
        assert_eq!(events.stats().decode_errors, 0);
        events.shutdown().await;
    }
}
