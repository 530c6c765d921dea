//! The fleet demo: every coordkit primitive at work together.
//!
//! A fleet of agents (default 8) works through tasks (default 2,000) from a retry queue. Each
//! task calls one of three simulated downstream components; one of them has a scripted outage,
//! so its circuit breaker opens, tasks for it are deferred, the breaker half-opens and closes
//! again. Failures go to the error tracker (which spots the cascade), latencies to metrics,
//! the agents keep their status and the run its context in the context store, an agent whose
//! call failed asks a planner (whichever agent serves the `advice` capability, over the mesh)
//! what to do, and an event subscriber prints breaker transitions and cascades as they happen.
//! The final report comes from the primitives' own queries.
//!
//! ```text
//! cargo run --release --example fleet                      # a throwaway redis-server
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --release --example fleet -- --agents 16
//! ```
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use coordkit::Coordkit;
use coordkit::circuit_breaker::{BreakerConfig, BreakerRegistry, OpenDuration, Window};
use coordkit::context::{AgentStatus, Status};
use coordkit::errors::ErrorEvent;
use coordkit::mesh::Reply;
use coordkit::retry_queue::{Backoff, Jitter, NewTask, TaskOptions, Worker};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

#[derive(Debug, Parser)]
#[command(about = "A fleet of agents using every coordkit primitive")]
struct Args {
    /// How many agents (workers) run at once.
    #[arg(long, default_value_t = 8)]
    agents: usize,
    /// How many tasks to work through.
    #[arg(long, default_value_t = 2000)]
    tasks: u32,
    /// The failure rate of the healthy components (0 to 1).
    #[arg(long, default_value_t = 0.04)]
    failure_rate: f64,
    /// When the outage of `vector-db` starts, in seconds after the start.
    #[arg(long, default_value_t = 1.0)]
    outage_start: f64,
    /// How long it lasts, in seconds.
    #[arg(long, default_value_t = 2.5)]
    outage_seconds: f64,
    /// The random seed (which component each task calls, which calls fail).
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

const COMPONENTS: [&str; 3] = ["llm-api", "vector-db", "search"];
const FAILURES: [(&str, &str); 3] = [
    ("Timeout", "timeout after {ms}ms calling {c} (attempt {a})"),
    (
        "ConnectionRefused",
        "connection refused by {c} at 10.0.3.{a}:6333",
    ),
    ("RateLimited", "{c} answered 429: retry after {ms}ms"),
];

#[derive(Debug, Serialize, Deserialize)]
struct Job {
    n: u32,
    component: String,
}

/// What an agent whose call failed asks the planner.
#[derive(Debug, Serialize, Deserialize)]
struct Question {
    component: String,
    kind: String,
    attempt: u32,
}

/// The planner's answer: the component's breaker as the fleet sees it, and what to do.
#[derive(Debug, Serialize, Deserialize)]
struct Advice {
    breaker: String,
    plan: String,
}

/// How the agents' asks to the planner went.
#[derive(Debug, Default)]
struct Asks {
    asked: AtomicU64,
    answered: AtomicU64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleet: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if !(0.0..=1.0).contains(&args.failure_rate) || args.agents == 0 || args.tasks == 0 {
        return Err("--failure-rate must be within 0..1, --agents and --tasks at least 1".into());
    }
    // REDIS_URL when set; otherwise a throwaway server that lives as long as this program.
    let (url, _server) = match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let server = coordkit_testkit::RedisServer::start()
                .map_err(|e| format!("cannot start a throwaway redis-server: {e}"))?;
            (server.url(), Some(server))
        }
    };
    let run_id = format!("run-{}", std::process::id());
    let kit = Coordkit::connect(&url, &format!("fleet-{run_id}"))
        .await
        .map_err(|e| format!("cannot reach Redis: {e}"))?;
    println!(
        "fleet: {} agents, {} tasks, on {} ({:?})",
        args.agents,
        args.tasks,
        kit.pool().address(),
        kit.pool().topology()
    );

    // The primitives, all over one pool.
    let breakers = kit
        .breakers()
        .default_config(
            BreakerConfig::builder()
                .window(Window::Count(20))
                .minimum_calls(10)
                .failure_rate(0.5)
                .open_duration(OpenDuration::Fixed(Duration::from_millis(600)))
                .half_open_permits(2)
                .half_open_successes(2)
                // Probes take milliseconds here: a lost one frees its slot after a second.
                .permit_lease(Duration::from_secs(1))
                .build()?,
        )
        .build()?;
    let queue = kit.queue("tasks").build()?;
    let errors = kit
        .error_tracker("fleet")
        .correlation_window(Duration::from_secs(10))
        .cascade_threshold(3)
        .build()?;
    let metrics = kit.metrics().build()?;
    let context = kit.context().actor("fleet").build()?;
    let agents = context.agents("fleet")?;
    let run = context.entity("run", &run_id)?;
    run.set([
        ("status", "running".to_owned()),
        ("tasks", args.tasks.to_string()),
        ("seed", args.seed.to_string()),
    ])
    .await?;

    // Print breaker transitions and cascades as they happen.
    let progress = ProgressBar::new(u64::from(args.tasks));
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tasks  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut events = kit
        .pool()
        .subscriber()
        .pattern(kit.keyspace().channel_pattern(None)?)
        .subscribe::<serde_json::Value>()
        .await?;
    let printer = {
        let progress = progress.clone();
        // Above the bar on a terminal; plain lines otherwise (the bar is hidden then).
        let say = move |line: String| {
            if progress.is_hidden() {
                println!("{line}");
            } else {
                progress.println(line);
            }
        };
        tokio::spawn(async move {
            while let Some(got) = events.recv().await {
                let e = got.event;
                match (e.source.as_str(), e.kind.as_str()) {
                    ("circuit-breaker", kind) => say(format!(
                        "  breaker {:<10} {:<12} {}",
                        e.entity,
                        kind,
                        e.payload
                            .get("reason")
                            .and_then(|r| r.as_str())
                            .unwrap_or("")
                    )),
                    (_, "cascade") => say(format!(
                        "  cascade: {} error kinds across {}",
                        e.payload
                            .get("kinds")
                            .map(|k| k.to_string())
                            .unwrap_or_default(),
                        e.payload
                            .get("components")
                            .map(|c| c.to_string())
                            .unwrap_or_default()
                    )),
                    _ => {}
                }
            }
        })
    };

    // The planner: serves the `advice` capability over the mesh; whichever agent's call failed
    // asks it (and would get `NoResponders` at once if no planner were alive).
    let planner = kit.agent("planner").build()?;
    let advice = {
        let breakers = breakers.clone();
        planner
            .serve_capability("advice", move |q: Question| {
                let breakers = breakers.clone();
                async move {
                    let snapshot = breakers
                        .get("dep", &q.component)
                        .map_err(|e| e.to_string())?
                        .snapshot()
                        .await
                        .map_err(|e| e.to_string())?;
                    let plan = match (snapshot.state, q.attempt) {
                        (coordkit::circuit_breaker::State::Closed, 1) => "retry after backoff",
                        (coordkit::circuit_breaker::State::Closed, _) => "retry, then escalate",
                        _ => "wait for the breaker",
                    };
                    Ok::<_, String>(Advice {
                        breaker: format!("{:?}", snapshot.state),
                        plan: format!("{plan} ({} from {})", q.kind, q.component),
                    })
                }
            })
            .await?
    };
    let asks = Arc::new(Asks::default());

    // Enqueue the work.
    let mut rng = StdRng::seed_from_u64(args.seed);
    let options = |component: &str| {
        TaskOptions::default()
            .max_attempts(8)
            .backoff(Backoff::Exponential {
                base: Duration::from_millis(20),
                factor: 2.0,
                max: Duration::from_millis(400),
            })
            .jitter(Jitter::Full)
            .component(component)
    };
    let jobs: Vec<NewTask> = (0..args.tasks)
        .map(|n| {
            let component = COMPONENTS[rng.random_range(0..COMPONENTS.len())];
            NewTask::json(&Job {
                n,
                component: component.to_owned(),
            })
            .map(|t| t.options(options(component)))
        })
        .collect::<Result<_, _>>()?;
    for chunk in jobs.chunks(250) {
        queue.enqueue_batch(chunk).await?;
    }

    // The agents: one worker each, guarded by the components' breakers.
    let started = Instant::now();
    let outage = (args.outage_start, args.outage_start + args.outage_seconds);
    let mut workers = Vec::new();
    for a in 0..args.agents {
        let agent = format!("agent-{a}");
        agents
            .set_status(&agent, &AgentStatus::new(Status::Idle).capability("tasks"))
            .await?;
        let registry: BreakerRegistry = breakers.clone();
        let mesh = kit.agent(&agent).build()?;
        let ctx = Arc::new((agent, agents.clone(), errors.clone(), metrics.clone()));
        let (mesh, asks) = (mesh, asks.clone());
        let (failure_rate, seed) = (args.failure_rate, args.seed);
        let worker = Worker::builder_json(&queue, move |task, job: Job| {
            let (ctx, mesh, asks) = (ctx.clone(), mesh.clone(), asks.clone());
            async move {
                let (agent, agents, errors, metrics) = &*ctx;
                let _ = agents
                    .set_status(
                        agent,
                        &AgentStatus::new(Status::Busy).task(format!("t{}", job.n)),
                    )
                    .await;
                // The simulated call: a few ms, failing at the component's current rate.
                let mut rng =
                    StdRng::seed_from_u64(seed ^ (u64::from(job.n) << 8) ^ u64::from(task.attempt));
                let t = started.elapsed().as_secs_f64();
                let down = job.component == "vector-db" && t >= outage.0 && t < outage.1;
                let latency = rng.random_range(1.0..6.0) * if down { 4.0 } else { 1.0 };
                tokio::time::sleep(Duration::from_micros((latency * 1000.0) as u64)).await;
                if let Ok(histogram) =
                    metrics.histogram("latency_ms", &[("component", job.component.as_str())])
                {
                    let _ = histogram.observe(latency).await;
                }
                let failed = down || rng.random_bool(failure_rate);
                let outcome = if failed { "failed" } else { "ok" };
                if let Ok(calls) = metrics.counter(
                    "calls",
                    &[("component", job.component.as_str()), ("outcome", outcome)],
                ) {
                    let _ = calls.increment(1.0).await;
                }
                let result = if failed {
                    let (kind, template) = FAILURES[rng.random_range(0..FAILURES.len())];
                    let message = template
                        .replace("{ms}", &format!("{}", (latency * 100.0) as u32))
                        .replace("{c}", &job.component)
                        .replace("{a}", &task.attempt.to_string());
                    let _ = errors
                        .record(
                            &ErrorEvent::new(job.component.as_str(), kind, message)
                                .task(format!("t{}", job.n)),
                        )
                        .await;
                    // Ask the planner what to do; count the answers.
                    let question = Question {
                        component: job.component.clone(),
                        kind: kind.to_owned(),
                        attempt: task.attempt,
                    };
                    asks.asked.fetch_add(1, Ordering::Relaxed);
                    let reply = mesh
                        .ask_capability::<_, Advice>("advice", &question, Duration::from_secs(5))
                        .await;
                    if let Ok(Reply::Answer(_advice)) = reply {
                        asks.answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(format!("{kind} from {}", job.component))
                } else {
                    Ok(())
                };
                let _ = agents
                    .set_status(agent, &AgentStatus::new(Status::Idle))
                    .await;
                result
            }
        })
        .concurrency(1)
        .breakers(move |component| registry.get("dep", component).ok())
        .start()
        .await?;
        workers.push(worker);
    }

    // Progress, from the queue's own figures.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stats = queue.stats().await?;
        let finished = stats.completed + stats.dead_lettered_total;
        progress.set_position(finished);
        progress.set_message(format!(
            "ready {} delayed {} leased {}",
            stats.ready, stats.delayed, stats.leased
        ));
        if finished >= u64::from(args.tasks) {
            break;
        }
        if Instant::now() > deadline {
            return Err("the fleet did not finish within 2 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    for worker in workers {
        worker.shutdown().await;
    }
    let served = advice.served();
    advice.shutdown().await;
    run.set([("status", "done".to_owned())]).await?;
    printer.abort();

    // The report: every figure from the primitives' own queries.
    let stats = queue.stats().await?;
    let counts = errors.counts().await?;
    let failures: u64 = counts.by_kind.values().sum();
    println!("\nfleet report ({:.1} s)", elapsed.as_secs_f64());
    println!(
        "  tasks: {} done, {} retried, {} dead-lettered; {:.0} tasks/s",
        stats.completed,
        failures.saturating_sub(stats.dead_lettered_total),
        stats.dead_lettered_total,
        stats.completed as f64 / elapsed.as_secs_f64()
    );
    for component in COMPONENTS {
        let snapshot = breakers.get("dep", component)?.snapshot().await?;
        let calls = |outcome: &'static str| {
            metrics.counter("calls", &[("component", component), ("outcome", outcome)])
        };
        let (ok, failed) = (calls("ok")?.total().await?, calls("failed")?.total().await?);
        println!(
            "  {component:<10} calls {ok:>5.0} ok {failed:>4.0} failed; breaker {:?}, {} transitions",
            snapshot.state,
            snapshot.epoch.saturating_sub(1)
        );
    }
    println!("  top error signatures:");
    for top in errors.top(Duration::from_secs(600), 5).await?.signatures {
        println!(
            "    {:>5}  {} / {}: {}",
            top.total, top.meta.component, top.meta.kind, top.meta.template
        );
    }
    let latency = coordkit::metrics::Histogram::merged(
        &COMPONENTS
            .iter()
            .map(|c| metrics.histogram("latency_ms", &[("component", c)]))
            .collect::<Result<Vec<_>, _>>()?,
    )
    .await?;
    println!(
        "  latency ms: p50 {:.1}  p95 {:.1}  p99 {:.1}",
        latency.p50().unwrap_or(0.0),
        latency.p95().unwrap_or(0.0),
        latency.p99().unwrap_or(0.0)
    );
    println!(
        "  mesh: {} asks to the planner, {} answered ({} served by it)",
        asks.asked.load(Ordering::Relaxed),
        asks.answered.load(Ordering::Relaxed),
        served
    );
    let idle = agents.with_status(&Status::Idle).await?.len();
    println!("  agents idle at the end: {idle} of {}", args.agents);
    Ok(())
}
