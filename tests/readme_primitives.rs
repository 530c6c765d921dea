//! The README's examples of the primitives: the code between each `// readme: begin` and
//! `// readme: end` below is one of the README's blocks, and it runs, on standalone and cluster.

use std::time::Duration;

use coordkit::Coordkit;
use coordkit::circuit_breaker::Window;
use coordkit::errors::ErrorEvent;
use coordkit::mesh::Reply;
use coordkit::retry_queue::{Limits, Rate, TaskOptions, TaskOutcome, Worker};
use coordkit_testkit::redis_test;

async fn ask_model(prompt: &str) -> Result<String, std::io::Error> {
    Ok(format!("an answer to {prompt}"))
}

#[rustfmt::skip]
async fn primitives(kit: &Coordkit, prompt: String) -> Result<(), Box<dyn std::error::Error>> {
// readme: begin
// Circuit breaker: trips when half of the last 20 calls fail, for every process at once.
let llm = kit.breaker("llm-api").window(Window::Count(20)).failure_rate(0.5).build()?;
let answer = llm.call(ask_model(&prompt)).await?; // Err(Rejected) at once while open

// Retry queue: at-least-once, leased, retried with backoff, dead-lettered after the last try.
let queue = kit.queue("llm-calls").build()?;
// Limits every worker of every process obeys: 3 at once, 10 starts a second.
let rate = Rate { starts: 10, per: Duration::from_secs(1) };
queue.set_limits(Limits { max_leased: Some(3), rate: Some(rate) }).await?;
// A handler's Ok value is stored as the task's result; an Err is retried after the backoff.
let worker = Worker::builder_json(&queue, |_task, prompt: String| async move {
    ask_model(&prompt).await
}).concurrency(4).start().await?;
// Priorities 0 to 9, highest claimed first: a user's request goes before background work (0).
let urgent = TaskOptions::default().max_attempts(5).priority(9);
let handle = queue.enqueue_json(&prompt, urgent).await?.handle(&queue);
let outcome = handle.wait_json::<String>(Duration::from_secs(30)).await?; // Succeeded(answer)
queue.pause().await?; // claims stop at once; leased tasks finish

// Shared context: partial writes with versions, compare-and-set, history, watch.
let project = kit.context().actor("planner").build()?.entity("project", "p1")?;
project.set([("status", "\"training\"")]).await?; // every field holds JSON

// Errors: deduplicated by signature; regressions and cascades spotted.
let errors = kit.error_tracker("agents").build()?;
errors.record(&ErrorEvent::new("search", "Timeout", "timed out after 5s")).await?;

// Metrics: trimmed series; aggregations and percentiles over a window.
let depth = kit.metrics().build()?.gauge("queue_depth", &[("queue", "llm-calls")])?;
depth.record(42.0).await?;
// readme: end
assert_eq!(answer, "an answer to hello");
assert_eq!(outcome, TaskOutcome::Succeeded("an answer to hello".to_owned()));
let stats = queue.stats().await?;
assert_eq!((stats.completed, stats.paused, stats.limits.max_leased), (1, true, Some(3)));
assert!(worker.shutdown().await.clean);
assert_eq!(project.get(&["status"]).await?.expect("written").updated_by, "planner");
assert_eq!(errors.counts().await?.by_kind.get("Timeout"), Some(&1));
Ok(())
}

#[rustfmt::skip]
async fn mesh(kit: &Coordkit) -> Result<(), Box<dyn std::error::Error>> {
// readme: begin
// Mesh: durable inboxes (at-least-once, acked), request/reply, capability routing.
let planner = kit.agent("planner").build()?;
let worker = kit.agent("worker-1").build()?;
worker.send("planner", &"starting on the report").await?; // waits in the inbox, even offline
let note = planner.recv::<String>().await?;
note.ack().await?; // unacked, it is delivered again after the visibility timeout

// Any live member of "plan" answers; nobody serving is NoResponders, at once.
let server = planner.serve_capability("plan", |goal: String| async move {
    Ok::<_, String>(format!("split {goal} into 3 steps"))
}).await?;
let reply: Reply<String> = worker.ask_capability("plan", &"the report", Duration::from_secs(5)).await?;

// Typed channels: publish answers how many subscribers received it.
let progress = kit.channel::<u32>("progress").build()?;
let mut dashboard = progress.subscribe().await?;
assert_eq!(progress.publish(&42).await?, 1);
// readme: end
assert_eq!(note.from, "worker-1");
assert_eq!(note.payload, "starting on the report");
assert_eq!(reply, Reply::Answer("split the report into 3 steps".to_owned()));
assert_eq!(dashboard.recv().await.expect("a message").payload, 42);
server.shutdown().await;
let after: Reply<String> = worker.ask_capability("plan", &"more", Duration::from_secs(5)).await?;
assert_eq!(after, Reply::NoResponders);
Ok(())
}

redis_test! {
    async fn the_readme_examples_of_each_primitive_run(redis) {
        let kit = Coordkit::from_pool(redis.pool().await, redis.keyspace().namespace()).unwrap();
        primitives(&kit, "hello".into()).await.unwrap();
    }
}

redis_test! {
    async fn the_readme_example_of_the_mesh_runs(redis) {
        let kit = Coordkit::from_pool(redis.pool().await, redis.keyspace().namespace()).unwrap();
        tokio::time::timeout(Duration::from_secs(60), mesh(&kit))
            .await
            .expect("the mesh example hung")
            .unwrap();
    }
}

#[test]
fn the_readme_shows_these_examples_as_they_are() {
    let source = include_str!("readme_primitives.rs");
    let bodies: Vec<&str> = source
        .split("// readme: begin\n")
        .skip(1)
        .filter_map(|rest| rest.split("// readme: end").next())
        .collect();
    assert_eq!(
        bodies.len(),
        2,
        "this file marks the README's primitives and mesh parts"
    );
    let readme = include_str!("../README.md");
    for body in bodies {
        assert!(
            readme.contains(&format!("```rust\n{body}```")),
            "the README's example differs from tests/readme_primitives.rs; copy it over:\n{body}"
        );
    }
}
