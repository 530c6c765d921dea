//! A breaker from the facade is the breaker from its crate: the same builder, the same rules,
//! the same shared state.
#![cfg(feature = "circuit-breaker")]

use std::time::Duration;

use coordkit::Coordkit;
use coordkit::circuit_breaker::{Admission, BreakerConfig, CircuitBreaker, Outcome, State, Window};
use coordkit::core::Error;
use coordkit_testkit::redis_test;

redis_test! {
    async fn a_breaker_from_the_facade_behaves_as_one_from_its_crate(redis) {
        let pool = redis.pool().await;
        let kit = Coordkit::from_pool(pool.clone(), redis.keyspace().namespace()).unwrap();
        let from_kit = kit
            .breaker("llm")
            .window(Window::Count(4))
            .minimum_calls(2)
            .failure_rate(0.5)
            .build()
            .unwrap();
        let from_crate = CircuitBreaker::builder(&pool, kit.keyspace(), "llm")
            .window(Window::Count(4))
            .minimum_calls(2)
            .failure_rate(0.5)
            .build()
            .unwrap();
        assert_eq!(from_kit.state_key(), from_crate.state_key());
        assert_eq!(from_kit.channel("opened"), from_crate.channel("opened"));
        assert_eq!(format!("{:?}", from_kit.config()), format!("{:?}", from_crate.config()));

        // Two failures through one trip it for the other.
        for breaker in [&from_kit, &from_crate] {
            let Admission::Admitted(permit) = breaker.acquire().await.unwrap() else {
                panic!("a closed breaker admits");
            };
            breaker.record(permit, Outcome::Failure).await.unwrap();
        }
        for breaker in [&from_kit, &from_crate] {
            assert!(matches!(breaker.acquire().await.unwrap(), Admission::Rejected(r) if r.state == State::Open));
        }

        // The same validation, naming the setter.
        let e = kit.breaker("llm").permit_lease(Duration::ZERO).build().unwrap_err();
        assert!(matches!(e, Error::InvalidConfig { field: "permit_lease", .. }), "{e:?}");

        // The registry from the facade hands out breakers from its templates.
        let registry = kit
            .breakers()
            .template("tool", BreakerConfig::builder().window(Window::Count(3)).build().unwrap())
            .build()
            .unwrap();
        assert_eq!(registry.get("tool", "search").unwrap().config().window(), Window::Count(3));
        assert_eq!(registry.get("llm", "x").unwrap().config().window(), Window::Count(100));
    }
}
