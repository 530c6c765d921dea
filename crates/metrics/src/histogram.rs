//! [`Histogram`]: observations counted in fixed, documented buckets; percentile estimates;
//! snapshots that merge across series.
//!
//! # Bucket layout
//!
//! Observations are finite numbers `>= 0`. There are [`BUCKETS`] (562) buckets, the same for
//! every histogram, so any two snapshots merge by adding counts:
//!
//! | index        | holds values                                  |
//! |--------------|-----------------------------------------------|
//! | `0`          | `[0, 2^-30)` (zero and anything below ~9.3e-10) |
//! | `1..=560`    | `[2^((i-241)/8), 2^((i-240)/8))`: eight buckets per power of two |
//! | `561`        | `[2^40, ∞)` (from ~1.1e12 up)                  |
//!
//! A percentile estimate is the geometric middle of the bucket holding the nearest-rank
//! observation, clamped to the observed min and max, so its relative error is at most
//! `2^(1/16) - 1` (about 4.4%) for values in `[2^-30, 2^40)`. Count, sum, min and max are
//! exact.

use std::collections::BTreeMap;

use std::sync::Arc;

use coordkit_core::{Key, KeyKind, Pool, Registration};

use crate::aggregate::nearest_rank;
use crate::error::{MetricsError, Result, check_value};
use crate::sample::{parse_u64, stored_f64, stored_u64, value_text};
use crate::scripts::OBSERVE;
use crate::series::read_hash;
use crate::series_id::SeriesId;

/// How many buckets every histogram has.
pub const BUCKETS: u16 = 562;
/// Buckets per power of two.
pub const BUCKETS_PER_OCTAVE: i32 = 8;
const FIRST_EXPONENT: i32 = -30;
const LAST_EXPONENT: i32 = 40;

/// The bucket holding `value` (finite, `>= 0`; anything else goes to bucket 0).
pub fn bucket_index(value: f64) -> u16 {
    let min = 2f64.powi(FIRST_EXPONENT);
    let max = 2f64.powi(LAST_EXPONENT);
    if value.is_nan() || value < min {
        return 0;
    }
    if value >= max {
        return BUCKETS - 1;
    }
    let k = (value.log2() * f64::from(BUCKETS_PER_OCTAVE)).floor() as i32;
    let mut index = (k - FIRST_EXPONENT * BUCKETS_PER_OCTAVE + 1).clamp(1, 560);
    // Correct the rare off-by-one of log2 at a boundary, so the bounds below always hold.
    while index > 1 && value < bucket_bounds(index as u16).0 {
        index -= 1;
    }
    while index < 560 && value >= bucket_bounds(index as u16).1 {
        index += 1;
    }
    index as u16
}

/// The bounds `[lower, upper)` of bucket `index` (see the module's table).
pub fn bucket_bounds(index: u16) -> (f64, f64) {
    let octave = f64::from(BUCKETS_PER_OCTAVE);
    let edge = |i: i32| 2f64.powf(f64::from(i + FIRST_EXPONENT * BUCKETS_PER_OCTAVE - 1) / octave);
    match index {
        0 => (0.0, 2f64.powi(FIRST_EXPONENT)),
        i if i >= BUCKETS - 1 => (2f64.powi(LAST_EXPONENT), f64::INFINITY),
        i => (edge(i32::from(i)), edge(i32::from(i) + 1)),
    }
}

/// A histogram's content at one moment: exact count, sum, min, max and per-bucket counts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistogramSnapshot {
    /// Observations per bucket index (only non-empty buckets).
    pub buckets: BTreeMap<u16, u64>,
    /// How many observations.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The smallest, if any.
    pub min: Option<f64>,
    /// The largest, if any.
    pub max: Option<f64>,
}

impl HistogramSnapshot {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one observation, exactly as the `observe` script does (the reference model).
    pub fn observe(&mut self, value: f64) {
        *self.buckets.entry(bucket_index(value)).or_insert(0) += 1;
        self.count += 1;
        self.sum += value;
        if self.min.is_none_or(|m| value < m) {
            self.min = Some(value);
        }
        if self.max.is_none_or(|m| value > m) {
            self.max = Some(value);
        }
    }

