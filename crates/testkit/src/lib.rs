//! # coordkit-testkit
//!
//! Real, throwaway Redis for coordkit's tests and benchmarks: no mocks.
//!
//! - [`RedisServer`]: one `redis-server` (from `REDIS_SERVER_BIN` or `PATH`) on a free loopback
//!   port in a temp dir, optionally with AOF `appendfsync always` or a password; `kill` (-9),
//!   `stop` and `restart` on the same port and data dir for fault tests.
//! - [`RedisCluster`]: three masters with the slots split between them, ready when every node
//!   reports `cluster_state:ok` and its bus links to the others are up.
//! - [`TestRedis`] and [`redis_test!`]: one test body run against both topologies.
//! - [`garbage`]: bad stored data (keys of another type, undecodable values) and proptest
//!   strategies over it, for the corruption tests every primitive has.
//!
//! Everything is killed when dropped, and a watchdog kills a server whose test process died.
//! When `redis-server` is missing, starting fails with the command that installs it: a test
//! always runs against a real server.
//!
//! ```
//! use coordkit_testkit::{RedisServer, ServerOptions};
//!
//! let mut server = RedisServer::start_with(ServerOptions { aof: true, ..Default::default() })?;
//! let _: () = server.command(&["SET", "k", "v"])?;
//! server.kill();
//! server.restart()?;
//! let v: String = server.command(&["GET", "k"])?;
//! assert_eq!(v, "v");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cluster;
pub mod garbage;
mod server;
pub mod spans;

pub use cluster::RedisCluster;
pub use server::{
    RedisServer, ServerOptions, accepts_connections, find_redis_server, redis_server_bin,
};

use coordkit_core::{Keyspace, Pool, PoolConfig};

/// Why the testkit could not give you a server. Its message says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestkitError(pub String);

impl std::fmt::Display for TestkitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TestkitError {}

/// Which topology a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// One server.
    Standalone,
    /// A 3-master cluster.
    Cluster,
}

/// A running standalone server or cluster, with helpers to reach it through coordkit.
#[derive(Debug)]
pub enum TestRedis {
    /// One server.
    Standalone(RedisServer),
    /// A 3-master cluster.
    Cluster(RedisCluster),
}

impl TestRedis {
    /// Starts the topology. Panics with a clear message (the install command when
    /// `redis-server` is missing): a test must fail, never skip, without Redis.
    pub fn start(topology: Topology) -> Self {
        let started = match topology {
            Topology::Standalone => RedisServer::start().map(TestRedis::Standalone),
            Topology::Cluster => RedisCluster::start().map(TestRedis::Cluster),
        };
        match started {
            Ok(redis) => redis,
            Err(e) => panic!("cannot start a test redis ({topology:?}): {e}"),
        }
    }

    /// Which topology this is.
    pub fn topology(&self) -> Topology {
        match self {
            TestRedis::Standalone(_) => Topology::Standalone,
            TestRedis::Cluster(_) => Topology::Cluster,
        }
    }

    /// The URL for [`PoolConfig::from_url`]: `redis://…` or `redis+cluster://…`.
    pub fn url(&self) -> String {
        match self {
            TestRedis::Standalone(server) => server.url(),
            TestRedis::Cluster(cluster) => cluster.cluster_url(),
        }
    }

    /// The pool configuration for this topology, with the default settings.
    pub fn config(&self) -> PoolConfig {
        match PoolConfig::from_url(&self.url()) {
            Ok(config) => config,
            Err(e) => panic!("the testkit built a bad URL: {e}"),
        }
    }

    /// A connected pool.
    pub async fn pool(&self) -> Pool {
        match Pool::connect(self.config()).await {
            Ok(pool) => pool,
            Err(e) => panic!("cannot connect to the test redis: {e}"),
        }
    }

    /// A fresh keyspace whose namespace is unique to this call.
    pub fn keyspace(&self) -> Keyspace {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        match Keyspace::new(&format!("t{}-{n}", std::process::id())) {
            Ok(keyspace) => keyspace,
            Err(e) => panic!("bad test namespace: {e}"),
        }
    }

