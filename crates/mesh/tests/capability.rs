//! Capability routing: a dispatched message goes to exactly one member at a time and to
//! another when its holder dies before acking; an ask to a capability is answered by a live
//! member, or by "no responders" in the request's own round trip when none is alive (members
//! leave, or their heartbeats run out); broadcast reaches every live member's own inbox; the
//! members key of another type is an error naming it, nothing written.

use std::collections::BTreeSet;
use std::time::Duration;

use coordkit_core::{Clock, Error, ManualClock, redis};
use coordkit_mesh::{AgentError, MeshAgent, Reply, SendOptions, Sent};
use coordkit_testkit::garbage::overwrite_with_type;
use coordkit_testkit::{TestRedis, Topology, redis_test};

mod common;
use common::commands;

const LONG: Duration = Duration::from_secs(30);

redis_test! {
    async fn a_dispatched_message_goes_to_exactly_one_member(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let boss = MeshAgent::builder(&pool, &ks, "boss").build().unwrap();
        let members: Vec<MeshAgent> = (0..2)
            .map(|i| MeshAgent::builder(&pool, &ks, &format!("w{i}")).build().unwrap())
            .collect();
        for m in &members {
            m.join("render").await.unwrap();
        }
        assert_eq!(boss.capability_stats("render").await.unwrap().live_members, 2);
        for n in 0..20u32 {
            boss.dispatch("render", &n, SendOptions::default()).await.unwrap();
        }
        let mut seen = BTreeSet::new();
        let mut turn = 0;
        while seen.len() < 20 {
            let m = &members[turn % 2];
            turn += 1;
            for d in m.receive_dispatched::<u32>("render", 3).await.unwrap() {
                assert!(seen.insert(d.payload), "{} delivered twice", d.payload);
                assert!(d.ack().await.unwrap());
            }
            assert!(turn < 100, "the deliveries stopped at {}", seen.len());
        }
        let stats = boss.capability_stats("render").await.unwrap().inbox;
        assert_eq!((stats.waiting_messages, stats.pending, stats.acked), (0, 0, 20));
        // With no live member, only_if_alive stores nothing.
        for m in &members {
            m.leave_capability("render").await.unwrap();
        }
        let sent = boss
            .dispatch("render", &99u32, SendOptions::default().only_if_alive(true))
            .await
            .unwrap();
        assert_eq!(sent, Sent::NoReceiver);
    }
}

redis_test! {
    async fn a_member_that_dies_before_acking_loses_the_message_to_another(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let clock = ManualClock::new(1_000_000);
        let agent = |name: &str| {
            MeshAgent::builder(&pool, &ks, name)
                .clock(Clock::Manual(clock.clone()))
                .visibility_timeout(Duration::from_secs(5))
                .build()
                .unwrap()
        };
        let (boss, w0, w1) = (agent("boss"), agent("w0"), agent("w1"));
        boss.dispatch("render", &7u32, SendOptions::default()).await.unwrap();
        let held = w0.receive_dispatched::<u32>("render", 1).await.unwrap();
        assert_eq!(held.len(), 1);
        // A new handle of another member does not take it back while w0 may still work on it.
        assert!(w1.receive_dispatched::<u32>("render", 1).await.unwrap().is_empty());
        // w0 dies (never acks); after the visibility timeout w1 gets it.
        drop(held);
        clock.advance(Duration::from_secs(6));
        let got = w1.receive_dispatched::<u32>("render", 1).await.unwrap();
        assert_eq!((got[0].payload, got[0].attempt), (7, 2));
        assert!(got[0].ack().await.unwrap());
    }
}

