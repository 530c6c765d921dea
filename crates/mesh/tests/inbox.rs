//! Durable inboxes: sends wait for offline receivers, each message is delivered at least once
//! until acknowledged (redelivered after the visibility timeout or on a restart), the count
//! and age caps and a message's own expiry hold, bad input is refused with nothing written.

mod common;

use std::time::Duration;

use coordkit_core::{Clock, Error, Keyspace, ManualClock, Pool, redis};
use coordkit_mesh::{AgentError, MeshAgent, SendOptions, Sent};
use coordkit_testkit::{TestRedis, Topology, redis_test};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Note {
    n: u32,
}

/// A guard against hangs only: every wait here ends on a wake-up long before it.
const GUARD: Duration = Duration::from_secs(20);

redis_test! {
    async fn a_message_sent_while_offline_waits_and_is_acked_once(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let alice = MeshAgent::builder(&pool, &ks, "alice").build().unwrap();
        for n in 0..3 {
            let sent = alice.send("bob", &Note { n }).await.unwrap();
            assert!(matches!(sent, Sent::Stored { trimmed: 0, .. }), "{sent:?}");
        }
        // Bob comes online later.
        let bob = MeshAgent::builder(&pool, &ks, "bob").build().unwrap();
        let got = bob.receive::<Note>(10).await.unwrap();
        let ns: Vec<u32> = got.iter().map(|d| d.payload.n).collect();
        assert_eq!(ns, [0, 1, 2], "in send order");
        assert!(got.iter().all(|d| d.from == "alice" && d.attempt == 1));
        let stats = bob.inbox_stats().await.unwrap();
        assert_eq!((stats.waiting_messages, stats.pending), (0, 3));
        for d in &got {
            assert!(d.ack().await.unwrap());
        }
        assert!(!got[0].ack().await.unwrap(), "a second ack finds nothing pending");
        let stats = bob.inbox_stats().await.unwrap();
        assert_eq!((stats.pending, stats.sent, stats.delivered, stats.acked), (0, 3, 3, 3));
        assert!(bob.receive::<Note>(10).await.unwrap().is_empty());
        assert_eq!(bob.stats().acked, 3);
        assert_eq!(alice.stats().sent, 3);
    }
}

/// Bob, whose waits end only by a wake-up or a look again (his fallback timer is an hour),
/// and alice, who sends to him.
fn patient_bob_and_alice(pool: &Pool, ks: &Keyspace) -> (MeshAgent, MeshAgent) {
    let bob = MeshAgent::builder(pool, ks, "bob")
        .fallback_wake(Duration::from_secs(3600))
        .build()
        .unwrap();
    let alice = MeshAgent::builder(pool, ks, "alice").build().unwrap();
    (bob, alice)
}

redis_test! {
    async fn recv_waits_for_a_wake_up(redis) {
        let pool = redis.pool().await;
        let (bob, alice) = patient_bob_and_alice(&pool, &redis.keyspace());
        let waiting = tokio::spawn({
            let bob = bob.clone();
            async move { bob.recv::<Note>().await }
        });
        // Let the receiver subscribe and find the inbox empty.
        while bob.inbox_stats().await.unwrap().delivered == 0
            && !waiting.is_finished()
            && !common::subscribed(&redis, bob.wake_channel())
        {
            tokio::task::yield_now().await;
        }
        alice.send("bob", &Note { n: 7 }).await.unwrap();
        // With a fallback of an hour, only the wake-up can end the wait.
        let got = tokio::time::timeout(GUARD, waiting).await.unwrap().unwrap().unwrap();
        assert_eq!(got.payload, Note { n: 7 });
        got.ack().await.unwrap();
    }
}

