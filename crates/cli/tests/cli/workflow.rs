//! `coordkit workflow …` against the store's own queries.

use std::time::Duration;

use coordkit_workflow::{Claim, NewWorkflow, Status, WorkflowStore};

use crate::cli_test;

/// A store with one pending, one orphaned (claimed, its lease run out), one running with a
/// checkpoint and one completed workflow.
fn fleet_store(t: &crate::common::Harness) -> WorkflowStore {
    let short = WorkflowStore::builder(&t.pool, &t.keyspace, "research")
        .owner("gone-worker")
        .lease(Duration::from_millis(100))
        .build()
        .unwrap();
    let store = WorkflowStore::builder(&t.pool, &t.keyspace, "research")
        .owner("live-worker")
        .lease(Duration::from_secs(600))
        .build()
        .unwrap();
    t.block_on(async {
        for id in ["w-pending", "w-orphan", "w-running", "w-done"] {
            store
                .create(NewWorkflow::new("research", format!("input of {id}")).id(id))
                .await
                .unwrap();
        }
        let Claim::Claimed(_) = short.claim("w-orphan").await.unwrap() else {
            panic!("claim")
        };
        let Claim::Claimed(mut running) = store.claim("w-running").await.unwrap() else {
            panic!("claim")
        };
        running.checkpoint(1, "found 3 papers").await.unwrap();
        let Claim::Claimed(mut done) = store.claim("w-done").await.unwrap() else {
            panic!("claim")
        };
        done.complete("a summary").await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    });
    store
}

cli_test! {
    fn stats_ls_and_show_match_the_store(t) {
        let store = fleet_store(&t);
        let stats = t.json(&["workflow", "stats", "research"]);
        let own = t.block_on(store.stats(Duration::from_secs(3600))).unwrap();
        for status in Status::ALL {
            assert_eq!(
                stats["by_status"][status.as_str()],
                own.by_status.get(&status).copied().unwrap_or(0),
                "{status:?}"
            );
        }
        assert_eq!(stats["by_status"]["running"], 2);
        assert_eq!(stats["finished_in_window"]["completed"], 1);

        // The active ones, in the store's order; the one whose lease ran out is marked
        // orphaned.
        let active = t.json(&["workflow", "ls", "research"]);
        let own = t.block_on(store.list(&coordkit_workflow::Listing::Active, None, 50)).unwrap();
        let shown: Vec<(&str, &str, bool)> = active["workflows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                (
                    w["id"].as_str().unwrap(),
                    w["status"].as_str().unwrap(),
                    w["orphaned"].as_bool().unwrap(),
                )
            })
            .collect();
        let own_ids: Vec<&str> = own.items.iter().map(|w| w.id.as_str()).collect();
        assert_eq!(shown.iter().map(|s| s.0).collect::<Vec<_>>(), own_ids);
        let mut sorted = shown.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [
                ("w-orphan", "running", true),
                ("w-pending", "pending", false),
                ("w-running", "running", false)
            ]
        );
        let human = t.ok(&["workflow", "ls", "research"]);
        assert!(human.contains("(orphaned)") && human.contains("gone-worker"), "{human}");
        let done = t.json(&["workflow", "ls", "research", "--status", "completed"]);
        assert_eq!(done["workflows"][0]["id"], "w-done");
        assert_eq!(done["workflows"].as_array().unwrap().len(), 1);

        let one = t.json(&["workflow", "show", "research", "w-running"]);
        let own = t.block_on(store.get("w-running")).unwrap().unwrap();
        assert_eq!(one["workflow"]["step"], own.info.step);
        assert_eq!(one["workflow"]["owner"], "live-worker");
        assert_eq!(one["input"], "input of w-running");
        assert_eq!(one["checkpoints"], serde_json::json!([{"step": 1, "output": "found 3 papers"}]));
        let finished = t.json(&["workflow", "show", "research", "w-done"]);
        assert_eq!(finished["outcome"], "a summary");

        let unknown = t.fails(1, &["workflow", "show", "research", "w-nope"]);
        assert!(unknown.contains("unknown workflow \"w-nope\""), "{unknown}");
        let no_store = t.fails(1, &["workflow", "ls", "nothing-here"]);
        assert!(no_store.contains("unknown workflow store \"nothing-here\""), "{no_store}");
        t.usage(&["workflow", "ls", "research", "--status", "sleeping"]);
    }
}

cli_test! {
    fn cancel_cancels_that_workflow_only(t) {
        let store = fleet_store(&t);
        t.fails(2, &["workflow", "cancel", "research", "w-orphan"]);
        assert_eq!(t.block_on(store.get("w-orphan")).unwrap().unwrap().info.status, Status::Running);

        let cancelled = t.json(&["workflow", "cancel", "research", "w-orphan", "--yes"]);
        assert_eq!(cancelled["result"], "cancelled");
        let status = |id: &str| t.block_on(store.get(id)).unwrap().unwrap().info.status;
        assert_eq!(status("w-orphan"), Status::Cancelled);
        assert_eq!(status("w-pending"), Status::Pending);
        assert_eq!(status("w-running"), Status::Running);
        assert_eq!(status("w-done"), Status::Completed);

        let again = t.json(&["workflow", "cancel", "research", "w-done", "--yes"]);
        assert_eq!(again["result"], "already_completed");
        assert_eq!(status("w-done"), Status::Completed);
        t.fails(1, &["workflow", "cancel", "research", "w-nope", "--yes"]);
    }
}
