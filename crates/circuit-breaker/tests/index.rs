//! The namespace's index of breakers: every breaker a handle wrote to is listed by
//! `CircuitBreaker::list` in one call, while its keys exist (idle breakers expire), forced
//! ones until cleared, exactly under concurrent handles.

use std::collections::BTreeSet;
use std::time::Duration;

use coordkit_circuit_breaker::{
    Admission, BreakerConfig, BreakerRegistry, CircuitBreaker, OpenDuration, Outcome,
};
use coordkit_core::{Pool, redis};
use coordkit_testkit::redis_test;

async fn use_once(breaker: &CircuitBreaker) {
    match breaker.acquire().await.unwrap() {
        Admission::Admitted(permit) => {
            breaker.record(permit, Outcome::Success).await.unwrap();
        }
        Admission::Rejected(r) => panic!("rejected: {r:?}"),
    }
}

async fn listed(pool: &Pool, ks: &coordkit_core::Keyspace) -> Vec<String> {
    let listing = CircuitBreaker::list(pool, ks).await.unwrap();
    assert!(listing.malformed.is_empty(), "{listing:?}");
    listing.names
}

async fn deadline(pool: &Pool, ks: &coordkit_core::Keyspace, name: &str) -> Option<f64> {
    let index = CircuitBreaker::index(ks).unwrap();
    pool.query(redis::cmd("ZSCORE").arg(index.keys()[1]).arg(name))
        .await
        .unwrap()
}

redis_test! {
    async fn breakers_are_listed_from_their_first_write(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let payments = CircuitBreaker::builder(&pool, &ks, "payments").build().unwrap();
        assert!(listed(&pool, &ks).await.is_empty());
        use_once(&payments).await;
        let registry = BreakerRegistry::builder(&pool, &ks).build().unwrap();
        use_once(&registry.get("llm", "gpt-4").unwrap()).await;
        assert_eq!(listed(&pool, &ks).await, ["llm:gpt-4", "payments"]);
        // The default idle expiry of a day after the longest open period (under an hour):
        // the deadline is 1.25 times that ahead.
        let (secs, _): (u64, u64) = pool.query(&redis::cmd("TIME")).await.unwrap();
        let ahead = deadline(&pool, &ks, "payments").await.unwrap() - (secs * 1000) as f64;
        let day = 24.0 * 3600.0 * 1000.0;
        assert!((1.25 * day..1.25 * (day + 3600.0 * 1000.0)).contains(&ahead), "{ahead}");

        // Forced: no deadline until cleared; cleared: one again.
        payments.force(coordkit_circuit_breaker::Forced::Open).await.unwrap();
        assert_eq!(deadline(&pool, &ks, "payments").await, None);
        use_once(&registry.get("llm", "gpt-4").unwrap()).await;
        assert!(matches!(payments.acquire().await.unwrap(), Admission::Rejected(_)));
        assert_eq!(deadline(&pool, &ks, "payments").await, None);
        payments.clear().await.unwrap();
        assert!(deadline(&pool, &ks, "payments").await.is_some());
        assert_eq!(listed(&pool, &ks).await, ["llm:gpt-4", "payments"]);
        let page = CircuitBreaker::list_page(&pool, &ks, None, 1).await.unwrap();
        assert_eq!(page.names, ["llm:gpt-4"]);
    }
}

redis_test! {
    async fn an_idle_breaker_leaves_the_list_after_its_keys_expire(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        // Keys live at most 1 s + 1 ms after a write: recorded for 1.25 times that.
        let config = || {
            BreakerConfig::builder()
                .idle_expiry(Duration::from_secs(1))
                .open_duration(OpenDuration::Fixed(Duration::from_millis(1)))
                .permit_lease(Duration::from_millis(1))
                .build()
                .unwrap()
        };
        let idle = CircuitBreaker::builder(&pool, &ks, "idle").config(config()).build().unwrap();
        let forced = CircuitBreaker::builder(&pool, &ks, "forced").config(config()).build().unwrap();
        use_once(&idle).await;
        forced.force(coordkit_circuit_breaker::Forced::Disabled).await.unwrap();
        let state = idle.state_key().clone();
        // Listed for as long as its keys exist; gone from the list once its deadline passes.
        let mut polls = 0;
        loop {
            let exists: bool = pool.query(redis::cmd("EXISTS").arg(&state)).await.unwrap();
            let names = listed(&pool, &ks).await;
            if exists {
                assert!(names.contains(&"idle".to_owned()), "keys exist but unlisted");
            } else if !names.contains(&"idle".to_owned()) {
                break;
            }
            polls += 1;
            assert!(polls < 200, "still listed 10 s after its keys expired");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The forced breaker stays, though its rules would have expired it by now.
        assert_eq!(listed(&pool, &ks).await, ["forced"]);
        // Used again, the breaker is recorded again (its handle's lifetime passed).
        use_once(&idle).await;
        assert_eq!(listed(&pool, &ks).await, ["forced", "idle"]);
    }
}

redis_test! {
    async fn concurrent_handles_list_exactly_their_breakers(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let mut tasks = Vec::new();
        for t in 0..10 {
            let (pool, ks) = (pool.clone(), ks.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..8 {
                    let name = if i < 3 { format!("shared-{i}") } else { format!("own-{t}-{i}") };
                    let breaker = CircuitBreaker::builder(&pool, &ks, &name).build().unwrap();
                    use_once(&breaker).await;
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let mut expected = BTreeSet::new();
        for t in 0..10 {
            for i in 0..8 {
                expected.insert(if i < 3 { format!("shared-{i}") } else { format!("own-{t}-{i}") });
            }
        }
        let names: BTreeSet<String> = listed(&pool, &ks).await.into_iter().collect();
        assert_eq!(names, expected);
    }
}
