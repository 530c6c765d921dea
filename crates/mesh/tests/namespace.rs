//! Broadcast to the namespace: every agent whose heartbeat (its own, or its server's) has not
//! run out gets the message once in its own inbox; an agent whose presence ran out, one that
//! left, one that never beat and one of another namespace do not; a registry key of another
//! type is an error naming it, and everything works again once it is gone.

use std::time::Duration;

use coordkit_core::{Clock, Error, Keyspace, ManualClock, redis};
use coordkit_mesh::{AgentError, MeshAgent, Sent};
use coordkit_testkit::garbage::overwrite_with_type;
use coordkit_testkit::redis_test;

redis_test! {
    async fn every_live_agent_of_the_namespace_gets_it_once(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let clock = ManualClock::new(1_000_000);
        let agent = |ks: &Keyspace, name: &str| {
            MeshAgent::builder(&pool, ks, name)
                .clock(Clock::Manual(clock.clone()))
                .presence_ttl(Duration::from_secs(10))
                .build()
                .unwrap()
        };
        let expired = agent(&ks, "expired");
        expired.heartbeat().await.unwrap();
        clock.advance(Duration::from_secs(11));
        let (a, b, c, left) = (agent(&ks, "a"), agent(&ks, "b"), agent(&ks, "c"), agent(&ks, "left"));
        let silent = agent(&ks, "silent");
        a.heartbeat().await.unwrap();
        b.heartbeat().await.unwrap();
        // A server's beats keep its agent in the registry too.
        let server = c.serve(|n: u32| async move { Ok::<_, String>(n) }).await.unwrap();
        left.heartbeat().await.unwrap();
        left.leave().await.unwrap();
        let elsewhere_ks = Keyspace::new(&format!("{}-other", ks.namespace())).unwrap();
        let elsewhere = agent(&elsewhere_ks, "elsewhere");
        elsewhere.heartbeat().await.unwrap();

        let boss = agent(&ks, "boss");
        let mut live = boss.live_agents().await.unwrap();
        live.sort();
        assert_eq!(live, ["a", "b", "c"]);
        let sent = boss.broadcast_all(&"reload").await.unwrap();
        let mut to: Vec<&str> = sent.iter().map(|(agent, _)| agent.as_str()).collect();
        to.sort();
        assert_eq!(to, ["a", "b", "c"]);
        assert!(sent.iter().all(|(_, s)| matches!(s, Sent::Stored { .. })), "{sent:?}");
        for x in [&a, &b, &c] {
            let got = x.receive::<String>(10).await.unwrap();
            let payloads: Vec<(&str, &str)> =
                got.iter().map(|d| (d.from.as_str(), d.payload.as_str())).collect();
            assert_eq!(payloads, [("boss", "reload")], "{}", x.name());
        }
        for x in [&expired, &left, &silent, &elsewhere] {
            assert!(x.receive::<String>(10).await.unwrap().is_empty(), "{}", x.name());
        }
        // A server that shut down is gone from the registry.
        server.shutdown().await;
        let mut live = boss.live_agents().await.unwrap();
        live.sort();
        assert_eq!(live, ["a", "b"]);
    }
}

redis_test! {
    async fn a_registry_of_another_type_is_named_and_works_again_once_gone(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let a = MeshAgent::builder(&pool, &ks, "a").build().unwrap();
        let registry = ks.instance("mesh", "agents").unwrap().key("alive");
        overwrite_with_type(&pool, &registry, "string").await;
        let named = |r: Result<(), AgentError>| match r {
            Err(AgentError::Core(Error::WrongType { key, .. })) => assert_eq!(key, registry.as_str()),
            other => panic!("expected WrongType naming the registry, got {other:?}"),
        };
        named(a.heartbeat().await);
        named(a.broadcast_all(&1u32).await.map(|_| ()));
        let kind: String = pool.query(redis::cmd("TYPE").arg(&registry)).await.unwrap();
        assert_eq!(kind, "string", "nothing written");
        let _: () = pool.query(redis::cmd("DEL").arg(&registry)).await.unwrap();
        a.heartbeat().await.unwrap();
        assert_eq!(a.live_agents().await.unwrap(), ["a"]);
    }
}
