//! Why a command failed, and the exit code that says so: one line on stderr, never a trace.

use std::fmt;

/// A failed command: its exit code and the one line printed on stderr.
#[derive(Debug)]
pub(crate) struct Fail {
    /// 1: the operation failed; 2: bad usage; 0: stop quietly (stdout was closed).
    pub(crate) code: u8,
    /// What went wrong, on one line (empty for a quiet stop).
    pub(crate) message: String,
}

/// The result of a command.
pub(crate) type Outcome<T = ()> = Result<T, Fail>;

impl Fail {
    /// The operation failed (exit 1).
    pub(crate) fn failed(message: impl fmt::Display) -> Self {
        Self {
            code: 1,
            message: one_line(&message.to_string()),
        }
    }

    /// The command was used wrongly (exit 2).
    pub(crate) fn usage(message: impl fmt::Display) -> Self {
        Self {
            code: 2,
            message: one_line(&message.to_string()),
        }
    }

    /// Stop without a message, successfully: the reader of stdout went away.
    pub(crate) fn quiet() -> Self {
        Self {
            code: 0,
            message: String::new(),
        }
    }
}

/// `text` on one line: line breaks become spaces.
fn one_line(text: &str) -> String {
    text.split(['\n', '\r'])
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl From<coordkit_core::Error> for Fail {
    fn from(e: coordkit_core::Error) -> Self {
        match e {
            // The caller's own input: a bad name, URL, port, or configuration.
            coordkit_core::Error::InvalidName { .. }
            | coordkit_core::Error::InvalidConfig { .. } => Fail::usage(e),
            other => Fail::failed(other),
        }
    }
}

impl From<coordkit_retry_queue::QueueError> for Fail {
    fn from(e: coordkit_retry_queue::QueueError) -> Self {
        match e {
            coordkit_retry_queue::QueueError::Core(core) => core.into(),
            other => Fail::failed(other),
        }
    }
}

impl From<coordkit_context::ContextError> for Fail {
    fn from(e: coordkit_context::ContextError) -> Self {
        match e {
            coordkit_context::ContextError::Core(core) => core.into(),
            other => Fail::failed(other),
        }
    }
}

impl From<coordkit_metrics::MetricsError> for Fail {
    fn from(e: coordkit_metrics::MetricsError) -> Self {
        match e {
            coordkit_metrics::MetricsError::Core(core) => core.into(),
            other => Fail::usage(other),
        }
    }
}

impl From<coordkit_workflow::WorkflowError> for Fail {
    fn from(e: coordkit_workflow::WorkflowError) -> Self {
        match e {
            coordkit_workflow::WorkflowError::Core(core) => core.into(),
            other => Fail::failed(other),
        }
    }
}

impl From<coordkit_mesh::AgentError> for Fail {
    fn from(e: coordkit_mesh::AgentError) -> Self {
        match e {
            coordkit_mesh::AgentError::Core(core) => core.into(),
            other => Fail::failed(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line_and_codes_follow_the_cause() {
        let f = Fail::failed("first\nsecond\r\n third");
        assert_eq!((f.code, f.message.as_str()), (1, "first second third"));
        let bad_name: Fail = coordkit_core::Keyspace::new("a b").unwrap_err().into();
        assert_eq!(bad_name.code, 2);
        let down: Fail = coordkit_core::Error::Unavailable {
            addr: "h:1".into(),
            reason: "refused".into(),
        }
        .into();
        assert_eq!(down.code, 1);
    }
}
