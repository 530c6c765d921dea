//! The harness: shared servers, a namespace per test, the binary with its connection.
#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use coordkit_core::{Keyspace, Pool};
use coordkit_testkit::{TestRedis, Topology};
use serde_json::Value;

static STANDALONE: OnceLock<TestRedis> = OnceLock::new();
static CLUSTER: OnceLock<TestRedis> = OnceLock::new();

/// The server of `topology`, started by the first test that needs it.
pub(crate) fn redis(topology: Topology) -> &'static TestRedis {
    let cell = match topology {
        Topology::Standalone => &STANDALONE,
        Topology::Cluster => &CLUSTER,
    };
    cell.get_or_init(|| TestRedis::start(topology))
}

/// One test's world: a runtime for the library calls, a pool, a fresh namespace.
pub(crate) struct Harness {
    // The pool goes before the runtime it runs on.
    pub(crate) pool: Pool,
    pub(crate) keyspace: Keyspace,
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) redis: &'static TestRedis,
}

impl Harness {
    pub(crate) fn new(topology: Topology) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let redis = redis(topology);
        let rt = coordkit_testkit::blocking_runtime();
        let pool = rt.block_on(redis.pool());
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let keyspace = Keyspace::new(&format!("cli{}-{n}", std::process::id())).unwrap();
        Self {
            redis,
            rt,
            pool,
            keyspace,
        }
    }

    pub(crate) fn ns(&self) -> &str {
        self.keyspace.namespace()
    }

    /// Runs a library call.
    pub(crate) fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.rt.block_on(future)
    }

    /// `coordkit --url <this server> --namespace <this test's> ARGS`, with no coordkit or
    /// Redis variable inherited and stdin not a terminal.
    pub(crate) fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = bare();
        cmd.args(["--url", &self.redis.url(), "--namespace", self.ns()])
            .args(args);
        cmd
    }

    /// Runs ARGS and answers stdout, asserting exit 0 and nothing on stderr.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args).output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            out.status.success() && stderr.is_empty(),
            "coordkit {args:?}: {:?}\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        );
        stdout
    }

    /// Runs ARGS with `--json` and parses stdout.
    pub(crate) fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let stdout = self.ok(&all);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }

    /// Runs ARGS, asserting exit `code`, no stdout, and exactly one line on stderr, which
    /// it answers.
    pub(crate) fn fails(&self, code: i32, args: &[&str]) -> String {
        fails_with(&mut self.cli(args), code, args)
    }

    /// Runs ARGS, asserting clap's bad-usage answer: exit 2, its `error:` on stderr, nothing
    /// on stdout.
    pub(crate) fn usage(&self, args: &[&str]) -> String {
        let out = self.cli(args).output().unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "coordkit {args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "coordkit {args:?} printed something");
        assert!(stderr.starts_with("error: "), "coordkit {args:?}: {stderr}");
        stderr
    }

    /// Starts ARGS as a live process (stdout piped), and waits for its first stderr line
    /// (the live commands say there what they listen to once they do).
    pub(crate) fn spawn_live(&self, args: &[&str]) -> Live {
        spawn_live(&self.redis.url(), self.ns(), args)
    }
}

/// Starts ARGS against `url` and `namespace` as a live process; see [`Harness::spawn_live`].
pub(crate) fn spawn_live(url: &str, namespace: &str, args: &[&str]) -> Live {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("coordkit"));
    clear_env(&mut cmd);
    cmd.args(["--url", url, "--namespace", namespace])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let errors = spawn_reader(child.stderr.take().unwrap());
    let started = errors
        .recv_timeout(Duration::from_secs(10))
        .expect("a first line on stderr within 10 s");
    let stdout = child.stdout.take().unwrap();
    Live {
        child,
        lines: spawn_reader(stdout),
        errors,
        started,
    }
}

/// The binary with no inherited configuration.
pub(crate) fn bare() -> Command {
    let mut cmd = Command::cargo_bin("coordkit").unwrap();
    for var in VARS {
        cmd.env_remove(var);
    }
    cmd.write_stdin("");
    cmd
}

const VARS: [&str; 7] = [
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_PASSWORD",
    "REDIS_DB",
    "COORDKIT_NAMESPACE",
    "COORDKIT_AGENT_REGISTRY",
];

fn clear_env(cmd: &mut std::process::Command) {
    for var in VARS {
        cmd.env_remove(var);
    }
}

/// Runs `cmd`, asserting exit `code`, no stdout and one line on stderr; answers it.
pub(crate) fn fails_with(cmd: &mut Command, code: i32, args: &[&str]) -> String {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "coordkit {args:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.is_empty(), "coordkit {args:?} printed {stdout}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "coordkit {args:?}: not one line on stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// A live command: its stdout lines as they come.
pub(crate) struct Live {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    errors: std::sync::mpsc::Receiver<String>,
    /// Its first line on stderr.
    pub(crate) started: String,
}

fn spawn_reader(pipe: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

impl Live {
    /// The next stdout line, waiting at most 10 s.
    pub(crate) fn line(&mut self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a line from the live command within 10 s")
    }

    /// The next stderr line after the first, waiting at most 10 s.
    pub(crate) fn error_line(&mut self) -> String {
        self.errors
            .recv_timeout(Duration::from_secs(10))
            .expect("a line on stderr within 10 s")
    }

    /// Stops it with SIGINT (what Ctrl-C sends) and answers its exit code.
    pub(crate) fn interrupt(mut self) -> Option<i32> {
        let status = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "still running 10 s after SIGINT");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One test body, run on the shared standalone server and on the shared cluster.
#[macro_export]
macro_rules! cli_test {
    ($(#[$meta:meta])* fn $name:ident($t:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body($t: $crate::common::Harness) $body

            #[test]
            fn standalone() {
                body($crate::common::Harness::new(coordkit_testkit::Topology::Standalone))
            }

            #[test]
            fn cluster() {
                body($crate::common::Harness::new(coordkit_testkit::Topology::Cluster))
            }
        }
    };
}
