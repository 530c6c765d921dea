//! The reference model: a pure-Rust series with the same trimming, rollup, total and alert
//! rules as the Lua scripts. For your own property tests (feature `model`): drive it and a
//! series on a manual clock with the same samples and compare, as this crate's tests do. Histograms are modelled by [`HistogramSnapshot::observe`].
//!
//! [`HistogramSnapshot::observe`]: crate::HistogramSnapshot::observe

use std::collections::{BTreeMap, VecDeque};

use coordkit_core::time::duration_ms;

use crate::aggregate::Aggregate;
use crate::config::SeriesConfig;
use crate::error::{Result, check_timestamp, check_value};
use crate::sample::{RollupBucket, Sample, SampleWindow};
use crate::series::Written;

/// An alert the model emitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelAlert {
    /// `"above"` or `"below"`.
    pub direction: &'static str,
    /// The bound crossed.
    pub bound: f64,
    /// The value that crossed it.
    pub value: f64,
    /// The sample's timestamp.
    pub sample_ts_ms: u64,
    /// The clock when it was emitted.
    pub ts_ms: u64,
}

/// A gauge or counter series in memory: samples in recording order, trimmed after each write
/// by count and then by age (whole samples from the head while they are older than
/// `now - max_age`).
///
/// Trimming by count is amortised as in the script: once more than `max_samples +
/// max_samples / 16` samples are stored, the oldest go until `max_samples` remain. Queries see
/// only the newest `max_samples` (then filtered by age), so the slack never shows.
#[derive(Debug, Clone)]
pub struct SeriesModel {
    config: SeriesConfig,
    counter: bool,
    samples: VecDeque<Sample>,
    total: f64,
    rollups: BTreeMap<u64, RollupBucket>,
    last_alert_ms: Option<u64>,
    alerts: Vec<ModelAlert>,
}

impl SeriesModel {
    /// An empty series; `counter` makes values increments (`>= 0`) added to a total.
    pub fn new(config: SeriesConfig, counter: bool) -> Self {
        Self {
            config,
            counter,
            samples: VecDeque::new(),
            total: 0.0,
            rollups: BTreeMap::new(),
            last_alert_ms: None,
            alerts: Vec::new(),
        }
    }

    /// Records samples `(timestamp or now, value)` at clock `now_ms`, as one write.
    pub fn record(&mut self, now_ms: u64, batch: &[(Option<u64>, f64)]) -> Result<Written> {
        let what = if self.counter { "increment" } else { "value" };
        for &(ts, v) in batch {
            check_value(what, v, self.counter)?;
            if let Some(ts) = ts {
                check_timestamp(ts)?;
            }
        }
        let batch: Vec<Sample> = batch
            .iter()
            .map(|&(ts, value)| Sample::new(ts.unwrap_or(now_ms), value))
            .collect();
        self.samples.extend(batch.iter().copied());
        let cap = self.config.max_samples as usize;
        if self.samples.len() > cap + cap / 16 {
            let excess = self.samples.len() - cap;
            self.samples.drain(..excess);
        }
        if let Some(cutoff) = self.cutoff(now_ms) {
            while self
                .samples
                .front()
                .is_some_and(|s| (s.ts_ms as f64) < cutoff)
            {
                self.samples.pop_front();
            }
        }
        if self.counter {
            for s in &batch {
                self.total += s.value;
            }
        }
        if let Some(rollup) = self.config.rollup {
            let mut created = false;
            for s in &batch {
                let start = s.ts_ms - s.ts_ms % rollup.resolution_ms;
                let b = self.rollups.entry(start).or_insert_with(|| {
                    created = true;
                    RollupBucket {
                        start_ms: start,
                        count: 0,
                        sum: 0.0,
                        min: s.value,
                        max: s.value,
                    }
                });
                b.count += 1;
                b.sum += s.value;
                if s.value < b.min {
                    b.min = s.value;
                }
                if s.value > b.max {
                    b.max = s.value;
                }
            }
            if created {
                while self.rollups.len() > rollup.keep as usize {
                    self.rollups.pop_first();
                }
            }
        }
        if let Some(alert) = self.config.alert {
            for s in &batch {
                let crossed = match (alert.above, alert.below) {
                    (Some(above), _) if s.value > above => Some(("above", above)),
                    (_, Some(below)) if s.value < below => Some(("below", below)),
                    _ => None,
                };
                let due = self
                    .last_alert_ms
                    .is_none_or(|last| now_ms as f64 - last as f64 >= alert.interval_ms as f64);
                if let (Some((direction, bound)), true) = (crossed, due) {
                    self.last_alert_ms = Some(now_ms);
                    self.alerts.push(ModelAlert {
                        direction,
                        bound,
                        value: s.value,
                        sample_ts_ms: s.ts_ms,
                        ts_ms: now_ms,
                    });
                }
            }
        }
        Ok(Written {
            retained: self.samples.len().min(cap) as u64,
            now_ms,
            total: self.counter.then_some(self.total),
        })
    }

