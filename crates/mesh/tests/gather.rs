//! Scatter-gather: every live member of a capability is asked and each one's outcome is listed
//! (its answer, its error, a timeout, no responders for a member that does not serve); a gather
//! for a count of answers returns once they came, without waiting for the others; with no
//! live member it asks nobody and does not wait.

use std::sync::Arc;
use std::time::Duration;

use coordkit_core::Error;
use coordkit_mesh::{AgentError, GatherOptions, MeshAgent, Reply, Server};
use coordkit_testkit::{TestRedis, Topology, redis_test};
use tokio::sync::Notify;

mod common;
use common::commands;

const LONG: Duration = Duration::from_secs(30);

/// A member of `capability` answering `<request>@<name>`, or failing on "fail", or waiting
/// for `release` on "wait".
async fn member(agent: &MeshAgent, capability: &str, release: Arc<Notify>) -> Server {
    let name = agent.name().to_owned();
    agent
        .serve_capability(capability, move |q: String| {
            let (name, release) = (name.clone(), release.clone());
            async move {
                match q.as_str() {
                    "fail" => Err(format!("{name} cannot")),
                    "wait" => {
                        release.notified().await;
                        Ok(format!("{q}@{name}"))
                    }
                    _ => Ok(format!("{q}@{name}")),
                }
            }
        })
        .await
        .unwrap()
}

redis_test! {
    async fn every_member_is_asked_and_a_count_returns_once_it_is_reached(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let asker = MeshAgent::builder(&pool, &ks, "asker").build().unwrap();
        let release = Arc::new(Notify::new());
        let mut servers = Vec::new();
        for name in ["m0", "m1", "m2"] {
            let agent = MeshAgent::builder(&pool, &ks, name).build().unwrap();
            servers.push(member(&agent, "census", release.clone()).await);
        }
        let got = asker
            .gather::<_, String>("census", &"count", GatherOptions::within(LONG))
            .await
            .unwrap();
        let mut answers: Vec<(String, String)> =
            got.answers().map(|(m, a)| (m.to_owned(), a.clone())).collect();
        answers.sort();
        let expected = [("m0", "count@m0"), ("m1", "count@m1"), ("m2", "count@m2")];
        assert_eq!(answers, expected.map(|(m, a)| (m.to_owned(), a.to_owned())));
        assert!(got.errors.is_empty() && got.outstanding.is_empty());
        // Each member answered through its own route, none through the capability's inbox.
        assert_eq!(asker.capability_stats("census").await.unwrap().inbox.sent, 0);
        // A member that never answers does not hold up a gather for two answers.
        let stuck = MeshAgent::builder(&pool, &ks, "stuck").build().unwrap();
        let stuck_server = stuck
            .serve_capability("census", |_: String| std::future::pending::<Result<String, String>>())
            .await
            .unwrap();
        let got = asker
            .gather::<_, String>("census", &"quick", GatherOptions::within(LONG).answers(2))
            .await
            .unwrap();
        assert_eq!(got.answered(), 2, "{got:?}");
        assert_eq!(got.replies.len(), 2);
        assert_eq!(got.outstanding.len(), 2, "{got:?}");
        assert!(got.outstanding.contains(&"stuck".to_owned()), "{got:?}");
        drop(stuck_server);
        for s in servers {
            s.shutdown().await;
        }
    }
}

redis_test! {
    async fn each_members_outcome_is_its_own(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let asker = MeshAgent::builder(&pool, &ks, "asker").build().unwrap();
        let release = Arc::new(Notify::new());
        let quick = MeshAgent::builder(&pool, &ks, "quick").build().unwrap();
        let failing = MeshAgent::builder(&pool, &ks, "failing").build().unwrap();
        let slow = MeshAgent::builder(&pool, &ks, "slow").build().unwrap();
        let idle = MeshAgent::builder(&pool, &ks, "idle").build().unwrap();
        let never = Arc::new(Notify::new());
        let servers = [
            quick
                .serve_capability("ops", |q: String| async move { Ok::<_, String>(format!("{q}@quick")) })
                .await
                .unwrap(),
            member(&failing, "ops", never.clone()).await,
            slow
                .serve_capability("ops", {
                    let release = release.clone();
                    move |q: String| {
                        let release = release.clone();
                        async move {
                            release.notified().await;
                            Ok::<_, String>(format!("{q}@slow"))
                        }
                    }
                })
                .await
                .unwrap(),
        ];
        // A member that joined without serving has no route: no responders, at once.
        idle.join("ops").await.unwrap();
        let mut got = asker
            .gather::<_, String>("ops", &"fail", GatherOptions::within(Duration::from_secs(2)))
            .await
            .unwrap();
        got.replies.sort_by(|a, b| a.0.cmp(&b.0));
        let expected = vec![
            ("failing".to_owned(), Reply::Failed("failing cannot".to_owned())),
            ("idle".to_owned(), Reply::NoResponders),
            ("quick".to_owned(), Reply::Answer("fail@quick".to_owned())),
            ("slow".to_owned(), Reply::Timeout),
        ];
        assert_eq!(got.replies, expected);
        assert!(got.errors.is_empty() && got.outstanding.is_empty());
        release.notify_waiters();
        for s in servers {
            s.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_live_member_a_gather_asks_nobody_and_does_not_wait() {
    for topology in [Topology::Standalone, Topology::Cluster] {
        let redis = TestRedis::start(topology);
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let asker = MeshAgent::builder(&pool, &ks, "asker").build().unwrap();
        let gone = MeshAgent::builder(&pool, &ks, "gone").build().unwrap();
        gone.join("render").await.unwrap();
        gone.leave_capability("render").await.unwrap();
        redis.reset_stats();
        // The longest timeout there is: a gather that waited would hang the test.
        let forever = GatherOptions::within(Duration::from_millis(1 << 35));
        let got = asker.gather::<_, u32>("render", &1, forever).await.unwrap();
        assert!(got.no_members(), "{got:?}");
        // Two commands: the clock and the members; no request was sent.
        let expected = [("time", 1), ("zrangebyscore", 1)].map(|(c, n)| (c.to_owned(), n));
        assert_eq!(commands(&redis), expected, "{topology:?}");
    }
}

redis_test! {
    async fn bad_options_and_names_are_refused_before_any_call(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let asker = MeshAgent::builder(&pool, &ks, "asker").build().unwrap();
        let zero = GatherOptions::within(LONG).answers(0);
        match asker.gather::<_, u32>("render", &1, zero).await {
            Err(AgentError::Core(Error::InvalidConfig { field, .. })) => assert_eq!(field, "answers"),
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
        let instant = GatherOptions::within(Duration::ZERO);
        match asker.gather::<_, u32>("render", &1, instant).await {
            Err(AgentError::Core(Error::InvalidConfig { field, .. })) => assert_eq!(field, "timeout"),
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
        match asker.gather::<_, u32>("a{b}", &1, GatherOptions::within(LONG)).await {
            Err(AgentError::Core(Error::InvalidName { .. })) => {}
            other => panic!("expected InvalidName, got {other:?}"),
        }
    }
}
