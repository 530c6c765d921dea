//! Resolution: marking a signature resolved (a later occurrence re-opens it, a regression).

use coordkit_core::{Result, Script};

use crate::event::Severity;
use crate::tracker::ErrorTracker;
use crate::wire::code;

static RESOLVE: Script = Script::new("errors-resolve", include_str!("../lua/resolve.lua"));

/// What [`ErrorTracker::resolve`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Resolved now (server time, ms).
    Resolved {
        /// When.
        at_ms: u64,
    },
    /// It already was, since `at_ms`.
    AlreadyResolved {
        /// Since when.
        at_ms: u64,
    },
    /// No such signature is tracked.
    Unknown,
}

impl ErrorTracker {
    /// Marks `signature` resolved (server time). A later occurrence re-opens it as a
    /// regression, with a `regression` event.
    pub async fn resolve(&self, signature: &str) -> Result<Resolution> {
        let inner = &self.inner;
        let (status, ms): (u8, u64) = RESOLVE
            .prepare()
            .key(&inner.keys.data)
            .arg(inner.settings.clock.arg())
            .arg(signature)
            .arg(self.channel(Severity::Info))
            .arg(&inner.name)
            .invoke(&inner.pool)
            .await?;
        Ok(match status {
            code::RESOLVE_DONE => Resolution::Resolved { at_ms: ms },
            code::RESOLVE_ALREADY => Resolution::AlreadyResolved { at_ms: ms },
            code::RESOLVE_UNKNOWN => Resolution::Unknown,
            other => {
                return Err(coordkit_core::Error::decode(
                    "the resolve script's answer",
                    format!("status {other}"),
                ));
            }
        })
    }
}
