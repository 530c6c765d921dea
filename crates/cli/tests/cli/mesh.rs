//! `coordkit mesh …` against the agents' own queries.

use coordkit_mesh::MeshAgent;

use crate::cli_test;

cli_test! {
    fn agents_inbox_and_capability_match_the_mesh(t) {
        // Alive for ten minutes: the binary's runs below must not outlast a presence.
        let agent = |name: &str| {
            MeshAgent::builder(&t.pool, &t.keyspace, name)
                .presence_ttl(std::time::Duration::from_secs(600))
                .build()
                .unwrap()
        };
        let planner = agent("planner");
        let coder = agent("coder");
        let quiet = agent("quiet");
        t.block_on(async {
            planner.heartbeat().await.unwrap();
            coder.heartbeat().await.unwrap();
            coder.join("review").await.unwrap();
            // Two messages for the planner, one taken and not acked; one for a quiet agent
            // that never beats.
            coder.send("planner", &"plan t-1").await.unwrap();
            coder.send("planner", &"plan t-2").await.unwrap();
            let taken = planner.receive::<String>(1).await.unwrap();
            assert_eq!(taken.len(), 1);
            coder.send("quiet", &"hello").await.unwrap();
            coder.dispatch("review", &"pr 7", coordkit_mesh::SendOptions::default()).await.unwrap();
        });

        let live = t.json(&["mesh", "agents"]);
        let mut shown: Vec<String> = serde_json::from_value(live["agents"].clone()).unwrap();
        let mut own = t.block_on(planner.live_agents()).unwrap();
        shown.sort();
        own.sort();
        assert_eq!(shown, own);
        assert_eq!(shown, ["coder", "planner"]);

        let inbox = t.json(&["mesh", "inbox", "planner"]);
        let stats = t.block_on(planner.inbox_stats()).unwrap();
        assert_eq!(inbox["waiting_messages"], stats.waiting_messages);
        assert_eq!(inbox["pending"], stats.pending);
        assert_eq!((inbox["waiting_messages"].as_u64(), inbox["pending"].as_u64()), (Some(1), Some(1)));
        assert_eq!(inbox["alive"], true);
        let silent = t.json(&["mesh", "inbox", "quiet"]);
        assert_eq!(silent["alive"], false);
        assert_eq!(silent["waiting_messages"], 1);
        let human = t.ok(&["mesh", "inbox", "quiet"]);
        assert!(human.contains("not alive"), "{human}");
        let _ = quiet;

        let review = t.json(&["mesh", "capability", "review"]);
        assert_eq!(review["members"], serde_json::json!(t.block_on(coder.members("review")).unwrap()));
        assert_eq!(review["members"], serde_json::json!(["coder"]));
        assert_eq!(review["waiting_messages"], 1);

        let unknown = t.fails(1, &["mesh", "inbox", "nobody"]);
        assert!(unknown.contains("unknown agent \"nobody\""), "{unknown}");
        let nothing = t.fails(1, &["mesh", "capability", "nobody-does-this"]);
        assert!(nothing.contains("unknown capability"), "{nothing}");
    }
}
