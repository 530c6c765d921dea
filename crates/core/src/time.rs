//! Time helpers every primitive shares: durations as script milliseconds, the wait between
//! retries of a call to Redis, and serde for the timestamps scripts write.

use std::time::Duration;

/// `d` in whole milliseconds, saturating at `u64::MAX` (a `Duration` can hold more than a
/// `u64` of milliseconds; a script argument cannot).
pub fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The wait between tries of a call to Redis that failed: starts at `first`, doubles after
/// each try, never above `max`. Used by every loop that keeps trying until the server answers
/// again (a subscriber reconnecting, a worker's claim loop, a breaker probing the store).
///
/// ```
/// use std::time::Duration;
/// use coordkit_core::time::RetryDelay;
///
/// let mut delay = RetryDelay::new(Duration::from_millis(10), Duration::from_millis(25));
/// assert_eq!(delay.next_delay(), Duration::from_millis(10));
/// assert_eq!(delay.next_delay(), Duration::from_millis(20));
/// assert_eq!(delay.next_delay(), Duration::from_millis(25));
/// delay.reset();
/// assert_eq!(delay.next_delay(), Duration::from_millis(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryDelay {
    first: Duration,
    max: Duration,
    current: Duration,
}

impl RetryDelay {
    /// Starts at `first` and doubles up to `max` (`first` when `max` is smaller).
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max: max.max(first),
            current: first,
        }
    }

    /// The wait before the next try; the one after it is twice as long, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let now = self.current;
        self.current = self.current.saturating_mul(2).min(self.max);
        now
    }

    /// The call succeeded: the next failure waits `first` again.
    pub fn reset(&mut self) {
        self.current = self.first;
    }
}

/// Serde for millisecond timestamps and counts that scripts write as JSON numbers: Lua's cjson
/// may write a whole number as a float (`1.7e12`), so a non-negative float is rounded; a
/// negative or non-finite one is an error. Use with `#[serde(with = "…::time::millis")]`, or
/// `…::time::millis::option` for an `Option<u64>` (absent or `null` is `None`).
pub mod millis {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the number as a JSON integer.
    pub fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(*value)
    }

    /// Reads a whole number, also when written as a float.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        let n = serde_json::Number::deserialize(deserializer)?;
        n.as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f.round() as u64)
            })
            .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a whole number")))
    }

    /// The same for an optional field.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        /// Writes the number, or `null`.
        pub fn serialize<S: Serializer>(
            value: &Option<u64>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(v) => serializer.serialize_some(v),
                None => serializer.serialize_none(),
            }
        }

        /// Reads a whole number or `null`.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<u64>, D::Error> {
            #[derive(Deserialize)]
            struct Whole(#[serde(with = "super")] u64);
            Ok(Option::<Whole>::deserialize(deserializer)?.map(|w| w.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Stamp {
        #[serde(with = "millis")]
        at: u64,
        #[serde(default, with = "millis::option")]
        until: Option<u64>,
    }

    #[test]
    fn millis_reads_integers_and_cjson_floats_and_rejects_negatives() {
        let s: Stamp = serde_json::from_str(r#"{"at": 1.7e12, "until": 5}"#).unwrap();
        assert_eq!((s.at, s.until), (1_700_000_000_000, Some(5)));
        let s: Stamp = serde_json::from_str(r#"{"at": 12}"#).unwrap();
        assert_eq!((s.at, s.until), (12, None));
        let s: Stamp = serde_json::from_str(r#"{"at": 12, "until": null}"#).unwrap();
        assert_eq!(s.until, None);
        let err = serde_json::from_str::<Stamp>(r#"{"at": -1}"#).unwrap_err();
        assert!(err.to_string().contains("not a whole number"), "{err}");
    }

    #[test]
    fn duration_ms_saturates() {
        assert_eq!(duration_ms(Duration::from_millis(1500)), 1500);
        assert_eq!(duration_ms(Duration::MAX), u64::MAX);
    }

    #[test]
    fn retry_delay_doubles_to_its_cap_and_resets() {
        let mut d = RetryDelay::new(Duration::from_millis(20), Duration::from_secs(1));
        let waits: Vec<u128> = (0..8).map(|_| d.next_delay().as_millis()).collect();
        assert_eq!(waits, [20, 40, 80, 160, 320, 640, 1000, 1000]);
        d.reset();
        assert_eq!(d.next_delay(), Duration::from_millis(20));
        // A cap below the start is the start.
        let mut d = RetryDelay::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(d.next_delay(), Duration::from_secs(2));
        assert_eq!(d.next_delay(), Duration::from_secs(2));
    }
}
