//! The error type of coordkit-metrics: bad samples, or anything [`coordkit_core::Error`] reports.

/// The result type of this crate.
pub type Result<T, E = MetricsError> = std::result::Result<T, E>;

/// Everything that can go wrong in a metrics operation.
///
/// Invalid names and labels come as [`coordkit_core::Error::InvalidName`], invalid
/// configuration as [`coordkit_core::Error::InvalidConfig`] (naming the builder field), a key of
/// another type as [`coordkit_core::Error::WrongType`], stored data that does not decode as
/// [`coordkit_core::Error::Corrupt`] (naming the key), all wrapped in [`MetricsError::Core`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// A sample was refused before anything was sent: a value that is NaN or infinite, a
    /// negative counter increment or histogram observation, a timestamp beyond 2^53 ms.
    #[error("invalid sample: {what} {input} {reason}")]
    InvalidSample {
        /// What was wrong: `value`, `increment`, `observation` or `timestamp`.
        what: &'static str,
        /// The offending input, as text (`NaN`, `inf`, …).
        input: String,
        /// The rule it broke.
        reason: &'static str,
    },

    /// An error from coordkit-core: names, configuration, connection, script or key type.
    #[error(transparent)]
    Core(#[from] coordkit_core::Error),
}

impl MetricsError {
    /// The core error inside, if this is one.
    pub fn core(&self) -> Option<&coordkit_core::Error> {
        match self {
            MetricsError::Core(e) => Some(e),
            MetricsError::InvalidSample { .. } => None,
        }
    }

    /// Whether a later retry of the same call may succeed unchanged (the server was unavailable
    /// or slow).
    pub fn is_retryable(&self) -> bool {
        self.core().is_some_and(coordkit_core::Error::is_retryable)
    }
}

/// Checks that `value` is a finite number (and, when `non_negative`, at least 0).
pub(crate) fn check_value(what: &'static str, value: f64, non_negative: bool) -> Result<()> {
    if !value.is_finite() {
        return Err(MetricsError::InvalidSample {
            what,
            input: format!("{value}"),
            reason: "is not a finite number",
        });
    }
    if non_negative && value < 0.0 {
        return Err(MetricsError::InvalidSample {
            what,
            input: format!("{value}"),
            reason: "is negative",
        });
    }
    Ok(())
}

/// The largest timestamp a script keeps exactly (Lua numbers are doubles).
pub const MAX_TIMESTAMP_MS: u64 = 1 << 53;

/// Checks that a caller-given timestamp fits in a Lua number exactly.
pub(crate) fn check_timestamp(ts_ms: u64) -> Result<()> {
    if ts_ms > MAX_TIMESTAMP_MS {
        return Err(MetricsError::InvalidSample {
            what: "timestamp",
            input: ts_ms.to_string(),
            reason: "is beyond 2^53 ms",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_are_named_in_the_message() {
        let e = check_value("value", f64::NAN, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid sample: value NaN is not a finite number"
        );
        let e = check_value("increment", f64::NEG_INFINITY, true).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid sample: increment -inf is not a finite number"
        );
        let e = check_value("increment", -1.5, true).unwrap_err();
        assert_eq!(e.to_string(), "invalid sample: increment -1.5 is negative");
        assert!(check_value("value", -1.5, false).is_ok());
        assert!(check_timestamp(MAX_TIMESTAMP_MS).is_ok());
        assert!(check_timestamp(MAX_TIMESTAMP_MS + 1).is_err());
        assert!(!e.is_retryable());
    }
}
