//! What a failed connection attempt means to the caller: the server is down
//! ([`Error::Unavailable`]), refused the credentials ([`Error::Auth`]), or the configuration is
//! wrong ([`Error::InvalidConfig`], naming the field).

use std::time::Duration;

use redis::{ConnectionInfo, ErrorKind, RedisConnectionInfo, RedisError};

use crate::config::scrub;
use crate::error::Error;

/// What a connection attempt was aimed at, to explain its failure.
pub(crate) struct ConnectTarget {
    /// As shown in errors (no credentials).
    pub(crate) addr: String,
    pub(crate) secrets: Vec<String>,
    /// The (first) node, with its credentials and database.
    pub(crate) node: ConnectionInfo,
    pub(crate) connection_timeout: Duration,
}

impl ConnectTarget {
    /// Maps the driver's error for a connection that could not be opened. Nothing here is
    /// [`Error::Timeout`]: no connection means no live server to be slow.
    pub(crate) async fn explain(&self, e: &RedisError) -> Error {
        let message = scrub(&e.to_string(), &self.secrets);
        let addr = self.addr.clone();
        if e.kind() == ErrorKind::AuthenticationFailed {
            return self.explain_auth().await;
        }
        if message.contains("refused to switch database") {
            let db = self.node.redis_settings().db();
            let detail = e.detail().unwrap_or("DB index is out of range");
            return Error::invalid_config(
                "database",
                format!(
                    "index {db} was refused by the server at {addr} ({detail}): it has fewer \
                     databases (its `databases` setting), or is a cluster, which has only 0"
                ),
            );
        }
        // Bytes that are not RESP: another kind of server listens there (the cluster client
        // wraps the parse error in an I/O one, hence the message test). It answered, so it is
        // not down, and retrying will not make it Redis: the URL is wrong.
        if matches!(e.kind(), ErrorKind::Parse | ErrorKind::UnexpectedReturnType)
            || message.contains("Parse error")
        {
            return Error::invalid_config(
                "url",
                format!(
                    "the endpoint at {addr} did not answer as a Redis server: check the host \
                     and port (a TLS server needs rediss://)"
                ),
            );
        }
        // The driver refuses a setting only when it connects (`#insecure` without its
        // feature, …): retrying cannot help.
        if e.kind() == ErrorKind::InvalidClientConfig {
            return Error::invalid_config(
                "url",
                format!("cannot connect to {addr} as configured: {message}"),
            );
        }
        if crate::pool::is_auth_message(&message) {
            return Error::Auth {
                addr,
                reason: message,
            };
        }
        Error::Unavailable {
            addr,
            reason: message,
        }
    }

    /// The driver reports every refused `AUTH` alike; asks the server once more, on a fresh
    /// connection, to tell a password sent to a server without one (a configuration mistake)
    /// from a wrong one. Only runs when connecting already failed.
    async fn explain_auth(&self) -> Error {
        let addr = self.addr.clone();
        let settings = self.node.redis_settings();
        let refused = || Error::Auth {
            addr: addr.clone(),
            reason: "the server refused the credentials".to_owned(),
        };
        let Some(password) = settings.password() else {
            return refused();
        };
        let bare = self
            .node
            .clone()
            .set_redis_settings(RedisConnectionInfo::default());
        let answer = tokio::time::timeout(self.connection_timeout, async {
            let client = redis::Client::open(bare)?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            auth.arg(password).query_async::<()>(&mut conn).await
        })
        .await;
        match answer {
            Ok(Err(e)) if e.to_string().contains("without any password configured") => {
                Error::invalid_config(
                    "password",
                    format!(
                        "was given, but the server at {addr} has no password set: remove it \
                         from the URL (or set `requirepass` on the server)"
                    ),
                )
            }
            Ok(Err(e)) if e.kind() != ErrorKind::Io => Error::Auth {
                addr: addr.clone(),
                reason: scrub(&e.to_string(), &self.secrets),
            },
            _ => refused(),
        }
    }
}
