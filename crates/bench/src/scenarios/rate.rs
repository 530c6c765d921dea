//! `rate-limited`: a queue with a rate limit of `--rate` starts per `--per-ms`, a backlog of
//! `--seconds` worth of starts at that rate, drained by `--workers` workers of `--concurrency`
//! slots each (one process, one pool). Each task's start is its claim's server time (its lease
//! deadline less its lease). The report gives the configured and the achieved starts per
//! second, their ratio, and the most starts seen in any window of the limit's length (which
//! must never exceed the limit), with the claim scripts and wake-ups per start (a worker held
//! back sleeps until the start the claim answers, so these stay low: no spinning).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coordkit_core::{Keyspace, Pool};
use coordkit_retry_queue::{Limits, MAX_BATCH, NewTask, Queue, Rate, Settled, TaskOptions, Worker};
use tokio::sync::Notify;

use super::{Params, Result};

/// Every task's lease: its claim time is its deadline less this.
const LEASE: Duration = Duration::from_secs(600);

/// What draining the backlog measured.
pub(crate) struct Drained {
    /// Tasks drained (all started and acknowledged).
    pub(crate) tasks: u64,
    /// From the workers' start to the last acknowledgement.
    pub(crate) elapsed: Duration,
    /// Starts per second achieved (see [`achieved`]).
    pub(crate) starts_per_sec: f64,
    /// The scenario's figures.
    pub(crate) extra: serde_json::Map<String, serde_json::Value>,
}

/// Starts per second: `rate` ÷ the mean time from a start to the `rate`-th start after it
/// (under the limit that is when the start's leaving the window let the later one in, so a
/// late wake-up shows as a longer time), in ms; `None` with `rate` starts or fewer. A burst of
/// a window's starts and an even stream both read as their true rate.
fn achieved(starts: &[u64], rate: usize) -> Option<(f64, f64)> {
    let n = starts.len().checked_sub(rate).filter(|&n| n > 0)?;
    let gaps: u64 = (0..n).map(|i| starts[i + rate] - starts[i]).sum();
    let mean = gaps as f64 / n as f64;
    Some((rate as f64 * 1000.0 / mean, mean))
}

/// The most of the sorted `starts` in any window `[t, t + per_ms)`.
fn max_in_window(starts: &[u64], per_ms: u64) -> usize {
    let mut best = 0;
    let mut j = 0;
    for (i, &t) in starts.iter().enumerate() {
        while j < starts.len() && starts[j] < t.saturating_add(per_ms) {
            j += 1;
        }
        best = best.max(j - i);
    }
    best
}

