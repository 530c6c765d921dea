//! What a series holds and how it is selected: [`Sample`], [`Window`], [`RollupBucket`].

use std::time::Duration;

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
pub enum Window {
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

/// Reads a rollup field (`"count sum min max"`).
pub(crate) fn parse_rollup(start: &str, text: &str) -> coordkit_core::Result<RollupBucket> {
    let parts: Vec<&str> = text.split(' ').collect();
    if parts.len() != 4 {
        return Err(coordkit_core::Error::decode(
            "a rollup bucket",
            format!("{text:?} does not hold 4 numbers"),
        ));
    }
    Ok(RollupBucket {
        start_ms: parse_u64("a rollup start", start)?,
        count: parse_u64("a rollup count", parts[0])?,
        sum: parse_f64("a rollup sum", parts[1])?,
        min: parse_f64("a rollup min", parts[2])?,
        max: parse_f64("a rollup max", parts[3])?,
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
        let b = parse_rollup("60000", "3 6.5 1 4").unwrap();
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
        assert!(parse_rollup("60000", "3 6.5").is_err());
        assert!(parse_rollup("x", "3 6.5 1 4").is_err());
    }
}
