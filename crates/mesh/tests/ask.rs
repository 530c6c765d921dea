//! Request/reply: each outcome of `ask` (an answer, the responder's error, a timeout, no
//! responders), "no responders" in one round trip, a reply that survives the asker's
//! connection being killed while it waits, late replies dropped and counted, and many askers
//! and responders at once each getting exactly their own replies; on a cluster, every inbox
//! publishes on its own shard.

use std::sync::Arc;
use std::time::Duration;

use coordkit_mesh::{MeshAgent, Reply};
use coordkit_testkit::{TestRedis, Topology, redis_test};

mod common;
use common::commands;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Question {
    asker: String,
    n: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Answer {
    asker: String,
    n: u32,
    by: String,
}

/// A guard against hangs only.
const GUARD: Duration = Duration::from_secs(60);
const LONG: Duration = Duration::from_secs(30);

redis_test! {
    async fn an_ask_gets_the_answer_or_the_responders_error(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let calc = MeshAgent::builder(&pool, &ks, "calc").build().unwrap();
        let server = calc
            .serve(|q: Question| async move {
                if q.n == 0 {
                    return Err(format!("cannot answer {}", q.n));
                }
                assert_ne!(q.n, 13, "the handler panics on 13");
                Ok(Answer { asker: q.asker, n: q.n * 2, by: "calc".into() })
            })
            .await
            .unwrap();
        let alice = MeshAgent::builder(&pool, &ks, "alice").build().unwrap();
        let q = |n| Question { asker: "alice".into(), n };
        let reply: Reply<Answer> = alice.ask("calc", &q(21), LONG).await.unwrap();
        assert_eq!(reply, Reply::Answer(Answer { asker: "alice".into(), n: 42, by: "calc".into() }));
        let reply: Reply<Answer> = alice.ask("calc", &q(0), LONG).await.unwrap();
        assert_eq!(reply, Reply::Failed("cannot answer 0".into()));
        // A request that does not decode as the responder's type: its error, not a crash.
        let reply: Reply<Answer> = alice.ask("calc", &"nonsense", LONG).await.unwrap();
        match reply {
            Reply::Failed(text) => assert!(text.contains("Question"), "{text}"),
            other => panic!("expected Failed, got {other:?}"),
        }
        // A panicking handler answers the responder's error, and the server goes on.
        let reply: Reply<Answer> = alice.ask("calc", &q(13), LONG).await.unwrap();
        assert_eq!(reply, Reply::Failed("the handler panicked".into()));
        let reply: Reply<Answer> = alice.ask("calc", &q(1), LONG).await.unwrap();
        assert!(matches!(reply, Reply::Answer(Answer { n: 2, .. })), "{reply:?}");
        let s = alice.stats();
        assert_eq!((s.replies, s.timeouts, s.no_responders), (5, 0, 0));
        assert_eq!(common::served(&[&server], 5).await, 5);
        server.shutdown().await;
        // Gone: asks answer no responders at once.
        let reply: Reply<Answer> = alice.ask("calc", &q(1), LONG).await.unwrap();
        assert_eq!(reply, Reply::NoResponders);
        // Nothing waits in the requests lane, and every request was acknowledged.
        let stats = calc.inbox_stats().await.unwrap();
        assert_eq!((stats.waiting_requests, stats.pending, stats.acked), (0, 0, 5));
        assert_eq!(common::settled(&alice).await.replies, 0, "every reply forgotten");
    }
}

redis_test! {
    async fn a_live_target_that_does_not_answer_in_time_is_a_timeout_and_its_late_reply_is_dropped(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let slow = MeshAgent::builder(&pool, &ks, "slow").build().unwrap();
        let release = Arc::new(Notify::new());
        let server = slow
            .serve({
                let release = release.clone();
                move |q: Question| {
                    let release = release.clone();
                    async move {
                        release.notified().await;
                        Ok::<_, String>(Answer { asker: q.asker, n: q.n, by: "slow".into() })
                    }
                }
            })
            .await
            .unwrap();
        let alice = MeshAgent::builder(&pool, &ks, "alice").build().unwrap();
        let reply: Reply<Answer> = alice
            .ask("slow", &Question { asker: "alice".into(), n: 1 }, Duration::from_millis(200))
            .await
            .unwrap();
        assert_eq!(reply, Reply::Timeout);
        assert_eq!(alice.stats().timeouts, 1);
        // Now the responder answers, after the deadline: the reply is dropped and counted.
        release.notify_one();
        tokio::time::timeout(GUARD, async {
            while server.served() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        assert_eq!(slow.stats().late_replies, 1);
        let stats = alice.inbox_stats().await.unwrap();
        assert_eq!((stats.late, stats.replies), (1, 0), "dropped, counted, nothing stored");
        tokio::time::timeout(GUARD, server.shutdown()).await.expect("the server did not shut down");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_responders_is_answered_in_the_requests_own_round_trip() {
    for topology in [Topology::Standalone, Topology::Cluster] {
        let redis = TestRedis::start(topology);
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let alice = MeshAgent::builder(&pool, &ks, "alice").build().unwrap();
        let ghost = MeshAgent::builder(&pool, &ks, "ghost").build().unwrap();
        // Warm up: the script is loaded and the asker subscribed to its wake channel.
        let reply: Reply<Answer> = alice.ask("ghost", &1, LONG).await.unwrap();
        assert_eq!(reply, Reply::NoResponders);
        redis.reset_stats();
        let reply: Reply<Answer> = alice.ask("ghost", &2, LONG).await.unwrap();
        assert_eq!(reply, Reply::NoResponders);
        // One command reached the servers: the request's script. Inside it, it read the
        // presence and the clock, and wrote nothing.
        let ran = commands(&redis);
        let expected = [("evalsha", 1), ("get", 1), ("time", 1)].map(|(c, n)| (c.to_owned(), n));
        assert_eq!(ran, expected, "{topology:?}");
        let stats = ghost.inbox_stats().await.unwrap();
        assert_eq!((stats.sent, stats.waiting_requests), (0, 0));
        assert_eq!(alice.stats().no_responders, 2);
    }
}

redis_test! {
    async fn a_reply_survives_the_askers_connections_being_killed_while_it_waits(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let responder = MeshAgent::builder(&pool, &ks, "responder")
            .visibility_timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        let started = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let server = responder
            .serve({
                let (started, release) = (started.clone(), release.clone());
                move |q: Question| {
                    let (started, release) = (started.clone(), release.clone());
                    async move {
                        started.notify_one();
                        release.notified().await;
                        Ok::<_, String>(Answer { asker: q.asker, n: q.n, by: "responder".into() })
                    }
                }
            })
            .await
            .unwrap();
        let asker_pool = redis.pool().await;
        let alice = MeshAgent::builder(&asker_pool, &ks, "alice").build().unwrap();
        let asking = tokio::spawn(async move {
            alice
                .ask::<_, Answer>("responder", &Question { asker: "alice".into(), n: 5 }, LONG)
                .await
        });
        tokio::time::timeout(GUARD, started.notified()).await.unwrap();
        // Every client connection dies: the asker's pool and its wake-up subscription too.
        let killed: Vec<u64> = redis.on_every_server(&["CLIENT", "KILL", "TYPE", "normal"]);
        assert!(killed.iter().sum::<u64>() > 0);
        let killed: Vec<u64> = redis.on_every_server(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        assert!(killed.iter().sum::<u64>() > 0);
        // Answer while the asker is reconnecting (and again on a redelivery, if the first
        // reply could not be written over a killed connection).
        release.notify_waiters();
        let release2 = release.clone();
        let keep_releasing = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                release2.notify_waiters();
            }
        });
        let reply = tokio::time::timeout(GUARD, asking).await.unwrap().unwrap().unwrap();
        assert_eq!(
            reply,
            Reply::Answer(Answer { asker: "alice".into(), n: 5, by: "responder".into() })
        );
        // A redelivered copy of the request may still be in a handler: keep releasing until
        // the server has shut down (shutdown waits for its handlers).
        tokio::time::timeout(GUARD, server.shutdown()).await.expect("the server did not shut down");
        keep_releasing.abort();
    }
}

redis_test! {
    async fn ten_askers_two_responders_every_request_gets_exactly_its_own_reply(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let mut servers = Vec::new();
        for name in ["r0", "r1"] {
            let agent = MeshAgent::builder(&pool, &ks, name).build().unwrap();
            let by = name.to_owned();
            servers.push(
                agent
                    .serve(move |q: Question| {
                        let by = by.clone();
                        async move { Ok::<_, String>(Answer { asker: q.asker, n: q.n, by }) }
                    })
                    .await
                    .unwrap(),
            );
        }
        let mut askers = Vec::new();
        for a in 0..10 {
            let agent = MeshAgent::builder(&pool, &ks, &format!("asker{a}")).build().unwrap();
            askers.push(tokio::spawn(async move {
                let mut tasks = tokio::task::JoinSet::new();
                for n in 0..100u32 {
                    let agent = agent.clone();
                    tasks.spawn(async move {
                        let target = format!("r{}", n % 2);
                        let q = Question { asker: agent.name().to_owned(), n };
                        let reply: Reply<Answer> = agent.ask(&target, &q, LONG).await.unwrap();
                        (q, target, reply)
                    });
                }
                let mut got = Vec::new();
                while let Some(r) = tasks.join_next().await {
                    got.push(r.unwrap());
                }
                (agent, got)
            }));
        }
        let mut total = 0;
        for asker in askers {
            let (agent, got) = tokio::time::timeout(GUARD, asker).await.unwrap().unwrap();
            assert_eq!(got.len(), 100);
            let mut seen = std::collections::BTreeSet::new();
            for (q, target, reply) in got {
                let expected = Answer { asker: q.asker.clone(), n: q.n, by: target };
                assert_eq!(reply, Reply::Answer(expected), "the reply to {q:?}");
                assert!(seen.insert(q.n));
            }
            assert_eq!(agent.stats().replies, 100);
            let stats = common::settled(&agent).await;
            assert_eq!((stats.replies, stats.late), (0, 0), "{}: nothing left over", agent.name());
            total += 100;
        }
        assert_eq!(total, 1000);
        let served = common::served(&servers.iter().collect::<Vec<_>>(), 1000).await;
        assert_eq!(served, 1000, "each request answered once");
        for s in servers {
            s.shutdown().await;
        }
    }
}

/// The calls of `command` each server ran, one number per server.
fn calls_per_server(redis: &TestRedis, command: &str) -> Vec<u64> {
    let prefix = format!("cmdstat_{command}:calls=");
    redis
        .on_every_server::<String>(&["INFO", "commandstats"])
        .iter()
        .map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
        })
        .collect()
}

/// On a cluster, an inbox's wake-ups, pushed requests and pushed replies are published on the
/// shard that holds the inbox (`SPUBLISH`), never broadcast over the whole cluster (`PUBLISH`):
/// with inboxes on every master, every master publishes its own share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_each_inbox_publishes_on_its_own_shard() {
    let redis = TestRedis::start(Topology::Cluster);
    let pool = redis.pool().await;
    let ks = redis.keyspace();
    let alice = MeshAgent::builder(&pool, &ks, "alice").build().unwrap();
    let names: Vec<String> = (0..30).map(|i| format!("agent-{i}")).collect();
    let agents: Vec<MeshAgent> = names
        .iter()
        .map(|n| MeshAgent::builder(&pool, &ks, n).build().unwrap())
        .collect();
    let servers = [
        agents[0]
            .serve(|n: u32| async move { Ok::<_, String>(n) })
            .await
            .unwrap(),
        agents[1]
            .serve(|n: u32| async move { Ok::<_, String>(n) })
            .await
            .unwrap(),
    ];
    redis.reset_stats();
    for name in &names {
        alice.send(name, &7u32).await.unwrap();
    }
    for (i, name) in names.iter().take(2).enumerate() {
        let reply: Reply<u32> = alice.ask(name, &(i as u32), LONG).await.unwrap();
        assert_eq!(reply, Reply::Answer(i as u32));
    }
    let spublish = calls_per_server(&redis, "spublish");
    assert_eq!(
        calls_per_server(&redis, "publish"),
        vec![0; 3],
        "spublish: {spublish:?}"
    );
    assert!(
        spublish.iter().all(|&n| n > 0),
        "every master publishes: {spublish:?}"
    );
    // 30 wake-ups, 2 pushed requests and 2 pushed replies, each published once.
    assert_eq!(spublish.iter().sum::<u64>(), 34, "{spublish:?}");
    for agent in &agents {
        let got = agent.receive::<u32>(10).await.unwrap();
        assert_eq!(got.iter().map(|d| d.payload).collect::<Vec<_>>(), vec![7]);
    }
    for server in servers {
        server.shutdown().await;
    }
}

