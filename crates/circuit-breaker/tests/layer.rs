//! The tower layer (feature `tower`) against real servers: a tripped breaker keeps requests
//! away from the inner service, and the classifier decides what counts as a failure.
#![cfg(feature = "tower")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use coordkit_circuit_breaker::{
    BreakerConfig, CallError, CircuitBreaker, CircuitBreakerLayer, Outcome, State, Window,
};
use coordkit_testkit::{TestRedis, redis_test};
use tower::{Layer, Service, ServiceExt};

/// A service that answers its request back, failing with "down" or "missing" when asked to,
/// and counts the requests that reached it.
fn echo(
    reached: Arc<AtomicUsize>,
) -> impl Service<&'static str, Response = &'static str, Error = &'static str, Future: Send>
+ Clone
+ Send
+ 'static {
    tower::service_fn(move |request: &'static str| {
        reached.fetch_add(1, Ordering::SeqCst);
        async move {
            match request {
                "down" | "missing" => Err(request),
                ok => Ok(ok),
            }
        }
    })
}

async fn breaker(redis: &TestRedis, name: &str) -> CircuitBreaker {
    let config = BreakerConfig::builder()
        .window(Window::Count(10))
        .minimum_calls(4)
        .failure_rate(0.5)
        .build()
        .unwrap();
    CircuitBreaker::builder(&redis.pool().await, &redis.keyspace(), name)
        .config(config)
        .build()
        .unwrap()
}

redis_test! {
    async fn a_tripped_layer_keeps_requests_from_the_service(redis) {
        let reached = Arc::new(AtomicUsize::new(0));
        let breaker = breaker(&redis, "layer-trips").await;
        let mut service = CircuitBreakerLayer::new(breaker.clone()).layer(echo(reached.clone()));
        assert_eq!(service.ready().await.unwrap().call("hello").await.unwrap(), "hello");
        for _ in 0..3 {
            match service.ready().await.unwrap().call("down").await {
                Err(CallError::Failed("down")) => {}
                other => panic!("expected the service's failure, got {other:?}"),
            }
        }
        // 3 of 4 calls failed (the minimum): once their reports are in (with the next acquire
        // or, after ~2 ms, the flusher), the breaker is open and the service is not called.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        while breaker.snapshot().await.unwrap().state != State::Open {
            assert!(tokio::time::Instant::now() < deadline, "never opened");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        match service.ready().await.unwrap().call("hello").await {
            Err(CallError::Rejected(rejection)) => assert_eq!(rejection.state, State::Open),
            other => panic!("expected a rejection, got {other:?}"),
        }
        assert_eq!(reached.load(Ordering::SeqCst), 4, "a rejected request reached the service");
    }
}

redis_test! {
    async fn the_layer_records_what_the_classifier_says(redis) {
        let reached = Arc::new(AtomicUsize::new(0));
        let breaker = breaker(&redis, "layer-classifies").await;
        // "missing" is an answer, not a fault of the downstream: it counts as a success.
        let layer = CircuitBreakerLayer::new(breaker.clone()).classify_with(
            |result: &Result<&'static str, &'static str>| match result {
                Ok(_) | Err("missing") => Outcome::Success,
                Err(_) => Outcome::Failure,
            },
        );
        let mut service = layer.layer(echo(reached.clone()));
        for _ in 0..6 {
            match service.ready().await.unwrap().call("missing").await {
                Err(CallError::Failed("missing")) => {}
                other => panic!("expected the service's error, got {other:?}"),
            }
        }
        assert_eq!(service.ready().await.unwrap().call("hello").await.unwrap(), "hello");
        assert_eq!(reached.load(Ordering::SeqCst), 7);
        let snapshot = breaker.snapshot().await.unwrap();
        assert_eq!(snapshot.state, State::Closed);
        assert_eq!(snapshot.failures, 0, "{snapshot:?}");
    }
}
