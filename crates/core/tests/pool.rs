//! The pool against real servers: standalone and cluster, faults included.

use std::time::Duration;

use coordkit_core::{Error, Pool, PoolConfig, Topology};
use coordkit_testkit::{RedisServer, ServerOptions, TestRedis, redis_test};

/// A guard against hangs: far above any configured timeout, never a performance assertion.
const HANG_GUARD: Duration = Duration::from_secs(20);

async fn incr(pool: &Pool, key: &str) -> Result<i64, Error> {
    pool.query(redis::cmd("INCR").arg(key)).await
}

redis_test! {
    async fn callers_of_a_busy_pool_are_served_in_turn(redis) {
        // One connection, 20 callers each wanting it back at once, and a checkout timeout far
        // above 19 turns (but far below how long a starved caller waited): checkouts are served first come first served, so nobody waits more than
        // the others' turns (bb8 alone hands a returned connection to whoever asks first,
        // and a busy caller starved the others until their checkout timed out).
        let config = redis
            .config()
            .pool_size(1)
            .connection_timeout(Duration::from_secs(1));
        let pool = Pool::connect(config).await.unwrap();
        let key = redis.keyspace().instance("test", "shared").unwrap().key("n");
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let pool = pool.clone();
                let key = key.clone();
                tokio::spawn(async move {
                    for _ in 0..200 {
                        incr(&pool, key.as_str()).await?;
                    }
                    Ok::<_, Error>(())
                })
            })
            .collect();
        for task in tasks {
            tokio::time::timeout(HANG_GUARD, task).await.unwrap().unwrap().unwrap();
        }
        let total: i64 = pool.query(redis::cmd("GET").arg(&key)).await.unwrap();
        assert_eq!(total, 4000);
        assert_eq!(pool.connections().0, 1);
    }
}

