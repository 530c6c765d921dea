//! [`Pool`]: one shared, cheap-to-clone handle over a pool of Redis connections.
//!
//! A standalone server is served by bb8 over bb8-redis's manager (multiplexed connections); a
//! cluster by bb8 over the `redis` crate's own `ClusterClient` manager. Either way a checkout
//! costs no round trip: instead of bb8's PING-on-checkout, a connection that failed with an I/O
//! error marks every connection opened before it as broken, and bb8 replaces them on their next
//! checkout. So after a `CLIENT KILL` or a server restart, the calls in flight fail with
//! [`Error::Unavailable`] and the ones after them succeed on fresh connections.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{
    Cmd, ErrorKind, FromRedisValue, Pipeline, RedisError, RedisFuture, ServerErrorKind, Value,
};

use crate::config::{PoolConfig, Topology, scrub};
use crate::connect_error::ConnectTarget;
use crate::error::{Error, Result};
use crate::keyspace::Key;
use crate::time::duration_ms;

/// A cheap-to-clone handle over one shared connection pool. Every primitive of a process should
/// share one.
///
/// ```
/// use coordkit_core::{Pool, PoolConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = coordkit_testkit::RedisServer::start()?;
/// # let url = server.url(); // e.g. "redis://127.0.0.1:6379"
/// let pool = Pool::connect(PoolConfig::from_url(&url)?).await?;
/// let pong: String = pool.query(&coordkit_core::redis::cmd("PING")).await?;
/// assert_eq!(pong, "PONG");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    pool: bb8::Pool<Manager>,
    /// One permit per connection: checkouts wait their turn here, first come first served.
    gate: tokio::sync::Semaphore,
    config: PoolConfig,
    addr: String,
    secrets: Vec<String>,
    health: Arc<Health>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.inner.pool.state();
        f.debug_struct("Pool")
            .field("config", &self.inner.config)
            .field("connections", &state.connections)
            .field("idle", &state.idle_connections)
            .finish()
    }
}

/// Where the pool knows connections to be broken: every connection opened in an epoch below
/// `epoch` is discarded at its next checkout. Also what connecting looks like, so a checkout
/// that found no connection in time can say why.
#[derive(Default)]
struct Health {
    epoch: AtomicU64,
    /// Connection attempts under way.
    connecting: AtomicUsize,
    /// Why the last connection attempt failed; cleared when one succeeds.
    last_connect_error: Mutex<Option<Error>>,
}

impl Health {
    fn set_last_connect_error(&self, error: Option<Error>) {
        if let Ok(mut last) = self.last_connect_error.lock() {
            *last = error;
        }
    }
}

enum ManagerKind {
    // Boxed: their sizes differ a lot, and more with the `tls` feature.
    Standalone(Box<bb8_redis::RedisConnectionManager>),
    Cluster(Box<ClusterClient>),
}

struct Manager {
    kind: ManagerKind,
    health: Arc<Health>,
    command_timeout: Duration,
    target: ConnectTarget,
}

/// A checked-out connection and its turn at the pool's gate (dropped after the connection
/// is back in the pool, in field order).
struct Checkout<'a> {
    conn: bb8::PooledConnection<'a, Manager>,
    _turn: tokio::sync::SemaphorePermit<'a>,
}

impl std::ops::Deref for Checkout<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for Checkout<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// A pooled connection: the driver's connection plus the epoch it was opened in. Both drivers'
/// connections are multiplexed handles, so a clone shares the same socket.
#[derive(Clone)]
pub(crate) struct Connection {
    inner: AnyConnection,
    epoch: u64,
}

#[derive(Clone)]
enum AnyConnection {
    Standalone(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for AnyConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            AnyConnection::Standalone(c) => c.req_packed_command(cmd),
            AnyConnection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            AnyConnection::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            AnyConnection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            AnyConnection::Standalone(c) => c.get_db(),
            AnyConnection::Cluster(c) => c.get_db(),
        }
    }
}

impl Manager {
    async fn open(&self) -> Result<AnyConnection, RedisError> {
        use bb8::ManageConnection as _;
        Ok(match &self.kind {
            ManagerKind::Standalone(manager) => {
                let mut conn = manager.connect().await?;
                conn.set_response_timeout(self.command_timeout);
                AnyConnection::Standalone(conn)
            }
            ManagerKind::Cluster(client) => AnyConnection::Cluster(client.connect().await?),
        })
    }
}

