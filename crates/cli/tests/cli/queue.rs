//! `coordkit queue …` against the queue's own queries.

use coordkit_retry_queue::{Queue, Settle, TaskOptions, TaskState};

use crate::cli_test;
use crate::common::Harness;

fn queue(t: &Harness, name: &str) -> Queue {
    Queue::builder(&t.pool, &t.keyspace, name).build().unwrap()
}

/// Enqueues `n` tasks and dead-letters them all; answers their ids, oldest first.
fn dead_lettered(t: &Harness, q: &Queue, n: usize) -> Vec<String> {
    t.block_on(async {
        let mut ids = Vec::new();
        for i in 0..n {
            let id = q
                .enqueue_json(&format!("task {i}"), TaskOptions::default())
                .await
                .unwrap()
                .id()
                .to_owned();
            let claim = q.claim(1).await.unwrap();
            assert_eq!(claim.tasks[0].id, id);
            let settle = Settle::DeadLetter {
                reason: "poison".into(),
                error: format!("bad input {i}"),
            };
            q.settle(&[(&claim.tasks[0], settle)]).await.unwrap();
            ids.push(id);
        }
        ids
    })
}

cli_test! {
    fn stats_match_the_queue(t) {
        let q = queue(&t, "emails");
        t.block_on(async {
            for i in 0..3 {
                q.enqueue_json(&i, TaskOptions::default()).await.unwrap();
            }
            q.claim(1).await.unwrap();
        });
        let stats = t.block_on(q.stats()).unwrap();
        let json = t.json(&["queue", "stats", "emails"]);
        assert_eq!(json["queue"], "emails");
        assert_eq!(json["ready"], stats.ready);
        assert_eq!(json["leased"], stats.leased);
        assert_eq!(json["delayed"], stats.delayed);
        assert_eq!(json["dead"], stats.dead);
        assert_eq!(json["completed"], stats.completed);
        assert_eq!(json["paused"], false);
        assert_eq!((stats.ready, stats.leased), (2, 1));
        assert!(json["oldest_ready_age_ms"].is_u64());

        let human = t.ok(&["queue", "stats", "emails"]);
        let row = |field: &str| {
            human
                .lines()
                .find(|l| l.contains(&format!(" {field} ")))
                .unwrap_or_else(|| panic!("no row {field} in {human}"))
                .to_owned()
        };
        assert!(row("ready").contains(" 2 "), "{human}");
        assert!(row("leased").contains(" 1 "), "{human}");

        let err = t.fails(1, &["queue", "stats", "nope"]);
        assert!(err.contains("unknown queue \"nope\""), "{err}");
    }
}

cli_test! {
    fn inspect_shows_one_task(t) {
        let q = queue(&t, "jobs");
        let id = t.block_on(async {
            let id = q.enqueue_json("hello", TaskOptions::default().max_attempts(3)).await.unwrap().id().to_owned();
            let claim = q.claim(1).await.unwrap();
            q.settle(&[(&claim.tasks[0], Settle::Fail("timeout talking to x".into()))]).await.unwrap();
            id
        });
        let info = t.block_on(q.inspect(&id)).unwrap().unwrap();
        let json = t.json(&["queue", "inspect", "jobs", &id]);
        assert_eq!(json["id"], id.as_str());
        assert_eq!(json["state"], if info.state == TaskState::Delayed { "delayed" } else { "ready" });
        assert_eq!(json["attempts"], 1);
        assert_eq!(json["max_attempts"], 3);
        assert_eq!(json["payload"], "\"hello\"");
        assert_eq!(json["errors"][0]["error"], "timeout talking to x");
        assert_eq!(json["errors"][0]["attempt"], 1);

        let human = t.ok(&["queue", "inspect", "jobs", &id]);
        assert!(human.contains("timeout talking to x"), "{human}");
        assert!(human.contains("1 of 3"), "{human}");

        let err = t.fails(1, &["queue", "inspect", "jobs", "999999"]);
        assert!(err.contains("no task \"999999\""), "{err}");
    }
}

