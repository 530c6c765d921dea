//! An entity's keys (data hash, history list) and stored fields.

use super::*;

/// The same entities seen through a store with an idle TTL (reads by script) and one without
/// (plain reads), with a victim written three times and a neighbour written once.
pub(crate) struct Fixture {
    pub(crate) pool: Pool,
    pub(crate) scripted: ContextStore,
    pub(crate) plain: ContextStore,
    pub(crate) keys: InstanceKeys,
    /// The victim's data and history as first written, for the repair.
    pub(crate) originals: (Option<Vec<u8>>, Option<Vec<u8>>),
    pub(crate) victim: String,
    pub(crate) neighbour: String,
}

impl Fixture {
    pub(crate) async fn new(pool: Pool, keyspace: Keyspace, case: &str) -> Self {
        let clock = ManualClock::new(START_MS);
        let scripted = ContextStore::builder(&pool, &keyspace)
            .actor("tester")
            .idle_ttl(Some(Duration::from_secs(3600)))
            .clock(Clock::Manual(clock))
            .build()
            .unwrap();
        let plain = ContextStore::builder(&pool, &keyspace)
            .actor("tester")
            .build()
            .unwrap();
        let victim = format!("victim-{case}");
        let keys = keyspace.instance("ctx", &format!("doc:{victim}")).unwrap();
        let mut fixture = Self {
            pool,
            scripted,
            plain,
            keys,
            originals: (None, None),
            victim,
            neighbour: format!("neighbour-{case}"),
        };
        assert_eq!(
            fixture.entity(&fixture.victim).data_key().as_str(),
            fixture.data().as_str()
        );
        let victim = fixture.entity(&fixture.victim);
        for i in 0..3 {
            victim
                .set([("f", i.to_string()), ("g", "x".to_owned())])
                .await
                .unwrap();
        }
        fixture
            .entity(&fixture.neighbour)
            .set([("n", "1")])
            .await
            .unwrap();
        fixture.originals = (
            fixture.dump(&fixture.data()).await,
            fixture.dump(&fixture.history()).await,
        );
        fixture
    }

    /// Puts both of the victim's keys back as first written.
    pub(crate) async fn repair(&self) {
        self.restore(&self.data(), self.originals.0.clone()).await;
        self.restore(&self.history(), self.originals.1.clone())
            .await;
    }

    pub(crate) fn entity(&self, id: &str) -> Entity {
        self.scripted.entity("doc", id).unwrap()
    }

    pub(crate) fn data(&self) -> Key {
        self.keys.key("data")
    }

    pub(crate) fn history(&self) -> Key {
        self.keys.key("history")
    }

    pub(crate) async fn dump(&self, key: &Key) -> Option<Vec<u8>> {
        self.pool.query(redis::cmd("DUMP").arg(key)).await.unwrap()
    }

    /// Puts `key` back as `dumped` (deleted when `None`).
    pub(crate) async fn restore(&self, key: &Key, dumped: Option<Vec<u8>>) {
        let _: () = self.pool.query(redis::cmd("DEL").arg(key)).await.unwrap();
        if let Some(bytes) = dumped {
            let _: () = self
                .pool
                .query(
                    redis::cmd("RESTORE")
                        .arg(key)
                        .arg(0)
                        .arg(bytes)
                        .arg("REPLACE"),
                )
                .await
                .unwrap();
        }
    }

