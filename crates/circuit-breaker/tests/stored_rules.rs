//! A breaker keeps the rules it was last written under (field `g` of its state), so that a
//! reader without the application's configuration (the `coordkit` command) applies the same
//! ones; and a state written under a window of another size never leaves figures that do not
//! match the ring (regression: a count window of 20 forced with the default rules, 100, then
//! recorded by its own process, failed every record with CORRUPT).

use std::time::Duration;

use coordkit_circuit_breaker::{
    BreakerConfig, CircuitBreaker, Forced, OpenDuration, Outcome, State, Window,
};
use coordkit_testkit::redis_test;

fn rules() -> BreakerConfig {
    BreakerConfig::builder()
        .window(Window::Count(20))
        .minimum_calls(4)
        .failure_rate(0.5)
        .open_duration(OpenDuration::Fixed(Duration::from_secs(600)))
        .build()
        .unwrap()
}

redis_test! {
    async fn a_reader_without_the_configuration_finds_the_rules(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let own = CircuitBreaker::builder(&pool, &ks, "llm").config(rules()).build().unwrap();
        let reader = CircuitBreaker::builder(&pool, &ks, "llm").build().unwrap();
        // Nothing stored yet.
        assert!(reader.stored_config().await.unwrap().is_none());
        // One recorded call (the record's fast path) stores the rules.
        let permit = match own.acquire().await.unwrap() {
            coordkit_circuit_breaker::Admission::Admitted(p) => p,
            other => panic!("{other:?}"),
        };
        own.record(permit, Outcome::Success).await.unwrap();
        let found = reader.stored_config().await.unwrap().expect("stored with the state");
        assert_eq!(found.window(), Window::Count(20));
        let same = CircuitBreaker::builder(&pool, &ks, "llm").config(found).build().unwrap();
        let (a, b) = (own.snapshot().await.unwrap(), same.snapshot().await.unwrap());
        assert_eq!((a.state, a.epoch, a.calls), (b.state, b.epoch, b.calls));
        assert_eq!(a.calls, 1);
        // The default handle reads another window: that is why it must not be used.
        assert_eq!(reader.snapshot().await.unwrap().calls, 0);
    }
}

redis_test! {
    async fn a_state_written_under_another_window_size_leaves_the_breaker_usable(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let own = CircuitBreaker::builder(&pool, &ks, "db").config(rules()).build().unwrap();
        for _ in 0..5 {
            let permit = match own.acquire().await.unwrap() {
                coordkit_circuit_breaker::Admission::Admitted(p) => p,
                other => panic!("{other:?}"),
            };
            own.record(permit, Outcome::Success).await.unwrap();
        }
        // Forced and cleared by a handle with the default rules (a count window of 100).
        let other = CircuitBreaker::builder(&pool, &ks, "db").build().unwrap();
        other.force(Forced::MetricsOnly).await.unwrap();
        // Its own process records on: never CORRUPT.
        for _ in 0..25 {
            let permit = match own.acquire().await.unwrap() {
                coordkit_circuit_breaker::Admission::Admitted(p) => p,
                other => panic!("{other:?}"),
            };
            own.record(permit, Outcome::Failure).await.unwrap();
        }
        other.clear().await.unwrap();
        for _ in 0..25 {
            let permit = match own.acquire().await.unwrap() {
                coordkit_circuit_breaker::Admission::Admitted(p) => p,
                other => panic!("{other:?}"),
            };
            own.record(permit, Outcome::Success).await.unwrap();
        }
        let s = own.snapshot().await.unwrap();
        assert_eq!(s.state, State::Closed);
        assert_eq!((s.calls, s.failures), (20, 0));
    }
}

redis_test! {
    async fn garbage_rules_are_named_and_rewritten_by_the_next_change(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let own = CircuitBreaker::builder(&pool, &ks, "api").config(rules()).build().unwrap();
        let permit = match own.acquire().await.unwrap() {
            coordkit_circuit_breaker::Admission::Admitted(p) => p,
            other => panic!("{other:?}"),
        };
        own.record(permit, Outcome::Success).await.unwrap();
        for garbage in [&b"not rules"[..], &[0u8; 128][..], &[0xffu8; 128][..]] {
            let _: () = pool
                .query(coordkit_core::redis::cmd("HSET").arg(own.state_key()).arg("g").arg(garbage))
                .await
                .unwrap();
            match own.stored_config().await {
                Err(coordkit_core::Error::Corrupt { key, detail }) => {
                    assert_eq!(key, own.state_key().as_str());
                    assert!(detail.contains("field g"), "{detail}");
                }
                other => panic!("{other:?}"),
            }
            // The breaker itself never uses them: a record goes on, and its next change of
            // state (here a clear) stores its own again.
            let permit = match own.acquire().await.unwrap() {
                coordkit_circuit_breaker::Admission::Admitted(p) => p,
                other => panic!("{other:?}"),
            };
            own.record(permit, Outcome::Success).await.unwrap();
            own.clear().await.unwrap();
            let found = own.stored_config().await.unwrap().unwrap();
            assert_eq!(found.window(), Window::Count(20));
        }
    }
}
