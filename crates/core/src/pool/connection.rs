//! The connections under the pool: bb8's manager for a standalone server or a cluster, the
//! checkout guard, and the health the pool keeps to replace broken connections.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

use crate::connect_error::ConnectTarget;
use crate::error::{Error, Result};

/// Where the pool knows connections to be broken: every connection opened in an epoch below
/// `epoch` is discarded at its next checkout. Also what connecting looks like, so a checkout
/// that found no connection in time can say why.
#[derive(Default)]
pub(super) struct Health {
    pub(super) epoch: AtomicU64,
    /// Connection attempts under way.
    pub(super) connecting: AtomicUsize,
    /// Why the last connection attempt failed; cleared when one succeeds.
    pub(super) last_connect_error: Mutex<Option<Error>>,
}

impl Health {
    pub(super) fn set_last_connect_error(&self, error: Option<Error>) {
        if let Ok(mut last) = self.last_connect_error.lock() {
            *last = error;
        }
    }
}

pub(super) enum ManagerKind {
    // Boxed: their sizes differ a lot, and more with the `tls` feature.
    Standalone(Box<bb8_redis::RedisConnectionManager>),
    Cluster(Box<ClusterClient>),
}

pub(super) struct Manager {
    pub(super) kind: ManagerKind,
    pub(super) health: Arc<Health>,
    pub(super) command_timeout: Duration,
    pub(super) target: ConnectTarget,
}

/// A checked-out connection and its turn at the pool's gate (dropped after the connection
/// is back in the pool, in field order).
pub(super) struct Checkout<'a> {
    pub(super) conn: bb8::PooledConnection<'a, Manager>,
    pub(super) _turn: tokio::sync::SemaphorePermit<'a>,
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
    pub(super) inner: AnyConnection,
    pub(super) epoch: u64,
}

#[derive(Clone)]
pub(super) enum AnyConnection {
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
    pub(super) async fn open(&self) -> Result<AnyConnection, RedisError> {
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
pub(super) struct Connecting<'a>(&'a AtomicUsize);

impl<'a> Connecting<'a> {
    pub(super) fn enter(count: &'a AtomicUsize) -> Self {
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
pub(super) struct LastErrorSink(pub(super) Arc<Health>);

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