    /// Every server process (one, or the cluster's three).
    pub fn servers_mut(&mut self) -> Vec<&mut RedisServer> {
        match self {
            TestRedis::Standalone(server) => vec![server],
            TestRedis::Cluster(cluster) => cluster.nodes_mut().iter_mut().collect(),
        }
    }

    /// Runs an admin command on every server (every node of a cluster).
    pub fn on_every_server<T: redis::FromRedisValue>(&self, args: &[&str]) -> Vec<T> {
        let servers: Vec<&RedisServer> = match self {
            TestRedis::Standalone(server) => vec![server],
            TestRedis::Cluster(cluster) => cluster.nodes().iter().collect(),
        };
        servers
            .into_iter()
            .map(|s| match s.command(args) {
                Ok(v) => v,
                Err(e) => panic!("{args:?} on {}: {e}", s.addr()),
            })
            .collect()
    }

    /// How many times `command` ran (`calls=` of `cmdstat_<command>` in `INFO commandstats`),
    /// summed over every server; `CONFIG RESETSTAT` on every server starts the count again.
    /// For tests that prove how many round trips an operation costs.
    pub fn command_calls(&self, command: &str) -> u64 {
        let prefix = format!("cmdstat_{command}:calls=");
        self.on_every_server::<String>(&["INFO", "commandstats"])
            .iter()
            .flat_map(|info| info.lines())
            .filter_map(|line| line.strip_prefix(&prefix))
            .filter_map(|rest| rest.split(',').next()?.parse::<u64>().ok())
            .sum()
    }

    /// `CONFIG RESETSTAT` on every server.
    pub fn reset_stats(&self) {
        let _: Vec<String> = self.on_every_server(&["CONFIG", "RESETSTAT"]);
    }

    /// Kills (-9) and restarts every server on the same ports and data dirs, and waits until
    /// they (and a cluster) are ready again.
    pub fn restart(&mut self) {
        let result = match self {
            TestRedis::Standalone(server) => {
                server.kill();
                server.restart()
            }
            TestRedis::Cluster(cluster) => cluster.restart_all(),
        };
        if let Err(e) = result {
            panic!("cannot restart the test redis: {e}");
        }
    }
}

/// Runs one async test body against a standalone server and against a 3-master cluster.
///
/// ```no_run
/// coordkit_testkit::redis_test! {
///     async fn pings(redis) {
///         let pool = redis.pool().await;
///         let pong: String = pool.query(&redis::cmd("PING")).await.unwrap();
///         assert_eq!(pong, "PONG");
///     }
/// }
/// ```
///
/// expands to a module `pings` with two `#[tokio::test]`s, `standalone` and `cluster`, each
/// handing the body a fresh [`TestRedis`] named `redis` (mutable, for fault tests). The
/// calling crate needs `tokio` (with `macros` and `rt-multi-thread`) as a dev-dependency.
#[macro_export]
macro_rules! redis_test {
    ($(#[$meta:meta])* async fn $name:ident($redis:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[allow(unused_mut)]
            async fn body(mut $redis: $crate::TestRedis) $body

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn standalone() {
                body($crate::TestRedis::start($crate::Topology::Standalone)).await
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cluster() {
                body($crate::TestRedis::start($crate::Topology::Cluster)).await
            }
        }
    };
}

/// A two-worker Tokio runtime for tests that drive async code from synchronous closures
/// (proptest's model tests block on it between generated operations).
///
/// # Panics
/// If the runtime cannot be built (the machine is out of threads).
pub fn blocking_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime for the test")
}

/// A command that runs this test binary again as a child process, running the test `test`
/// alone (a test that acts as the child when its environment says so, and returns at once
/// otherwise), with stdin and stdout piped and stderr inherited: for tests whose subjects are
/// OS processes (killed with `kill -9`, stalled, restarted). Add the environment, then spawn.
///
/// # Panics
/// If the path of the running test binary cannot be read.
pub fn rerun_test(test: &str) -> std::process::Command {
    use std::process::Stdio;
    let exe = std::env::current_exe().expect("the path of the running test binary");
    let mut command = std::process::Command::new(exe);
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}
