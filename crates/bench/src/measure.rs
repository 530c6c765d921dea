//! Measuring workloads: runs of `ops` operations on `concurrency` workers, and rounds that
//! interleave several workloads (the scenario, its raw-evalsha baseline, a variant's plain run)
//! so that a change in the machine's load during the run weighs on all of them alike.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coordkit_core::Pool;
use hdrhistogram::Histogram;

use crate::scenarios::Workload;

/// One workload's runs: operations, failures, wall time and each operation's latency.
pub(crate) struct Measured {
    pub(crate) ops: u64,
    pub(crate) errors: u64,
    pub(crate) elapsed: Duration,
    pub(crate) latencies: Histogram<u64>,
}

impl Measured {
    pub(crate) fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// Adds another round of the same workload.
    fn merge(mut self, other: Measured) -> Result<Measured, String> {
        self.ops += other.ops;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        self.latencies
            .add(&other.latencies)
            .map_err(|e| format!("histogram: {e}"))?;
        Ok(self)
    }
}

/// Runs `ops` operations on `concurrency` workers and records each one's latency.
pub(crate) async fn measure(
    pool: &Pool,
    fixture: Arc<dyn Workload>,
    concurrency: usize,
    ops: u64,
) -> Result<Measured, String> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let pool = pool.clone();
            let fixture = fixture.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                    .map_err(|e| format!("histogram: {e}"))?;
                let mut errors = 0u64;
                let mut last_error = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= ops {
                        break;
                    }
                    let t = Instant::now();
                    if let Err(e) = fixture.op(&pool, i).await {
                        errors += 1;
                        last_error = Some(e.to_string());
                    }
                    let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                    latencies.saturating_record(us.max(1));
                }
                Ok::<_, String>((latencies, errors, last_error))
            })
        })
        .collect();
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .map_err(|e| format!("histogram: {e}"))?;
    let mut errors = 0;
    let mut last_error = None;
    for worker in workers {
        let (h, e, last) = worker
            .await
            .map_err(|e| format!("a worker failed: {e}"))??;
        latencies.add(&h).map_err(|e| format!("histogram: {e}"))?;
        errors += e;
        last_error = last_error.or(last);
    }
    let elapsed = started.elapsed();
    if errors * 100 > ops {
        return Err(format!(
            "{errors} of {ops} operations failed; last error: {}",
            last_error.unwrap_or_default()
        ));
    }
    Ok(Measured {
        ops,
        errors,
        elapsed,
        latencies,
    })
}

/// What [`interleave`] measured: each workload's rounds merged, and each round's ops/s per
/// workload (in the order the workloads were given).
pub(crate) struct Rounds {
    pub(crate) totals: Vec<Measured>,
    per_round: Vec<Vec<f64>>,
}

impl Rounds {
    /// The median over the rounds of workload `a`'s ops/s ÷ workload `b`'s in the same round.
    pub(crate) fn ratio(&self, a: usize, b: usize) -> Option<f64> {
        let mut ratios: Vec<f64> = self.per_round.iter().map(|r| r[a] / r[b]).collect();
        median(&mut ratios)
    }

    /// Workload `a`'s ops/s ÷ workload `b`'s over the whole run.
    pub(crate) fn ratio_of_totals(&self, a: usize, b: usize) -> f64 {
        self.totals[a].ops_per_sec() / self.totals[b].ops_per_sec()
    }
}

/// Warms each workload up with `warmup` operations, then runs `rounds` rounds of `ops`
/// operations in all (split evenly), each round running every workload once; which one goes
/// first rotates from round to round.
pub(crate) async fn interleave(
    pool: &Pool,
    fixtures: &[Arc<dyn Workload>],
    concurrency: usize,
    ops: u64,
    rounds: u64,
    warmup: u64,
) -> Result<Rounds, String> {
    for fixture in fixtures {
        measure(pool, fixture.clone(), concurrency, warmup).await?;
    }
    let n = fixtures.len();
    let mut totals: Vec<Option<Measured>> = (0..n).map(|_| None).collect();
    let mut per_round = Vec::new();
    for round in 0..rounds {
        let round_ops = ops / rounds + u64::from(round < ops % rounds);
        let mut rates = vec![0.0; n];
        for k in 0..n {
            let i = (k + usize::try_from(round).unwrap_or(0)) % n;
            let m = measure(pool, fixtures[i].clone(), concurrency, round_ops).await?;
            rates[i] = m.ops_per_sec();
            totals[i] = Some(match totals[i].take() {
                None => m,
                Some(total) => total.merge(m)?,
            });
        }
        per_round.push(rates);
    }
    let totals = totals
        .into_iter()
        .map(|t| t.ok_or("nothing was measured"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Rounds { totals, per_round })
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
pub(crate) fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&mut [0.9, 0.1, 0.5]), Some(0.5));
        assert_eq!(median(&mut [0.8, 0.2, 1.0, 0.6]), Some(0.7));
        assert_eq!(median(&mut []), None);
        // One round hit by a burst of load does not move it.
        assert_eq!(median(&mut [0.9, 0.9, 0.1, 0.9, 0.9]), Some(0.9));
    }
}