    /// Adds another histogram's observations (of another series, say): the buckets are the same
    /// for every histogram, so the merge is exact.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        // Saturating: counts read back are bounded, but a merge of many may still add up.
        for (&index, &n) in &other.buckets {
            let bucket = self.buckets.entry(index).or_insert(0);
            *bucket = bucket.saturating_add(n);
        }
        self.count = self.count.saturating_add(other.count);
        self.sum += other.sum;
        self.min = match (self.min, other.min) {
            (Some(a), Some(b)) => Some(if b < a { b } else { a }),
            (a, b) => a.or(b),
        };
        self.max = match (self.max, other.max) {
            (Some(a), Some(b)) => Some(if b > a { b } else { a }),
            (a, b) => a.or(b),
        };
    }

    /// The mean, if any observation.
    pub fn avg(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The estimated `q`-percentile (`q` in `[0, 1]`): the geometric middle of the bucket of
    /// the nearest-rank observation, clamped to `[min, max]`. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let (min, max) = (self.min?, self.max?);
        let count = usize::try_from(self.count).ok()?;
        let rank = u64::try_from(nearest_rank(q, count)).unwrap_or(u64::MAX);
        let mut seen = 0u64;
        for (&index, &n) in &self.buckets {
            seen = seen.saturating_add(n);
            if seen >= rank {
                let estimate = match index {
                    0 => min,
                    i if i >= BUCKETS - 1 => max,
                    i => {
                        let (lo, hi) = bucket_bounds(i);
                        (lo * hi).sqrt()
                    }
                };
                return Some(estimate.clamp(min, max));
            }
        }
        Some(max)
    }

    /// The estimated median.
    pub fn p50(&self) -> Option<f64> {
        self.quantile(0.5)
    }

    /// The estimated 95th percentile.
    pub fn p95(&self) -> Option<f64> {
        self.quantile(0.95)
    }

    /// The estimated 99th percentile.
    pub fn p99(&self) -> Option<f64> {
        self.quantile(0.99)
    }

    /// Decodes the fields of the histogram at `key`: a field that does not decode is
    /// [`coordkit_core::Error::Corrupt`] naming the key and the field.
    fn from_fields(key: &Key, fields: &[(String, String)]) -> coordkit_core::Result<Self> {
        let mut snapshot = Self::new();
        for (field, value) in fields {
            match field.as_str() {
                "count" => snapshot.count = stored_u64(key, "count", value)?,
                "sum" => snapshot.sum = stored_f64(key, "sum", value, true)?,
                "min" => snapshot.min = Some(stored_f64(key, "min", value, true)?),
                "max" => snapshot.max = Some(stored_f64(key, "max", value, true)?),
                other => {
                    let index = other
                        .strip_prefix('b')
                        .and_then(|i| i.parse::<u16>().ok())
                        .filter(|i| *i < BUCKETS)
                        .ok_or_else(|| {
                            coordkit_core::Error::corrupt(
                                key.as_str(),
                                format!("field {other:?} is not count, sum, min, max or a bucket"),
                            )
                        })?;
                    snapshot
                        .buckets
                        .insert(index, stored_u64(key, other, value)?);
                }
            }
        }
        Ok(snapshot)
    }
}

/// A histogram series: one hash `…:{metric:<name,labels>}:histogram`, bounded by the bucket
/// count whatever the number of observations. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Histogram {
    pool: Pool,
    id: SeriesId,
    key: Key,
    /// The series' entry in the namespace's index of series.
    registration: Arc<Registration>,
}

impl Histogram {
    pub(crate) fn new(
        pool: Pool,
        id: SeriesId,
        keys: &coordkit_core::InstanceKeys,
        registration: Registration,
    ) -> Self {
        Self {
            pool,
            id,
            key: keys.typed_key("histogram", KeyKind::Hash),
            registration: Arc::new(registration),
        }
    }

    /// The series' name and labels.
    pub fn id(&self) -> &SeriesId {
        &self.id
    }

    /// The key holding the histogram.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// Adds one observation (finite, `>= 0`); returns the histogram's count. One round trip.
    pub async fn observe(&self, value: f64) -> Result<u64> {
        self.observe_batch(&[value]).await
    }