redis_test! {
    async fn unacked_deliveries_come_back_after_the_visibility_timeout_and_on_restart(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let clock = ManualClock::new(1_000_000);
        let build = || {
            MeshAgent::builder(&pool, &ks, "bob")
                .clock(Clock::Manual(clock.clone()))
                .visibility_timeout(Duration::from_secs(30))
                .build()
                .unwrap()
        };
        let bob = build();
        bob.send("bob", &Note { n: 1 }).await.unwrap();
        let first = bob.receive::<Note>(1).await.unwrap();
        assert_eq!(first.len(), 1);
        assert!(bob.receive::<Note>(1).await.unwrap().is_empty(), "invisible while pending");
        clock.advance(Duration::from_secs(31));
        let again = bob.receive::<Note>(1).await.unwrap();
        assert_eq!(again.len(), 1, "redelivered after the visibility timeout");
        assert_eq!((again[0].id.as_str(), again[0].attempt), (first[0].id.as_str(), 2));
        // A restart (a new handle) takes back what the last run left pending, at once.
        let restarted = build();
        let back = restarted.receive::<Note>(1).await.unwrap();
        assert_eq!((back.len(), back[0].attempt), (1, 3));
        back[0].ack().await.unwrap();
        assert!(restarted.receive::<Note>(5).await.unwrap().is_empty());
    }
}

redis_test! {
    async fn count_and_age_caps_and_own_expiry_drop_the_oldest(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let clock = ManualClock::new(1_000_000);
        let agent = |name: &str| {
            MeshAgent::builder(&pool, &ks, name)
                .clock(Clock::Manual(clock.clone()))
                .max_messages(3)
                .max_age(Duration::from_secs(60))
                .build()
                .unwrap()
        };
        let (alice, bob) = (agent("alice"), agent("bob"));
        for n in 0..5 {
            alice.send("bob", &Note { n }).await.unwrap();
        }
        let stats = bob.inbox_stats().await.unwrap();
        assert_eq!((stats.waiting_messages, stats.trimmed), (3, 2));
        // One with an expiry of its own, then time passes beyond it.
        alice
            .send_with("bob", &Note { n: 9 }, SendOptions::default().expiry(Duration::from_secs(5)))
            .await
            .unwrap();
        clock.advance(Duration::from_secs(10));
        let got = bob.receive::<Note>(10).await.unwrap();
        let ns: Vec<u32> = got.iter().map(|d| d.payload.n).collect();
        assert_eq!(ns, [3, 4], "2 was trimmed by the cap of 3 for the 9, and 9 expired");
        assert_eq!(bob.stats().expired, 1);
        for d in &got {
            d.ack().await.unwrap();
        }
        // The age cap: sent now, older than 60 s when received.
        alice.send("bob", &Note { n: 10 }).await.unwrap();
        clock.advance(Duration::from_secs(61));
        assert!(bob.receive::<Note>(10).await.unwrap().is_empty());
        let stats = bob.inbox_stats().await.unwrap();
        assert_eq!((stats.expired, stats.trimmed, stats.waiting_messages), (2, 3, 0));
        assert_eq!(stats.oldest_age, None);
    }
}

redis_test! {
    async fn stats_tell_depth_pending_oldest_age_and_presence(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let clock = ManualClock::new(5_000_000);
        let bob = MeshAgent::builder(&pool, &ks, "bob")
            .clock(Clock::Manual(clock.clone()))
            .presence_ttl(Duration::from_secs(10))
            .build()
            .unwrap();
        bob.send("bob", &Note { n: 1 }).await.unwrap();
        clock.advance(Duration::from_millis(1_500));
        bob.send("bob", &Note { n: 2 }).await.unwrap();
        bob.heartbeat().await.unwrap();
        clock.advance(Duration::from_millis(500));
        let s = bob.inbox_stats().await.unwrap();
        assert_eq!(s.waiting_messages, 2);
        assert_eq!(s.oldest_age, Some(Duration::from_millis(2_000)));
        assert_eq!(s.alive_for, Some(Duration::from_millis(9_500)));
        bob.receive::<Note>(1).await.unwrap();
        let s = bob.inbox_stats().await.unwrap();
        assert_eq!((s.waiting_messages, s.pending), (1, 1));
        assert_eq!(s.oldest_age, Some(Duration::from_millis(500)));
        clock.advance(Duration::from_secs(10));
        assert_eq!(bob.inbox_stats().await.unwrap().alive_for, None);
        bob.heartbeat().await.unwrap();
        bob.leave().await.unwrap();
        assert_eq!(bob.inbox_stats().await.unwrap().alive_for, None);
    }
}

