//! [`SeriesConfig`]: retention, rollups and threshold alerts of a gauge or counter series.

use std::time::Duration;

use coordkit_core::Error;
use coordkit_core::time::duration_ms;

use crate::error::Result;

/// The most samples a series may keep.
pub const MAX_SAMPLES_LIMIT: u32 = 10_000_000;
/// The most rollup buckets a series may keep.
pub const MAX_ROLLUP_BUCKETS: u32 = 100_000;

/// How a gauge or counter series is kept: retention by count and by age, rollups, alerts.
///
/// Every write passes this configuration to the recording script, which enforces it in the
/// same step, so memory stays bounded without a janitor. Writers of one series should share one
/// configuration; when they do not, each write applies its own.
///
/// ```
/// use std::time::Duration;
/// use coordkit_metrics::SeriesConfig;
///
/// let config = SeriesConfig::builder()
///     .max_samples(1_000)                              // keep the last 1,000 samples…
///     .max_age(Duration::from_secs(3_600))             // …of the last hour
///     .rollup(Duration::from_secs(60), 1_440)          // per-minute buckets for a day
///     .alert_above(0.9)
///     .alert_interval(Duration::from_secs(300))        // at most one alert per 5 minutes
///     .build()?;
/// assert_eq!(config.max_samples(), 1_000);
/// assert!(SeriesConfig::builder().max_samples(0).build().is_err());
/// # Ok::<(), coordkit_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesConfig {
    pub(crate) max_samples: u32,
    pub(crate) max_age_ms: u64,
    pub(crate) rollup: Option<RollupConfig>,
    pub(crate) alert: Option<AlertConfig>,
}

/// Downsampling: one bucket (count, sum, min, max) per `resolution` of sample time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollupConfig {
    /// The bucket width in ms.
    pub resolution_ms: u64,
    /// How many buckets are kept (the newest by start time).
    pub keep: u32,
}

/// Threshold alerts: an event when a recorded value is above or below a bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertConfig {
    /// Alert when a value is strictly above this.
    pub above: Option<f64>,
    /// Alert when a value is strictly below this.
    pub below: Option<f64>,
    /// At most one alert per this many ms (by the scripts' clock).
    pub interval_ms: u64,
}

impl Default for SeriesConfig {
    /// The last 1,000 samples, no age limit, no rollups, no alerts.
    fn default() -> Self {
        Self {
            max_samples: 1_000,
            max_age_ms: 0,
            rollup: None,
            alert: None,
        }
    }
}

impl SeriesConfig {
    /// Starts from the defaults.
    pub fn builder() -> SeriesConfigBuilder {
        SeriesConfigBuilder::default()
    }

    /// How many samples are kept.
    pub fn max_samples(&self) -> u32 {
        self.max_samples
    }

    /// The age beyond which samples are dropped, if any.
    pub fn max_age(&self) -> Option<Duration> {
        (self.max_age_ms > 0).then(|| Duration::from_millis(self.max_age_ms))
    }

    /// The rollups, if any.
    pub fn rollup(&self) -> Option<RollupConfig> {
        self.rollup
    }

    /// The alerts, if any.
    pub fn alert(&self) -> Option<AlertConfig> {
        self.alert
    }
}

/// Builds a validated [`SeriesConfig`]; [`SeriesConfigBuilder::build`] names the bad field.
#[derive(Debug, Clone, Default)]
pub struct SeriesConfigBuilder {
    max_samples: Option<u32>,
    max_age: Option<Duration>,
    rollup: Option<(Duration, u32)>,
    above: Option<f64>,
    below: Option<f64>,
    interval: Option<Duration>,
}

impl SeriesConfigBuilder {
    /// How many samples to keep, 1 to 10,000,000 (default 1,000).
    pub fn max_samples(mut self, n: u32) -> Self {
        self.max_samples = Some(n);
        self
    }

    /// Drop samples older than this (at least 1 ms; default: no age limit).
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Keep `keep` buckets (1 to 100,000) of `resolution` (at least 1 ms) with each bucket's
    /// count, sum, min and max, independently of the raw samples' retention.
    pub fn rollup(mut self, resolution: Duration, keep: u32) -> Self {
        self.rollup = Some((resolution, keep));
        self
    }

    /// Emit an alert when a recorded value is strictly above `bound` (finite).
    pub fn alert_above(mut self, bound: f64) -> Self {
        self.above = Some(bound);
        self
    }

    /// Emit an alert when a recorded value is strictly below `bound` (finite).
    pub fn alert_below(mut self, bound: f64) -> Self {
        self.below = Some(bound);
        self
    }