    /// `now - max_age`, when there is an age limit (a float, as in Lua: it may be negative).
    fn cutoff(&self, now_ms: u64) -> Option<f64> {
        (self.config.max_age_ms > 0).then_some(now_ms as f64 - self.config.max_age_ms as f64)
    }

    /// The samples a window selects at clock `now_ms`, in recording order.
    pub fn select(&self, now_ms: u64, window: SampleWindow) -> Vec<Sample> {
        let cutoff = self.cutoff(now_ms).unwrap_or(f64::NEG_INFINITY);
        let cap = self.config.max_samples as usize;
        let visible = self
            .samples
            .iter()
            .skip(self.samples.len().saturating_sub(cap))
            .filter(|s| s.ts_ms as f64 >= cutoff);
        match window {
            SampleWindow::Last(n) => {
                let all: Vec<Sample> = visible.copied().collect();
                all[all.len().saturating_sub(n)..].to_vec()
            }
            SampleWindow::Range { from_ms, to_ms } => visible
                .filter(|s| (from_ms..=to_ms).contains(&s.ts_ms))
                .copied()
                .collect(),
            SampleWindow::Recent(d) => {
                let from = now_ms as f64 - duration_ms(d) as f64 + 1.0;
                visible
                    .filter(|s| s.ts_ms as f64 >= from && s.ts_ms <= now_ms)
                    .copied()
                    .collect()
            }
        }
    }

    /// The aggregate of a window at clock `now_ms`.
    pub fn aggregate(&self, now_ms: u64, window: SampleWindow, quantiles: &[f64]) -> Aggregate {
        let values: Vec<f64> = self
            .select(now_ms, window)
            .iter()
            .map(|s| s.value)
            .collect();
        Aggregate::over(&values, quantiles)
    }

    /// The rollup buckets starting within `from_ms..=to_ms`, oldest first.
    pub fn rollups(&self, from_ms: u64, to_ms: u64) -> Vec<RollupBucket> {
        self.rollups
            .range(from_ms..=to_ms)
            .map(|(_, b)| *b)
            .collect()
    }

    /// Every sample stored (visible or not yet trimmed), in recording order.
    pub fn stored(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter()
    }

    /// A counter's total.
    pub fn total(&self) -> f64 {
        self.total
    }

    /// Every alert emitted so far.
    pub fn alerts(&self) -> &[ModelAlert] {
        &self.alerts
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn equal_values_and_equal_timestamps_are_all_kept() {
        let mut m = SeriesModel::new(SeriesConfig::default(), false);
        m.record(10, &[(None, 1.0), (None, 1.0), (Some(10), 1.0)])
            .unwrap();
        assert_eq!(m.select(10, SampleWindow::Last(10)).len(), 3);
    }

    #[test]
    fn trims_by_count_then_by_age() {
        let config = SeriesConfig::builder()
            .max_samples(3)
            .max_age(Duration::from_millis(100))
            .build()
            .unwrap();
        let mut m = SeriesModel::new(config, false);
        for t in 0..5u64 {
            m.record(t * 40, &[(None, t as f64)]).unwrap();
        }
        // Count kept 80, 120, 160; age (cutoff 60) keeps them all.
        let kept: Vec<u64> = m.stored().map(|s| s.ts_ms).collect();
        assert_eq!(kept, vec![80, 120, 160]);
        let r = m.record(250, &[(None, 9.0)]).unwrap();
        assert_eq!(r.retained, 2); // 160 and 250 survive the cutoff 150
        assert_eq!(m.select(400, SampleWindow::Last(10)).len(), 0);
    }
}
