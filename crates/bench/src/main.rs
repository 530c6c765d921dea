//! # coordkit-bench
//!
//! Throughput and latency of coordkit's operations against a real Redis, one JSON line per
//! scenario run:
//!
//! ```text
//! cargo run --release -p coordkit-bench -- raw-evalsha --concurrency 50 --ops 100000
//! {"scenario":"raw-evalsha","topology":"standalone","concurrency":50,"ops":100000,...}
//! ```
//!
//! Without `--redis` the bench starts its own throwaway `redis-server` (a 3-master cluster with
//! `--cluster`) through the testkit. Every scenario other than `raw-evalsha` also runs the
//! `raw-evalsha` baseline (a one-key HINCRBY+HGET script through the same pool, at the same
//! concurrency and op count) in the same process, in alternating rounds, and reports
//! `baseline_ops_per_sec`, `ratio` (the median of the rounds' ratios), `ratio_of_totals` and
//! the baseline's `baseline_p50_us` / `baseline_p99_us`, so a comparison holds on a noisy
//! machine. A scenario whose op makes several script calls (`workflow-lifecycle`) also
//! reports `calls_per_op`, `calls_per_sec`, `ratio_per_call` and `ratio_of_totals_per_call`
//! (the same ratios per script call), and says so in `ratio_unit`.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use coordkit_core::{Keyspace, Pool, PoolConfig};
use coordkit_testkit::{RedisCluster, RedisServer};
use hdrhistogram::Histogram;
use serde::Serialize;

mod scenarios;

use scenarios::{Scenario, Workload};

