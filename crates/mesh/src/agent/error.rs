//! The error of an agent's operations: core's [`Error`](coordkit_core::Error), plus what only
//! a message can tell.

/// What can go wrong with an inbox operation. Expected outcomes (no responders, a timeout, a
/// late reply, an empty inbox) are values, not errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A payload could not be encoded as JSON.
    #[error("could not encode the payload as JSON: {0}")]
    Encode(#[source] serde_json::Error),
    /// A payload is larger than the agent's
    /// [`max_payload_bytes`](crate::MeshAgentBuilder::max_payload_bytes); nothing was sent.
    #[error(
        "a payload of {len} bytes is larger than the agent's limit of {max} (MeshAgentBuilder::max_payload_bytes)"
    )]
    PayloadTooLarge {
        /// The encoded payload's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A reply arrived whose payload does not decode as the asked type (the responder answered
    /// another type, or another program wrote it).
    #[error("the reply to {corr} from {from:?} does not decode: {reason}")]
    UndecodableReply {
        /// The asked agent.
        from: String,
        /// The correlation id of the ask.
        corr: String,
        /// Why.
        reason: String,
    },
    /// Anything from the foundation: unavailable, timeout, invalid name or configuration, a
    /// key of the wrong type or holding data coordkit did not write, an answer this version
    /// cannot read.
    #[error(transparent)]
    Core(#[from] coordkit_core::Error),
}

impl AgentError {
    /// Whether retrying the same call later may succeed (Redis was unavailable or slow).
    pub fn is_retryable(&self) -> bool {
        matches!(self, AgentError::Core(e) if e.is_retryable())
    }
}

/// The result type of the agent's operations.
pub type Result<T, E = AgentError> = std::result::Result<T, E>;
