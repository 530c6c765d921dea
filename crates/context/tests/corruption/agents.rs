//! An agent registry's keys (alive, records, by_status, by_cap) and stored records.

use super::*;

/// A registry with agents `a` (idle, rust) and `b` (busy, rust) on a manual clock.
pub(crate) struct Agents {
    pub(crate) pool: Pool,
    pub(crate) clock: ManualClock,
    pub(crate) registry: AgentRegistry,
    pub(crate) keys: InstanceKeys,
}

impl Agents {
    pub(crate) async fn new(pool: Pool, keyspace: Keyspace, name: &str) -> Self {
        let clock = ManualClock::new(START_MS);
        let store = ContextStore::builder(&pool, &keyspace)
            .agent_ttl(Duration::from_secs(30))
            .clock(Clock::Manual(clock.clone()))
            .build()
            .unwrap();
        let registry = store.agents(name).unwrap();
        registry
            .set_status("a", &AgentStatus::new(Status::Idle).capability("rust"))
            .await
            .unwrap();
        registry
            .set_status("b", &AgentStatus::new(Status::Busy).capability("rust"))
            .await
            .unwrap();
        Self {
            pool,
            clock,
            registry,
            keys: keyspace.instance("agents", name).unwrap(),
        }
    }

    pub(crate) fn key(&self, suffix: &str) -> Key {
        self.keys.key(suffix)
    }

    pub(crate) async fn record(&self, agent: &str) -> Option<Vec<u8>> {
        self.pool
            .query(redis::cmd("HGET").arg(self.key("records")).arg(agent))
            .await
            .unwrap()
    }

    pub(crate) async fn dumps(&self) -> Vec<Option<Vec<u8>>> {
        let mut dumps = Vec::new();
        for suffix in ["alive", "records", "by_status", "by_cap"] {
            dumps.push(
                self.pool
                    .query(redis::cmd("DUMP").arg(self.key(suffix)))
                    .await
                    .unwrap(),
            );
        }
        dumps
    }

    /// Every registry operation; after each failure, checks that no key changed.
    pub(crate) async fn run_ops(&self) -> Vec<(&'static str, Result<(), ContextError>)> {
        let r = &self.registry;
        let mut outcomes = Vec::new();
        for op in [
            "set",
            "heartbeat",
            "with_status",
            "with_capability",
            "get",
            "all",
            "remove",
        ] {
            let before = self.dumps().await;
            let outcome = match op {
                "set" => r
                    .set_status("a", &AgentStatus::new(Status::Busy).task("t1"))
                    .await
                    .map(drop),
                "heartbeat" => r.heartbeat("a").await.map(drop),
                "with_status" => r.with_status(&Status::Idle).await.map(drop),
                "with_capability" => r.with_capability("rust").await.map(drop),
                "get" => r.get("a").await.map(drop),
                "all" => r.all().await.map(drop),
                _ => r.remove("a").await.map(drop),
            };
            if outcome.is_err() {
                assert_eq!(before, self.dumps().await, "{op} failed and still wrote");
            }
            outcomes.push((op, outcome));
        }
        outcomes
    }
}

redis_test! {
    async fn agent_registry_keys_of_another_type_are_named_and_left_alone(redis) {
        let pool = redis.pool().await;
        for suffix in ["alive", "records", "by_status", "by_cap"] {
            for type_name in TYPES {
                let expected = if suffix == "records" { "hash" } else { "zset" };
                if type_name == expected {
                    continue;
                }
                let agents = Agents::new(pool.clone(), redis.keyspace(), "fleet").await;
                let key = agents.key(suffix);
                overwrite_with_type(&pool, &key, type_name).await;
                let garbage = agents.dumps().await;
                let outcomes = agents.run_ops().await;
                let failed = failed_naming(&outcomes, &key);
                assert!(failed.contains(&"set"), "{suffix} as a {type_name}: {failed:?}");
                assert_eq!(garbage, agents.dumps().await, "{suffix} as a {type_name}");
                // Deleted, the key is rebuilt by the next status.
                let _: () = pool.query(redis::cmd("DEL").arg(&key)).await.unwrap();
                let r = &agents.registry;
                r.set_status("c", &AgentStatus::new(Status::Idle).capability("go")).await.unwrap();
                assert!(r.with_status(&Status::Idle).await.unwrap().contains(&"c".to_owned()));
                assert_eq!(r.with_capability("go").await.unwrap(), ["c"]);
                assert!(r.heartbeat("c").await.unwrap());
            }
        }
    }
}

