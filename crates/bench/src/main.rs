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
//! (the same ratios per script call), and says so in `ratio_unit`. A variant run
//! (`retry-lifecycle --priority 5 --group-limit`) also runs its plain run in the same rounds
//! and reports `plain_ops_per_sec`, `ratio_to_plain` and `ratio_to_plain_of_totals`.
//! `rate-limited` drains a backlog under a rate limit instead: no baseline, no latencies, the
//! achieved and configured starts per second.
#![forbid(unsafe_code)]

use std::time::Duration;

use clap::Parser;
use coordkit_core::{Keyspace, Pool, PoolConfig};
use coordkit_testkit::{RedisCluster, RedisServer};
use serde::Serialize;

mod measure;
mod scenarios;

use scenarios::{GroupLimit, Params, Scenario};

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
    /// retry-lifecycle: the fixed backoff between attempts in ms, without jitter (default 1:
    /// a transient API error retried at once).
    #[arg(long, default_value_t = 1)]
    backoff_ms: u64,
    /// retry-lifecycle: the queue's `retry_in_place_below` in ms (default 500, the queue's
    /// default; 0 turns retry in place off: every retry goes through the delayed set).
    #[arg(long, default_value_t = 500)]
    in_place_below_ms: u64,
    /// retry-lifecycle: every task gets this priority (0 to 9). With it or --group-limit the
    /// run is a variant, and the plain run is measured in the same rounds.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=9))]
    priority: Option<u8>,
    /// retry-lifecycle: every task in one group, whose limits never bind: `both` (the
    /// default: 1,000,000 leased and 1,000,000 starts per second), `leased` (the concurrency
    /// limit alone) or `rate` (the rate limit alone).
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "both")]
    group_limit: Option<GroupLimit>,
    /// retry-lifecycle: a variant run without its plain run (for
    /// `scripts/server-instructions.sh`, which counts one queue's instructions).
    #[arg(long)]
    variant_only: bool,
    /// retry-steps: tasks per script call.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// rate-limited: the starts the limit allows per window.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// rate-limited: the limit's window in ms.
    #[arg(long, default_value_t = 1000)]
    per_ms: u64,
    /// rate-limited: how many workers share the limit, each with --concurrency slots.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// rate-limited: the backlog holds this many seconds of starts at the configured rate.
    #[arg(long, default_value_t = 4)]
    seconds: u64,
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
    // Latencies of the operations (none for a scenario that drains a backlog).
    #[serde(skip_serializing_if = "Option::is_none")]
    p50_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p90_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p99_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_us: Option<u64>,
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

/// How many alternating rounds of baseline and scenario a comparison runs.
const ROUNDS: u64 = 10;

impl Args {
    /// The options the scenarios read.
    fn params(&self) -> Params {
        Params {
            concurrency: self.concurrency,
            fails: self.fails,
            backoff: Duration::from_millis(self.backoff_ms),
            in_place_below: Duration::from_millis(self.in_place_below_ms),
            priority: self.priority,
            group_limit: self.group_limit,
            variant_only: self.variant_only,
            batch: self.batch,
            rate: self.rate,
            per: Duration::from_millis(self.per_ms),
            workers: self.workers,
            seconds: self.seconds,
        }
    }
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

    let params = args.params();
    if args.scenario == Scenario::RateLimited {
        // Not a loop of operations: a backlog drained under the limit, no baseline.
        let drained = scenarios::rate::run(&pool, &keyspace, &params)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(Report {
            scenario: args.scenario.name(),
            topology,
            concurrency: args.concurrency,
            ops: drained.tasks,
            errors: 0,
            elapsed_ms: u64::try_from(drained.elapsed.as_millis()).unwrap_or(u64::MAX),
            ops_per_sec: round1(drained.starts_per_sec),
            p50_us: None,
            p90_us: None,
            p99_us: None,
            max_us: None,
            baseline_ops_per_sec: None,
            baseline_p50_us: None,
            baseline_p99_us: None,
            ratio: None,
            ratio_of_totals: None,
            redis_version,
            extra: drained.extra,
        });
    }

    let warmup = (args.ops / 10).clamp(1, 5_000);
    let scenario = args
        .scenario
        .prepare(&pool, &keyspace, &params)
        .await
        .map_err(|e| e.to_string())?;
    // The workloads of the rounds: the scenario, its baseline, a variant's plain run.
    let mut fixtures = vec![scenario.clone()];
    let baseline = args.scenario != Scenario::RawEvalsha && !args.no_baseline;
    if baseline {
        fixtures.push(
            Scenario::RawEvalsha
                .prepare(&pool, &keyspace, &params)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let plain = scenario.plain().inspect(|p| fixtures.push(p.clone()));
    let (b, p) = (1, fixtures.len() - 1);
    // The workloads alternate in rounds, so a change in the machine's load during the run
    // weighs on all alike and the ratios hold.
    let rounds = if fixtures.len() > 1 {
        ROUNDS.min(args.ops)
    } else {
        1
    };
    let measured =
        measure::interleave(&pool, &fixtures, args.concurrency, args.ops, rounds, warmup).await?;
    let total = &measured.totals[0];
    let baseline_total = baseline.then(|| &measured.totals[b]);
    let baseline_ops_per_sec = baseline_total.map(measure::Measured::ops_per_sec);
    let baseline_p50_us = baseline_total.map(|b| b.latencies.value_at_quantile(0.50));
    let baseline_p99_us = baseline_total.map(|b| b.latencies.value_at_quantile(0.99));
    let mut extra = scenario.report(&pool).await.map_err(|e| e.to_string())?;
    let ops_per_sec = total.ops_per_sec();
    let ratio = if baseline { measured.ratio(0, b) } else { None };
    if plain.is_some() {
        // A variant against its plain run, in the same rounds.
        let plain_total = &measured.totals[p];
        let mut put = |name: &str, v: serde_json::Value| {
            extra.insert(name.into(), v);
        };
        put(
            "plain_ops_per_sec",
            round1(plain_total.ops_per_sec()).into(),
        );
        put(
            "plain_p50_us",
            plain_total.latencies.value_at_quantile(0.5).into(),
        );
        if let Some(r) = measured.ratio(0, p) {
            put("ratio_to_plain", round3(r).into());
        }
        put(
            "ratio_to_plain_of_totals",
            round3(measured.ratio_of_totals(0, p)).into(),
        );
        if baseline && let Some(r) = measured.ratio(p, b) {
            put("plain_ratio", round3(r).into());
        }
    }
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
    let h = &total.latencies;
    Ok(Report {
        scenario: args.scenario.name(),
        topology,
        concurrency: args.concurrency,
        ops: total.ops,
        errors: total.errors,
        elapsed_ms: u64::try_from(total.elapsed.as_millis()).unwrap_or(u64::MAX),
        ops_per_sec: round1(ops_per_sec),
        p50_us: Some(h.value_at_quantile(0.50)),
        p90_us: Some(h.value_at_quantile(0.90)),
        p99_us: Some(h.value_at_quantile(0.99)),
        max_us: Some(h.max()),
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
