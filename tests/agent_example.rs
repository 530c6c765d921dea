//! The README's agent example: the code between `// agent: begin` and `// agent: end` in
//! `examples/agent.rs` is the README's, and it runs, on standalone and cluster.

#[allow(unreachable_pub)] // `run` is public in the example, where it is the crate root.
#[path = "../examples/agent.rs"]
mod agent;

use coordkit::Coordkit;
use coordkit_testkit::redis_test;

redis_test! {
    async fn the_agent_example_works_every_task_through(redis) {
        let kit = Coordkit::from_pool(redis.pool().await, redis.keyspace().namespace()).unwrap();
        let fleet = kit.context().build().unwrap().agents("fleet").unwrap();
        let run = tokio::spawn({
            let kit = kit.clone();
            async move { agent::run(&kit, "agent-1", 30).await.map_err(|e| e.to_string()) }
        });
        // While it works, the fleet sees it with its capability.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        let record = loop {
            if let Some(record) = fleet.get("agent-1").await.unwrap() {
                break record;
            }
            assert!(tokio::time::Instant::now() < deadline, "the agent never registered");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        };
        assert!(record.status.capabilities.contains("summarize"), "{record:?}");
        tokio::time::timeout(std::time::Duration::from_secs(120), run)
            .await
            .expect("the agent did not finish its tasks")
            .unwrap()
            .unwrap();
        let queue = kit.queue("summaries").build().unwrap();
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.completed, stats.dead, stats.dead_lettered_total), (30, 0, 0));
        // Documents 3, 10, 17 and 24 failed once each: one signature, seen four times.
        let errors = kit.error_tracker("agents").build().unwrap();
        let signatures = errors.signatures(10).await.unwrap();
        assert_eq!(signatures.len(), 1, "{signatures:?}");
        let detail = errors.signature(&signatures[0].0).await.unwrap().expect("it is tracked");
        assert_eq!(detail.count, 4, "{detail:?}");
        // It left the fleet when its worker shut down.
        assert_eq!(fleet.get("agent-1").await.unwrap(), None);
    }
}

#[test]
fn the_readme_shows_the_agent_example_as_it_is() {
    let example = include_str!("../examples/agent.rs");
    let body = example
        .split("// agent: begin\n")
        .nth(1)
        .and_then(|rest| rest.split("// agent: end").next())
        .expect("examples/agent.rs marks the README's part");
    let readme = include_str!("../README.md");
    assert!(
        readme.contains(&format!("```rust\n{body}```")),
        "the README's agent example differs from examples/agent.rs; copy it over"
    );
    assert!(
        body.lines().count() <= 40,
        "the agent example grew past 40 lines"
    );
}
