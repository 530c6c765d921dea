//! One vocabulary of errors for a wrong or unreachable server: a table, one row per mistake,
//! each asserting the variant, whether it is retryable, and that the message names the thing.

use std::time::Duration;

use coordkit_core::{Error, Pool, PoolConfig};
use coordkit_testkit::{RedisCluster, RedisServer, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A guard against hangs: far above any configured timeout, never a performance assertion.
const HANG_GUARD: Duration = Duration::from_secs(20);

/// A port nothing listens on: bound, then released.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// A port that answers like a web server.
async fn http_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    port
}

/// A port that accepts connections and never answers.
async fn silent_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    port
}

/// What connecting to `url` fails with: from parsing the URL, or from `Pool::connect`.
async fn failure(url: &str) -> Error {
    let config = match PoolConfig::from_url(url) {
        Ok(config) => config
            .connection_timeout(Duration::from_millis(300))
            .command_timeout(Duration::from_millis(300)),
        Err(e) => return e,
    };
    match tokio::time::timeout(HANG_GUARD, Pool::connect(config))
        .await
        .expect("connecting hung")
    {
        Ok(_) => panic!("{url} connected"),
        Err(e) => e,
    }
}

#[derive(Debug, PartialEq)]
enum Kind {
    Unavailable,
    Auth,
    InvalidConfig(&'static str),
}

fn kind(e: &Error) -> Option<Kind> {
    match e {
        Error::Unavailable { .. } => Some(Kind::Unavailable),
        Error::Auth { .. } => Some(Kind::Auth),
        Error::InvalidConfig { field, .. } => Some(Kind::InvalidConfig(field)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_wrong_url_fails_with_its_own_error() {
    let plain = RedisServer::start().unwrap();
    let guarded = RedisServer::start_with(ServerOptions {
        password: Some("right-pw-123".into()),
        ..ServerOptions::default()
    })
    .unwrap();
    let (down, http, silent) = (closed_port().await, http_port().await, silent_port().await);
    let p = plain.port();

    // (case, url, expected variant, retryable, texts the message must hold)
    let table: Vec<(&str, String, Kind, bool, Vec<String>)> = vec![
        (
            "server down",
            format!("redis://127.0.0.1:{down}"),
            Kind::Unavailable,
            true,
            vec![format!("127.0.0.1:{down}")],
        ),
        (
            "cluster seed down",
            format!("redis+cluster://127.0.0.1:{down}"),
            Kind::Unavailable,
            true,
            vec![format!("127.0.0.1:{down}")],
        ),
        (
            "server accepts but never answers",
            format!("redis://127.0.0.1:{silent}"),
            Kind::Unavailable,
            true,
            vec![format!("127.0.0.1:{silent}"), "300ms".into()],
        ),
        (
            "database index out of range",
            format!("redis://127.0.0.1:{p}/99"),
            Kind::InvalidConfig("database"),
            false,
            vec!["99".into(), format!("127.0.0.1:{p}"), "refused".into()],
        ),
        (
            "password sent to a server without one",
            format!("redis://:not-needed-456@127.0.0.1:{p}"),
            Kind::InvalidConfig("password"),
            false,
            vec!["no password set".into(), format!("127.0.0.1:{p}")],
        ),
        (
            "wrong password",
            format!("redis://:wrong-pw-789@127.0.0.1:{}", guarded.port()),
            Kind::Auth,
            false,
            vec![format!("127.0.0.1:{}", guarded.port())],
        ),
        (
            "no password for a server that needs one",
            format!("redis://127.0.0.1:{}", guarded.port()),
            Kind::Auth,
            false,
            vec!["NOAUTH".into()],
        ),
        (
            "port out of range",
            "redis://127.0.0.1:99999".into(),
            Kind::InvalidConfig("url"),
            false,
            vec!["\"99999\"".into(), "port".into()],
        ),
        (
            "port not a number",
            format!("redis+cluster://127.0.0.1:{p},127.0.0.1:63x9"),
            Kind::InvalidConfig("url"),
            false,
            vec!["\"63x9\"".into(), "port".into()],
        ),
        (
            "not a Redis endpoint",
            format!("redis://127.0.0.1:{http}"),
            Kind::InvalidConfig("url"),
            false,
            vec![
                format!("127.0.0.1:{http}"),
                "did not answer as a Redis server".into(),
            ],
        ),
        (
            "cluster seed not a Redis endpoint",
            format!("redis+cluster://127.0.0.1:{http}"),
            Kind::InvalidConfig("url"),
            false,
            vec!["did not answer as a Redis server".into()],
        ),
    ];
    for (case, url, expected, retryable, texts) in table {
        let err = failure(&url).await;
        let message = err.to_string();
        assert_eq!(kind(&err), Some(expected), "{case}: {err:?}");
        assert_eq!(err.is_retryable(), retryable, "{case}: {err:?}");
        for text in texts {
            assert!(
                message.contains(&text),
                "{case}: {message:?} lacks {text:?}"
            );
        }
        for secret in ["not-needed-456", "wrong-pw-789"] {
            assert!(
                !format!("{err} {err:?}").contains(secret),
                "{case}: {err:?}"
            );
        }
    }
}

#[cfg(not(feature = "tls"))]
#[tokio::test]
async fn rediss_without_the_tls_feature_names_the_feature() {
    for url in [
        "rediss://127.0.0.1:1",
        "rediss+cluster://127.0.0.1:1,127.0.0.1:2",
    ] {
        let err = failure(url).await;
        assert!(
            matches!(err, Error::InvalidConfig { field: "url", .. }),
            "{err:?}"
        );
        assert!(!err.is_retryable());
        let message = err.to_string();
        assert!(message.contains("feature `tls`"), "{message}");
        assert!(message.contains("coordkit-core"), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_caller_of_a_down_server_hears_unavailable() {
    // One connection, several callers: those that waited for their turn used to hear Timeout
    // (the first caller had taken the connection error), the same outage named two ways.
    let port = closed_port().await;
    let config = PoolConfig::from_url(&format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .pool_size(1)
        .connection_timeout(Duration::from_millis(300));
    let pool = Pool::connect_lazy(config).unwrap();
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.query::<()>(&redis::cmd("PING")).await })
        })
        .collect();
    for call in calls {
        let err = tokio::time::timeout(HANG_GUARD, call)
            .await
            .expect("a call hung")
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_that_is_down_is_unavailable_not_a_timeout() {
    // The cluster driver used to retry a dead node for longer than the command timeout (its
    // first wait alone is 1.28 s), so the same outage read Timeout on a cluster and
    // Unavailable on one server.
    let mut cluster = RedisCluster::start().unwrap();
    let config = PoolConfig::from_url(&cluster.cluster_url())
        .unwrap()
        .connection_timeout(Duration::from_millis(300))
        .command_timeout(Duration::from_millis(300));
    let pool = Pool::connect(config).await.unwrap();
    let set = |i: usize| redis::cmd("SET").arg(format!("k{i}")).arg(1).to_owned();
    for i in 0..12 {
        pool.query::<()>(&set(i)).await.unwrap();
    }
    let dead = cluster.node_mut(1).port();
    cluster.node_mut(1).kill();
    let mut failures = 0;
    for _ in 0..2 {
        for i in 0..12 {
            let outcome = tokio::time::timeout(HANG_GUARD, pool.query::<()>(&set(i)))
                .await
                .expect("a call hung");
            if let Err(err) = outcome {
                failures += 1;
                assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
                assert!(err.is_retryable());
            }
        }
    }
    assert!(failures > 0, "no key lived on the killed node {dead}");
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_mistakes_are_named() {
    let plain = RedisServer::start().unwrap();
    // TLS to a server without it: the server waits for a command, so it looks down, with a
    // hint.
    let err = failure(&format!("rediss://127.0.0.1:{}", plain.port())).await;
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("use redis://"), "{err}");
    // A setting the driver refuses only when connecting: configuration, not an outage.
    let err = failure(&format!("rediss://localhost:{}/#insecure", plain.port())).await;
    assert!(
        matches!(err, Error::InvalidConfig { field: "url", .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("insecure"), "{err}");
}