/// Enqueues the backlog, starts the workers, waits until every task is acknowledged.
pub(crate) async fn run(pool: &Pool, keyspace: &Keyspace, p: &Params) -> Result<Drained> {
    let per_ms = u64::try_from(p.per.as_millis()).unwrap_or(u64::MAX);
    if p.rate == 0 || per_ms == 0 {
        return Err("--rate and --per-ms must be at least 1".into());
    }
    if !(1..=64).contains(&p.workers) || !(1..=600).contains(&p.seconds) {
        return Err("--workers must be 1 to 64 and --seconds 1 to 600".into());
    }
    let queue = Queue::builder(pool, keyspace, "rate-limited").build()?;
    queue
        .set_limits(Limits {
            max_leased: None,
            rate: Some(Rate {
                starts: p.rate,
                per: p.per,
            }),
        })
        .await?;
    // At least two windows, so the achieved rate spans one whole window.
    let tasks = (u64::from(p.rate) * p.seconds * 1000)
        .div_ceil(per_ms)
        .max(u64::from(p.rate) * 2 + 1);
    let options = TaskOptions::default().lease(LEASE);
    let mut left = tasks;
    while left > 0 {
        let n = left.min(MAX_BATCH as u64);
        let batch: Vec<NewTask> = (0..n)
            .map(|_| NewTask::new(&b"x"[..]).options(options.clone()))
            .collect();
        queue.enqueue_batch(&batch).await?;
        left -= n;
    }

    let starts = Arc::new(Mutex::new(Vec::with_capacity(tasks as usize)));
    let acked = Arc::new(AtomicU64::new(0));
    let all_acked = Arc::new(Notify::new());
    let lease_ms = u64::try_from(LEASE.as_millis()).unwrap_or(u64::MAX);
    let began = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..p.workers {
        let starts = starts.clone();
        let (acked, all_acked) = (acked.clone(), all_acked.clone());
        let worker = Worker::builder(&queue, move |task| {
            let starts = starts.clone();
            async move {
                let at = task.deadline_ms.saturating_sub(lease_ms);
                starts.lock().map_err(|_| "poisoned")?.push(at);
                Ok::<(), &'static str>(())
            }
        })
        .concurrency(p.concurrency.clamp(1, 10_000))
        .on_settled(move |_, settled| {
            if *settled == Settled::Acked && acked.fetch_add(1, Ordering::Relaxed) + 1 == tasks {
                all_acked.notify_one();
            }
        })
        .start()
        .await?;
        workers.push(worker);
    }
    // Twice the configured time, and a margin: a limit that let too few through fails here.
    let limit = Duration::from_secs(p.seconds * 2 + 30);
    let drained = tokio::time::timeout(limit, all_acked.notified()).await;
    let elapsed = began.elapsed();
    let (mut claims, mut wakeups) = (0, 0);
    for worker in workers {
        let s = worker.stats();
        (claims, wakeups) = (claims + s.claims, wakeups + s.wakeups);
        worker.shutdown().await;
    }
    if drained.is_err() {
        let done = acked.load(Ordering::Relaxed);
        return Err(format!("only {done} of {tasks} tasks drained within {limit:?}").into());
    }
    let mut starts = std::mem::take(&mut *starts.lock().map_err(|_| "poisoned")?);
    starts.sort_unstable();
    let configured = f64::from(p.rate) * 1000.0 / per_ms as f64;
    let (rate, period) = achieved(&starts, p.rate as usize).ok_or("too few starts")?;
    let max = max_in_window(&starts, per_ms);
    let per_start = |x: u64| ((x as f64 / starts.len().max(1) as f64) * 1000.0).round() / 1000.0;
    let mut extra = serde_json::Map::new();
    let mut put = |k: &str, v: serde_json::Value| {
        extra.insert(k.into(), v);
    };
    put("limit_starts", p.rate.into());
    put("limit_per_ms", per_ms.into());
    put("workers", p.workers.into());
    put("configured_starts_per_sec", configured.into());
    put(
        "achieved_starts_per_sec",
        ((rate * 10.0).round() / 10.0).into(),
    );
    put(
        "achieved_ratio",
        ((rate / configured * 1000.0).round() / 1000.0).into(),
    );
    // How much later than the window's length a start came after the one it replaced.
    put(
        "mean_slot_delay_ms",
        (((period - per_ms as f64) * 100.0).round() / 100.0).into(),
    );
    put("max_starts_in_window", max.into());
    put("limit_held", (max <= p.rate as usize).into());
    put("claims_per_start", per_start(claims).into());
    put("wakeups_per_start", per_start(wakeups).into());
    Ok(Drained {
        tasks,
        elapsed,
        starts_per_sec: rate,
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::{achieved, max_in_window};

    #[test]
    fn bursts_and_even_streams_read_as_their_rate() {
        // 3 starts at the head of each 100 ms window: 30/s.
        let bursts: Vec<u64> = (0..5)
            .flat_map(|w| [w * 100, w * 100 + 1, w * 100 + 2])
            .collect();
        assert_eq!(achieved(&bursts, 3), Some((30.0, 100.0)));
        assert_eq!(max_in_window(&bursts, 100), 3);
        // Each burst 2 ms late: 2 starts per 102 ms.
        let late: Vec<u64> = (0..5).flat_map(|w| [w * 102, w * 102 + 1]).collect();
        assert_eq!(achieved(&late, 2), Some((2000.0 / 102.0, 102.0)));
        // One start every 10 ms: 100/s, 10 in any 100 ms.
        let even: Vec<u64> = (0..50).map(|i| i * 10).collect();
        assert_eq!(achieved(&even, 10), Some((100.0, 100.0)));
        assert_eq!(max_in_window(&even, 100), 10);
        assert_eq!(achieved(&[5, 6], 2), None);
    }
}