#[derive(Debug, Parser)]
#[command(about = "coordkit benchmarks: one JSON line per scenario")]
struct Args {
    /// The scenario to run.
    #[arg(value_enum)]
    scenario: Scenario,
    /// A Redis URL (redis://, redis+cluster://). Without it a throwaway server is started.
    #[arg(long)]
    redis: Option<String>,
    /// Start a throwaway 3-master cluster instead of a standalone server (without --redis).
    #[arg(long)]
    cluster: bool,
    /// How many operations run at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// How many operations to measure (after a warm-up of a tenth as many, at most 5,000).
    #[arg(long, default_value_t = 20_000)]
    ops: u64,
    /// Connections in the pool (default: the concurrency, at least 1, at most 64).
    #[arg(long)]
    pool_size: Option<u32>,
    /// retry-lifecycle: how many times each task fails before it succeeds.
    #[arg(long, default_value_t = 0)]
    fails: u32,
    /// Skip the raw-evalsha baseline, so that the server's `INFO commandstats` show the
    /// scenario's own cost per call (for profiling scripts against a server given with --redis).
    #[arg(long)]
    no_baseline: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    scenario: &'static str,
    topology: &'static str,
    concurrency: usize,
    ops: u64,
    errors: u64,
    elapsed_ms: u64,
    ops_per_sec: f64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    max_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline_ops_per_sec: Option<f64>,
    /// The baseline's median latency in the same run (a latency goal compares p50s).
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline_p50_us: Option<u64>,
    /// The baseline's 99th percentile in the same run.
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline_p99_us: Option<u64>,
    /// The median over the rounds of scenario ops/s ÷ baseline ops/s of the same round: a
    /// burst of load (or of the VM's steal time) that hits one round moves it little.
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio: Option<f64>,
    /// `ops_per_sec / baseline_ops_per_sec` over the whole run.
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio_of_totals: Option<f64>,
    redis_version: String,
    /// Scenario-specific figures (memory per instance, …).
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

struct Measured {
    ops: u64,
    errors: u64,
    elapsed: Duration,
    latencies: Histogram<u64>,
}

impl Measured {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// Adds another round of the same scenario.
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

/// How many alternating rounds of baseline and scenario a comparison runs.
const ROUNDS: u64 = 10;

/// Runs `ops` operations on `concurrency` workers and records each one's latency.
async fn measure(
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

async fn run(args: Args) -> Result<Report, String> {
    if args.concurrency == 0 || args.concurrency > 10_000 {
        return Err("--concurrency must be between 1 and 10000".into());
    }
    if args.ops == 0 {
        return Err("--ops must be at least 1".into());
    }
    // Keep the throwaway servers alive for the whole run.
    let mut _standalone = None;
    let mut _cluster = None;
    let url = match (&args.redis, args.cluster) {
        (Some(url), _) => url.clone(),
        (None, false) => {
            let server = RedisServer::start().map_err(|e| e.to_string())?;
            let url = server.url();
            _standalone = Some(server);
            url
        }
        (None, true) => {
            let cluster = RedisCluster::start().map_err(|e| e.to_string())?;
            let url = cluster.cluster_url();
            _cluster = Some(cluster);
            url
        }
    };
    let pool_size = args
        .pool_size
        .unwrap_or_else(|| u32::try_from(args.concurrency).unwrap_or(64).clamp(1, 64));
    let config = PoolConfig::from_url(&url)
        .map_err(|e| e.to_string())?
        .pool_size(pool_size);
    let topology = match config.topology() {
        coordkit_core::Topology::Standalone => "standalone",
        coordkit_core::Topology::Cluster => "cluster",
    };
    let pool = Pool::connect(config).await.map_err(|e| e.to_string())?;
    let redis_version = server_version(&pool).await;
    let keyspace =
        Keyspace::new(&format!("bench-{}", std::process::id())).map_err(|e| e.to_string())?;

    let warmup = (args.ops / 10).clamp(1, 5_000);
    let scenario = args
        .scenario
        .prepare(&pool, &keyspace, args.concurrency, args.fails)
        .await
        .map_err(|e| e.to_string())?;
    let baseline = if args.scenario == Scenario::RawEvalsha || args.no_baseline {
        None
    } else {
        Some(
            Scenario::RawEvalsha
                .prepare(&pool, &keyspace, args.concurrency, args.fails)
                .await
                .map_err(|e| e.to_string())?,
        )
    };

    measure(&pool, scenario.clone(), args.concurrency, warmup).await?;
    // The baseline and the scenario alternate in rounds, so a change in the machine's load
    // during the run weighs on both alike and the ratio holds.
    let rounds: u64 = if baseline.is_some() {
        ROUNDS.min(args.ops)
    } else {
        1
    };
    let mut measured: Option<Measured> = None;
    let mut baseline_total: Option<Measured> = None;
    let mut round_ratios = Vec::new();
    for round in 0..rounds {
        let ops = args.ops / rounds + u64::from(round < args.ops % rounds);
        if let Some(fixture) = &baseline {
            if round == 0 {
                measure(&pool, fixture.clone(), args.concurrency, warmup).await?;
            }
            // Which of the two goes first alternates too.
            let (b, m) = if round % 2 == 0 {
                let b = measure(&pool, fixture.clone(), args.concurrency, ops).await?;
                (
                    b,
                    measure(&pool, scenario.clone(), args.concurrency, ops).await?,
                )
            } else {
                let m = measure(&pool, scenario.clone(), args.concurrency, ops).await?;
                (
                    measure(&pool, fixture.clone(), args.concurrency, ops).await?,
                    m,
                )
            };
            round_ratios.push(m.ops_per_sec() / b.ops_per_sec());
            baseline_total = Some(match baseline_total {
                None => b,
                Some(total) => total.merge(b)?,
            });
            measured = Some(match measured {
                None => m,
                Some(total) => total.merge(m)?,
            });
            continue;
        }
        let m = measure(&pool, scenario.clone(), args.concurrency, ops).await?;
        measured = Some(match measured {
            None => m,
            Some(total) => total.merge(m)?,
        });
    }
    let measured = measured.ok_or("nothing was measured")?;
    let baseline_ops_per_sec = baseline_total.as_ref().map(Measured::ops_per_sec);
    let baseline_p50_us = baseline_total
        .as_ref()
        .map(|b| b.latencies.value_at_quantile(0.50));
    let baseline_p99_us = baseline_total
        .as_ref()
        .map(|b| b.latencies.value_at_quantile(0.99));
    let mut extra = scenario.report(&pool).await.map_err(|e| e.to_string())?;
    let ops_per_sec = measured.ops_per_sec();
    let ratio = median(&mut round_ratios);
    if let Some(calls) = scenario.calls_per_op() {
        // An op of several script calls, against the baseline's one call: the same ratios
        // counted per call.
        let k = f64::from(calls);
        extra.insert(
            "ratio_unit".into(),
            "ratio: ops/s ÷ raw-evalsha calls/s; ratio_per_call: script calls/s ÷ raw-evalsha calls/s"
                .into(),
        );
        let mut put = |name: &str, v: f64| {
            extra.insert(name.into(), v.into());
        };
        put("calls_per_op", k);
        put("calls_per_sec", round1(ops_per_sec * k));
        if let Some(r) = ratio {
            put("ratio_per_call", round3(r * k));
        }
        if let Some(b) = baseline_ops_per_sec {
            put("ratio_of_totals_per_call", round3(ops_per_sec * k / b));
        }
    }
    let h = &measured.latencies;
    Ok(Report {
        scenario: args.scenario.name(),
        topology,
        concurrency: args.concurrency,
        ops: measured.ops,
        errors: measured.errors,
        elapsed_ms: u64::try_from(measured.elapsed.as_millis()).unwrap_or(u64::MAX),
        ops_per_sec: round1(ops_per_sec),
        p50_us: h.value_at_quantile(0.50),
        p90_us: h.value_at_quantile(0.90),
        p99_us: h.value_at_quantile(0.99),
        max_us: h.max(),
        baseline_ops_per_sec: baseline_ops_per_sec.map(round1),
        baseline_p50_us,
        baseline_p99_us,
        ratio: ratio.map(round3),
        ratio_of_totals: baseline_ops_per_sec.map(|b| round3(ops_per_sec / b)),
        redis_version,
        extra,
    })
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// `redis_version` from `INFO server` (a cluster answers once per node: the first one wins).
async fn server_version(pool: &Pool) -> String {
    fn find(value: &redis::Value) -> Option<String> {
        match value {
            redis::Value::BulkString(bytes) => find_in(&String::from_utf8_lossy(bytes)),
            redis::Value::VerbatimString { text, .. } => find_in(text),
            redis::Value::SimpleString(text) => find_in(text),
            redis::Value::Array(items) | redis::Value::Set(items) => items.iter().find_map(find),
            redis::Value::Map(pairs) => pairs.iter().find_map(|(_, v)| find(v)),
            _ => None,
        }
    }
    fn find_in(info: &str) -> Option<String> {
        info.lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .map(|v| v.trim().to_owned())
    }
    pool.query::<redis::Value>(redis::cmd("INFO").arg("server"))
        .await
        .ok()
        .as_ref()
        .and_then(find)
        .unwrap_or_else(|| "unknown".to_owned())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(report) => match serde_json::to_string(&report) {
            Ok(line) => {
                #[allow(clippy::print_stdout)]
                {
                    println!("{line}");
                }
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("coordkit-bench: cannot encode the report: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("coordkit-bench: {e}");
            std::process::ExitCode::FAILURE
        }
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