cli_test! {
    fn dlq_ls_lists_what_the_queue_lists(t) {
        let q = queue(&t, "dlq");
        let ids = dead_lettered(&t, &q, 3);
        let json = t.json(&["queue", "dlq", "ls", "dlq"]);
        assert_eq!(json["total"], 3);
        let listed: Vec<&str> = json["dead_letters"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
        let expected = t.block_on(q.dead_letters(0, 100)).unwrap();
        assert_eq!(listed, expected.iter().map(|d| d.id.as_str()).collect::<Vec<_>>());
        assert_eq!(listed, ids.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(json["dead_letters"][0]["reason"], "poison");

        let page = t.json(&["queue", "dlq", "ls", "dlq", "--offset", "1", "--limit", "1"]);
        assert_eq!(page["dead_letters"].as_array().unwrap().len(), 1);
        assert_eq!(page["dead_letters"][0]["id"], ids[1].as_str());

        let human = t.ok(&["queue", "dlq", "ls", "dlq"]);
        assert!(ids.iter().all(|id| human.contains(id.as_str())), "{human}");
        assert!(human.contains("3 of 3 dead-lettered"), "{human}");
    }
}

cli_test! {
    fn dlq_purge_of_one_id_leaves_the_others(t) {
        let q = queue(&t, "purge");
        let ids = dead_lettered(&t, &q, 3);
        // No terminal, no --yes: refused, nothing deleted.
        let err = t.fails(2, &["queue", "dlq", "purge", "purge", &ids[1]]);
        assert!(err.contains("--yes"), "{err}");
        assert_eq!(t.block_on(q.stats()).unwrap().dead, 3);

        let json = t.json(&["--yes", "queue", "dlq", "purge", "purge", &ids[1]]);
        assert_eq!(json["count"], 1);
        assert_eq!(json["ids"][0], ids[1].as_str());
        let left: Vec<String> = t.block_on(q.dead_letters(0, 100)).unwrap().into_iter().map(|d| d.id).collect();
        assert_eq!(left, vec![ids[0].clone(), ids[2].clone()]);
        assert!(t.block_on(q.inspect(&ids[1])).unwrap().is_none());

        // An id that is not dead-lettered: the others go, it is named, exit 1.
        let live = t.block_on(q.enqueue_json("alive", TaskOptions::default())).unwrap().id().to_owned();
        let out = t.cli(&["-y", "queue", "dlq", "purge", "purge", &ids[0], &live]).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stdout.contains(&format!("deleted 1 dead-lettered task(s) of queue purge: {}", ids[0])), "{stdout}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(&format!("{live} (ready)")), "{stderr}");
        assert!(t.block_on(q.inspect(&live)).unwrap().is_some(), "a ready task is never purged");

        let err = t.fails(2, &["queue", "dlq", "purge", "purge", "--all"]);
        assert!(err.contains("delete every dead-lettered task of queue purge when you answer (1 now) for good"), "{err}");
        let all = t.ok(&["-y", "queue", "dlq", "purge", "purge", "--all"]);
        assert!(all.contains("deleted 1 dead-lettered"), "{all}");
        assert_eq!(t.block_on(q.stats()).unwrap().dead, 0);
        assert_eq!(t.block_on(q.stats()).unwrap().ready, 1);
    }
}

cli_test! {
    fn dlq_requeue_moves_exactly_the_ids_asked(t) {
        let q = queue(&t, "requeue");
        let ids = dead_lettered(&t, &q, 3);
        let json = t.json(&["-y", "queue", "dlq", "requeue", "requeue", &ids[0], "--reset-attempts"]);
        assert_eq!(json["ids"], serde_json::json!([ids[0]]));
        assert_eq!(json["reset_attempts"], true);
        let task = t.block_on(q.inspect(&ids[0])).unwrap().unwrap();
        assert_eq!(task.state, TaskState::Ready);
        assert_eq!(task.attempts, 0);
        assert!(task.errors.is_empty());
        let stats = t.block_on(q.stats()).unwrap();
        assert_eq!((stats.ready, stats.dead), (1, 2));

        let out = t.ok(&["-y", "queue", "dlq", "requeue", "requeue", "--all"]);
        assert!(out.contains("requeued 2 dead-lettered"), "{out}");
        let stats = t.block_on(q.stats()).unwrap();
        assert_eq!((stats.ready, stats.dead), (3, 0));

        // Ids and --all together, or neither: bad usage.
        t.usage(&["-y", "queue", "dlq", "requeue", "requeue"]);
        t.usage(&["-y", "queue", "dlq", "requeue", "requeue", "1", "--all"]);
    }
}

cli_test! {
    fn pause_and_resume_say_what_they_changed(t) {
        let q = queue(&t, "work");
        t.block_on(q.enqueue_json("x", TaskOptions::default())).unwrap();
        t.fails(2, &["queue", "pause", "work"]);
        assert!(!t.block_on(q.stats()).unwrap().paused);

        assert_eq!(t.ok(&["-y", "queue", "pause", "work"]), "paused queue work\n");
        assert!(t.block_on(q.stats()).unwrap().paused);
        assert!(t.block_on(q.claim(1)).unwrap().tasks.is_empty(), "paused: no claim");
        let again = t.json(&["-y", "queue", "pause", "work"]);
        assert_eq!(again["changed"], false);

        let json = t.json(&["-y", "queue", "resume", "work"]);
        assert_eq!((json["changed"].clone(), json["paused"].clone()), (true.into(), false.into()));
        assert!(!t.block_on(q.stats()).unwrap().paused);
        assert_eq!(t.block_on(q.claim(1)).unwrap().tasks.len(), 1);

        // --watch is for reading commands.
        t.fails(2, &["-y", "--watch", "1", "queue", "pause", "work"]);
    }
}

cli_test! {
    fn bad_stored_data_is_one_line_naming_the_key(t) {
        let q = queue(&t, "bad");
        let info = q.keys().iter().find(|k| k.as_str().ends_with(":info")).unwrap().clone();
        let _: () = t
            .block_on(t.pool.query(coordkit_core::redis::cmd("SET").arg(&info).arg("not a hash")))
            .unwrap();
        let err = t.fails(1, &["queue", "stats", "bad"]);
        assert!(err.contains(info.as_str()) && err.contains("string"), "{err}");
        t.fails(1, &["-y", "queue", "pause", "bad"]);
        assert_eq!(
            t.block_on(t.pool.query::<String>(coordkit_core::redis::cmd("GET").arg(&info))).unwrap(),
            "not a hash",
            "nothing written over it"
        );
    }
}
