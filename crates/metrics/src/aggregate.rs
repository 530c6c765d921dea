//! [`Aggregate`]: count, sum, min, max, mean and percentiles of a window of samples.
//!
//! The definitions, shared by the Lua query script and the Rust reference model:
//!
//! - `sum` adds the values in recording order (so the model reproduces it bit for bit);
//! - `min`/`max` keep the first of equal values;
//! - the percentile `p(q)` is the nearest-rank one: sort the values, take the
//!   `ceil(q * count)`-th smallest (the smallest when that is 0). It is always a recorded value.

/// The aggregation of a window of samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// How many samples the window holds.
    pub count: u64,
    /// Their sum in recording order (0 when empty).
    pub sum: f64,
    /// The smallest, if any.
    pub min: Option<f64>,
    /// The largest, if any.
    pub max: Option<f64>,
    /// The requested percentiles, `(q, p(q))` in the order asked (empty when the window is).
    pub quantiles: Vec<(f64, f64)>,
}

impl Aggregate {
    /// The aggregate of no samples.
    pub fn empty() -> Self {
        Self {
            count: 0,
            sum: 0.0,
            min: None,
            max: None,
            quantiles: Vec::new(),
        }
    }

    /// Aggregates `values` (in recording order) by the definitions above.
    pub fn over(values: &[f64], quantiles: &[f64]) -> Self {
        if values.is_empty() {
            return Self::empty();
        }
        let mut sum = 0.0;
        let mut min = values[0];
        let mut max = values[0];
        for &v in values {
            sum += v;
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let count = values.len();
        let quantiles = quantiles
            .iter()
            .map(|&q| (q, sorted[nearest_rank(q, count) - 1]))
            .collect();
        Self {
            count: count as u64,
            sum,
            min: Some(min),
            max: Some(max),
            quantiles,
        }
    }

    /// The mean (`sum / count`), if any sample.
    pub fn avg(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The percentile computed for `q`, if it was asked for and the window is not empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.quantiles
            .iter()
            .find(|(asked, _)| *asked == q)
            .map(|(_, p)| *p)
    }
}

/// The 1-based rank of the nearest-rank percentile `q` among `count` values.
pub(crate) fn nearest_rank(q: f64, count: usize) -> usize {
    let rank = (q * count as f64).ceil();
    if rank.is_nan() || rank < 1.0 {
        1
    } else if rank >= count as f64 {
        count
    } else {
        rank as usize
    }
}

/// Checks that every quantile is within `[0, 1]`.
pub(crate) fn check_quantiles(quantiles: &[f64]) -> Result<(), coordkit_core::Error> {
    match quantiles.iter().find(|q| !(0.0..=1.0).contains(*q)) {
        Some(q) => Err(coordkit_core::Error::invalid_config(
            "quantiles",
            format!("each must be between 0 and 1, got {q}"),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_are_recorded_values() {
        let values: Vec<f64> = (1..=100).map(f64::from).rev().collect();
        let a = Aggregate::over(&values, &[0.0, 0.5, 0.95, 0.99, 1.0]);
        assert_eq!(a.count, 100);
        assert_eq!(a.sum, 5050.0);
        assert_eq!(a.avg(), Some(50.5));
        assert_eq!((a.min, a.max), (Some(1.0), Some(100.0)));
        assert_eq!(a.quantile(0.0), Some(1.0));
        assert_eq!(a.quantile(0.5), Some(50.0));
        assert_eq!(a.quantile(0.95), Some(95.0));
        assert_eq!(a.quantile(0.99), Some(99.0));
        assert_eq!(a.quantile(1.0), Some(100.0));
        assert_eq!(a.quantile(0.3), None);
        assert_eq!(Aggregate::over(&[], &[0.5]), Aggregate::empty());
        assert!(check_quantiles(&[0.0, 1.0]).is_ok());
        assert!(check_quantiles(&[1.5]).is_err());
        assert!(check_quantiles(&[f64::NAN]).is_err());
    }
}
