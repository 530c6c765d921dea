//! Holds: a component whose tasks no claim hands out until a time (its circuit breaker is
//! open until then). The worker holds a component when its breaker rejects one of its tasks,
//! for the breaker's `retry_after`, so that no worker claims, and is rejected by, its other
//! tasks while the breaker is open: they wait in the delayed set, spending no attempt, and are
//! claimed again when it may half-open.

use std::time::Duration;

use coordkit_core::time::duration_ms;
use coordkit_core::validate_name;

use crate::error::Result;
use crate::options::MAX_DURATION_MS;
use crate::queue::Queue;
use crate::scripts;

impl Queue {
    /// Holds `component` for `duration` (at most 2^35 ms; zero ends a hold): until then every
    /// claim moves the ready tasks naming it to the delayed set, due when the hold ends, and
    /// hands none of them to a worker. A bad component name is
    /// [`Error::InvalidName`](coordkit_core::Error::InvalidName).
    pub async fn hold_component(&self, component: &str, duration: Duration) -> Result<()> {
        validate_name("component", component)?;
        self.registered().await?;
        let mut call = self.call(&scripts::HOLD);
        call.arg(component)
            .arg(duration_ms(duration).min(MAX_DURATION_MS));
        let _: u64 = call.invoke(self.inner_pool()).await?;
        Ok(())
    }

    /// Ends a hold of `component` (its tasks already moved wait out their due time).
    pub async fn release_component(&self, component: &str) -> Result<()> {
        self.hold_component(component, Duration::ZERO).await
    }
}