redis_test! {
    async fn an_ask_to_a_capability_is_answered_by_a_live_member(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let asker = MeshAgent::builder(&pool, &ks, "asker").build().unwrap();
        let reply: Reply<String> = asker.ask_capability("translate", &"hi", LONG).await.unwrap();
        assert_eq!(reply, Reply::NoResponders);
        let mut servers = Vec::new();
        for i in 0..2 {
            let name = format!("t{i}");
            let member = MeshAgent::builder(&pool, &ks, &name).build().unwrap();
            servers.push(
                member
                    .serve_capability("translate", move |word: String| {
                        let name = name.clone();
                        async move { Ok::<_, String>(format!("{word}@{name}")) }
                    })
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(asker.members("translate").await.unwrap(), ["t0", "t1"]);
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..40 {
            let asker = asker.clone();
            tasks.spawn(async move {
                let reply: Reply<String> =
                    asker.ask_capability("translate", &format!("w{n}"), LONG).await.unwrap();
                (n, reply)
            });
        }
        while let Some(r) = tasks.join_next().await {
            let (n, reply) = r.unwrap();
            let text = reply.answer().expect("an answer");
            assert!(
                text == format!("w{n}@t0") || text == format!("w{n}@t1"),
                "{n}: {text}"
            );
        }
        let served = common::served(&servers.iter().collect::<Vec<_>>(), 40).await;
        assert_eq!(served, 40);
        for s in servers {
            s.shutdown().await;
        }
        assert_eq!(asker.capability_stats("translate").await.unwrap().live_members, 0);
        let reply: Reply<String> = asker.ask_capability("translate", &"hi", LONG).await.unwrap();
        assert_eq!(reply, Reply::NoResponders);
    }
}

redis_test! {
    async fn members_whose_heartbeats_ran_out_do_not_count(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let clock = ManualClock::new(1_000_000);
        let agent = |name: &str| {
            MeshAgent::builder(&pool, &ks, name)
                .clock(Clock::Manual(clock.clone()))
                .presence_ttl(Duration::from_secs(10))
                .build()
                .unwrap()
        };
        let (asker, w0) = (agent("asker"), agent("w0"));
        w0.join("render").await.unwrap();
        clock.advance(Duration::from_secs(11));
        assert_eq!(asker.capability_stats("render").await.unwrap().live_members, 0);
        assert!(asker.members("render").await.unwrap().is_empty());
        let reply: Reply<u32> = asker.ask_capability("render", &1, LONG).await.unwrap();
        assert_eq!(reply, Reply::NoResponders);
        w0.join("render").await.unwrap();
        assert_eq!(asker.members("render").await.unwrap(), ["w0"]);
    }
}

redis_test! {
    async fn broadcast_reaches_every_live_member(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let boss = MeshAgent::builder(&pool, &ks, "boss").build().unwrap();
        let members: Vec<MeshAgent> = (0..3)
            .map(|i| MeshAgent::builder(&pool, &ks, &format!("w{i}")).build().unwrap())
            .collect();
        for m in &members[..2] {
            m.join("ops").await.unwrap();
        }
        let sent = boss.broadcast("ops", &"reload").await.unwrap();
        let to: Vec<&str> = sent.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(to, ["w0", "w1"]);
        for m in &members[..2] {
            let got = m.receive::<String>(5).await.unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].payload, "reload");
        }
        assert!(members[2].receive::<String>(5).await.unwrap().is_empty(), "not a member");
    }
}