redis_test! {
    async fn shared_pool_counts_exactly_under_concurrency(redis) {
        let pool = redis.pool().await;
        let key = redis.keyspace().instance("test", "counter").unwrap().key("n");
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let pool = pool.clone();
                let key = key.clone();
                tokio::spawn(async move {
                    for _ in 0..100 {
                        incr(&pool, key.as_str()).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let total: i64 = pool.query(redis::cmd("GET").arg(&key)).await.unwrap();
        assert_eq!(total, 5000);
        let (open, _idle) = pool.connections();
        assert!(open <= 16, "the pool opened {open} connections, more than its size");
    }
}

redis_test! {
    async fn pool_recovers_after_every_client_is_killed(redis) {
        let pool = redis.pool().await;
        let key = redis.keyspace().instance("test", "kill").unwrap().key("n");
        for _ in 0..20 {
            incr(&pool, key.as_str()).await.unwrap();
        }
        let killed: Vec<i64> = redis.on_every_server(&["CLIENT", "KILL", "TYPE", "normal"]);
        assert!(killed.iter().sum::<i64>() >= 1, "nothing was killed");
        // The call that meets a dead connection may fail (it cannot know whether its command
        // ran); the pool must then replace the dead connections, not hand them out again.
        let mut failures = 0;
        let mut successes = 0;
        for _ in 0..200 {
            match incr(&pool, key.as_str()).await {
                Ok(_) => successes += 1,
                Err(e) => {
                    assert!(matches!(e, Error::Unavailable { .. }), "unexpected error {e}");
                    assert!(e.is_retryable());
                    failures += 1;
                }
            }
        }
        assert!(failures <= 1, "{failures} calls failed after the kill; the pool kept dead connections");
        assert!(successes >= 199);
    }
}

redis_test! {
    async fn pool_recovers_after_a_server_restart(redis) {
        let pool = redis.pool().await;
        let key = redis.keyspace().instance("test", "restart").unwrap().key("n");
        incr(&pool, key.as_str()).await.unwrap();
        redis.restart();
        let mut failures = 0;
        let mut last_error = None;
        let mut recovered = false;
        for _ in 0..100 {
            match tokio::time::timeout(HANG_GUARD, incr(&pool, key.as_str())).await {
                Ok(Ok(_)) => {
                    recovered = true;
                    break;
                }
                Ok(Err(e)) => {
                    failures += 1;
                    last_error = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => panic!("an operation hung after the restart"),
            }
        }
        assert!(recovered, "never recovered; last error {last_error:?}");
        // Then every call works again.
        for _ in 0..50 {
            incr(&pool, key.as_str()).await.unwrap();
        }
        assert!(failures <= 20, "{failures} failures before recovery");
    }
}

redis_test! {
    async fn a_slow_command_times_out_naming_it_and_the_pool_keeps_working(redis) {
        let config = redis.config().command_timeout(Duration::from_millis(200));
        let pool = Pool::connect(config).await.unwrap();
        let key = redis.keyspace().instance("test", "slow").unwrap().key("list");
        let err = pool
            .query::<Option<Vec<String>>>(redis::cmd("BLPOP").arg(&key).arg(1))
            .await
            .unwrap_err();
        match &err {
            Error::Timeout { operation, after, .. } => {
                assert_eq!(operation, "BLPOP");
                assert_eq!(*after, Duration::from_millis(200));
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(err.is_retryable());
        // The pool keeps working: the next commands answer. (A loaded machine may make one of
        // them miss the 200 ms too, so a timeout is tried again; SET is idempotent.)
        let key = redis.keyspace().instance("test", "slow").unwrap().key("n");
        let mut tries = 0;
        loop {
            tries += 1;
            match pool.query::<()>(redis::cmd("SET").arg(key.as_str()).arg("v")).await {
                Ok(()) => break,
                Err(Error::Timeout { .. }) if tries < 5 => continue,
                Err(e) => panic!("the pool did not recover: {e:?}"),
            }
        }
        let got: String = pool.query(redis::cmd("GET").arg(key.as_str())).await.unwrap();
        assert_eq!(got, "v");
    }
}

async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn an_unreachable_server_fails_fast_naming_the_address() {
    let port = closed_port().await;
    let config = PoolConfig::from_url(&format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .connection_timeout(Duration::from_millis(300));
    let err = tokio::time::timeout(HANG_GUARD, Pool::connect(config))
        .await
        .expect("connect hung on an unreachable server")
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.is_retryable());

    // A lazy pool fails the same way on its first call.
    let config = PoolConfig::from_url(&format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .connection_timeout(Duration::from_millis(300));
    let pool = Pool::connect_lazy(config).unwrap();
    let err = tokio::time::timeout(HANG_GUARD, incr(&pool, "k"))
        .await
        .expect("a call hung on an unreachable server")
        .unwrap_err();
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_cluster_fails_fast_naming_the_seeds() {
    let (a, b) = (closed_port().await, closed_port().await);
    let config = PoolConfig::from_url(&format!("redis+cluster://127.0.0.1:{a},127.0.0.1:{b}"))
        .unwrap()
        .connection_timeout(Duration::from_millis(300));
    assert_eq!(config.topology(), Topology::Cluster);
    let err = tokio::time::timeout(HANG_GUARD, Pool::connect(config))
        .await
        .expect("connect hung on an unreachable cluster")
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{a}")), "{err}");
}

#[tokio::test]
async fn invalid_configuration_is_rejected_naming_the_field() {
    let config = PoolConfig::from_url("redis://127.0.0.1:1")
        .unwrap()
        .pool_size(0);
    match Pool::connect(config).await {
        Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, "pool_size"),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_the_url_are_used_and_never_shown() {
    let server = RedisServer::start_with(ServerOptions {
        password: Some("pa55-w0rd-xyz".into()),
        acl_users: vec![("agent".into(), "agent-secret-123".into())],
        ..ServerOptions::default()
    })
    .unwrap();

    // The right password: works.
    let pool = Pool::connect(PoolConfig::from_url(&server.url()).unwrap())
        .await
        .unwrap();
    assert_eq!(incr(&pool, "k").await.unwrap(), 1);
    let shown = format!("{pool:?} {:?}", pool.config());
    assert!(!shown.contains("pa55-w0rd-xyz"), "{shown}");

    // An ACL user with its password: works.
    let acl_url = format!("redis://agent:agent-secret-123@127.0.0.1:{}", server.port());
    let pool = Pool::connect(PoolConfig::from_url(&acl_url).unwrap())
        .await
        .unwrap();
    assert_eq!(incr(&pool, "k").await.unwrap(), 2);
    let whoami: String = pool
        .query(&redis::cmd("ACL").arg("WHOAMI").to_owned())
        .await
        .unwrap();
    assert_eq!(whoami, "agent");
    assert!(!format!("{pool:?}").contains("agent-secret-123"));

    // No password: refused, clearly.
    let config = PoolConfig::from_url(&server.url_without_password())
        .unwrap()
        .connection_timeout(Duration::from_millis(500));
    let err = Pool::connect(config).await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");

    // A wrong password: refused, and the message does not echo it.
    let wrong = format!(
        "redis://agent:not-the-password-777@127.0.0.1:{}",
        server.port()
    );
    let config = PoolConfig::from_url(&wrong)
        .unwrap()
        .connection_timeout(Duration::from_millis(500));
    let err = Pool::connect(config).await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("not-the-password-777"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", server.port())),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_testkit_gives_a_real_cluster() {
    let redis = TestRedis::start(coordkit_testkit::Topology::Cluster);
    let states: Vec<String> = redis.on_every_server(&["CLUSTER", "INFO"]);
    assert_eq!(states.len(), 3);
    assert!(states.iter().all(|s| s.contains("cluster_state:ok")));
    let pool = redis.pool().await;
    assert_eq!(pool.topology(), Topology::Cluster);
    // Keys of different instances spread over the nodes, and each call still works.
    let ks = redis.keyspace();
    for i in 0..30 {
        let key = ks.instance("test", &format!("i{i}")).unwrap().key("n");
        assert_eq!(incr(&pool, key.as_str()).await.unwrap(), 1);
    }
    let per_node: Vec<i64> = redis.on_every_server(&["DBSIZE"]);
    assert_eq!(per_node.iter().sum::<i64>(), 30);
    assert!(
        per_node.iter().filter(|n| **n > 0).count() >= 2,
        "{per_node:?}"
    );
}

redis_test! {
    async fn scan_pages_cover_every_key_once_or_more(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let mut expected = std::collections::BTreeSet::new();
        for i in 0..120 {
            let key = ks.instance("scan", &format!("item-{i}")).unwrap().key("data");
            let _: () = pool.query(redis::cmd("SET").arg(&key).arg(i)).await.unwrap();
            expected.insert(format!("item-{i}"));
        }
        // Other keys that must not match.
        let other = ks.instance("other", "item-1").unwrap().key("data");
        let _: () = pool.query(redis::cmd("SET").arg(&other).arg(1)).await.unwrap();
        let pattern = ks.instance_pattern("scan", "item-", "data").unwrap();
        let mut cursor = String::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut pages = 0;
        loop {
            let page = pool.scan_page(&pattern, &cursor, 25).await.unwrap();
            pages += 1;
            for key in &page.keys {
                seen.insert(ks.instance_name_of(key, "scan", "data").unwrap().to_owned());
            }
            match page.next {
                Some(next) => cursor = next,
                None => break,
            }
            assert!(pages < 1000, "the scan never ended");
        }
        assert_eq!(seen, expected);
        assert!(pages > 1);
        let err = pool.scan_page(&pattern, "not-a-cursor", 10).await.unwrap_err();
        assert!(matches!(err, Error::InvalidConfig { field: "cursor", .. }), "{err:?}");
    }
}

redis_test! {
    async fn health_reads_every_primary(redis) {
        let pool = redis.pool().await;
        let health = pool.health().await.unwrap();
        assert_eq!(health.topology, pool.topology());
        let expected = match redis.topology() {
            coordkit_testkit::Topology::Standalone => 1,
            coordkit_testkit::Topology::Cluster => 3,
        };
        assert_eq!(health.primaries.len(), expected, "{health:?}");
        for p in &health.primaries {
            assert!(p.used_memory > 0 && p.connected_clients >= 1, "{p:?}");
        }
        // The pool's own connections are among the clients it reports.
        assert!(health.connections >= 1);
        assert!(health.idle_connections <= health.connections);
    }
}

#[tokio::test]
async fn health_of_a_server_that_is_down_is_unavailable() {
    let mut server = coordkit_testkit::RedisServer::start().unwrap();
    let pool = server
        .fault_pool(std::time::Duration::from_millis(300))
        .await;
    assert!(pool.health().await.is_ok());
    server.kill();
    let err = pool.health().await.unwrap_err();
    assert!(
        matches!(err, coordkit_core::Error::Unavailable { .. }),
        "{err:?}"
    );
}
