//! The README's example of each primitive: the code between `// readme: begin` and
//! `// readme: end` below is the README's block, and it runs, on standalone and cluster.

use coordkit::Coordkit;
use coordkit::circuit_breaker::Window;
use coordkit::errors::ErrorEvent;
use coordkit::retry_queue::TaskOptions;
use coordkit_testkit::redis_test;

#[derive(serde::Serialize)]
struct Email {
    to: String,
}

async fn ask_model(prompt: &str) -> Result<String, std::io::Error> {
    Ok(format!("an answer to {prompt}"))
}

#[rustfmt::skip]
async fn primitives(kit: &Coordkit, prompt: String, email: Email) -> Result<(), Box<dyn std::error::Error>> {
// readme: begin
// Circuit breaker: trips when half of the last 20 calls fail, for every process at once.
let llm = kit.breaker("llm-api").window(Window::Count(20)).failure_rate(0.5).build()?;
let answer = llm.call(ask_model(&prompt)).await?; // Err(Rejected) at once while open

// Retry queue: at-least-once, leased, retried with backoff, dead-lettered after the last try.
let queue = kit.queue("emails").build()?;
queue.enqueue_json(&email, TaskOptions::default().max_attempts(5)).await?;

// Shared context: partial writes with versions, compare-and-set, history, watch.
let project = kit.context().actor("planner").build()?.entity("project", "p1")?;
project.set([("status", "\"training\"")]).await?; // every field holds JSON

// Errors: deduplicated by signature; regressions and cascades spotted.
let errors = kit.error_tracker("agents").build()?;
errors.record(&ErrorEvent::new("search", "Timeout", "timed out after 5s")).await?;

// Metrics: trimmed series; aggregations and percentiles over a window.
let depth = kit.metrics().build()?.gauge("queue_depth", &[("queue", "emails")])?;
depth.record(42.0).await?;
// readme: end
assert_eq!(answer, "an answer to hello");
assert_eq!(queue.stats().await?.ready, 1);
assert_eq!(project.get(&["status"]).await?.expect("written").updated_by, "planner");
assert_eq!(errors.counts().await?.by_kind.get("Timeout"), Some(&1));
Ok(())
}

redis_test! {
    async fn the_readme_examples_of_each_primitive_run(redis) {
        let kit = Coordkit::from_pool(redis.pool().await, redis.keyspace().namespace()).unwrap();
        let email = Email { to: "ada@example.com".into() };
        primitives(&kit, "hello".into(), email).await.unwrap();
    }
}

#[test]
fn the_readme_shows_these_examples_as_they_are() {
    let source = include_str!("readme_primitives.rs");
    let body = source
        .split("// readme: begin\n")
        .nth(1)
        .and_then(|rest| rest.split("// readme: end").next())
        .expect("this file marks the README's part");
    let readme = include_str!("../README.md");
    assert!(
        readme.contains(&format!("```rust\n{body}```")),
        "the README's primitives example differs from tests/readme_primitives.rs; copy it over"
    );
}