/// Counts a connection attempt while it runs (also when its future is dropped).
struct Connecting<'a>(&'a AtomicUsize);

impl<'a> Connecting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Connecting(count)
    }
}

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl bb8::ManageConnection for Manager {
    type Connection = Connection;
    type Error = Error;

    async fn connect(&self) -> Result<Connection, Error> {
        let epoch = self.health.epoch.load(Ordering::Acquire);
        let _connecting = Connecting::enter(&self.health.connecting);
        match self.open().await {
            Ok(inner) => {
                self.health.set_last_connect_error(None);
                Ok(Connection { inner, epoch })
            }
            Err(e) => Err(self.target.explain(&e).await),
        }
    }

    async fn is_valid(&self, conn: &mut Connection) -> Result<(), Error> {
        match redis::cmd("PING").query_async::<()>(&mut conn.inner).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.target.explain(&e).await),
        }
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        conn.epoch < self.health.epoch.load(Ordering::Acquire)
    }
}

/// Records the last connection error bb8 saw, so a checkout that times out can say why.
#[derive(Clone)]
struct LastErrorSink(Arc<Health>);

impl std::fmt::Debug for LastErrorSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LastErrorSink")
    }
}

impl bb8::ErrorSink<Error> for LastErrorSink {
    fn sink(&self, error: Error) {
        self.0.set_last_connect_error(Some(error));
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<Error>> {
        Box::new(self.clone())
    }
}

impl Pool {
    /// Builds the pool and checks that the server answers (and accepts the credentials):
    /// an unreachable server fails here, within the connection timeout, naming the address.
    pub async fn connect(config: PoolConfig) -> Result<Self> {
        let pool = Self::connect_lazy(config)?;
        pool.query::<()>(&redis::cmd("PING")).await?;
        Ok(pool)
    }