/// A valid record with one field replaced (`None`: removed).
pub(crate) fn with_field(record: &[u8], field: &str, value: Option<serde_json::Value>) -> Vec<u8> {
    let mut json: serde_json::Value = serde_json::from_slice(record).unwrap();
    let object = json.as_object_mut().unwrap();
    match value {
        Some(v) => object.insert(field.to_owned(), v),
        None => object.remove(field),
    };
    serde_json::to_vec(&json).unwrap()
}

/// Bad records made from a valid one.
pub(crate) fn bad_records(valid: &[u8]) -> Vec<Vec<u8>> {
    use serde_json::json;
    let mut bad = vec![
        b"garbage".to_vec(),
        Vec::new(),
        b"[]".to_vec(),
        b"null".to_vec(),
        valid[..valid.len() / 2].to_vec(),
        b"\xff\xfe".to_vec(),
    ];
    for (field, value) in [
        ("status", Some(json!(1))),
        ("status", Some(json!(""))),
        ("status", None),
        ("task", Some(json!(null))),
        ("caps", Some(json!("rust"))),
        ("caps", Some(json!([1]))),
        ("caps", Some(json!({"a": 1}))),
        ("updated_ms", Some(json!(-1))),
        ("updated_ms", Some(json!("1700000000000"))),
        ("expires_ms", Some(json!(1e300))),
        ("expires_ms", Some(json!(9_007_199_254_740_992u64))),
        ("expires_ms", Some(json!(12.5))),
        ("expires_ms", None),
    ] {
        bad.push(with_field(valid, field, value));
    }
    bad
}

redis_test! {
    async fn agent_records_that_do_not_decode_are_named_and_left_alone(redis) {
        let pool = redis.pool().await;
        let probe = Agents::new(pool.clone(), redis.keyspace(), "probe").await;
        let valid = probe.record("a").await.unwrap();
        for (i, bad) in bad_records(&valid).into_iter().enumerate() {
            let agents = Agents::new(pool.clone(), redis.keyspace(), &format!("fleet-{i}")).await;
            let records = agents.key("records");
            let _: () = pool.query(redis::cmd("HSET").arg(&records).arg("a").arg(&bad)).await.unwrap();
            let outcomes = agents.run_ops().await;
            let failed = failed_naming(&outcomes, &records);
            assert_eq!(failed, ["set", "heartbeat", "get", "all", "remove"], "{}", String::from_utf8_lossy(&bad));
            for (op, outcome) in &outcomes {
                if let Err(ContextError::Core(Error::Corrupt { detail, .. })) = outcome {
                    assert!(detail.starts_with("agent \"a\": "), "{op}: {detail}");
                }
            }
            assert_eq!(agents.record("a").await, Some(bad.clone()));
            // b is untouched and still served.
            let r = &agents.registry;
            assert!(r.get("b").await.unwrap().is_some());
            assert!(r.heartbeat("b").await.unwrap());

            // Both expire: b is dropped whole; a only from the live set, its record left for
            // repair, and its event says why.
            let mut events = pool.subscriber().channel(r.channel()).subscribe::<serde_json::Value>().await.unwrap();
            agents.clock.advance(Duration::from_secs(31));
            assert!(r.with_capability("rust").await.unwrap().is_empty());
            for agent in ["a", "b"] {
                // On a cluster, the statuses published before subscribing may still arrive.
                let got = loop {
                    let got = tokio::time::timeout(Duration::from_secs(15), events.recv()).await.unwrap().unwrap();
                    if got.event.kind != "agent_status" {
                        break got;
                    }
                };
                assert_eq!((got.event.kind.as_str(), got.event.entity.as_str()), ("agent_expired", agent));
                let malformed = got.event.payload.get("malformed").and_then(|m| m.as_str());
                assert_eq!(malformed.is_some(), agent == "a", "{:?}", got.event.payload);
            }
            assert_eq!(agents.record("a").await, Some(bad.clone()));
            assert_eq!(agents.record("b").await, None);
            let alive: Vec<String> = pool.query(redis::cmd("ZRANGE").arg(agents.key("alive")).arg(0).arg(-1)).await.unwrap();
            assert!(alive.is_empty(), "{alive:?}");
            let by_status: Vec<String> = pool.query(redis::cmd("ZRANGE").arg(agents.key("by_status")).arg(0).arg(-1)).await.unwrap();
            assert_eq!(by_status, ["idle\0a"]);

            // Repaired, a comes back and its old index entries go.
            let _: () = pool.query(redis::cmd("HSET").arg(&records).arg("a").arg(&valid)).await.unwrap();
            r.set_status("a", &AgentStatus::new(Status::Busy).capability("go")).await.unwrap();
            assert_eq!(r.with_status(&Status::Busy).await.unwrap(), ["a"]);
            assert!(r.with_status(&Status::Idle).await.unwrap().is_empty());
            assert!(r.with_capability("rust").await.unwrap().is_empty());
            assert_eq!(r.all().await.unwrap().len(), 1);
            assert!(r.remove("a").await.unwrap());
        }
    }
}

