//! `coordkit context …` against the entity's own reads.

use coordkit_context::ContextStore;

use crate::cli_test;

cli_test! {
    fn get_and_history_match_the_entity(t) {
        let store = ContextStore::builder(&t.pool, &t.keyspace).actor("planner").build().unwrap();
        let project = store.entity("project", "p1").unwrap();
        t.block_on(async {
            project.set([("name", "\"asr\""), ("size", "10")]).await.unwrap();
            project.set([("status", "\"training\"")]).await.unwrap();
            project.delete_fields(["size"]).await.unwrap();
        });
        let json = t.json(&["context", "get", "project", "p1"]);
        let snapshot = t.block_on(project.get_all()).unwrap().unwrap();
        assert_eq!(json["version"], snapshot.version);
        assert_eq!(json["version"], 3);
        assert_eq!(json["updated_by"], "planner");
        assert_eq!(json["fields"], serde_json::json!({"name": "asr", "status": "training"}));

        let history = t.json(&["context", "history", "project", "p1", "--limit", "2"]);
        let changes = history["changes"].as_array().unwrap();
        assert_eq!(changes.len(), 2);
        assert_eq!((changes[0]["version"].clone(), changes[1]["version"].clone()), (2.into(), 3.into()));
        assert_eq!(changes[0]["set"]["status"], "training");
        assert_eq!(changes[1]["deleted"], serde_json::json!(["size"]));
        let expected = t.block_on(project.changes_since(1, 10)).unwrap();
        assert_eq!(changes[0]["ts_ms"], expected[0].ts_ms);

        let human = t.ok(&["context", "get", "project", "p1"]);
        assert!(human.contains("\"training\""), "{human}");
        let err = t.fails(1, &["context", "get", "project", "p2"]);
        assert!(err.contains("no entity \"p2\""), "{err}");
        t.fails(1, &["context", "history", "project", "p2"]);
    }
}

cli_test! {
    fn watch_prints_each_change_until_interrupted(t) {
        let store = ContextStore::builder(&t.pool, &t.keyspace).actor("ops").build().unwrap();
        let job = store.entity("job", "j1").unwrap();
        t.block_on(job.set([("step", "1")])).unwrap();
        let mut live = t.spawn_live(&["--json", "context", "watch", "job", "j1"]);
        assert!(live.started.contains("after version 1"), "{}", live.started);
        t.block_on(job.set([("step", "2")])).unwrap();
        t.block_on(job.set([("step", "3")])).unwrap();
        let first: serde_json::Value = serde_json::from_str(&live.line()).unwrap();
        let second: serde_json::Value = serde_json::from_str(&live.line()).unwrap();
        assert_eq!((first["version"].clone(), first["set"]["step"].clone()), (2.into(), 2.into()));
        assert_eq!((second["version"].clone(), second["actor"].clone()), (3.into(), "ops".into()));
        assert_eq!(live.interrupt(), Some(0));
    }
}
