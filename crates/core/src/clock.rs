//! Time: scripts read the server's clock; tests may inject a manual one.
//!
//! Every script that depends on time takes an optional `now_ms` argument, which
//! [`Clock::arg`] produces: an empty string means "use the server's `TIME`" (the prelude's
//! `ck_now`), a number is the manual clock's time. Agents with skewed clocks therefore agree,
//! and tests can make time-dependent behaviour deterministic.
//!
//! ```
//! use std::time::Duration;
//! use coordkit_core::{Clock, ManualClock};
//!
//! assert_eq!(Clock::Server.arg(), "");
//! let manual = ManualClock::new(1_000);
//! let clock = Clock::Manual(manual.clone());
//! manual.advance(Duration::from_millis(250));
//! assert_eq!(clock.arg(), "1250");
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Which clock a primitive's scripts use.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The Redis server's clock (`TIME`), read inside each script. The default.
    #[default]
    Server,
    /// A clock that moves only when told to, for tests.
    Manual(ManualClock),
}

impl Clock {
    /// The `now_ms` script argument: `""` for the server clock, the time in ms otherwise.
    pub fn arg(&self) -> String {
        match self {
            Clock::Server => String::new(),
            Clock::Manual(manual) => manual.now_ms().to_string(),
        }
    }
}

/// A shared manual clock in milliseconds; clones move together.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock reading `start_ms` (must be positive to be told from "server time").
    pub fn new(start_ms: u64) -> Self {
        Self(Arc::new(AtomicU64::new(start_ms.max(1))))
    }

    /// The current reading.
    pub fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let ms = crate::time::duration_ms(by);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock (it may go backwards: tests of clock skew use that).
    pub fn set(&self, ms: u64) {
        self.0.store(ms.max(1), Ordering::SeqCst);
    }
}

impl From<ManualClock> for Clock {
    fn from(manual: ManualClock) -> Self {
        Clock::Manual(manual)
    }
}