    /// Runs every entity operation on the victim; after each failure, checks that neither of
    /// its keys changed. Returns each operation's name and outcome.
    pub(crate) async fn run_ops(&self) -> Vec<(&'static str, Result<(), ContextError>)> {
        let victim = self.entity(&self.victim);
        let plain = self.plain.entity("doc", &self.victim).unwrap();
        let neighbour = self.entity(&self.neighbour);
        let mut outcomes = Vec::new();
        for op in [
            "get_all",
            "plain get_all",
            "plain get",
            "changes",
            "version",
            "set",
            "cas",
            "update",
            "batch",
            "delete",
        ] {
            let before = (
                self.dump(&self.data()).await,
                self.dump(&self.history()).await,
            );
            let outcome = match op {
                "get_all" => victim.get_all().await.map(drop),
                "plain get_all" => plain.get_all().await.map(drop),
                "plain get" => plain.get(&["f"]).await.map(drop),
                "changes" => victim.changes_since(0, 100).await.map(drop),
                "version" => victim.current_version().await.map(drop),
                "set" => victim.set([("f", "set")]).await.map(drop),
                "cas" => {
                    // The version of a plain read (which does not read the history).
                    let read = plain.get_all().await.ok().flatten();
                    let version = read.map_or(0, |s| s.version);
                    victim
                        .write()
                        .set("f", "cas")
                        .expect_version(version)
                        .commit()
                        .await
                        .map(drop)
                }
                "update" => victim
                    .update(3, |_, w| w.set("g", "updated"))
                    .await
                    .map(drop),
                "batch" => {
                    // Concurrent writes share a script call: the neighbour's must apply.
                    let (v, n) =
                        tokio::join!(victim.set([("f", "batch")]), neighbour.set([("n", "2")]));
                    n.expect("the neighbour's write failed beside the victim's");
                    v.map(drop)
                }
                _ => victim.delete().await.map(drop),
            };
            if outcome.is_err() {
                let after = (
                    self.dump(&self.data()).await,
                    self.dump(&self.history()).await,
                );
                assert_eq!(before, after, "{op} failed and still wrote");
            }
            outcomes.push((op, outcome));
        }
        outcomes
    }

    /// Repairs the victim: then the neighbour is intact and every operation works again.
    pub(crate) async fn check_recovered(&self) {
        self.repair().await;
        let neighbour = self
            .entity(&self.neighbour)
            .get_all()
            .await
            .unwrap()
            .unwrap();
        assert!(
            neighbour.fields.contains_key("n"),
            "the neighbour lost its field"
        );
        for (op, outcome) in self.run_ops().await {
            assert!(
                outcome.is_ok(),
                "after the repair, {op} failed: {outcome:?}"
            );
        }
    }
}

redis_test! {
    async fn entity_keys_of_another_type_are_named_and_left_alone(redis) {
        let pool = redis.pool().await;
        for (i, type_name) in TYPES.iter().enumerate() {
            for which in ["data", "history"] {
                if (which, *type_name) == ("data", "hash") || (which, *type_name) == ("history", "list") {
                    continue;
                }
                let f = Fixture::new(pool.clone(), redis.keyspace(), &format!("{which}-{i}")).await;
                let key = if which == "data" { f.data() } else { f.history() };
                overwrite_with_type(&pool, &key, type_name).await;
                let garbage = f.dump(&key).await;
                let outcomes = f.run_ops().await;
                let failed = failed_naming(&outcomes, &key);
                let must_fail: &[&str] = if which == "data" {
                    &["get_all", "plain get_all", "plain get", "changes", "version", "set", "cas", "update", "batch", "delete"]
                } else {
                    &["changes", "version", "set", "cas", "update", "batch", "delete"]
                };
                assert_eq!(failed, must_fail, "{which} as a {type_name}");
                for (_, outcome) in &outcomes {
                    if let Err(ContextError::Core(Error::WrongType { found, .. })) = outcome {
                        assert_eq!(found, type_name);
                    }
                }
                assert_eq!(f.dump(&key).await, garbage, "the {type_name} at {key} changed");
                f.check_recovered().await;
            }
        }
    }
}

/// Values no stamp may hold.
const BAD_NUMBERS: [&[u8]; 9] = [
    b"not a number",
    b"-1",
    b"18446744073709551615",
    b"9007199254740992",
    b"1e308",
    b"",
    b"12.5",
    b"nan",
    b"\xff\x00",
];

