//! [`Limits`]: what every worker's claims obey together, stored with the queue.

use std::time::Duration;

use coordkit_core::Error;
use coordkit_core::time::duration_ms;

use crate::error::Result;
use crate::options::MAX_DURATION_MS;
use crate::queue::Queue;
use crate::scripts;

/// The most tasks a concurrency limit lets be leased at once, and the most starts a rate limit
/// counts per interval (`MAXL` and `MAXR` in `lua/lib/queue.lua`).
pub const MAX_LIMIT: u32 = 1_000_000;

/// A queue's limits, shared by every worker of every process: each claim script applies them,
/// on the server's clock, so no worker can exceed them whatever the others do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// At most this many tasks leased at once (1 to 1,000,000); `None`: no limit.
    pub max_leased: Option<u32>,
    /// At most this many task starts in any window of this length; `None`: no limit.
    pub rate: Option<Rate>,
}

/// A rate limit: at most `starts` claims of tasks in any window of length `per` (a sliding
/// window on server time: exact, never a burst over the limit at a window's edge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Starts per window (1 to 1,000,000).
    pub starts: u32,
    /// The window (1 ms to 2^35 ms).
    pub per: Duration,
}

impl Limits {
    /// The limits as the scripts store them: max_leased, rate_max, rate_ms (0: none).
    pub(crate) fn wire(&self) -> Result<(u32, u32, u64)> {
        let max_leased = match self.max_leased {
            None => 0,
            Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
            Some(n) => {
                return Err(Error::invalid_config(
                    "max_leased",
                    format!("must be between 1 and {MAX_LIMIT}, got {n}"),
                )
                .into());
            }
        };
        let (starts, per) = match self.rate {
            None => (0, 0),
            Some(Rate { starts, per }) => {
                if !(1..=MAX_LIMIT).contains(&starts) {
                    return Err(Error::invalid_config(
                        "rate.starts",
                        format!("must be between 1 and {MAX_LIMIT}, got {starts}"),
                    )
                    .into());
                }
                let ms = duration_ms(per);
                if !(1..=MAX_DURATION_MS).contains(&ms) {
                    return Err(Error::invalid_config(
                        "rate.per",
                        format!("must be between 1 ms and 2^35 ms, got {per:?}"),
                    )
                    .into());
                }
                (starts, ms)
            }
        };
        Ok((max_leased, starts, per))
    }

    /// The limits as stored (0: none).
    pub(crate) fn from_wire(max_leased: u64, starts: u64, per_ms: u64) -> Self {
        let bounded = |n: u64| {
            u32::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
        };
        Self {
            max_leased: bounded(max_leased),
            rate: bounded(starts).filter(|_| per_ms > 0).map(|starts| Rate {
                starts,
                per: Duration::from_millis(per_ms),
            }),
        }
    }
}

impl Queue {
    /// Sets the limits every worker's claims obey from their next claim on, and wakes idle
    /// workers. They live with the queue in Redis: every process sees the same ones, and
    /// [`Queue::stats`] reads them back. A limit out of range is
    /// [`Error::InvalidConfig`](coordkit_core::Error::InvalidConfig) naming it, with nothing
    /// written.
    pub async fn set_limits(&self, limits: Limits) -> Result<()> {
        let (max_leased, starts, per) = limits.wire()?;
        self.registered().await?;
        let mut call = self.call(&scripts::LIMITS);
        call.arg(max_leased).arg(starts).arg(per);
        let _: u64 = call.invoke(self.inner_pool()).await?;
        Ok(())
    }
}
