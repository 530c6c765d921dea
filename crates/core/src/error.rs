//! The one error type of coordkit.
//!
//! Expected outcomes (a breaker that is open, a queue that is empty) are values, not errors.
//! An [`Error`] always means the operation did not happen as asked, and its variant tells the
//! caller what it can do about it: retry later ([`Error::is_retryable`]), fix its input, or fix
//! its configuration.

use std::fmt;
use std::time::Duration;

/// The result type used throughout coordkit.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a coordkit operation.
///
/// One vocabulary for every call, standalone or cluster:
///
/// - A server that is down (connection refused, unreachable, connecting timed out, the
///   connection broke) is always [`Error::Unavailable`].
/// - [`Error::Timeout`] means a live connection whose command answered too late (or a pool
///   whose every connection stayed busy for the connection timeout).
/// - Both are retryable ([`Error::is_retryable`]); nothing else is.
/// - A configuration mistake found when connecting is [`Error::InvalidConfig`] naming the
///   field: a database index the server refuses (`database`), a password sent to a server
///   without one (`password`), an endpoint that is not a Redis server (`url`), as are a
///   malformed URL, a bad port, or `rediss://` without the `tls` feature. A wrong password or
///   a missing one is [`Error::Auth`].
///
/// No variant ever carries credentials: addresses are `host:port`, never URLs with a password.
/// It is `Clone`, so one failure can be handed to every caller of a batched call.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server is down: it could not be reached (refused, unreachable, connecting timed
    /// out), the connection broke, or the server is not ready (loading, cluster down). The
    /// operation may or may not have been applied if the connection broke mid-call; retrying is
    /// the caller's decision.
    #[error("redis at {addr} is unavailable: {reason}")]
    Unavailable {
        /// The address (`host:port`, or the cluster's seed list) that was tried.
        addr: String,
        /// What went wrong, as reported by the driver or the server.
        reason: String,
    },

    /// A live connection's command did not answer within the configured time (or no pooled
    /// connection came free in time). Never used for a server that cannot be connected to.
    #[error("redis at {addr} did not answer {operation} within {after:?}")]
    Timeout {
        /// The address that was tried.
        addr: String,
        /// What was waited for: "a connection" or the command's name.
        operation: String,
        /// The configured limit that ran out.
        after: Duration,
    },

    /// The server refused the credentials (or none were given and it requires some).
    #[error("redis at {addr} refused authentication: {reason}")]
    Auth {
        /// The address that was tried.
        addr: String,
        /// The server's answer, without any credential.
        reason: String,
    },

    /// A user-supplied name (namespace, instance name, field, …) broke a rule.
    #[error("invalid {what} {input:?}: {rule}")]
    InvalidName {
        /// What the name was for ("namespace", "instance name", …).
        what: &'static str,
        /// The input, cut to 64 characters when longer.
        input: String,
        /// The rule it broke.
        rule: NameRule,
    },

    /// A configuration value is out of range or malformed, or the server showed it to be wrong
    /// when connecting (database index, password, not a Redis endpoint). Not retryable: the
    /// configuration must change.
    #[error("invalid configuration: `{field}` {reason}")]
    InvalidConfig {
        /// The name of the field (builder method) at fault.
        field: &'static str,
        /// What is wrong with it and what is allowed.
        reason: String,
    },

    /// A Lua script rejected its input with `redis.error_reply("CODE detail")`, or failed.
    #[error("script `{script}` failed: {code} {detail}")]
    Script {
        /// The script's name.
        script: &'static str,
        /// The error code (the first word of the error reply, e.g. `CONFLICT`).
        code: String,
        /// The rest of the error reply.
        detail: String,
    },

    /// A value read from Redis (or a message received) could not be decoded.
    #[error("could not decode {what}: {reason}")]
    Decode {
        /// What was being decoded (a key, a field, a channel).
        what: String,
        /// Why it failed.
        reason: String,
    },

    /// A key holds a value of another Redis type than coordkit expects: something else wrote it.
    #[error("key {key:?} holds a {found}, which coordkit cannot use here")]
    WrongType {
        /// The key, or the keys when the server did not say which one.
        key: String,
        /// The type found (`string`, `list`, …), or `unknown`.
        found: String,
    },

    /// A key holds data of the right Redis type that coordkit cannot use: a stored record or
    /// field that does not decode, a number out of bounds. Something else wrote it (another
    /// program, an operator, another version of coordkit). The operation wrote nothing; repair
    /// or delete the key.
    #[error("key {key:?} holds data coordkit cannot use: {detail}")]
    Corrupt {
        /// The key (and, in `detail`, the field) at fault.
        key: String,
        /// What is wrong with it.
        detail: String,
    },

    /// Any other error answered by the server (out of memory, read-only replica, no permission).
    #[error("redis at {addr} answered an error: {message}")]
    Server {
        /// The address that answered.
        addr: String,
        /// The server's error text.
        message: String,
    },
}

