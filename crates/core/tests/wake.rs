//! `coordkit_core::wake`: messages and reconnections bump the counter; the fallback polls.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coordkit_core::{events, wake};
use coordkit_testkit::redis_test;
use tokio::sync::watch;

/// A guard that only catches hangs.
const WAIT: Duration = Duration::from_secs(15);

async fn changed(rx: &mut watch::Receiver<u64>) -> u64 {
    tokio::time::timeout(WAIT, rx.changed())
        .await
        .expect("the counter never changed")
        .expect("the loop ended");
    *rx.borrow_and_update()
}

/// A wake loop on a fresh channel: the pool, the channel, the counter, how many times
/// `on_message` ran, and the loop's task. The subscription must not end during a test.
async fn start(
    redis: &coordkit_testkit::TestRedis,
) -> (
    coordkit_core::Pool,
    String,
    watch::Receiver<u64>,
    Arc<AtomicU64>,
    tokio::task::JoinHandle<()>,
) {
    let pool = redis.pool().await;
    let channel = redis.keyspace().channel("test", "wake").unwrap();
    let subscriber = pool
        .subscriber()
        .channel(&channel)
        .subscribe::<serde_json::Value>()
        .await
        .unwrap();
    let (tx, rx) = watch::channel(0u64);
    let messages = Arc::new(AtomicU64::new(0));
    let m = messages.clone();
    let task = tokio::spawn(wake::run(
        subscriber,
        tx,
        Duration::from_secs(3600),
        move || {
            m.fetch_add(1, Ordering::Relaxed);
        },
        || panic!("the subscription ended"),
    ));
    (pool, channel, rx, messages, task)
}

redis_test! {
    async fn a_message_bumps_the_counter_and_calls_on_message(redis) {
        let (pool, channel, mut rx, messages, task) = start(&redis).await;
        assert_eq!(*rx.borrow_and_update(), 0, "nothing happened yet");
        for round in 1..=3u64 {
            // (On a cluster PUBLISH counts only the node's own subscribers: not asserted.)
            events::publish(&pool, &channel, "wake", "test", "", &round).await.unwrap();
            let generation = changed(&mut rx).await;
            assert!(generation >= round, "generation {generation} after {round} messages");
            // Messages waiting together count once: never more calls than messages.
            let calls = messages.load(Ordering::Relaxed);
            assert!((1..=round).contains(&calls), "{calls} calls after {round} messages");
        }
        task.abort();
    }
}

redis_test! {
    async fn a_reconnection_bumps_the_counter_without_a_message(redis) {
        let (_pool, _channel, mut rx, messages, task) = start(&redis).await;
        let killed: Vec<i64> = redis.on_every_server(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        assert!(killed.iter().sum::<i64>() >= 1, "no subscriber connection was killed");
        // Nothing is published: only the resubscription can change the counter.
        assert!(changed(&mut rx).await >= 1);
        assert_eq!(messages.load(Ordering::Relaxed), 0, "no message was sent");
        task.abort();
    }
}

#[tokio::test]
async fn poll_bumps_at_once_and_then_on_every_tick() {
    let (tx, mut rx) = watch::channel(0u64);
    let task = tokio::spawn(async move { wake::poll(&tx, Duration::from_millis(5)).await });
    let mut last = 0;
    for _ in 0..3 {
        let generation = changed(&mut rx).await;
        assert!(generation > last, "the counter only grows");
        last = generation;
    }
    task.abort();
}
