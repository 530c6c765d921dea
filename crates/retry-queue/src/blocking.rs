//! Blocking claims: a claim that waits, up to a timeout, until it leases something. It sleeps
//! on a wake-up — a message on the queue's wake channel (the scripts publish one when work
//! becomes ready), or a timer armed to the time the claim answered (the next delayed task due,
//! the next lease to run out, the next start a rate limit allows) — never on a polling
//! interval.

use std::time::Duration;

use tokio::time::Instant;

use crate::error::{QueueError, Result};
use crate::ops::check_capabilities;
use crate::queue::Queue;
use crate::types::Claim;

impl Queue {
    /// Like [`Queue::claim`], waiting up to `timeout` until at least one task is leased. The
    /// last (empty) claim is the answer when the time is up.
    pub async fn claim_blocking(&self, max: usize, timeout: Duration) -> Result<Claim> {
        self.claim_waiting(max, None, timeout).await
    }

    /// Like [`Queue::claim_capable`], waiting up to `timeout` until at least one task is
    /// leased.
    pub async fn claim_capable_blocking(
        &self,
        max: usize,
        capabilities: &[&str],
        timeout: Duration,
    ) -> Result<Claim> {
        check_capabilities(capabilities)?;
        self.claim_waiting(max, Some(capabilities), timeout).await
    }

    async fn claim_waiting(
        &self,
        max: usize,
        capabilities: Option<&[&str]>,
        timeout: Duration,
    ) -> Result<Claim> {
        // (A timeout past what the clock can hold waits as good as forever.)
        let now = Instant::now();
        let deadline = now
            .checked_add(timeout)
            .unwrap_or(now + Duration::from_secs(100 * 365 * 86_400));
        // Subscribed before the first claim: no wake-up after it is missed.
        let mut wakes = self
            .pool()
            .subscriber()
            .channel(self.wake_channel())
            .subscribe::<serde_json::Value>()
            .await
            .map_err(QueueError::from)?;
        let mut reconnections = wakes.reconnections();
        // Whether the subscription still tells anything (closed, only the timers wake).
        let mut listening = true;
        loop {
            let claim = self.claim_from(max, capabilities).await?;
            if !claim.tasks.is_empty() || Instant::now() >= deadline {
                return Ok(claim);
            }
            let until = match claim.next_wakeup() {
                Some(after) => deadline.min(Instant::now() + after),
                None => deadline,
            };
            tokio::select! {
                message = wakes.recv(), if listening => listening = message.is_some(),
                // A reconnection may have lost a wake-up: claim again.
                changed = reconnections.changed(), if listening => listening = changed.is_ok(),
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }
}