redis_test! {
    async fn a_shutdown_deadline_abandons_a_stuck_handler_and_its_request_comes_back(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let stuck = MeshAgent::builder(&pool, &ks, "stuck")
            .visibility_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let server = stuck
            .serve(|_: u32| async { std::future::pending::<Result<u32, String>>().await })
            .await
            .unwrap();
        let alice = MeshAgent::builder(&pool, &ks, "alice").build().unwrap();
        let ask = tokio::spawn({
            let alice = alice.clone();
            async move { alice.ask::<u32, u32>("stuck", &7, Duration::from_secs(30)).await }
        });
        tokio::time::timeout(GUARD, async {
            while stuck.inbox_stats().await.unwrap().pending == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the request never reached the stuck handler");
        let clean = tokio::time::timeout(GUARD, server.shutdown_within(Duration::from_millis(100)))
            .await
            .expect("the shutdown did not keep its deadline");
        assert!(!clean, "a handler was abandoned");
        // Never answered, the request comes back after the visibility timeout to the next run.
        let server = stuck.serve(|n: u32| async move { Ok::<_, String>(n + 1) }).await.unwrap();
        let reply = tokio::time::timeout(GUARD, ask).await.unwrap().unwrap().unwrap();
        assert_eq!(reply, Reply::Answer(8));
        let clean = tokio::time::timeout(GUARD, server.shutdown_within(Duration::from_secs(5)))
            .await
            .unwrap();
        assert!(clean);
    }
}
