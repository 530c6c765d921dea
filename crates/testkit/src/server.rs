//! One throwaway `redis-server` process.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::TestkitError;

const INSTALL_HINT: &str = "install it with `sudo apt-get install -y redis-server` (Debian/Ubuntu) \
     or `brew install redis` (macOS), or point REDIS_SERVER_BIN at a redis-server binary";

/// The `redis-server` binary: `REDIS_SERVER_BIN`, else `redis-server` on `PATH`.
/// Fails with the install command when there is none.
pub fn redis_server_bin() -> Result<PathBuf, TestkitError> {
    find_redis_server(
        std::env::var_os("REDIS_SERVER_BIN"),
        std::env::var_os("PATH"),
    )
}

/// [`redis_server_bin`] with the two environment variables given.
pub fn find_redis_server(
    bin_env: Option<OsString>,
    path_env: Option<OsString>,
) -> Result<PathBuf, TestkitError> {
    if let Some(bin) = bin_env.filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(TestkitError(format!(
                "REDIS_SERVER_BIN={} is not a file; {INSTALL_HINT}",
                bin.display()
            )))
        };
    }
    let path = path_env.unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            TestkitError(format!(
                "redis-server was not found on PATH; {INSTALL_HINT}"
            ))
        })
}

/// How to start a server.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Turn on the append-only file with `appendfsync always`: every acknowledged write is on
    /// disk before the reply, so it survives `kill -9`.
    pub aof: bool,
    /// `requirepass`: clients must authenticate as `default` with this password.
    pub password: Option<String>,
    /// Extra ACL users: `(name, password)`, each allowed every command and key.
    pub acl_users: Vec<(String, String)>,
    /// Start in cluster mode (used by [`RedisCluster`](crate::RedisCluster)).
    pub cluster: bool,
    /// More `--name value` settings.
    pub extra: Vec<(String, String)>,
}

/// A `redis-server` on a free loopback port in a temporary directory. It is killed when this
/// value drops, and a watchdog kills it if the test process dies first.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    options: ServerOptions,
    dir: TempDir,
    child: Option<Child>,
    watchdog: Option<Child>,
}

impl RedisServer {
    /// A plain server: no persistence, no password.
    pub fn start() -> Result<Self, TestkitError> {
        Self::start_with(ServerOptions::default())
    }

    /// A server with `options`.
    pub fn start_with(options: ServerOptions) -> Result<Self, TestkitError> {
        let bin = redis_server_bin()?;
        let mut last_error = None;
        // A free port can be taken between choosing and binding it: try a few.
        for _ in 0..5 {
            let port = free_port(options.cluster)?;
            let dir = tempfile::Builder::new()
                .prefix("coordkit-redis-")
                .tempdir()
                .map_err(|e| TestkitError(format!("cannot create a temp dir: {e}")))?;
            let mut server = RedisServer {
                port,
                options: options.clone(),
                dir,
                child: None,
                watchdog: None,
            };
            match server.spawn(&bin) {
                Ok(()) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| TestkitError("redis-server did not start".into())))
    }

    fn spawn(&mut self, bin: &Path) -> Result<(), TestkitError> {
        let mut cmd = Command::new(bin);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .args(["--protected-mode", "no"]);
        if self.options.aof {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        if let Some(password) = &self.options.password {
            cmd.args(["--requirepass", password]);
        }
        for (user, password) in &self.options.acl_users {
            cmd.args(["--user", user, "on"])
                .arg(format!(">{password}"))
                .args(["~*", "&*", "+@all"]);
        }
        if self.options.cluster {
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                "--cluster-require-full-coverage",
                "yes",
            ]);
        }
        for (name, value) in &self.options.extra {
            cmd.arg(format!("--{name}")).arg(value);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| TestkitError(format!("cannot run {}: {e}", bin.display())))?;
        let pid = child.id();
        self.child = Some(child);
        self.watchdog = spawn_watchdog(pid);
        self.wait_ready(Duration::from_secs(15))
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), TestkitError> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(TestkitError(format!(
                    "redis-server on port {} exited ({status}): {}",
                    self.port,
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                )));
            }
            if self.ping().is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(TestkitError(format!(
                    "redis-server on port {} did not answer PING within {limit:?}",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn ping(&self) -> redis::RedisResult<()> {
        let mut conn = self.admin()?;
        redis::cmd("PING").query(&mut conn)
    }

    /// A synchronous admin connection (authenticated when the server has a password).
    pub fn admin(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(self.url())?;
        let conn = client.get_connection_with_timeout(Duration::from_millis(500))?;
        Ok(conn)
    }

    /// Runs one admin command and returns its answer.
    pub fn command<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let mut conn = self.admin()?;
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(&mut conn)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `redis://[:password@]127.0.0.1:<port>`, with the server's password if it has one.
    pub fn url(&self) -> String {
        match &self.options.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => self.url_without_password(),
        }
    }

    /// `redis://127.0.0.1:<port>`, never with a password.
    pub fn url_without_password(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A pool for fault tests: commands time out after `command_timeout` and connecting after
    /// half of it, so calls to a killed server fail fast. Panics (this is test support) when
    /// the server cannot be reached.
    pub async fn fault_pool(&self, command_timeout: Duration) -> coordkit_core::Pool {
        let config = coordkit_core::PoolConfig::from_url(&self.url())
            .map(|c| {
                c.command_timeout(command_timeout)
                    .connection_timeout(command_timeout / 2)
            })
            .unwrap_or_else(|e| panic!("the testkit built a bad URL: {e}"));
        coordkit_core::Pool::connect(config)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test redis: {e}"))
    }

    /// The data directory (AOF, `nodes.conf`, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// `kill -9`: the server dies at once, with no chance to save anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stop_watchdog();
    }

    /// A clean `SHUTDOWN` (falls back to `kill -9` after 10 s).
    pub fn stop(&mut self) {
        let _ = self.command::<()>(&["SHUTDOWN"]);
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stop_watchdog();
    }

    /// Starts the server again on the same port and data directory (stopping it first if it
    /// runs), and waits until it answers PING (after loading its AOF).
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        if self.child.is_some() {
            self.stop();
        }
        let bin = redis_server_bin()?;
        // The old socket may linger for a moment: retry while the port is busy.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn(&bin) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() < deadline => {
                    self.kill();
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn stop_watchdog(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A shell loop that kills `pid` once this test process is gone (a panic that aborts, a
/// timeout that kills the test): no server outlives the test run.
fn spawn_watchdog(pid: u32) -> Option<Child> {
    let parent = std::process::id();
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while kill -0 {parent} 2>/dev/null && kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             kill -9 {pid} 2>/dev/null"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// A loopback port that is free now (and, for cluster nodes, whose bus port +10000 is too).
fn free_port(cluster: bool) -> Result<u16, TestkitError> {
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| TestkitError(format!("cannot bind a loopback port: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| TestkitError(format!("cannot read a bound port: {e}")))?
            .port();
        if !cluster {
            return Ok(port);
        }
        if port <= 55_535 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    Err(TestkitError("no free loopback port found".into()))
}

/// Whether something accepts TCP connections at `addr` (used to prove a port is closed).
pub fn accepts_connections(addr: &str) -> bool {
    addr.parse::<SocketAddr>()
        .ok()
        .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_millis(200)).ok())
        .is_some()
}
