//! `coordkit agents …` against the registry's own queries.

use coordkit_context::{AgentStatus, ContextStore, Status};

use crate::cli_test;

cli_test! {
    fn ls_idle_and_capable_match_the_registry(t) {
        let store = ContextStore::builder(&t.pool, &t.keyspace).build().unwrap();
        let fleet = store.agents("fleet").unwrap();
        t.block_on(async {
            fleet.set_status("coder-1", &AgentStatus::new(Status::Idle).capability("rust")).await.unwrap();
            fleet.set_status("coder-2", &AgentStatus::new(Status::Busy).task("t-9").capability("rust").capability("go")).await.unwrap();
            fleet.set_status("writer", &AgentStatus::new(Status::Idle).capability("docs")).await.unwrap();
        });

        let json = t.json(&["agents", "ls", "--registry", "fleet"]);
        let all = t.block_on(fleet.all()).unwrap();
        let agents = json["agents"].as_array().unwrap();
        assert_eq!(agents.len(), all.len());
        for (shown, record) in agents.iter().zip(&all) {
            assert_eq!(shown["agent"], record.agent.as_str());
            assert_eq!(shown["status"], record.status.status.as_str());
            assert_eq!(shown["expires_ms"], record.expires_ms);
        }
        assert_eq!(agents[1]["task"], "t-9");
        assert_eq!(agents[1]["capabilities"], serde_json::json!(["go", "rust"]));

        let idle = t.json(&["agents", "idle", "-r", "fleet"]);
        assert_eq!(idle["agents"], serde_json::json!(t.block_on(fleet.with_status(&Status::Idle)).unwrap()));
        assert_eq!(idle["agents"], serde_json::json!(["coder-1", "writer"]));
        let rust = t.json(&["agents", "capable", "rust", "-r", "fleet"]);
        assert_eq!(rust["agents"], serde_json::json!(["coder-1", "coder-2"]));
        assert_eq!(rust["capability"], "rust");

        let human = t.ok(&["agents", "ls", "-r", "fleet"]);
        assert!(human.contains("coder-2") && human.contains("t-9"), "{human}");
        assert!(human.contains("3 live agent(s) in registry fleet"), "{human}");
        // Another registry of the namespace is another set of agents.
        assert_eq!(t.json(&["agents", "idle"])["agents"], serde_json::json!([]));
    }
}