redis_test! {
    async fn a_members_key_of_another_type_is_named_and_nothing_is_written(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let asker = MeshAgent::builder(&pool, &ks, "asker").build().unwrap();
        let w0 = MeshAgent::builder(&pool, &ks, "w0").build().unwrap();
        w0.join("render").await.unwrap();
        let members = ks.instance("cap", "render").unwrap().key("alive");
        overwrite_with_type(&pool, &members, "string").await;
        let named = |r: Result<Reply<u32>, AgentError>| match r {
            Err(AgentError::Core(Error::WrongType { key, .. })) => assert_eq!(key, members.as_str()),
            other => panic!("expected WrongType naming the members, got {other:?}"),
        };
        named(asker.ask_capability("render", &1, LONG).await);
        match w0.join("render").await {
            Err(AgentError::Core(Error::WrongType { key, .. })) => assert_eq!(key, members.as_str()),
            other => panic!("expected WrongType, got {other:?}"),
        }
        let stats = asker.capability_stats("render").await;
        assert!(stats.is_err());
        let seq: Option<u64> = pool
            .query(redis::cmd("HGET").arg(ks.instance("cap", "render").unwrap().key("meta")).arg("seq"))
            .await
            .unwrap();
        assert_eq!(seq, None, "nothing stored");
        let _: () = pool.query(redis::cmd("DEL").arg(&members)).await.unwrap();
        w0.join("render").await.unwrap();
        assert_eq!(asker.capability_stats("render").await.unwrap().live_members, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_responders_of_a_capability_is_one_round_trip() {
    for topology in [Topology::Standalone, Topology::Cluster] {
        let redis = TestRedis::start(topology);
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let asker = MeshAgent::builder(&pool, &ks, "asker").build().unwrap();
        let _: Reply<u32> = asker.ask_capability("nobody", &1, LONG).await.unwrap();
        redis.reset_stats();
        let reply: Reply<u32> = asker.ask_capability("nobody", &2, LONG).await.unwrap();
        assert_eq!(reply, Reply::NoResponders);
        let expected = [("evalsha", 1), ("time", 1), ("zcount", 1)].map(|(c, n)| (c.to_owned(), n));
        assert_eq!(commands(&redis), expected, "{topology:?}");
    }
}

redis_test! {
    async fn requests_held_by_a_member_that_dies_are_answered_by_another(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let member = |name: &str| {
            MeshAgent::builder(&pool, &ks, name)
                .visibility_timeout(Duration::from_millis(300))
                .build()
                .unwrap()
        };
        let (stuck, healthy) = (member("stuck"), member("healthy"));
        let took = std::sync::Arc::new(tokio::sync::Notify::new());
        // The stuck member takes requests and never answers: a process that hangs, then dies.
        let stuck_server = stuck
            .serve_capability("solve", {
                let took = took.clone();
                move |_: u32| {
                    let took = took.clone();
                    async move {
                        took.notify_one();
                        std::future::pending::<Result<u32, String>>().await
                    }
                }
            })
            .await
            .unwrap();
        let asker = MeshAgent::builder(&pool, &ks, "asker").build().unwrap();
        let mut asks = tokio::task::JoinSet::new();
        for n in 0..20u32 {
            let asker = asker.clone();
            asks.spawn(async move {
                let reply: Reply<u32> = asker.ask_capability("solve", &n, LONG).await.unwrap();
                (n, reply)
            });
        }
        tokio::time::timeout(LONG, took.notified()).await.unwrap();
        drop(stuck_server);
        let healthy_server = healthy
            .serve_capability("solve", |n: u32| async move { Ok::<_, String>(n * 10) })
            .await
            .unwrap();
        while let Some(r) = asks.join_next().await {
            let (n, reply) = r.unwrap();
            assert_eq!(reply, Reply::Answer(n * 10), "request {n}");
        }
        assert_eq!(common::served(&[&healthy_server], 20).await, 20);
        // The stuck handlers died with their server: nothing holds `took` but this test.
        assert_eq!(std::sync::Arc::strong_count(&took), 1);
        healthy_server.shutdown().await;
        let stats = asker.capability_stats("solve").await.unwrap().inbox;
        assert_eq!((stats.waiting_requests, stats.pending), (0, 0));
    }
}

redis_test! {
    async fn asks_go_through_the_lane_to_members_that_do_not_serve(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let solver = MeshAgent::builder(&pool, &ks, "solver").build().unwrap();
        let server = solver
            .serve_capability("solve", |n: u32| async move { Ok::<_, String>(n + 1) })
            .await
            .unwrap();
        // A member that joined without serving: requests whose turn is its own are not
        // pushed to it (nobody would answer them before their visibility ran out) but wait in
        // the lane, where the server takes them.
        let idle = MeshAgent::builder(&pool, &ks, "idle").build().unwrap();
        idle.join("solve").await.unwrap();
        assert_eq!(idle.members("solve").await.unwrap().len(), 2);
        let asker = MeshAgent::builder(&pool, &ks, "asker").build().unwrap();
        for n in 0..10u32 {
            let reply: Reply<u32> = asker
                .ask_capability("solve", &n, Duration::from_secs(10))
                .await
                .unwrap();
            assert_eq!(reply, Reply::Answer(n + 1), "request {n}");
        }
        assert_eq!(common::served(&[&server], 10).await, 10);
        server.shutdown().await;
    }
}