    /// Adds several observations in one round trip; returns the histogram's count.
    pub async fn observe_batch(&self, values: &[f64]) -> Result<u64> {
        if values.is_empty() {
            return Err(MetricsError::InvalidSample {
                what: "batch",
                input: "[]".into(),
                reason: "holds no observation",
            });
        }
        for &v in values {
            check_value("observation", v, true)?;
        }
        crate::series::registered(&self.registration, &self.pool).await?;
        let mut call = OBSERVE.prepare();
        call.key(&self.key);
        for &v in values {
            call.arg(bucket_index(v)).arg(value_text(v));
        }
        let count: String = call.invoke(&self.pool).await?;
        Ok(parse_u64("the histogram's count", &count)?)
    }

    /// The histogram's content now ([`coordkit_core::Error::Corrupt`] naming the key when a
    /// field does not decode).
    pub async fn snapshot(&self) -> Result<HistogramSnapshot> {
        let fields = read_hash(&self.pool, &self.key).await?;
        Ok(HistogramSnapshot::from_fields(&self.key, &fields)?)
    }

    /// The merged content of several histograms (of different series, on any node).
    pub async fn merged(histograms: &[Histogram]) -> Result<HistogramSnapshot> {
        let mut merged = HistogramSnapshot::new();
        for h in histograms {
            merged.merge(&h.snapshot().await?);
        }
        Ok(merged)
    }

    /// Deletes the histogram, and forgets its series in the namespace's index (its next
    /// write records it again).
    pub async fn clear(&self) -> Result<()> {
        let _: u64 = self
            .pool
            .query(coordkit_core::redis::cmd("DEL").arg(&self.key))
            .await?;
        self.registration.forget(&self.pool).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_whose_bounds_hold_it() {
        let mut v = 1e-12;
        while v < 1e13 {
            let i = bucket_index(v);
            let (lo, hi) = bucket_bounds(i);
            assert!(lo <= v && v < hi, "{v} in bucket {i} = [{lo}, {hi})");
            v *= 1.0137;
        }
        assert_eq!(bucket_index(0.0), 0);
        assert_eq!(bucket_index(1.0), 241);
        assert_eq!(bucket_bounds(241), (1.0, 2f64.powf(1.0 / 8.0)));
        assert_eq!(bucket_index(2f64.powi(40)), 561);
        // Adjacent buckets share their edges.
        for i in 0..BUCKETS - 1 {
            assert_eq!(bucket_bounds(i).1, bucket_bounds(i + 1).0, "bucket {i}");
        }
    }

    #[test]
    fn percentile_estimates_are_within_the_documented_error() {
        let mut h = HistogramSnapshot::new();
        for i in 1..=10_000 {
            h.observe(f64::from(i) * 0.37);
        }
        for q in [0.5, 0.95, 0.99] {
            let exact = (q * 10_000.0_f64).ceil() * 0.37;
            let estimate = h.quantile(q).unwrap();
            let error = (estimate - exact).abs() / exact;
            assert!(
                error <= 2f64.powf(1.0 / 16.0) - 1.0,
                "q {q}: {estimate} vs {exact}"
            );
        }
        assert_eq!(h.count, 10_000);
        assert_eq!(h.min, Some(0.37));
    }

    #[test]
    fn merging_equals_observing_everything_in_one() {
        let (mut a, mut b, mut all) = (
            HistogramSnapshot::new(),
            HistogramSnapshot::new(),
            HistogramSnapshot::new(),
        );
        for i in 0..500 {
            let v = f64::from(i * i) / 7.0;
            if i % 3 == 0 {
                a.observe(v)
            } else {
                b.observe(v)
            }
            all.observe(v);
        }
        a.merge(&b);
        assert_eq!(a.buckets, all.buckets);
        assert_eq!((a.count, a.min, a.max), (all.count, all.min, all.max));
        assert_eq!(a.p99(), all.p99());
        let mut empty = HistogramSnapshot::new();
        empty.merge(&HistogramSnapshot::new());
        assert_eq!(empty.p50(), None);
    }
}
