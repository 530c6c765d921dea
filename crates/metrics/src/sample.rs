//! What a series holds and how it is selected: [`Sample`], [`SampleWindow`], [`RollupBucket`].

use std::time::Duration;

use coordkit_core::Key;

/// One sample: a timestamp in ms since the Unix epoch and a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When, in ms (the server's clock unless the caller gave it).
    pub ts_ms: u64,
    /// The value (for a counter, the increment).
    pub value: f64,
}

impl Sample {
    /// A sample at `ts_ms`.
    pub fn new(ts_ms: u64, value: f64) -> Self {
        Self { ts_ms, value }
    }
}

/// Which samples a query looks at. Samples older than the series' `max_age` are never
/// selected, even before the next write removes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleWindow {
    /// The `n` most recently recorded samples (a moving window by count).
    Last(usize),
    /// Samples with `now - d < ts <= now`, by the scripts' clock.
    Recent(Duration),
    /// Samples with `from_ms <= ts <= to_ms`.
    Range {
        /// The first ms included.
        from_ms: u64,
        /// The last ms included.
        to_ms: u64,
    },
}

/// One downsampled bucket: the samples recorded with `start_ms <= ts < start_ms + resolution`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RollupBucket {
    /// The bucket's start (a multiple of the resolution), in ms.
    pub start_ms: u64,
    /// How many samples it holds.
    pub count: u64,
    /// Their sum, in recording order.
    pub sum: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl RollupBucket {
    /// The mean of the bucket's samples.
    pub fn avg(&self) -> f64 {
        self.sum / self.count as f64
    }
}

/// The text a value is sent as: Rust's shortest representation that reads back exactly.
pub(crate) fn value_text(value: f64) -> String {
    format!("{value:?}")
}

/// Reads a number written by a script (`%.17g` or a caller's text).
pub(crate) fn parse_f64(what: &str, text: &str) -> coordkit_core::Result<f64> {
    text.trim()
        .parse::<f64>()
        .map_err(|e| coordkit_core::Error::decode(what, format!("{text:?}: {e}")))
}

/// Reads an integer written by a script.
pub(crate) fn parse_u64(what: &str, text: &str) -> coordkit_core::Result<u64> {
    text.trim()
        .parse::<u64>()
        .map_err(|e| coordkit_core::Error::decode(what, format!("{text:?}: {e}")))
}

/// The largest stored count or time in ms: 2^53, the last whole number a script counts exactly
/// (the largest timestamp a caller may give, too).
pub(crate) const MAX_STORED: u64 = crate::error::MAX_TIMESTAMP_MS;

/// At most 40 characters of a stored value, for error messages.
fn shown(text: &str) -> String {
    let mut shown: String = text.chars().take(40).collect();
    if shown.len() < text.len() {
        shown.push_str("...");
    }
    shown
}

/// A stored whole number of `key` in `0..=MAX_STORED`, else [`coordkit_core::Error::Corrupt`]
/// naming the key and `what`.
pub(crate) fn stored_u64(key: &Key, what: &str, text: &str) -> coordkit_core::Result<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n <= MAX_STORED)
        .ok_or_else(|| {
            coordkit_core::Error::corrupt(
                key.as_str(),
                format!(
                    "{what} is {:?}, not a whole number in 0..{MAX_STORED}",
                    shown(text)
                ),
            )
        })
}

/// A stored finite number of `key` (and `>= 0` when `non_negative`), else
/// [`coordkit_core::Error::Corrupt`] naming the key and `what`.
pub(crate) fn stored_f64(
    key: &Key,
    what: &str,
    text: &str,
    non_negative: bool,
) -> coordkit_core::Result<f64> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && (!non_negative || *x >= 0.0))
        .ok_or_else(|| {
            let rule = if non_negative {
                "a finite number >= 0"
            } else {
                "a finite number"
            };
            coordkit_core::Error::corrupt(
                key.as_str(),
                format!("{what} is {:?}, not {rule}", shown(text)),
            )
        })
}

/// Reads a rollup field (`"count sum min max"`) of the rollups hash `key`.
pub(crate) fn parse_rollup(
    key: &Key,
    start: &str,
    text: &str,
) -> coordkit_core::Result<RollupBucket> {
    let parts: Vec<&str> = text.split(' ').collect();
    let [count, sum, min, max] = parts[..] else {
        return Err(coordkit_core::Error::corrupt(
            key.as_str(),
            format!(
                "bucket {:?} is {:?}, not \"count sum min max\"",
                shown(start),
                shown(text)
            ),
        ));
    };
    let what = |part: &str| format!("bucket {:?}'s {part}", shown(start));
    Ok(RollupBucket {
        start_ms: stored_u64(key, "a bucket start", start)?,
        count: stored_u64(key, &what("count"), count)?,
        sum: stored_f64(key, &what("sum"), sum, false)?,
        min: stored_f64(key, &what("min"), min, false)?,
        max: stored_f64(key, &what("max"), max, false)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_text_reads_back_exactly() {
        for v in [
            0.1,
            -0.0,
            1e300,
            5e-324,
            123_456_789.123_456_78,
            -2.5e-7,
            1.0 / 3.0,
        ] {
            assert_eq!(value_text(v).parse::<f64>().unwrap().to_bits(), v.to_bits());
        }
    }

    #[test]
    fn rollups_parse_or_say_why_not() {
        let key = coordkit_core::Keyspace::new("t")
            .unwrap()
            .instance("metric", "m")
            .unwrap()
            .key("r");
        let b = parse_rollup(&key, "60000", "3 6.5 1 4").unwrap();
        assert_eq!(
            b,
            RollupBucket {
                start_ms: 60_000,
                count: 3,
                sum: 6.5,
                min: 1.0,
                max: 4.0
            }
        );
        for (start, text) in [("60000", "3 6.5"), ("x", "3 6.5 1 4"), ("0", "1 inf 1 1")] {
            match parse_rollup(&key, start, text) {
                Err(coordkit_core::Error::Corrupt { key: k, .. }) => assert_eq!(k, key.as_str()),
                other => panic!("{start} {text}: {other:?}"),
            }
        }
    }
}
