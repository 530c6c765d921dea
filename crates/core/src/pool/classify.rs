//! What a failed call means: the driver's errors mapped to coordkit's one error type, and
//! bad stored data named by key.

use std::sync::atomic::Ordering;

use redis::{Cmd, ErrorKind, RedisError, ServerErrorKind};

use super::{Connection, Pool};
use crate::config::scrub;
use crate::error::{Error, Result};
use crate::keyspace::Key;

pub(super) const UNKNOWN: &str = "unknown";

/// Where a call came from, for error messages.
#[derive(Clone, Copy)]
pub(super) struct Origin<'a> {
    /// The script's name, for script invocations.
    pub(super) script: Option<&'static str>,
    /// The keys the call touched.
    pub(super) keys: &'a [Key],
}

impl Origin<'_> {
    pub(super) const NONE: Origin<'static> = Origin {
        script: None,
        keys: &[],
    };
}

impl Pool {
    pub(super) async fn settle<T>(
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
    pub(super) fn classify(&self, e: &RedisError, operation: &str, origin: Origin<'_>) -> Error {
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
    pub(super) async fn find_wrong_type(
        &self,
        conn: &Connection,
        detail: &str,
        keys: &[Key],
    ) -> Error {
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

pub(super) fn command_name(cmd: &Cmd) -> String {
    cmd.args_iter()
        .next()
        .and_then(|arg| match arg {
            redis::Arg::Simple(bytes) => std::str::from_utf8(bytes).ok().map(str::to_uppercase),
            _ => None,
        })
        .unwrap_or_else(|| "a command".to_owned())
}

/// Errors after which the connection cannot be trusted.
pub(super) fn breaks_connection(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

pub(crate) fn is_auth_message(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    ["noauth", "wrongpass", "invalid password", "authentication"]
        .iter()
        .any(|m| message.contains(m))
}

/// Error codes that Redis itself answers, as opposed to codes a coordkit script chose.
pub(super) fn is_server_code(code: &str) -> bool {
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
pub(super) fn corrupt_reply(detail: &str, keys: &[Key]) -> Error {
    // Redis appends where an error raised by a script came from.
    let detail = detail.rfind(" script: ").map_or(detail, |at| &detail[..at]);
    let (first, rest) = detail.split_once(' ').unwrap_or((detail, ""));
    match keys.iter().find(|k| k.as_str() == first) {
        Some(key) => Error::corrupt(key.as_str(), rest.trim()),
        None => Error::corrupt("(unnamed)", detail.trim()),
    }
}
