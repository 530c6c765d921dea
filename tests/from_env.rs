//! `Coordkit::from_env` against a real server. The variables are given to a child process
//! (this test binary run again), so no test mutates its own environment.

use std::process::Command;

use coordkit::Coordkit;
use coordkit_testkit::RedisServer;

const CHILD: &str = "COORDKIT_FROM_ENV_CHILD";

/// Runs `child_reads_the_environment` in a child with `vars` and without `REDIS_URL`.
fn run_child(vars: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_reads_the_environment", "--nocapture"])
        .env_remove("REDIS_URL")
        .env_remove("REDIS_HOST")
        .env_remove("REDIS_PORT")
        .env_remove("REDIS_PASSWORD")
        .env_remove("REDIS_DB");
    for (name, value) in vars {
        cmd.env(name, value);
    }
    cmd.output().unwrap()
}

/// In the child: connects from the environment and reports what happened on stderr, for
/// the parent to check. Outside a child it does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_reads_the_environment() {
    let Ok(expect) = std::env::var(CHILD) else {
        return;
    };
    match Coordkit::from_env("envtest").await {
        Ok(kit) => {
            let pong: String = kit
                .pool()
                .query(&coordkit::core::redis::cmd("PING"))
                .await
                .unwrap();
            assert_eq!(expect, "ok");
            eprintln!("CHILD-RESULT ok {pong} {}", kit.pool().address());
        }
        Err(e) => {
            assert_eq!(expect, "err");
            eprintln!("CHILD-RESULT err {e}");
        }
    }
}

#[test]
fn from_env_connects_where_the_variables_say() {
    let server = RedisServer::start().unwrap();
    let port = server.port().to_string();
    let out = run_child(&[
        (CHILD, "ok"),
        ("REDIS_HOST", "127.0.0.1"),
        ("REDIS_PORT", &port),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("CHILD-RESULT ok PONG 127.0.0.1:{port}")),
        "{stderr}"
    );

    let out = run_child(&[(CHILD, "err"), ("REDIS_PORT", "port-6379")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("CHILD-RESULT err"), "{stderr}");
    assert!(stderr.contains("REDIS_PORT"), "{stderr}");
}