redis_test! {
    async fn only_if_alive_writes_nothing_for_an_absent_receiver(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let alice = MeshAgent::builder(&pool, &ks, "alice").build().unwrap();
        let bob = MeshAgent::builder(&pool, &ks, "bob").build().unwrap();
        let opts = SendOptions::default().only_if_alive(true);
        assert_eq!(alice.send_with("bob", &Note { n: 1 }, opts.clone()).await.unwrap(), Sent::NoReceiver);
        assert_eq!(bob.inbox_stats().await.unwrap().sent, 0);
        bob.heartbeat().await.unwrap();
        assert!(matches!(alice.send_with("bob", &Note { n: 1 }, opts).await.unwrap(), Sent::Stored { .. }));
    }
}

redis_test! {
    async fn bad_input_is_refused_with_nothing_written(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let alice = MeshAgent::builder(&pool, &ks, "alice")
            .max_payload_bytes(64)
            .build()
            .unwrap();
        let big = "x".repeat(100);
        match alice.send("bob", &big).await {
            Err(AgentError::PayloadTooLarge { len: 102, max: 64 }) => {}
            other => panic!("expected PayloadTooLarge, got {other:?}"),
        }
        for bad in ["", "a b", "a{b}", &"x".repeat(201)] {
            match alice.send(bad, &1).await {
                Err(AgentError::Core(Error::InvalidName { .. })) => {}
                other => panic!("{bad:?}: expected InvalidName, got {other:?}"),
            }
            assert!(matches!(
                MeshAgent::builder(&pool, &ks, bad).build(),
                Err(AgentError::Core(Error::InvalidName { .. }))
            ));
        }
        let bob = MeshAgent::builder(&pool, &ks, "bob").build().unwrap();
        assert_eq!(bob.inbox_stats().await.unwrap().sent, 0);
        let config = |b: coordkit_mesh::MeshAgentBuilder| match b.build() {
            Err(AgentError::Core(Error::InvalidConfig { field, .. })) => field,
            other => panic!("expected InvalidConfig, got {other:?}"),
        };
        let b = || MeshAgent::builder(&pool, &ks, "carol");
        assert_eq!(config(b().max_messages(0)), "max_messages");
        assert_eq!(config(b().max_age(Duration::from_secs(1 << 40))), "max_age");
        assert_eq!(config(b().presence_ttl(Duration::ZERO)), "presence_ttl");
        assert_eq!(config(b().visibility_timeout(Duration::ZERO)), "visibility_timeout");
        assert_eq!(config(b().max_payload_bytes(0)), "max_payload_bytes");
        assert_eq!(config(b().fallback_wake(Duration::ZERO)), "fallback_wake");
        assert!(matches!(
            bob.receive::<Note>(0).await,
            Err(AgentError::Core(Error::InvalidConfig { field: "max", .. }))
        ));
        let debug = format!("{bob:?}");
        assert!(debug.contains("bob") && debug.contains("{inbox:bob}:msgs"), "{debug}");
    }
}

redis_test! {
    async fn an_undecodable_payload_is_dead_lettered_not_a_crash(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let alice = MeshAgent::builder(&pool, &ks, "alice").build().unwrap();
        let bob = MeshAgent::builder(&pool, &ks, "bob").build().unwrap();
        alice.send("bob", &"not a note").await.unwrap();
        alice.send("bob", &Note { n: 2 }).await.unwrap();
        let got = bob.receive::<Note>(10).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].payload.n, 2);
        assert_eq!(bob.stats().undecodable, 1);
        let s = bob.inbox_stats().await.unwrap();
        assert_eq!((s.dead, s.dead_letters, s.pending), (1, 1, 1));
        let dead: Vec<Vec<u8>> = pool
            .query(redis::cmd("LRANGE").arg(&bob.keys()[9]).arg(0).arg(-1))
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&dead[0]);
        assert!(text.contains("undecodable") && text.contains("Note"), "{text}");
    }
}

