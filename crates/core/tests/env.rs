//! Configuration from the environment: `REDIS_URL`, else `REDIS_HOST` / `REDIS_PORT` /
//! `REDIS_PASSWORD` / `REDIS_DB`, read through a lookup so no test touches the process env.

use std::collections::HashMap;

use coordkit_core::{DEFAULT_URL, Error, Pool, PoolConfig};
use coordkit_testkit::{RedisServer, ServerOptions};

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| vars.get(name).cloned()
}

#[test]
fn nothing_set_means_the_default_url_and_redis_url_wins() {
    let none = PoolConfig::from_env_with(env(&[])).unwrap();
    assert_eq!(
        none.address(),
        PoolConfig::from_url(DEFAULT_URL).unwrap().address()
    );
    let empty = PoolConfig::from_env_with(env(&[("REDIS_URL", " "), ("REDIS_PORT", "")])).unwrap();
    assert_eq!(empty.address(), "127.0.0.1:6379");
    let url = PoolConfig::from_env_with(env(&[
        ("REDIS_URL", "redis://10.1.2.3:7000"),
        ("REDIS_HOST", "ignored.example"),
        ("REDIS_PORT", "not-even-a-port"),
    ]))
    .unwrap();
    assert_eq!(url.address(), "10.1.2.3:7000");
    let v6 = PoolConfig::from_env_with(env(&[("REDIS_HOST", "::1"), ("REDIS_PORT", "7001")]));
    assert_eq!(v6.unwrap().address(), "::1:7001");
}

#[test]
fn a_malformed_variable_is_named() {
    let table = [
        ("REDIS_PORT", "63x79"),
        ("REDIS_PORT", "70000"),
        ("REDIS_PORT", "0"),
        ("REDIS_DB", "-1"),
        ("REDIS_DB", "zero"),
        ("REDIS_HOST", "host/path"),
        ("REDIS_HOST", "user@host"),
    ];
    for (var, value) in table {
        let err = PoolConfig::from_env_with(env(&[(var, value)])).unwrap_err();
        match &err {
            Error::InvalidConfig { field, .. } => assert_eq!(*field, var, "{err}"),
            other => panic!("{var}={value}: expected InvalidConfig, got {other:?}"),
        }
        assert!(!err.is_retryable());
        assert!(err.to_string().contains(value), "{err}");
    }
    // A bad REDIS_URL is the URL's error.
    let err = PoolConfig::from_env_with(env(&[("REDIS_URL", "redis://h:99999")])).unwrap_err();
    assert!(err.to_string().contains("99999"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_port_password_and_db_reach_the_server() {
    let server = RedisServer::start_with(ServerOptions {
        password: Some("env-pw-321".into()),
        ..ServerOptions::default()
    })
    .unwrap();
    let port = server.port().to_string();
    let vars = [
        ("REDIS_HOST", "127.0.0.1"),
        ("REDIS_PORT", port.as_str()),
        ("REDIS_PASSWORD", "env-pw-321"),
        ("REDIS_DB", "3"),
    ];
    let config = PoolConfig::from_env_with(env(&vars)).unwrap();
    assert!(!format!("{config:?}").contains("env-pw-321"));
    let pool = Pool::connect(config).await.unwrap();
    let info: String = pool.query(redis::cmd("CLIENT").arg("INFO")).await.unwrap();
    assert!(info.contains(" db=3 "), "{info}");

    // The same variables with a database the server does not have: named, not retryable.
    let vars = [
        ("REDIS_PORT", port.as_str()),
        ("REDIS_PASSWORD", "env-pw-321"),
        ("REDIS_DB", "99"),
    ];
    let config = PoolConfig::from_env_with(env(&vars))
        .unwrap()
        .connection_timeout(std::time::Duration::from_millis(300));
    let err = Pool::connect(config).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "database",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("99"), "{err}");
}
