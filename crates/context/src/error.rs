//! The context store's error: its own outcomes, or a [`coordkit_core::Error`].

/// What can go wrong with a context operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// A compare-and-set write named a version that is not the current one. Nothing was
    /// written.
    #[error("version conflict: the write expected version {expected}, the entity is at {current}")]
    Conflict {
        /// The version the write expected.
        expected: u64,
        /// The entity's current version.
        current: u64,
    },

    /// The change history no longer holds the versions after `since`: re-read the snapshot.
    #[error("history compacted: changes after version {since} are gone (oldest kept: {oldest})")]
    Compacted {
        /// The version the caller asked to resume from.
        since: u64,
        /// The oldest version still in the history (0 when it is empty).
        oldest: u64,
    },

    /// A field name is reserved for coordkit's own stamps (it starts with `__`).
    #[error("field {field:?} is reserved: names starting with `__` hold coordkit's version stamps")]
    ReservedField {
        /// The field.
        field: String,
    },

    /// A value is larger than the store's limit. Nothing was written.
    #[error("the value of field {field:?} is {len} bytes; the limit is {max}")]
    ValueTooLarge {
        /// The field.
        field: String,
        /// The value's size in bytes.
        len: usize,
        /// The configured limit.
        max: usize,
    },

    /// A stored field could not be decoded into the requested type.
    #[error("field {field:?} could not be decoded: {reason}")]
    FieldDecode {
        /// The field (a path like `limits.max` for nested values).
        field: String,
        /// Why.
        reason: String,
    },

    /// A compare-and-set update kept conflicting and gave up.
    #[error("gave up after {attempts} conflicting attempts")]
    TooManyConflicts {
        /// How many attempts were made.
        attempts: u32,
    },

    /// Anything from the foundation: unavailable server, timeout, invalid name, wrong type, …
    #[error(transparent)]
    Core(#[from] coordkit_core::Error),
}

impl ContextError {
    /// Whether a retry of the same call may succeed (the server was unavailable or slow).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ContextError::Core(e) if e.is_retryable())
    }
}

/// The result type of this crate.
pub type Result<T, E = ContextError> = std::result::Result<T, E>;
