//! An agent in 40 lines: it takes tasks from a queue the fleet shares, calls a flaky model API
//! through a circuit breaker every process agrees on, reports failures and latencies, and keeps
//! its status where the fleet can see it.
//!
//! ```text
//! cargo run --example agent            # starts a throwaway redis-server
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example agent
//! ```
#![allow(clippy::print_stdout)]

// agent: begin
use coordkit::Coordkit;
use coordkit::errors::ErrorEvent;
use coordkit::retry_queue::{AgentBinding, TaskOptions, Worker};
use std::time::{Duration, Instant};

/// Queues `docs` documents and works them through as agent `name`; returns once all are done.
pub async fn run(kit: &Coordkit, name: &str, docs: u32) -> Result<(), Box<dyn std::error::Error>> {
    let queue = kit.queue("summaries").build()?;
    let llm = kit.breaker("llm-api").build()?;
    let errors = kit.error_tracker("agents").build()?;
    let metrics = kit.metrics().build()?;
    let latency = metrics.histogram("llm_ms", &[("agent", name)])?;
    let fleet = kit.context().build()?.agents("fleet")?;
    for doc in 0..docs {
        queue.enqueue_json(&doc, TaskOptions::default()).await?; // a task's payload: JSON
    }
    let worker = Worker::builder_json(&queue, move |task, doc: u32| {
        let (llm, errors, latency) = (llm.clone(), errors.clone(), latency.clone());
        async move {
            let started = Instant::now();
            // Rejected at once, without calling, while the fleet's breaker is open.
            let outcome = llm.call(call_model(doc, task.attempt)).await;
            let _ = latency.observe(started.elapsed().as_secs_f64() * 1e3).await;
            if let Err(e) = &outcome {
                let event = ErrorEvent::new("llm-api", "ModelError", e.to_string());
                let _ = errors.record(&event).await; // deduplicated by signature
            }
            outcome.map(|_summary| ()).map_err(|e| e.to_string()) // Err: retried after backoff
        }
    })
    .concurrency(4)
    .agent(AgentBinding::new(fleet, name).capability("summarize")) // status: busy / idle
    .start()
    .await?;
    while queue.stats().await?.completed < u64::from(docs) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown().await;
    Ok(())
}
// agent: end

/// A model API that fails the first try of one document in seven.
async fn call_model(doc: u32, attempt: u32) -> Result<String, std::io::Error> {
    tokio::time::sleep(Duration::from_millis(2)).await;
    if doc % 7 == 3 && attempt == 1 {
        return Err(std::io::Error::other("model overloaded"));
    }
    Ok(format!("summary of {doc}"))
}

#[allow(dead_code)] // tests/agent_example.rs includes this file and calls `run`.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // REDIS_URL when set; otherwise a throwaway server that lives as long as this program.
    let (kit, _server) = match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => (Coordkit::connect(&url, "agents").await?, None),
        _ => {
            let server = coordkit_testkit::RedisServer::start()?;
            (
                Coordkit::connect(&server.url(), "agents").await?,
                Some(server),
            )
        }
    };
    run(&kit, "agent-1", 50).await?;
    let stats = kit.queue("summaries").build()?.stats().await?;
    println!("agent-1 summarized {} documents", stats.completed);
    Ok(())
}
