//! The fleet demo: every coordkit primitive at work together.
//!
//! A fleet of agents (default 8) works through tasks (default 2,000) from two retry queues.
//! Each task calls one of three simulated downstream components: the calls to the LLM go
//! through their own queue, `llm`, whose rate limit every agent's worker obeys together; the
//! others through `tasks`. One component has a scripted outage, so its circuit breaker opens,
//! tasks for it are deferred, the breaker half-opens and closes again. Meanwhile an
//! orchestrator sends a few user requests to the LLM at a higher priority than the background
//! work and waits for each answer (`wait`, woken by the completion event). Failures go to the
//! error tracker (which spots the cascade), latencies to metrics, the agents keep their status
//! and the run its context in the context store, an agent whose call failed asks a planner
//! (whichever agent serves the `advice` capability, over the mesh) what to do, and an event
//! subscriber prints breaker transitions and cascades as they happen. The final report comes
//! from the primitives' own queries.
//!
//! ```text
//! cargo run --release --example fleet                      # a throwaway redis-server
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --release --example fleet -- --agents 16
//! ```
#![allow(clippy::print_stdout)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use coordkit::Coordkit;
use coordkit::circuit_breaker::{BreakerConfig, OpenDuration, Window};
use coordkit::context::{AgentRegistry, AgentStatus, Status};
use coordkit::errors::{ErrorEvent, ErrorTracker};
use coordkit::mesh::{MeshAgent, Reply};
use coordkit::metrics::Metrics;
use coordkit::retry_queue::{
    Backoff, Jitter, Limits, NewTask, QueueError, Rate, Task, TaskOptions, TaskOutcome, Worker,
};
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

/// The LLM's rate limit, shared by every worker of the `llm` queue: 20 starts in any 100 ms
/// (200 a second), decided by the claim script on the server's clock.
const LLM_RATE: Rate = Rate {
    starts: 20,
    per: Duration::from_millis(100),
};
/// The user requests the orchestrator sends, and their priority: background work has 0.
const USER_REQUESTS: u32 = 5;
const USER_PRIORITY: u8 = 5;
/// Every task's lease (the default, stated: the demo reads a claim's time off its deadline).
const LEASE: Duration = Duration::from_secs(30);

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

/// The simulated downstreams: how often calls fail, and the outage of `vector-db`.
#[derive(Debug, Clone, Copy)]
struct Sim {
    failure_rate: f64,
    seed: u64,
    started: Instant,
    /// Seconds after `started`.
    outage: (f64, f64),
}

/// One agent: what its handlers (one per queue) report to.
struct Agent {
    name: String,
    agents: AgentRegistry,
    errors: ErrorTracker,
    metrics: Metrics,
    mesh: MeshAgent,
    asks: Arc<Asks>,
    sim: Sim,
}

impl Agent {
    /// One attempt at `job`: the simulated call, a few ms, failing at the component's current
    /// rate; its latency and outcome go to metrics, a failure to the error tracker and, as a
    /// question, to the planner. Answers the component's reply.
    async fn call(&self, task: &Task, job: &Job) -> Result<String, String> {
        let (sim, component) = (self.sim, job.component.as_str());
        let busy = AgentStatus::new(Status::Busy).task(format!("t{}", job.n));
        let _ = self.agents.set_status(&self.name, &busy).await;
        let mut rng =
            StdRng::seed_from_u64(sim.seed ^ (u64::from(job.n) << 8) ^ u64::from(task.attempt));
        let t = sim.started.elapsed().as_secs_f64();
        let down = component == "vector-db" && t >= sim.outage.0 && t < sim.outage.1;
        let latency = rng.random_range(1.0..6.0) * if down { 4.0 } else { 1.0 };
        tokio::time::sleep(Duration::from_micros((latency * 1000.0) as u64)).await;
        if let Ok(histogram) = self
            .metrics
            .histogram("latency_ms", &[("component", component)])
        {
            let _ = histogram.observe(latency).await;
        }
        let failed = down || rng.random_bool(sim.failure_rate);
        let outcome = if failed { "failed" } else { "ok" };
        if let Ok(calls) = self
            .metrics
            .counter("calls", &[("component", component), ("outcome", outcome)])
        {
            let _ = calls.increment(1.0).await;
        }
        let result = if failed {
            let (kind, template) = FAILURES[rng.random_range(0..FAILURES.len())];
            let message = template
                .replace("{ms}", &format!("{}", (latency * 100.0) as u32))
                .replace("{c}", component)
                .replace("{a}", &task.attempt.to_string());
            let event = ErrorEvent::new(component, kind, message).task(format!("t{}", job.n));
            let _ = self.errors.record(&event).await;
            // Ask the planner what to do; count the answers.
            let question = Question {
                component: component.to_owned(),
                kind: kind.to_owned(),
                attempt: task.attempt,
            };
            self.asks.asked.fetch_add(1, Ordering::Relaxed);
            let reply = self
                .mesh
                .ask_capability::<_, Advice>("advice", &question, Duration::from_secs(5))
                .await;
            if let Ok(Reply::Answer(_advice)) = reply {
                self.asks.answered.fetch_add(1, Ordering::Relaxed);
            }
            Err(format!("{kind} from {component}"))
        } else {
            Ok(format!("reply to t{} via {}", job.n, self.name))
        };
        let idle = AgentStatus::new(Status::Idle);
        let _ = self.agents.set_status(&self.name, &idle).await;
        result
    }
}

