//! [`Pool`]: one shared, cheap-to-clone handle over a pool of Redis connections.
//!
//! A standalone server is served by bb8 over bb8-redis's manager (multiplexed connections); a
//! cluster by bb8 over the `redis` crate's own `ClusterClient` manager. Either way a checkout
//! costs no round trip: instead of bb8's PING-on-checkout, a connection that failed with an I/O
//! error marks every connection opened before it as broken, and bb8 replaces them on their next
//! checkout. So after a `CLIENT KILL` or a server restart, the calls in flight fail with
//! [`Error::Unavailable`] and the ones after them succeed on fresh connections.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::cluster::ClusterClient;
use redis::{Cmd, ErrorKind, FromRedisValue, Pipeline, RedisError, ServerErrorKind, Value};

use crate::config::{PoolConfig, Topology, scrub};
use crate::connect_error::ConnectTarget;
use crate::error::{Error, Result};
use crate::keyspace::Key;
use crate::time::duration_ms;
use crate::trace::ScriptSpan;

mod classify;
mod connection;
mod nodes;

pub(crate) use classify::is_auth_message;
use classify::{Origin, UNKNOWN, command_name};
use connection::{
    AnyConnection, Checkout, Connection, Health, LastErrorSink, Manager, ManagerKind,
};
pub use nodes::ScanPage;

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
}

impl Pool {
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
        let traced = ScriptSpan::new(script.name(), keys, before.len() + 1);
        let mut conn = match self.checkout().await {
            Ok(conn) => conn,
            Err(e) => return traced.finish(keys, Err(e)),
        };
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
        let result = self
            .settle(
                &conn,
                outcome,
                script.name(),
                Origin {
                    script: Some(script.name()),
                    keys,
                },
            )
            .await;
        traced.finish(keys, result)
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
        let first_keys = calls.first().map_or(&[][..], |(_, keys)| *keys);
        // Script calls are traced; a pipeline of plain commands (query_each) is not.
        let traced = script
            .map(|s| ScriptSpan::pipeline(s.name(), calls.iter().map(|(_, k)| *k), calls.len()));
        let fail = |e: Error| match &traced {
            Some(traced) => traced.finish(first_keys, Err(e)),
            None => Err(e),
        };
        let mut conn = match self.checkout().await {
            Ok(conn) => conn,
            Err(e) => return fail(e),
        };
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
        let answers = match self.settle(&conn, outcome, name, origin).await {
            Ok(answers) => answers,
            Err(e) => return fail(e),
        };
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
        match &traced {
            Some(traced) => {
                let mut failed = 0;
                for (answer, (_, keys)) in out.iter().zip(calls) {
                    if let Err(e) = answer {
                        traced.note(keys, e);
                        failed += 1;
                    }
                }
                let out = traced.finish(first_keys, Ok(out));
                traced.partial(failed);
                out
            }
            None => Ok(out),
        }
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
    pub(crate) async fn send_without_reply(
        &self,
        script: &'static str,
        cmd: &Cmd,
        keys: &[Key],
    ) -> Result<()> {
        let traced = ScriptSpan::new(script, keys, 1);
        let mut conn = match self.checkout().await {
            Ok(conn) => conn,
            Err(e) => return traced.finish(keys, Err(e)),
        };
        let outcome = tokio::time::timeout(
            self.inner.config.command_timeout,
            cmd.query_async::<Value>(&mut conn.inner),
        )
        .await
        .map(|r| r.map(|_| ()));
        let result = match outcome {
            Ok(Ok(())) => Ok(()),
            failed => {
                let operation = command_name(cmd);
                self.settle(&conn, failed, &operation, Origin { script: None, keys })
                    .await
            }
        };
        let result = traced.finish(keys, result);
        if result.is_ok() {
            traced.sent();
        }
        result
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
}

/// How many times the cluster driver retries a command (redirects, reconnects) before it
/// answers with the error.
const CLUSTER_RETRIES: u32 = 3;