    /// Builds the pool without contacting the server; the first operation connects.
    /// Must be called inside a Tokio runtime.
    pub fn connect_lazy(config: PoolConfig) -> Result<Self> {
        config.validate()?;
        #[cfg(feature = "tls")]
        {
            // Several crates may race to install a provider; any installed one is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let addr = config.address();
        let secrets = config.secrets();
        let scrubbed = |e: RedisError| Error::InvalidConfig {
            field: "url",
            reason: scrub(&e.to_string(), &secrets),
        };
        // The driver's retries (redirects, reconnects) must end within the command timeout,
        // so a node that is down answers with its own error (Unavailable) rather than the
        // command timing out; its default first wait alone is 1.28 s.
        let retry_wait =
            (config.command_timeout / (4 * CLUSTER_RETRIES)).max(Duration::from_millis(1));
        let kind = match config.topology {
            Topology::Standalone => ManagerKind::Standalone(Box::new(
                bb8_redis::RedisConnectionManager::new(config.nodes[0].clone())
                    .map_err(scrubbed)?,
            )),
            Topology::Cluster => ManagerKind::Cluster(Box::new(
                ClusterClient::builder(config.nodes.clone())
                    .connection_timeout(config.connection_timeout)
                    .response_timeout(config.command_timeout)
                    .retries(CLUSTER_RETRIES)
                    .min_retry_wait(duration_ms(retry_wait))
                    .max_retry_wait(duration_ms(retry_wait).saturating_mul(2))
                    .build()
                    .map_err(scrubbed)?,
            )),
        };
        let health = Arc::new(Health::default());
        let manager = Manager {
            kind,
            health: health.clone(),
            command_timeout: config.command_timeout,
            target: ConnectTarget {
                addr: addr.clone(),
                secrets: secrets.clone(),
                node: config.nodes[0].clone(),
                connection_timeout: config.connection_timeout,
            },
        };
        let pool = bb8::Pool::builder()
            .max_size(config.pool_size)
            .connection_timeout(config.connection_timeout)
            // A PING per checkout would double the round trips; breakage is detected from
            // command errors instead (see `Health`).
            .test_on_check_out(false)
            .error_sink(Box::new(LastErrorSink(health.clone())))
            .build_unchecked(manager);
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                gate: tokio::sync::Semaphore::new(config.pool_size as usize),
                config,
                addr,
                secrets,
                health,
            }),
        })
    }

    /// The configuration this pool was built from.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// Standalone or cluster.
    pub fn topology(&self) -> Topology {
        self.inner.config.topology
    }

    /// The address shown in errors (no credentials).
    pub fn address(&self) -> &str {
        &self.inner.addr
    }

    /// Connections currently open, and how many of them are idle.
    pub fn connections(&self) -> (u32, u32) {
        let state = self.inner.pool.state();
        (state.connections, state.idle_connections)
    }

    /// The server's clock in milliseconds (`TIME`; on a cluster, one node's).
    pub async fn server_time_ms(&self) -> Result<u64> {
        let (secs, micros): (u64, u64) = self.query(&redis::cmd("TIME")).await?;
        Ok(secs * 1000 + micros / 1000)
    }

    /// One page of `SCAN … MATCH pattern COUNT count`, over every primary of a cluster.
    ///
    /// Start with `cursor = ""`; pass each page's [`ScanPage::next`] back until it is `None`.
    /// Like `SCAN`, a key present for the whole scan is returned at least once (possibly twice),
    /// and a page may be empty while more follow. On a cluster the cursor also names the node,
    /// so a slot migration during the scan may skip or repeat keys.
    pub async fn scan_page(&self, pattern: &str, cursor: &str, count: u32) -> Result<ScanPage> {
        let bad_cursor =
            || Error::invalid_config("cursor", format!("{cursor:?} is not a scan cursor"));
        match self.topology() {
            Topology::Standalone => {
                let start: u64 = if cursor.is_empty() {
                    0
                } else {
                    cursor.parse().map_err(|_| bad_cursor())?
                };
                let (next, keys): (u64, Vec<String>) = self
                    .query(
                        redis::cmd("SCAN")
                            .arg(start)
                            .arg("MATCH")
                            .arg(pattern)
                            .arg("COUNT")
                            .arg(count.max(1)),
                    )
                    .await?;
                Ok(ScanPage {
                    keys,
                    next: (next != 0).then(|| next.to_string()),
                })
            }
            Topology::Cluster => {
                let (node, start) = if cursor.is_empty() {
                    (0usize, 0u64)
                } else {
                    let (node, start) = cursor.split_once(':').ok_or_else(bad_cursor)?;
                    (
                        node.parse().map_err(|_| bad_cursor())?,
                        start.parse().map_err(|_| bad_cursor())?,
                    )
                };
                let primaries = self.cluster_primaries().await?;
                let Some((host, port)) = primaries.get(node).cloned() else {
                    return Ok(ScanPage {
                        keys: Vec::new(),
                        next: None,
                    });
                };
                let mut scan = redis::cmd("SCAN");
                scan.arg(start)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(count.max(1));
                let value = self.query_node(host, port, scan, "SCAN").await?;
                let (next, keys): (u64, Vec<String>) = redis::from_redis_value(value)
                    .map_err(|e| Error::decode("the answer to SCAN", e))?;
                let next = if next != 0 {
                    Some(format!("{node}:{next}"))
                } else if node + 1 < primaries.len() {
                    Some(format!("{}:0", node + 1))
                } else {
                    None
                };
                Ok(ScanPage { keys, next })
            }
        }
    }

    /// Runs `cmd` on the cluster node at `host:port` (on a standalone server, on the server).
    pub(crate) async fn query_node(
        &self,
        host: String,
        port: u16,
        cmd: Cmd,
        operation: &str,
    ) -> Result<Value> {
        let mut conn = self.checkout().await?;
        let timeout = self.inner.config.command_timeout;
        let outcome = match &mut conn.inner {
            AnyConnection::Cluster(c) => {
                let routing = redis::cluster_routing::RoutingInfo::SingleNode(
                    redis::cluster_routing::SingleNodeRoutingInfo::ByAddress { host, port },
                );
                tokio::time::timeout(timeout, c.route_command(cmd, routing)).await
            }
            AnyConnection::Standalone(c) => {
                tokio::time::timeout(timeout, cmd.query_async::<Value>(c)).await
            }
        };
        self.settle(&conn, outcome, operation, Origin::NONE).await
    }

    /// The cluster's primaries, `(host, port)` sorted, from `CLUSTER SLOTS`.
    pub(crate) async fn cluster_primaries(&self) -> Result<Vec<(String, u16)>> {
        let slots: Vec<Vec<redis::Value>> = self
            .query(&redis::cmd("CLUSTER").arg("SLOTS").to_owned())
            .await?;
        let mut primaries: Vec<(String, u16)> = slots
            .iter()
            .filter_map(|range| range.get(2))
            .filter_map(|node| {
                redis::from_redis_value::<(String, u16)>(node.clone())
                    .ok()
                    .or_else(|| {
                        redis::from_redis_value::<Vec<redis::Value>>(node.clone())
                            .ok()
                            .and_then(|parts| {
                                let host =
                                    redis::from_redis_value::<String>(parts.first()?.clone())
                                        .ok()?;
                                let port =
                                    redis::from_redis_value::<u16>(parts.get(1)?.clone()).ok()?;
                                Some((host, port))
                            })
                    })
            })
            .collect();
        primaries.sort();
        primaries.dedup();
        Ok(primaries)
    }

    /// Runs one command and decodes its answer.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        self.query_keys(cmd, &[]).await
    }

    /// Runs one command on `keys` (which it names), and decodes its answer: like
    /// [`Pool::query`], but a `WRONGTYPE` answer names the key at fault.
    pub async fn query_keys<T: FromRedisValue>(&self, cmd: &Cmd, keys: &[Key]) -> Result<T> {
        let mut conn = self.checkout().await?;
        let outcome = tokio::time::timeout(
            self.inner.config.command_timeout,
            cmd.query_async::<T>(&mut conn.inner),
        )
        .await;
        match outcome {
            Ok(Ok(value)) => Ok(value),
            // The command's name is only needed to describe a failure.
            failed => {
                let operation = command_name(cmd);
                self.settle(&conn, failed, &operation, Origin { script: None, keys })
                    .await
            }
        }
    }

    /// Runs a script's EVALSHA `cmd`; on NOSCRIPT loads the script and runs it once more.
    /// `before` (invocations of the same script) go first in the same pipeline, so the server
    /// runs them before `cmd`, in the same round trip; their answers are dropped.
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        script: &crate::Script,
        cmd: &Cmd,
        keys: &[Key],
        before: &[Cmd],
    ) -> Result<T> {
        let mut conn = self.checkout().await?;
        let timeout = self.inner.config.command_timeout;
        let outcome = tokio::time::timeout(timeout, async {
            if before.is_empty() {
                return match cmd.query_async::<T>(&mut conn.inner).await {
                    Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                        script.load(&mut conn.inner).await?;
                        cmd.query_async::<T>(&mut conn.inner).await
                    }
                    other => other,
                };
            }
            // One pipeline, so the server reads the earlier commands and this one in one go.
            // Their answers are not kept; a NOSCRIPT (the server forgot the scripts: none of
            // them ran) loads the scripts and sends the pipeline once more.
            let mut pipeline = redis::pipe();
            for earlier in before {
                pipeline.add_command(earlier.clone()).ignore();
            }
            pipeline.add_command(cmd.clone());
            match pipeline.query_async::<(T,)>(&mut conn.inner).await {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    script.load(&mut conn.inner).await?;
                    pipeline
                        .query_async::<(T,)>(&mut conn.inner)
                        .await
                        .map(|(t,)| t)
                }
                other => other.map(|(t,)| t),
            }
        })
        .await;
        self.settle(
            &conn,
            outcome,
            script.name(),
            Origin {
                script: Some(script.name()),
                keys,
            },
        )
        .await
    }

    /// Runs several EVALSHA calls of one script (`calls`: each command with its keys) in one
    /// pipeline on one connection: one round trip for all, and each call its own answer (a
    /// failing call fails alone). A call answered NOSCRIPT did not run: the script is loaded
    /// and those calls are sent once more. `Err` means the round trip itself failed.
    pub(crate) async fn invoke_each<T: FromRedisValue>(
        &self,
        script: Option<&crate::Script>,
        calls: &[(Cmd, &[Key])],
    ) -> Result<Vec<Result<T>>> {
        let name = script.map_or("a pipeline", |s| s.name());
        let mut conn = self.checkout().await?;
        let timeout = self.inner.config.command_timeout;
        let outcome = tokio::time::timeout(timeout, async {
            let mut pipeline = Pipeline::with_capacity(calls.len());
            pipeline.ignore_errors();
            for (cmd, _) in calls {
                pipeline.add_command(cmd.clone());
            }
            let mut answers: Vec<redis::RedisResult<Value>> =
                pipeline.query_async(&mut conn.inner).await?;
            let unknown: Vec<usize> = answers
                .iter()
                .enumerate()
                .filter(|(_, a)| {
                    matches!(a, Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript))
                })
                .map(|(i, _)| i)
                .collect();
            if let Some(script) = script.filter(|_| !unknown.is_empty()) {
                script.load(&mut conn.inner).await?;
                let mut again = Pipeline::with_capacity(unknown.len());
                again.ignore_errors();
                for &i in &unknown {
                    again.add_command(calls[i].0.clone());
                }
                let retried: Vec<redis::RedisResult<Value>> =
                    again.query_async(&mut conn.inner).await?;
                for (i, answer) in unknown.into_iter().zip(retried) {
                    answers[i] = answer;
                }
            }
            Ok(answers)
        })
        .await;
        let origin = Origin {
            script: script.map(|s| s.name()),
            keys: &[],
        };
        let answers = self.settle(&conn, outcome, name, origin).await?;
        let mut out = Vec::with_capacity(answers.len());
        for (answer, (cmd, keys)) in answers.into_iter().zip(calls) {
            let origin = Origin {
                script: script.map(|s| s.name()),
                keys,
            };
            out.push(match answer {
                Ok(value) => T::from_redis_value(value)
                    .map_err(|e| Error::decode(format!("the answer to {name}"), e)),
                Err(e) => Err(match self.classify(&e, &command_name(cmd), origin) {
                    Error::WrongType { key, found } if found == UNKNOWN => {
                        self.find_wrong_type(&conn, &key, keys).await
                    }
                    other => other,
                }),
            });
        }
        Ok(out)
    }

    /// Runs `commands` (each with the keys it touches; on a cluster all of one hash tag) in one
    /// pipeline on one connection: one round trip for all, each with its own answer, in order
    /// — a command that fails (a key of the wrong type, …) fails alone. `Err` means the round
    /// trip itself failed: any of the commands may have run.
    pub async fn query_each<T: FromRedisValue>(
        &self,
        commands: &[(Cmd, &[Key])],
    ) -> Result<Vec<Result<T>>> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        self.invoke_each(None, commands).await
    }

    /// Queues `cmd` (marked no-response) on a connection without waiting for its answer.
    pub(crate) async fn send_without_reply(&self, cmd: &Cmd, keys: &[Key]) -> Result<()> {
        let mut conn = self.checkout().await?;
        let outcome = tokio::time::timeout(
            self.inner.config.command_timeout,
            cmd.query_async::<Value>(&mut conn.inner),
        )
        .await
        .map(|r| r.map(|_| ()));
        match outcome {
            Ok(Ok(())) => Ok(()),
            failed => {
                let operation = command_name(cmd);
                self.settle(&conn, failed, &operation, Origin { script: None, keys })
                    .await
            }
        }
    }

    /// A connection of the pool, held until the returned guard is dropped. Checkouts are
    /// handed out in the order they were asked for (a fair semaphore in front of bb8): bb8
    /// alone gives a returned connection to whoever asks first, so a busy caller could starve
    /// a waiting one until its connection timeout. A connection known to be broken is dropped
    /// here, and another taken.
    async fn checkout(&self) -> Result<Checkout<'_>> {
        // One deadline for the turn and the connection together.
        let deadline = tokio::time::Instant::now() + self.inner.config.connection_timeout;
        let Ok(Ok(permit)) = tokio::time::timeout_at(deadline, self.inner.gate.acquire()).await
        else {
            return Err(self.no_connection_in_time());
        };
        loop {
            let Ok(conn) = tokio::time::timeout_at(deadline, self.checkout_pooled()).await else {
                return Err(self.no_connection_in_time());
            };
            let conn = conn?;
            if conn.epoch >= self.inner.health.epoch.load(Ordering::Acquire) {
                return Ok(Checkout {
                    conn,
                    _turn: permit,
                });
            }
            // Given back broken: bb8's `has_broken` sees the epoch and closes it.
            drop(conn);
        }
    }

    async fn checkout_pooled(&self) -> Result<bb8::PooledConnection<'_, Manager>> {
        match self.inner.pool.get().await {
            Ok(conn) => Ok(conn),
            Err(bb8::RunError::User(e)) => Err(e),
            Err(bb8::RunError::TimedOut) => Err(self.no_connection_in_time()),
        }
    }

    /// The error of a checkout that found no connection within the connection timeout. The
    /// server is down ([`Error::Unavailable`]) when the last connection attempt failed (or
    /// the failure itself when it says more: credentials, configuration) or when one is still
    /// under way; only a pool whose every connection stayed busy is a [`Error::Timeout`].
    fn no_connection_in_time(&self) -> Error {
        let health = &self.inner.health;
        let last = health
            .last_connect_error
            .lock()
            .ok()
            .and_then(|last| last.clone());
        let after = self.inner.config.connection_timeout;
        let addr = self.inner.addr.clone();
        match last {
            Some(Error::Unavailable { addr, reason }) => Error::Unavailable {
                addr,
                reason: format!("no connection within {after:?}: {reason}"),
            },
            Some(other) => other,
            None if health.connecting.load(Ordering::Acquire) > 0
                || self.inner.pool.state().connections == 0 =>
            {
                // A server without TLS waits for a command after a TLS hello: say so.
                let hint = if addr.contains("(tls)") {
                    "; a server without TLS does not answer rediss://, use redis:// for it"
                } else {
                    ""
                };
                Error::Unavailable {
                    addr,
                    reason: format!(
                        "no connection within {after:?}: connecting did not complete (the \
                         server does not answer){hint}"
                    ),
                }
            }
            None => Error::Timeout {
                addr,
                operation: "a connection from the pool (every connection stayed busy)".into(),
                after,
            },
        }
    }

    async fn settle<T>(
        &self,
        conn: &Connection,
        outcome: std::result::Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
        operation: &str,
        origin: Origin<'_>,
    ) -> Result<T> {
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if breaks_connection(&e) {
                    // Every connection opened before this one's failure is suspect.
                    self.inner
                        .health
                        .epoch
                        .fetch_max(conn.epoch + 1, Ordering::AcqRel);
                }
                match self.classify(&e, operation, origin) {
                    Error::WrongType { key, found } if found == UNKNOWN => {
                        Err(self.find_wrong_type(conn, &key, origin.keys).await)
                    }
                    other => Err(other),
                }
            }
            Err(_) => Err(Error::Timeout {
                addr: self.inner.addr.clone(),
                operation: operation.to_owned(),
                after: self.inner.config.command_timeout,
            }),
        }
    }

    /// Maps a driver error to [`Error`]. A generic `WRONGTYPE` comes back with `found ==
    /// UNKNOWN` and its detail in `key`, for [`Pool::find_wrong_type`] to resolve.
    fn classify(&self, e: &RedisError, operation: &str, origin: Origin<'_>) -> Error {
        let addr = self.inner.addr.clone();
        let message = scrub(&e.to_string(), &self.inner.secrets);
        if e.is_timeout() {
            return Error::Timeout {
                addr,
                operation: operation.to_owned(),
                after: self.inner.config.command_timeout,
            };
        }
        match e.kind() {
            ErrorKind::Io | ErrorKind::ClusterConnectionNotFound => {
                return Error::Unavailable {
                    addr,
                    reason: message,
                };
            }
            ErrorKind::AuthenticationFailed => {
                return Error::Auth {
                    addr,
                    reason: message,
                };
            }
            ErrorKind::Parse | ErrorKind::UnexpectedReturnType => {
                return Error::decode(format!("the answer to {operation}"), message);
            }
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::Moved
                | ServerErrorKind::Ask,
            ) => {
                return Error::Unavailable {
                    addr,
                    reason: message,
                };
            }
            _ => {}
        }
        let code = e.code().unwrap_or("ERR");
        let detail = scrub(e.detail().unwrap_or_default(), &self.inner.secrets);
        if is_auth_message(&message) {
            return Error::Auth {
                addr,
                reason: message,
            };
        }
        if code == "WRONGTYPE" {
            return Error::WrongType {
                key: detail,
                found: UNKNOWN.to_owned(),
            };
        }
        if code == "CORRUPT" && origin.script.is_some() {
            return corrupt_reply(&detail, origin.keys);
        }
        match origin.script {
            Some(name) if !is_server_code(code) || code == "ERR" => Error::Script {
                script: name,
                code: code.to_owned(),
                detail,
            },
            _ => Error::Server { addr, message },
        }
    }

    /// Builds [`Error::WrongType`]: from a script's own `WRONGTYPE <key> <found>` reply, or, for
    /// Redis's generic one, by asking which of the call's keys holds an unexpected type.
    async fn find_wrong_type(&self, conn: &Connection, detail: &str, keys: &[Key]) -> Error {
        // A script's own `WRONGTYPE <key> <found>` (Redis may append where the script failed).
        let mut words = detail.split_whitespace();
        if let (Some(key), Some(found)) = (words.next(), words.next())
            && keys.iter().any(|k| k.as_str() == key)
        {
            return Error::WrongType {
                key: key.to_owned(),
                found: found.to_owned(),
            };
        }
        let mut found = Vec::new();
        // The caller's own connection (a multiplexed handle): no second checkout, which a
        // full pool could not give.
        let mut conn = conn.clone();
        for key in keys {
            let kind = tokio::time::timeout(
                self.inner.config.command_timeout,
                redis::cmd("TYPE")
                    .arg(key)
                    .query_async::<String>(&mut conn.inner),
            )
            .await;
            if let Ok(Ok(kind)) = kind
                && kind != "none"
            {
                // A key declared to hold another type is the culprit.
                if key.kind().is_some_and(|k| k.type_name() != kind) {
                    return Error::WrongType {
                        key: key.as_str().to_owned(),
                        found: kind,
                    };
                }
                found.push((key.as_str().to_owned(), kind));
            }
        }
        match found.as_slice() {
            [(key, kind)] => Error::WrongType {
                key: key.clone(),
                found: kind.clone(),
            },
            _ => Error::WrongType {
                key: found
                    .iter()
                    .map(|(k, t)| format!("{k} ({t})"))
                    .collect::<Vec<_>>()
                    .join(", "),
                found: UNKNOWN.to_owned(),
            },
        }
    }
}

