//! An orchestrator that survives its own `kill -9`: it runs three-step workflows (research,
//! outline, write), checkpoints each step's output, and when it starts it resumes the
//! workflows whose owner died, each from the step after its last checkpoint. Any number of
//! them can run at once on the same Redis; each workflow is worked by one at a time.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example orchestrator -- --workflows 50
//! # kill -9 it mid-run, then start it again: it resumes where the dead one stopped
//! cargo run --example orchestrator   # a throwaway redis-server: nothing outlives the process
//! ```
#![allow(clippy::print_stdout)]

use std::time::Duration;

use clap::Parser;
use coordkit::Coordkit;
use coordkit::workflow::{Lease, Listing, NewWorkflow, Outcome, WorkflowError, WorkflowStore};

/// What one run does.
#[derive(Debug, Parser)]
#[command(about = "Runs three-step workflows with a checkpoint per step; resumes orphans")]
pub struct Args {
    /// How many workflows (`report-0` …): created if missing, so a restart creates none.
    #[arg(long, default_value_t = 20)]
    pub workflows: u32,
    /// How many run at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// How long each step works, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub step_ms: u64,
    /// Who this orchestrator is (default: `orchestrator-<pid>`).
    #[arg(long)]
    pub owner: Option<String>,
    /// The coordkit namespace.
    #[arg(long, default_value = "orchestrator-demo")]
    pub namespace: String,
}

/// Creates `n` workflows (idempotent by id) and works until none is pending or running.
pub async fn run(
    kit: &Coordkit,
    owner: &str,
    n: u32,
    at_once: usize,
    step: Duration,
) -> Result<(), WorkflowError> {
    let store = kit
        .workflows("reports")
        .owner(owner)
        .lease(Duration::from_secs(2))
        .build()?;
    for i in 0..n {
        let new = NewWorkflow::new("report", format!("topic {i}")).id(&format!("report-{i}"));
        store.create(new).await?;
    }
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < at_once {
            let Some(lease) = claim(&store).await? else {
                break;
            };
            running.spawn(work(lease, step));
        }
        match running.join_next().await {
            Some(finished) => finished.expect("a workflow task panicked")?,
            None => {
                let active = store.list(&Listing::Active, None, 1).await?;
                if active.items.is_empty() {
                    return Ok(()); // every workflow finished
                }
                tokio::time::sleep(Duration::from_millis(100)).await; // others hold the rest
            }
        }
    }
}

// orchestrator: begin
/// The steps, each one's output checkpointed.
const STEPS: [&str; 3] = ["research", "outline", "write"];

/// An orphan first (its owner died: its lease ran out), else the oldest pending workflow.
async fn claim(store: &WorkflowStore) -> Result<Option<Lease>, WorkflowError> {
    let mut got = store.resume_orphans(1).await?.leases;
    if got.is_empty() {
        got = store.claim_next(1).await?.leases;
    }
    Ok(got.pop())
}

/// Runs a workflow from the step after its last checkpoint, continuing from that output.
async fn work(mut lease: Lease, step_time: Duration) -> Result<(), WorkflowError> {
    let mut prev = match lease.last_checkpoint() {
        Some(c) => String::from_utf8_lossy(&c.output).into_owned(),
        None => String::from_utf8_lossy(lease.input()).into_owned(),
    };
    if lease.resumed() {
        println!("resumed {} at step {}", lease.id(), lease.next_step());
    }
    for step in lease.next_step()..=3 {
        tokio::time::sleep(step_time).await; // the step's work: a model call, a tool
        let output = format!("{}({prev})", STEPS[step as usize - 1]);
        // Renews the lease; a step longer than the lease calls `lease.extend()` as it goes.
        if lease.checkpoint(step, &output).await? != Outcome::Done {
            return Ok(()); // LeaseLost: it stalled and another orchestrator took over
        }
        println!("checkpointed {} step {step}", lease.id());
        prev = output;
    }
    if lease.complete(&prev).await? == Outcome::Done {
        println!("completed {}", lease.id());
    }
    Ok(())
}
// orchestrator: end

/// One run: connects (`REDIS_URL`, or a throwaway server), works, reports.
pub async fn main_with(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let (kit, _server) = match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => (Coordkit::connect(&url, &args.namespace).await?, None),
        _ => {
            let server = coordkit_testkit::RedisServer::start()?;
            let kit = Coordkit::connect(&server.url(), &args.namespace).await?;
            (kit, Some(server))
        }
    };
    let owner = args
        .owner
        .unwrap_or_else(|| format!("orchestrator-{}", std::process::id()));
    println!("{owner}: {} workflows", args.workflows);
    let step = Duration::from_millis(args.step_ms);
    run(&kit, &owner, args.workflows, args.concurrency, step).await?;
    println!("{owner}: every workflow finished");
    Ok(())
}

#[allow(dead_code)] // tests/orchestrator_example.rs includes this file and calls `main_with`.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    main_with(Args::parse()).await
}