impl Error {
    /// Whether a later retry of the same call may succeed without any change by the caller:
    /// the server was unavailable or slow.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::Timeout { .. })
    }

    /// The code of a script error (`Some("CONFLICT")`), if this is one.
    pub fn script_code(&self) -> Option<&str> {
        match self {
            Error::Script { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Builds [`Error::InvalidConfig`].
    pub fn invalid_config(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }

    /// Builds [`Error::Corrupt`].
    pub fn corrupt(key: impl Into<String>, detail: impl fmt::Display) -> Self {
        Error::Corrupt {
            key: key.into(),
            detail: detail.to_string(),
        }
    }

    /// Builds [`Error::Decode`].
    pub fn decode(what: impl Into<String>, reason: impl fmt::Display) -> Self {
        Error::Decode {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

/// The rule a rejected name broke.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameRule {
    /// The name is empty.
    Empty,
    /// The name is longer than the limit, in bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The name contains `{` or `}`, which would change the key's hash tag.
    Brace,
    /// The name contains whitespace or a control character.
    WhitespaceOrControl {
        /// The offending character.
        found: char,
    },
    /// The name contains a character that this particular name may not hold (a separator).
    Forbidden {
        /// The offending character.
        found: char,
    },
}

impl fmt::Display for NameRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameRule::Empty => f.write_str("must not be empty"),
            NameRule::TooLong { len, max } => {
                write!(f, "is {len} bytes long; at most {max} are allowed")
            }
            NameRule::Brace => {
                f.write_str("must not contain `{` or `}` (they select the hash tag)")
            }
            NameRule::WhitespaceOrControl { found } => {
                write!(
                    f,
                    "must not contain whitespace or control characters (found {found:?})"
                )
            }
            NameRule::Forbidden { found } => write!(f, "must not contain {found:?} here"),
        }
    }
}

/// Cuts `input` to at most 64 characters for an error message.
pub(crate) fn preview(input: &str) -> String {
    const MAX: usize = 64;
    if input.chars().count() <= MAX {
        input.to_owned()
    } else {
        let mut cut: String = input.chars().take(MAX).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_field_and_rule() {
        let e = Error::invalid_config("pool_size", "must be between 1 and 1024, got 0");
        assert_eq!(
            e.to_string(),
            "invalid configuration: `pool_size` must be between 1 and 1024, got 0"
        );
        let e = Error::InvalidName {
            what: "namespace",
            input: "a b".into(),
            rule: NameRule::WhitespaceOrControl { found: ' ' },
        };
        assert!(e.to_string().contains("namespace \"a b\""), "{e}");
        assert!(e.to_string().contains("whitespace"), "{e}");
    }

    #[test]
    fn retryable_only_for_availability() {
        let unavailable = Error::Unavailable {
            addr: "h:1".into(),
            reason: "refused".into(),
        };
        assert!(unavailable.is_retryable());
        assert!(!Error::invalid_config("x", "y").is_retryable());
    }

    #[test]
    fn preview_cuts_long_input() {
        let long = "x".repeat(500);
        let p = preview(&long);
        assert_eq!(p.chars().count(), 65);
        assert!(p.ends_with('…'));
        assert_eq!(preview("short"), "short");
    }
}