const UNKNOWN: &str = "unknown";

/// How many times the cluster driver retries a command (redirects, reconnects) before it
/// answers with the error.
const CLUSTER_RETRIES: u32 = 3;

/// Where a call came from, for error messages.
#[derive(Clone, Copy)]
struct Origin<'a> {
    /// The script's name, for script invocations.
    script: Option<&'static str>,
    /// The keys the call touched.
    keys: &'a [Key],
}

impl Origin<'_> {
    const NONE: Origin<'static> = Origin {
        script: None,
        keys: &[],
    };
}

/// One page of [`Pool::scan_page`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    /// The keys of this page.
    pub keys: Vec<String>,
    /// The cursor of the next page; `None` when the scan is complete.
    pub next: Option<String>,
}

fn command_name(cmd: &Cmd) -> String {
    cmd.args_iter()
        .next()
        .and_then(|arg| match arg {
            redis::Arg::Simple(bytes) => std::str::from_utf8(bytes).ok().map(str::to_uppercase),
            _ => None,
        })
        .unwrap_or_else(|| "a command".to_owned())
}

/// Errors after which the connection cannot be trusted.
fn breaks_connection(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

pub(crate) fn is_auth_message(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    ["noauth", "wrongpass", "invalid password", "authentication"]
        .iter()
        .any(|m| message.contains(m))
}

/// Error codes that Redis itself answers, as opposed to codes a coordkit script chose.
fn is_server_code(code: &str) -> bool {
    matches!(
        code,
        "ERR"
            | "OOM"
            | "READONLY"
            | "NOPERM"
            | "NOAUTH"
            | "WRONGPASS"
            | "BUSY"
            | "NOSCRIPT"
            | "LOADING"
            | "CROSSSLOT"
            | "EXECABORT"
            | "NOTBUSY"
            | "MISCONF"
            | "NOREPLICAS"
    )
}

/// [`Error::Corrupt`] from a script's `CORRUPT <key> <detail>` reply (the prelude's
/// `ck_corrupt` and `ck_int`). A first word that is none of the call's keys is kept in the
/// detail.
fn corrupt_reply(detail: &str, keys: &[Key]) -> Error {
    // Redis appends where an error raised by a script came from.
    let detail = detail.rfind(" script: ").map_or(detail, |at| &detail[..at]);
    let (first, rest) = detail.split_once(' ').unwrap_or((detail, ""));
    match keys.iter().find(|k| k.as_str() == first) {
        Some(key) => Error::corrupt(key.as_str(), rest.trim()),
        None => Error::corrupt("(unnamed)", detail.trim()),
    }
}