redis_test! {
    async fn stamps_that_do_not_decode_are_corrupt_naming_the_field(redis) {
        let pool = redis.pool().await;
        for field in ["__version", "__updated_ms", "__expires_ms"] {
            for (i, value) in BAD_NUMBERS.iter().enumerate() {
                let f = Fixture::new(pool.clone(), redis.keyspace(), &format!("{field}-{i}")).await;
                let data = f.data();
                set_field(&pool, &data, field, value).await;
                let outcomes = f.run_ops().await;
                let failed = failed_naming(&outcomes, &data);
                for (op, outcome) in &outcomes {
                    if let Err(e) = outcome {
                        assert!(matches!(e, ContextError::Core(Error::Corrupt { detail, .. }) if detail.starts_with(field)), "{op}: {e:?}");
                    }
                }
                let must_fail: &[&str] = if field == "__updated_ms" {
                    // Writes do not use it (the first one replaces it); reads do.
                    &["get_all", "plain get_all", "plain get"]
                } else {
                    &["get_all", "plain get_all", "plain get", "changes", "version", "set", "cas", "update", "batch", "delete"]
                };
                assert_eq!(failed, must_fail, "{field} = {value:?}");
                if field != "__updated_ms" {
                    let stored: Vec<u8> = pool.query(redis::cmd("HGET").arg(&data).arg(field)).await.unwrap();
                    assert_eq!(&stored, value, "{field} was overwritten");
                }
                f.check_recovered().await;
            }
        }
    }
}

redis_test! {
    async fn history_entries_that_do_not_decode_are_corrupt_naming_the_history(redis) {
        let pool = redis.pool().await;
        // The newest entry: the reads that place entries by it fail; writes of an entity with
        // data do not read it.
        let f = Fixture::new(pool.clone(), redis.keyspace(), "newest").await;
        lset(&pool, &f.history(), -1, b"{\"by\":\"x\"}").await;
        assert_eq!(failed_naming(&f.run_ops().await, &f.history()), ["changes", "version"]);
        f.check_recovered().await;

        // A deleted entity's newest entry numbers its next write: everything that needs the
        // version fails, plain reads (which see no data) do not.
        let f = Fixture::new(pool.clone(), redis.keyspace(), "tombstone").await;
        f.entity(&f.victim).delete().await.unwrap();
        lset(&pool, &f.history(), -1, b"garbage").await;
        let garbage = f.dump(&f.history()).await;
        assert_eq!(
            failed_naming(&f.run_ops().await, &f.history()),
            ["get_all", "changes", "version", "set", "cas", "update", "batch", "delete"]
        );
        assert_eq!(f.dump(&f.history()).await, garbage);
        f.check_recovered().await;

        // An older entry that does not decode, or holds another version than its place.
        for (case, bad) in [("middle", &b"{not json"[..]), ("misplaced", br#"{"by":"x","set":{},"del":{},"gone":false,"v":7,"ts":1}"#)] {
            let f = Fixture::new(pool.clone(), redis.keyspace(), case).await;
            let mut watcher = f.entity(&f.victim).watch(0).await.unwrap();
            lset(&pool, &f.history(), 0, bad).await;
            match f.entity(&f.victim).changes_since(0, 10).await {
                Err(ContextError::Core(Error::Corrupt { key, detail })) => {
                    assert_eq!(key, f.history().as_str());
                    assert!(detail.starts_with("the entry for version 1"), "{detail}");
                }
                other => panic!("{case}: expected corrupt history, got {other:?}"),
            }
            // A watcher reports it, then goes on once the history is repaired.
            let err = watcher.next().await.unwrap_err();
            assert!(names_key(&Err(err), &f.history()));
            f.repair().await;
            match watcher.next().await.unwrap() {
                WatchEvent::Change(change) => assert_eq!(change.version, 1),
                other => panic!("expected version 1, got {other:?}"),
            }
            assert!(failed_naming(&f.run_ops().await, &f.history()).is_empty());
        }

        // More entries than versions: the entries cannot be placed.
        let f = Fixture::new(pool.clone(), redis.keyspace(), "long").await;
        let _: () = pool.query(redis::cmd("LPUSH").arg(f.history()).arg("a").arg("b").arg("c")).await.unwrap();
        match f.entity(&f.victim).current_version().await {
            Err(ContextError::Core(Error::Corrupt { key, detail })) => {
                assert_eq!(key, f.history().as_str());
                assert_eq!(detail, "holds 6 entries, more than its newest version 3");
            }
            other => panic!("expected corrupt history, got {other:?}"),
        }
        f.check_recovered().await;
    }
}