/// The most `starts` (ms, server time) in any window of `per_ms`, as the claim script counts.
fn busiest(starts: &mut [u64], per_ms: u64) -> usize {
    starts.sort_unstable();
    let mut first = 0;
    let mut most = 0;
    for (i, &at) in starts.iter().enumerate() {
        while at - starts[first] >= per_ms {
            first += 1;
        }
        most = most.max(i + 1 - first);
    }
    most
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
    // The LLM's calls have a queue of their own, whose limit binds every worker of it.
    let llm = kit.queue("llm").build()?;
    llm.set_limits(Limits {
        max_leased: None,
        rate: Some(LLM_RATE),
    })
    .await?;
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
    let total = u64::from(args.tasks) + u64::from(USER_REQUESTS);
    let progress = ProgressBar::new(total);
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

    // Enqueue the work: background tasks, priority 0; the LLM's calls on their own queue.
    let mut rng = StdRng::seed_from_u64(args.seed);
    let options = |component: &str| {
        TaskOptions::default()
            .lease(LEASE)
            .max_attempts(8)
            .backoff(Backoff::Exponential {
                base: Duration::from_millis(20),
                factor: 2.0,
                max: Duration::from_millis(400),
            })
            .jitter(Jitter::Full)
            .component(component)
    };
    let (mut llm_jobs, mut jobs) = (Vec::new(), Vec::new());
    for n in 0..args.tasks {
        let component = COMPONENTS[rng.random_range(0..COMPONENTS.len())];
        let job = Job {
            n,
            component: component.to_owned(),
        };
        let task = NewTask::json(&job)?.options(options(component));
        if component == "llm-api" {
            llm_jobs.push(task);
        } else {
            jobs.push(task);
        }
    }
    for chunk in jobs.chunks(250) {
        queue.enqueue_batch(chunk).await?;
    }
    for chunk in llm_jobs.chunks(250) {
        llm.enqueue_batch(chunk).await?;
    }

    // The agents: one worker on each queue, guarded by the components' breakers.
    let sim = Sim {
        failure_rate: args.failure_rate,
        seed: args.seed,
        started: Instant::now(),
        outage: (args.outage_start, args.outage_start + args.outage_seconds),
    };
    // When each LLM call started (server time), to check the shared limit held.
    let llm_starts = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for a in 0..args.agents {
        let name = format!("agent-{a}");
        let idle = AgentStatus::new(Status::Idle).capability("tasks");
        agents.set_status(&name, &idle).await?;
        let agent = Arc::new(Agent {
            mesh: kit.agent(&name).build()?,
            name,
            agents: agents.clone(),
            errors: errors.clone(),
            metrics: metrics.clone(),
            asks: asks.clone(),
            sim,
        });
        let (me, registry) = (agent.clone(), breakers.clone());
        let worker = Worker::builder_json(&queue, move |task, job: Job| {
            let me = me.clone();
            async move { me.call(&task, &job).await.map(|_reply| ()) } // (): nothing stored
        })
        .concurrency(1)
        .breakers(move |component| registry.get("dep", component).ok())
        .start()
        .await?;
        workers.push(worker);
        let (starts, registry) = (llm_starts.clone(), breakers.clone());
        let worker = Worker::builder_json(&llm, move |task, job: Job| {
            let (me, starts) = (agent.clone(), starts.clone());
            async move {
                if let Ok(mut starts) = starts.lock() {
                    starts.push(task.deadline_ms.saturating_sub(LEASE.as_millis() as u64));
                }
                me.call(&task, &job).await // the reply is stored as the task's result
            }
        })
        .concurrency(1)
        .breakers(move |component| registry.get("dep", component).ok())
        .start()
        .await?;
        workers.push(worker);
    }

    // The orchestrator: user requests to the LLM, at a higher priority than the background
    // work queued there, each awaited with `wait` (woken by its completion event).
    let orchestrator = {
        let (llm, first) = (llm.clone(), args.tasks);
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for n in first..first + USER_REQUESTS {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let queued = llm.stats().await?.ready;
                let job = Job {
                    n,
                    component: "llm-api".to_owned(),
                };
                let asked = Instant::now();
                let urgent = options("llm-api").priority(USER_PRIORITY);
                let handle = llm.enqueue_json(&job, urgent).await?.handle(&llm);
                let outcome = handle.wait_json::<String>(Duration::from_secs(10)).await?;
                answers.push((n, queued, asked.elapsed(), outcome));
            }
            Ok::<_, QueueError>(answers)
        })
    };

    // Progress, from the queues' own figures.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (t, l) = (queue.stats().await?, llm.stats().await?);
        let finished = t.completed + t.dead_lettered_total + l.completed + l.dead_lettered_total;
        progress.set_position(finished);
        progress.set_message(format!(
            "ready {} delayed {} leased {}",
            t.ready + l.ready,
            t.delayed + l.delayed,
            t.leased + l.leased
        ));
        if finished >= total {
            break;
        }
        if Instant::now() > deadline {
            return Err("the fleet did not finish within 2 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = sim.started.elapsed();
    progress.finish_and_clear();
    let answers = orchestrator.await??;
    let in_place: u64 = workers.iter().map(|w| w.stats().retried_in_place).sum();
    for worker in workers {
        worker.shutdown().await;
    }
    let served = advice.served();
    advice.shutdown().await;
    run.set([("status", "done".to_owned())]).await?;
    printer.abort();

    // The report: every figure from the primitives' own queries.
    let (t, l) = (queue.stats().await?, llm.stats().await?);
    let (completed, dead) = (
        t.completed + l.completed,
        t.dead_lettered_total + l.dead_lettered_total,
    );
    let counts = errors.counts().await?;
    let failures: u64 = counts.by_kind.values().sum();
    println!("\nfleet report ({:.1} s)", elapsed.as_secs_f64());
    println!(
        "  tasks: {completed} done, {} retried ({in_place} in place), {dead} dead-lettered; {:.0} tasks/s",
        failures.saturating_sub(dead),
        completed as f64 / elapsed.as_secs_f64()
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
    // The LLM's limit, checked from the server-stamped starts; the user requests' waits.
    let mut starts = llm_starts.lock().map(|s| s.clone()).unwrap_or_default();
    let per_ms = LLM_RATE.per.as_millis() as u64;
    let most = busiest(&mut starts, per_ms);
    // The achieved rate over the starts' span plus one window (what the limit bounds).
    let span_ms = starts.last().zip(starts.first()).map_or(0, |(l, f)| l - f) + per_ms;
    println!(
        "  llm queue (limit {} starts per {per_ms} ms, shared by every worker): {} starts, {:.0}/s, at most {most} in any {per_ms} ms",
        LLM_RATE.starts,
        starts.len(),
        starts.len() as f64 * 1000.0 / span_ms as f64,
    );
    let per_second = f64::from(LLM_RATE.starts) * 1000.0 / per_ms as f64;
    println!(
        "  user requests to the llm queue at priority {USER_PRIORITY}, each awaited with wait():"
    );
    for (n, queued, took, outcome) in answers {
        let outcome = match outcome {
            TaskOutcome::Succeeded(reply) => format!("\"{reply}\""),
            TaskOutcome::Failed(failure) => format!("failed: {}", failure.reason),
            other => format!("{other:?}"),
        };
        println!(
            "    t{n} in {:>3} ms, ahead of {queued:>3} queued ({:.1} s at the limit): {outcome}",
            took.as_millis(),
            queued as f64 / per_second
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