redis_test! {
    async fn a_message_sent_while_the_receiver_reconnects_is_delivered(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let receiver_pool = redis.pool().await;
        let bob = MeshAgent::builder(&receiver_pool, &ks, "bob")
            .fallback_wake(Duration::from_secs(3600))
            .build()
            .unwrap();
        let alice = MeshAgent::builder(&pool, &ks, "alice").build().unwrap();
        // Bob waits (subscribed, inbox empty).
        bob.send("bob", &Note { n: 0 }).await.unwrap();
        bob.recv::<Note>().await.unwrap().ack().await.unwrap();
        let waiting = tokio::spawn({
            let bob = bob.clone();
            async move { bob.recv::<Note>().await }
        });
        // Every connection of every client dies, the wake-up subscription included; the send
        // may publish its wake-up to nobody.
        let _: Vec<u64> = redis.on_every_server(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        let _: Vec<u64> = redis.on_every_server(&["CLIENT", "KILL", "TYPE", "normal"]);
        let sent = loop {
            match alice.send("bob", &Note { n: 1 }).await {
                Ok(sent) => break sent,
                Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(e) => panic!("{e}"),
            }
        };
        assert!(matches!(sent, Sent::Stored { .. }));
        // With a fallback of an hour, the resubscription's wake-up is what finds it.
        let got = tokio::time::timeout(GUARD, waiting).await.unwrap().unwrap().unwrap();
        assert_eq!(got.payload, Note { n: 1 });
    }
}

redis_test! {
    async fn recv_goes_past_an_undecodable_message_without_waiting(redis) {
        let pool = redis.pool().await;
        let (bob, alice) = patient_bob_and_alice(&pool, &redis.keyspace());
        alice.send("bob", &"not a note").await.unwrap();
        alice.send("bob", &Note { n: 2 }).await.unwrap();
        // Both were sent before bob listened: no wake-up comes, and with a fallback of an hour
        // only looking again at once, after the first was dead-lettered, finds the second.
        let got = tokio::time::timeout(GUARD, bob.recv::<Note>()).await.unwrap().unwrap();
        assert_eq!(got.payload, Note { n: 2 });
        assert_eq!(bob.stats().undecodable, 1);
        got.ack().await.unwrap();
    }
}

/// Deliveries acked one by one from tasks of their own share script calls: each ack still
/// answers for its own delivery (pending the first time, not the second), and every one is
/// applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_acks_of_single_deliveries_share_calls() {
    const N: u32 = 40;
    for topology in [Topology::Standalone, Topology::Cluster] {
        let redis = TestRedis::start(topology);
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let alice = MeshAgent::builder(&pool, &ks, "alice").build().unwrap();
        let bob = MeshAgent::builder(&pool, &ks, "bob").build().unwrap();
        for n in 0..N {
            alice.send("bob", &Note { n }).await.unwrap();
        }
        let deliveries = std::sync::Arc::new(bob.receive::<Note>(N as usize).await.unwrap());
        assert_eq!(deliveries.len(), N as usize);
        for (round, expected) in [(0, true), (1, false)] {
            redis.reset_stats();
            let acks: Vec<_> = (0..deliveries.len())
                .map(|i| {
                    let deliveries = deliveries.clone();
                    tokio::spawn(async move { deliveries[i].ack().await.unwrap() })
                })
                .collect();
            for ack in acks {
                assert_eq!(ack.await.unwrap(), expected, "{topology:?} round {round}");
            }
            let calls = common::commands(&redis)
                .into_iter()
                .find(|(c, _)| c == "evalsha")
                .map_or(0, |(_, n)| n);
            assert!(
                (1..u64::from(N) / 2).contains(&calls),
                "{topology:?} round {round}: {calls} ack calls for {N} acks"
            );
        }
        let stats = bob.inbox_stats().await.unwrap();
        assert_eq!(
            (stats.pending, stats.acked),
            (0, u64::from(N)),
            "{topology:?}"
        );
        assert_eq!(bob.stats().acked, u64::from(N));
    }
}