redis_test! {
    async fn a_live_agent_without_a_record_is_named_not_rewritten(redis) {
        let pool = redis.pool().await;
        let agents = Agents::new(pool.clone(), redis.keyspace(), "fleet").await;
        let (alive, records) = (agents.key("alive"), agents.key("records"));
        // Another program put a member in the live set, with no record.
        let _: () = pool.query(redis::cmd("ZADD").arg(&alive).arg(u64::MAX / 2).arg("ghost")).await.unwrap();
        let before = agents.dumps().await;
        let r = &agents.registry;
        for outcome in [r.heartbeat("ghost").await.map(drop), r.all().await.map(drop)] {
            match outcome {
                Err(ContextError::Core(Error::Corrupt { key, detail })) => {
                    assert_eq!(key, records.as_str());
                    assert_eq!(detail, "agent \"ghost\": alive, but it has no record");
                }
                other => panic!("expected corrupt data, got {other:?}"),
            }
        }
        assert_eq!(before, agents.dumps().await, "a failed call wrote");
        // The others are still served; setting the ghost's status repairs it.
        assert!(r.get("a").await.unwrap().is_some());
        r.set_status("ghost", &AgentStatus::new(Status::Idle)).await.unwrap();
        assert_eq!(r.all().await.unwrap().len(), 3);
        assert!(r.heartbeat("ghost").await.unwrap());
    }
}

redis_test! {
    async fn a_previous_status_that_is_not_utf8_does_not_fail_a_status_change(redis) {
        let pool = redis.pool().await;
        let agents = Agents::new(pool.clone(), redis.keyspace(), "fleet").await;
        let records = agents.key("records");
        // "idle" with a flipped byte: a record that decodes, whose status is not UTF-8.
        let record = agents.record("a").await.unwrap();
        let at = record.windows(4).position(|w| w == b"idle").unwrap();
        let mut bad = record.clone();
        bad[at] = !bad[at];
        let _: () = pool.query(redis::cmd("HSET").arg(&records).arg("a").arg(&bad)).await.unwrap();
        let r = &agents.registry;
        // The write applies, and its answer is not a decoding error (it once was).
        let previous = r.set_status("a", &AgentStatus::new(Status::Busy)).await.unwrap();
        let lossy = String::from_utf8_lossy(&bad[at..at + 4]).into_owned();
        assert_eq!(previous, Some(Status::Custom(lossy)));
        assert_eq!(r.get("a").await.unwrap().unwrap().status.status, Status::Busy);
        assert_eq!(r.with_status(&Status::Busy).await.unwrap().len(), 2);
    }
}