    /// At most one alert per `interval`: 0 (every crossing) to 2^53 ms, default one minute.
    pub fn alert_interval(mut self, interval: Duration) -> Self {
        self.interval = Some(interval);
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<SeriesConfig, Error> {
        let max_samples = self.max_samples.unwrap_or(1_000);
        if !(1..=MAX_SAMPLES_LIMIT).contains(&max_samples) {
            return Err(Error::invalid_config(
                "max_samples",
                format!("must be between 1 and {MAX_SAMPLES_LIMIT}, got {max_samples}"),
            ));
        }
        let max_age_ms = match self.max_age {
            None => 0,
            Some(age) => ms_within("max_age", age, 1)?,
        };
        let rollup = match self.rollup {
            None => None,
            Some((resolution, keep)) => {
                let resolution_ms = ms_within("rollup", resolution, 1)?;
                if !(1..=MAX_ROLLUP_BUCKETS).contains(&keep) {
                    return Err(Error::invalid_config(
                        "rollup",
                        format!("must keep 1 to {MAX_ROLLUP_BUCKETS} buckets, got {keep}"),
                    ));
                }
                Some(RollupConfig {
                    resolution_ms,
                    keep,
                })
            }
        };
        for (field, bound) in [("alert_above", self.above), ("alert_below", self.below)] {
            if let Some(bound) = bound
                && !bound.is_finite()
            {
                return Err(Error::invalid_config(
                    field,
                    format!("must be a finite number, got {bound}"),
                ));
            }
        }
        let interval_ms = match self.interval {
            None => 60_000,
            Some(interval) => ms_within("alert_interval", interval, 0)?,
        };
        let alert = (self.above.is_some() || self.below.is_some()).then_some(AlertConfig {
            above: self.above,
            below: self.below,
            interval_ms,
        });
        if alert.is_none() && self.interval.is_some() {
            return Err(Error::invalid_config(
                "alert_interval",
                "is set but neither alert_above nor alert_below is",
            ));
        }
        Ok(SeriesConfig {
            max_samples,
            max_age_ms,
            rollup,
            alert,
        })
    }
}

/// `d` in whole milliseconds when it is `min` to 2^53 ms (what a script's number holds
/// exactly), else [`Error::InvalidConfig`] naming `field`.
fn ms_within(field: &'static str, d: Duration, min: u64) -> Result<u64, Error> {
    let ms = duration_ms(d);
    if (min..=crate::error::MAX_TIMESTAMP_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(Error::invalid_config(
            field,
            format!("must be between {min} ms and 2^53 ms, got {d:?}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(r: Result<SeriesConfig, Error>) -> &'static str {
        match r {
            Err(Error::InvalidConfig { field, .. }) => field,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn each_bad_setting_names_its_field() {
        let b = SeriesConfig::builder;
        assert_eq!(field(b().max_samples(0).build()), "max_samples");
        assert_eq!(field(b().max_samples(10_000_001).build()), "max_samples");
        assert_eq!(field(b().max_age(Duration::ZERO).build()), "max_age");
        assert_eq!(
            field(b().rollup(Duration::from_micros(10), 5).build()),
            "rollup"
        );
        assert_eq!(
            field(b().rollup(Duration::from_secs(1), 0).build()),
            "rollup"
        );
        assert_eq!(field(b().alert_above(f64::NAN).build()), "alert_above");
        assert_eq!(field(b().alert_below(f64::INFINITY).build()), "alert_below");
        assert_eq!(
            field(b().alert_interval(Duration::from_secs(1)).build()),
            "alert_interval"
        );
        // Past 2^53 ms a script's number no longer holds the interval exactly.
        let beyond = Duration::from_millis(crate::error::MAX_TIMESTAMP_MS + 1);
        for (name, builder) in [
            (
                "alert_interval",
                b().alert_above(1.0).alert_interval(beyond),
            ),
            (
                "alert_interval",
                b().alert_above(1.0).alert_interval(Duration::MAX),
            ),
            ("max_age", b().max_age(beyond)),
            ("rollup", b().rollup(Duration::MAX, 5)),
        ] {
            assert_eq!(field(builder.build()), name);
        }
        let every = b()
            .alert_above(1.0)
            .alert_interval(Duration::ZERO)
            .build()
            .unwrap();
        assert_eq!(every.alert().unwrap().interval_ms, 0);
    }

    #[test]
    fn defaults_keep_a_thousand_samples_and_nothing_else() {
        let c = SeriesConfig::builder().build().unwrap();
        assert_eq!(c, SeriesConfig::default());
        assert_eq!(c.max_samples(), 1_000);
        assert_eq!(c.max_age(), None);
        let c = SeriesConfig::builder().alert_below(1.0).build().unwrap();
        assert_eq!(c.alert().unwrap().interval_ms, 60_000);
    }
}
