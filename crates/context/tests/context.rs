//! The context store against real Redis, standalone and cluster.

use std::collections::BTreeSet;
use std::time::Duration;

use coordkit_context::{
    AgentEvent, AgentEventKind, AgentEvents, AgentStatus, ContextError, ContextStore, Status,
    WatchEvent, Watcher,
};
use coordkit_core::{Clock, Error, ManualClock, Pool};
use coordkit_testkit::{TestRedis, redis_test};
use serde::{Deserialize, Serialize};

const WAIT: Duration = Duration::from_secs(15);

fn store(redis: &TestRedis, pool: Pool) -> ContextStore {
    ContextStore::builder(&pool, &redis.keyspace())
        .actor("tester")
        .build()
        .unwrap()
}

fn manual_store(redis: &TestRedis, pool: Pool, clock: &ManualClock) -> ContextStore {
    ContextStore::builder(&pool, &redis.keyspace())
        .actor("tester")
        .idle_ttl(Some(Duration::from_secs(60)))
        .agent_ttl(Duration::from_secs(30))
        .clock(Clock::Manual(clock.clone()))
        .build()
        .unwrap()
}

async fn next_event(watcher: &mut Watcher) -> WatchEvent {
    tokio::time::timeout(WAIT, watcher.next())
        .await
        .expect("the watcher saw nothing")
        .unwrap()
}

redis_test! {
    async fn partial_writes_bump_versions_and_stamp(redis) {
        let store = store(&redis, redis.pool().await);
        let project = store.entity("project", "p1").unwrap();
        assert_eq!(project.get_all().await.unwrap(), None);
        assert_eq!(project.set([("name", "asr"), ("status", "new")]).await.unwrap(), 1);
        assert_eq!(project.set([("status", "training")]).await.unwrap(), 2);
        let v = project.write().delete("name").set("owner", "bob").actor("planner").commit().await.unwrap();
        assert_eq!(v, 3);
        let all = project.get_all().await.unwrap().unwrap();
        assert_eq!(all.version, 3);
        assert_eq!(all.updated_by, "planner");
        let now = store.pool().server_time_ms().await.unwrap();
        assert!(all.updated_ms <= now && all.updated_ms + 60_000 > now);
        assert_eq!(
            all.fields.into_iter().collect::<Vec<_>>(),
            vec![("owner".to_owned(), "bob".to_owned()), ("status".to_owned(), "training".to_owned())]
        );
        let some = project.get(&["status", "missing"]).await.unwrap().unwrap();
        assert_eq!(some.fields.len(), 1);
        assert_eq!(some.fields["status"], "training");
        // Deleting the entity leaves a tombstone version; a later write continues after it.
        assert_eq!(project.delete().await.unwrap(), 4);
        assert_eq!(project.get_all().await.unwrap(), None);
        assert_eq!(project.current_version().await.unwrap(), 4);
        assert_eq!(project.set([("name", "again")]).await.unwrap(), 5);
    }
}

redis_test! {
    async fn compare_and_set_conflicts_carry_the_current_version(redis) {
        let store = store(&redis, redis.pool().await);
        let e = store.entity("cfg", "c1").unwrap();
        // Version 0: create only if it never existed.
        assert_eq!(e.write().set("a", "1").expect_version(0).commit().await.unwrap(), 1);
        match e.write().set("a", "2").expect_version(0).commit().await {
            Err(ContextError::Conflict { expected: 0, current: 1 }) => {}
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(e.get_all().await.unwrap().unwrap().fields["a"], "1", "a conflict wrote");
        assert_eq!(e.write().set("a", "2").expect_version(1).commit().await.unwrap(), 2);
    }
}

redis_test! {
    async fn concurrent_cas_increments_lose_nothing(redis) {
        let pool = redis.pool().await;
        let store = ContextStore::builder(&pool, &redis.keyspace())
            .history_len(1000)
            .build()
            .unwrap();
        let counter = store.entity("counter", "hits").unwrap();
        const TASKS: u64 = 10;
        const EACH: u64 = 20;
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let counter = counter.clone();
                tokio::spawn(async move {
                    for _ in 0..EACH {
                        counter
                            .update(1000, |snapshot, write| {
                                let n: u64 = snapshot
                                    .and_then(|s| s.fields.get("n"))
                                    .map(|n| n.parse().unwrap())
                                    .unwrap_or(0);
                                write.set("n", (n + 1).to_string()).actor(format!("task-{t}"))
                            })
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let snapshot = counter.get_all().await.unwrap().unwrap();
        if snapshot.fields["n"] != (TASKS * EACH).to_string() {
            let history = counter.changes_since(0, 10_000).await;
            panic!("lost update: {snapshot:?}\n{history:?}");
        }
        assert_eq!(snapshot.version, TASKS * EACH);
        // The history holds every version exactly once, in order, each one value higher.
        let history = counter.changes_since(0, 10_000).await.unwrap();
        assert_eq!(history.len() as u64, TASKS * EACH);
        for (i, change) in history.iter().enumerate() {
            assert_eq!(change.version, i as u64 + 1);
            assert_eq!(change.set["n"], (i + 1).to_string());
        }
    }
}

redis_test! {
    async fn concurrent_writes_share_calls_and_fail_alone(redis) {
        // Writes to many entities at once go to the server in shared calls (group commit):
        // each still gets its own version, history entry and event, and a write whose key
        // holds another type fails alone, with nothing of it written.
        let pool = redis.pool().await;
        let store = store(&redis, pool.clone());
        let squatted = store.entity("doc", "squatted").unwrap();
        let history_key = format!("{}history", squatted.data_key().as_str().trim_end_matches("data"));
        let _: () = pool.query(redis::cmd("SET").arg(&history_key).arg("garbage")).await.unwrap();
        let mut watcher = store.entity("doc", "e0").unwrap().watch(0).await.unwrap();
        // The servers know the write script before counting (a first call answered NOSCRIPT
        // is counted too, then sent again).
        store.entity("doc", "warm").unwrap().set([("f", "v")]).await.unwrap();
        redis.reset_stats();
        const ENTITIES: usize = 5;
        const WRITES: usize = 40;
        let tasks: Vec<_> = (0..WRITES)
            .map(|i| {
                let entity = if i % (ENTITIES + 1) == ENTITIES {
                    squatted.clone()
                } else {
                    store.entity("doc", &format!("e{}", i % (ENTITIES + 1))).unwrap()
                };
                tokio::spawn(async move { entity.set([(format!("f{i}"), i.to_string())]).await })
            })
            .collect();
        let mut versions: Vec<Vec<u64>> = vec![Vec::new(); ENTITIES];
        for (i, task) in tasks.into_iter().enumerate() {
            let result = task.await.unwrap();
            let e = i % (ENTITIES + 1);
            if e == ENTITIES {
                match result {
                    Err(ContextError::Core(Error::WrongType { key, found })) => {
                        assert_eq!(key, history_key);
                        assert_eq!(found, "string");
                    }
                    r => panic!("expected WrongType, got {r:?}"),
                }
            } else {
                versions[e].push(result.unwrap());
            }
        }
        let calls = redis.command_calls("evalsha");
        assert!(calls <= WRITES as u64, "{calls} script calls for {WRITES} writes");
        for (e, mut seen) in versions.into_iter().enumerate() {
            seen.sort();
            let expected: Vec<u64> = (1..=seen.len() as u64).collect();
            assert_eq!(seen, expected, "entity e{e}: versions are not 1..=n once each");
            let entity = store.entity("doc", &format!("e{e}")).unwrap();
            let snapshot = entity.get_all().await.unwrap().unwrap();
            assert_eq!(snapshot.version, expected.len() as u64);
            assert_eq!(snapshot.fields.len(), expected.len(), "e{e} lost a field");
            let history = entity.changes_since(0, 1000).await.unwrap();
            let history_versions: Vec<u64> = history.iter().map(|c| c.version).collect();
            assert_eq!(history_versions, expected, "e{e}'s history");
        }
        assert!(squatted.get_all().await.is_ok_and(|s| s.is_none()), "the failed writes wrote data");
        let garbage: String = pool.query(redis::cmd("GET").arg(&history_key)).await.unwrap();
        assert_eq!(garbage, "garbage");
        // e0's watcher sees each of e0's versions once, in order.
        let e0_writes = (0..WRITES).filter(|i| i % (ENTITIES + 1) == 0).count() as u64;
        for v in 1..=e0_writes {
            match next_event(&mut watcher).await {
                WatchEvent::Change(change) => assert_eq!(change.version, v),
                other => panic!("expected change {v}, got {other:?}"),
            }
        }
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Project {
    name: String,
    size: u64,
    tags: Vec<String>,
}

redis_test! {
    async fn typed_access_names_the_field_that_does_not_fit(redis) {
        let store = store(&redis, redis.pool().await);
        let e = store.entity("project", "typed").unwrap();
        let p = Project { name: "asr".into(), size: 42, tags: vec!["audio".into()] };
        let v = e.set_typed(&p).await.unwrap();
        let got = e.get_typed::<Project>().await.unwrap().unwrap();
        assert_eq!(got.value, p);
        assert_eq!(got.version, v);
        // Each field is stored as JSON, documented.
        assert_eq!(e.get_all().await.unwrap().unwrap().fields["name"], "\"asr\"");
        e.set([("size", "\"big\"")]).await.unwrap();
        match e.get_typed::<Project>().await {
            Err(ContextError::FieldDecode { field, .. }) => assert_eq!(field, "size"),
            other => panic!("expected a decode error naming the field, got {other:?}"),
        }
        e.set([("size", "not json")]).await.unwrap();
        match e.get_typed::<Project>().await {
            Err(ContextError::FieldDecode { field, .. }) => assert_eq!(field, "size"),
            other => panic!("expected a decode error naming the field, got {other:?}"),
        }
        assert!(matches!(e.set_typed_if(&p, 1).await, Err(ContextError::Conflict { .. })));
    }
}

redis_test! {
    async fn bad_input_is_rejected_and_nothing_is_half_written(redis) {
        let pool = redis.pool().await;
        let store = ContextStore::builder(&pool, &redis.keyspace())
            .max_value_bytes(16)
            .build()
            .unwrap();
        let e = store.entity("doc", "d1").unwrap();
        e.set([("a", "1")]).await.unwrap();
        let reserved = e.write().set("b", "2").set("__version", "99").commit().await;
        assert!(matches!(reserved, Err(ContextError::ReservedField { ref field }) if field == "__version"), "{reserved:?}");
        let big = e.write().set("b", "2").set("c", "x".repeat(17)).commit().await;
        assert!(matches!(big, Err(ContextError::ValueTooLarge { len: 17, max: 16, .. })), "{big:?}");
        let bad_name = e.write().set("b", "2").set("bad field", "x").commit().await;
        assert!(matches!(bad_name, Err(ContextError::Core(Error::InvalidName { .. }))), "{bad_name:?}");
        let after = e.get_all().await.unwrap().unwrap();
        assert_eq!(after.version, 1);
        assert_eq!(after.fields.len(), 1, "a rejected write left {:?}", after.fields);

        assert!(store.entity("a:b", "x").is_err(), "a kind with ':' was accepted");
        assert!(store.entity("doc", "").is_err());
        assert!(store.entity("doc", "{x}").is_err());

        // A key of the wrong type: named, never a panic, not overwritten.
        let other = store.entity("doc", "squatted").unwrap();
        other.set([("x", "1")]).await.unwrap();
        let key = other.data_key().clone();
        let _: () = pool.query(redis::cmd("DEL").arg(&key)).await.unwrap();
        let _: () = pool.query(redis::cmd("SET").arg(&key).arg("garbage")).await.unwrap();
        match other.set([("x", "2")]).await {
            Err(ContextError::Core(Error::WrongType { key: k, found })) => {
                assert_eq!(k, key.as_str());
                assert_eq!(found, "string");
            }
            r => panic!("expected WrongType, got {r:?}"),
        }
        assert!(matches!(other.get_all().await, Err(ContextError::Core(Error::WrongType { .. }))));
        let v: String = pool.query(redis::cmd("GET").arg(&key)).await.unwrap();
        assert_eq!(v, "garbage");

        let err = ContextStore::builder(&pool, &redis.keyspace()).history_len(0).build().unwrap_err();
        assert!(matches!(err, ContextError::Core(Error::InvalidConfig { field: "history_len", .. })));
    }
}

redis_test! {
    async fn invalid_settings_name_the_setter(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let b = || ContextStore::builder(&pool, &ks);
        let day = Duration::from_secs(24 * 3600);
        let cases = [
            ("max_value_bytes", b().max_value_bytes(0)),
            ("max_value_bytes", b().max_value_bytes((512 << 20) + 1)),
            ("history_len", b().history_len(100_001)),
            ("idle_ttl", b().idle_ttl(Some(Duration::from_millis(999)))),
            ("idle_ttl", b().idle_ttl(Some(day * 366))),
            ("tombstone_ttl", b().tombstone_ttl(Duration::ZERO)),
            ("agent_ttl", b().agent_ttl(Duration::from_millis(99))),
            ("agent_ttl", b().agent_ttl(day * 2)),
        ];
        for (setter, builder) in cases {
            match builder.build() {
                Err(ContextError::Core(Error::InvalidConfig { field, .. })) => assert_eq!(field, setter),
                other => panic!("{setter}: expected InvalidConfig, got {other:?}"),
            }
        }
        assert!(matches!(b().actor("no spaces").build(), Err(ContextError::Core(Error::InvalidName { .. }))));
    }
}

redis_test! {
    async fn agent_events_come_from_the_context_source(redis) {
        let pool = redis.pool().await;
        let store = store(&redis, pool.clone());
        let fleet = store.agents("fleet").unwrap();
        let mut events = pool.subscriber().channel(fleet.channel()).subscribe::<serde_json::Value>().await.unwrap();
        fleet.set_status("a1", &AgentStatus::new(Status::Idle)).await.unwrap();
        let got = tokio::time::timeout(WAIT, events.recv()).await.unwrap().unwrap();
        assert_eq!((got.event.kind.as_str(), got.event.source.as_str(), got.event.entity.as_str()), ("agent_status", "context", "a1"));
    }
}

async fn next_agent_event(events: &mut AgentEvents) -> AgentEvent {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("no event within the wait")
        .expect("the subscription ended")
}

redis_test! {
    async fn typed_agent_events_of_one_registry(redis) {
        let clock = ManualClock::new(1_700_000_000_000);
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let store = ContextStore::builder(&pool, &ks)
            .agent_ttl(Duration::from_secs(30))
            .clock(Clock::Manual(clock.clone()))
            .build()
            .unwrap();
        let fleet = store.agents("fleet").unwrap();
        let other = store.agents("other").unwrap();
        let mut events = fleet.events().await.unwrap();
        let t0 = clock.now_ms();

        // Another registry's event first, on the same channel: not this subscription's.
        other.set_status("a1", &AgentStatus::new(Status::Idle)).await.unwrap();
        fleet.set_status("a1", &AgentStatus::new(Status::Idle).capability("rust")).await.unwrap();
        let e = next_agent_event(&mut events).await;
        assert_eq!(e, AgentEvent {
            registry: "fleet".into(),
            agent: "a1".into(),
            ts_ms: t0,
            kind: AgentEventKind::Status { from: None, to: Status::Idle, task: None },
        });
        // The same status again publishes nothing; a flip does.
        fleet.set_state("a1", &Status::Idle, None).await.unwrap();
        fleet.set_state("a1", &Status::Busy, Some("t-7")).await.unwrap();
        let e = next_agent_event(&mut events).await;
        assert_eq!(e.kind, AgentEventKind::Status { from: Some(Status::Idle), to: Status::Busy, task: Some("t-7".into()) });
        fleet.set_status("b1", &AgentStatus::new(Status::Custom("warming".into()))).await.unwrap();
        let e = next_agent_event(&mut events).await;
        assert_eq!((e.agent.as_str(), e.kind), ("b1", AgentEventKind::Status { from: None, to: Status::Custom("warming".into()), task: None }));

        // b1's record goes bad; both expire, and the next call drops them with an event each.
        let records = ks.instance("agents", "fleet").unwrap().key("records");
        let _: u64 = pool.query(redis::cmd("HSET").arg(&records).arg("b1").arg("not json")).await.unwrap();
        clock.advance(Duration::from_secs(31));
        assert!(fleet.with_status(&Status::Busy).await.unwrap().is_empty());
        let mut expired = [next_agent_event(&mut events).await, next_agent_event(&mut events).await];
        expired.sort_by(|a, b| a.agent.cmp(&b.agent));
        assert_eq!((expired[0].agent.as_str(), &expired[0].kind, expired[0].ts_ms), ("a1", &AgentEventKind::Expired, clock.now_ms()));
        assert_eq!(expired[1].agent, "b1");
        assert!(matches!(&expired[1].kind, AgentEventKind::Malformed { reason } if reason.contains("JSON")), "{:?}", expired[1]);
        assert!(expired.iter().all(|e| e.registry == "fleet"));
        assert_eq!((events.undecodable(), events.stats().decode_errors), (0, 0));
        events.shutdown().await;
    }
}

redis_test! {
    async fn idle_entities_expire_on_the_server_clock(redis) {
        let clock = ManualClock::new(1_700_000_000_000);
        let store = manual_store(&redis, redis.pool().await, &clock);
        let e = store.entity("session", "s1").unwrap();
        e.set([("k", "v")]).await.unwrap();
        clock.advance(Duration::from_secs(59));
        assert!(e.get_all().await.unwrap().is_some());
        e.set([("k", "v2")]).await.unwrap(); // a write refreshes the expiry
        clock.advance(Duration::from_secs(59));
        let snapshot = e.get_all().await.unwrap().unwrap();
        assert_eq!(snapshot.expires_ms, Some(clock.now_ms() - 59_000 + 60_000));
        clock.advance(Duration::from_secs(2));
        assert_eq!(e.get_all().await.unwrap(), None);
        // It starts over.
        assert_eq!(e.set([("k", "new")]).await.unwrap(), 1);
        // And the server's own expiry is set too, so memory is reclaimed.
        let ttl: i64 = store.pool().query(redis::cmd("PTTL").arg(e.data_key())).await.unwrap();
        assert!(ttl > 0 && ttl <= 60_000, "PTTL {ttl}");
    }
}

redis_test! {
    async fn reads_push_the_idle_expiry_back_when_asked(redis) {
        let clock = ManualClock::new(1_700_000_000_000);
        // Two stores over one keyspace and one clock: one whose reads refresh, one whose do not.
        let keyspace = redis.keyspace();
        let pool = redis.pool().await;
        let builder = |refresh: bool| {
            ContextStore::builder(&pool, &keyspace)
                .idle_ttl(Some(Duration::from_secs(60)))
                .refresh_on_read(refresh)
                .clock(Clock::Manual(clock.clone()))
        };
        let refreshing = builder(true).build().unwrap();
        let plain = builder(false).build().unwrap();
        let e = refreshing.entity("session", "read-refresh").unwrap();
        let same = plain.entity("session", "read-refresh").unwrap();
        e.set([("k", "v")]).await.unwrap();
        clock.advance(Duration::from_secs(59));
        // Shorten the server's own expiry, to see the read set it again.
        let _: i64 = refreshing.pool().query(redis::cmd("PEXPIRE").arg(e.data_key()).arg(10_000)).await.unwrap();
        // A read of the refreshing store moves the expiry to a minute from now...
        let read_at = clock.now_ms();
        let snapshot = e.get_all().await.unwrap().unwrap();
        assert_eq!(snapshot.expires_ms, Some(read_at + 60_000));
        // ...so the entity outlives its write by more than a minute; a plain read does not
        // push it further.
        clock.advance(Duration::from_secs(59));
        let snapshot = same.get_all().await.unwrap().unwrap();
        assert_eq!(snapshot.expires_ms, Some(read_at + 60_000));
        assert_eq!(snapshot.fields["k"], "v");
        assert_eq!(snapshot.version, 1, "a read is not a write");
        // The server's own expiry was set again by the read.
        let ttl: i64 = refreshing.pool().query(redis::cmd("PTTL").arg(e.data_key())).await.unwrap();
        assert!(ttl > 60_000 - 5_000 && ttl <= 60_000, "PTTL {ttl}");
        clock.advance(Duration::from_secs(2));
        assert_eq!(same.get_all().await.unwrap(), None);
    }
}

redis_test! {
    async fn history_compaction_is_a_clear_error(redis) {
        let pool = redis.pool().await;
        let store = ContextStore::builder(&pool, &redis.keyspace()).history_len(3).build().unwrap();
        let e = store.entity("doc", "h").unwrap();
        for i in 1..=5 {
            e.set([("n", i.to_string())]).await.unwrap();
        }
        let recent = e.changes_since(2, 10).await.unwrap();
        assert_eq!(recent.iter().map(|c| c.version).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(recent[2].set["n"], "5");
        assert_eq!(recent[2].actor, "unknown");
        assert!(e.changes_since(5, 10).await.unwrap().is_empty());
        match e.changes_since(1, 10).await {
            Err(ContextError::Compacted { since: 1, oldest: 3 }) => {}
            other => panic!("expected Compacted, got {other:?}"),
        }
        // Past the trims (every 8th version): the last 3 are shown, in order, a page at a time.
        for i in 6..=20 {
            e.set([("n", i.to_string())]).await.unwrap();
        }
        let versions = |changes: Vec<coordkit_context::Change>| changes.iter().map(|c| c.version).collect::<Vec<_>>();
        assert_eq!(versions(e.changes_since(17, 10).await.unwrap()), vec![18, 19, 20]);
        assert_eq!(versions(e.changes_since(17, 2).await.unwrap()), vec![18, 19]);
        assert_eq!(versions(e.changes_since(19, 10).await.unwrap()), vec![20]);
        match e.changes_since(10, 10).await {
            Err(ContextError::Compacted { since: 10, oldest: 18 }) => {}
            other => panic!("expected Compacted, got {other:?}"),
        }
        assert_eq!(e.current_version().await.unwrap(), 20);
    }
}

redis_test! {
    async fn watchers_see_every_version_in_order_across_reconnects(redis) {
        let pool = redis.pool().await;
        let store = ContextStore::builder(&pool, &redis.keyspace()).history_len(1000).build().unwrap();
        let e = store.entity("doc", "watched").unwrap();
        e.set([("n", "0")]).await.unwrap();
        let mut watcher = e.watch(1).await.unwrap();
        for i in 1..=3 {
            e.set([("n", i.to_string())]).await.unwrap();
        }
        for version in 2..=4 {
            match next_event(&mut watcher).await {
                WatchEvent::Change(c) => assert_eq!(c.version, version),
                other => panic!("expected a change, got {other:?}"),
            }
        }
        // Kill the watcher's subscriber connection and write while it is down.
        let _: Vec<i64> = redis.on_every_server(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        for i in 4..=8 {
            e.set([("n", i.to_string())]).await.unwrap();
        }
        for version in 5..=9 {
            match next_event(&mut watcher).await {
                WatchEvent::Change(c) => {
                    assert_eq!(c.version, version);
                    assert_eq!(c.set["n"], (version - 1).to_string());
                }
                other => panic!("expected a change, got {other:?}"),
            }
        }
        assert_eq!(watcher.last_seen(), 9);
        // The kill did cut the subscriber off: it comes back at least once. (A cluster
        // connection resubscribes by itself, so the changes may arrive before the disconnection
        // is reported: wait for the report.)
        let reconnected = tokio::time::timeout(WAIT, async {
            while watcher.reconnections() == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(reconnected.is_ok(), "the subscriber was never cut off");
        e.delete().await.unwrap();
        match next_event(&mut watcher).await {
            WatchEvent::Change(c) => assert!(c.entity_deleted),
            other => panic!("expected the deletion, got {other:?}"),
        }
    }
}

redis_test! {
    async fn a_watcher_behind_the_history_resyncs_from_a_snapshot(redis) {
        let pool = redis.pool().await;
        let store = ContextStore::builder(&pool, &redis.keyspace()).history_len(2).build().unwrap();
        let e = store.entity("doc", "behind").unwrap();
        for i in 1..=6 {
            e.set([("n", i.to_string())]).await.unwrap();
        }
        let mut watcher = e.watch(1).await.unwrap();
        match next_event(&mut watcher).await {
            WatchEvent::Resync(Some(snapshot)) => {
                assert_eq!(snapshot.version, 6);
                assert_eq!(snapshot.fields["n"], "6");
            }
            other => panic!("expected a resync, got {other:?}"),
        }
        e.set([("n", "7")]).await.unwrap();
        match next_event(&mut watcher).await {
            WatchEvent::Change(c) => assert_eq!(c.version, 7),
            other => panic!("expected a change, got {other:?}"),
        }
    }
}

redis_test! {
    async fn every_write_emits_one_change_event(redis) {
        let pool = redis.pool().await;
        let store = store(&redis, pool.clone());
        let mut events = pool
            .subscriber()
            .channel(store.channel())
            .subscribe::<coordkit_context::ChangeEvent>()
            .await
            .unwrap();
        let e = store.entity("doc", "ev").unwrap();
        e.write().set("a", "1").set("b", "2").commit().await.unwrap();
        e.write().delete("a").actor("cleaner").commit().await.unwrap();
        let first = tokio::time::timeout(WAIT, events.recv()).await.unwrap().unwrap();
        assert_eq!(first.event.entity, "doc:ev");
        assert_eq!((first.event.kind.as_str(), first.event.source.as_str()), ("changed", "context"));
        assert_eq!(first.event.source, coordkit_context::EVENT_SOURCE);
        assert!(first.event.ts_ms > 0);
        assert_eq!(first.event.payload.version, 1);
        assert_eq!(first.event.payload.changed, vec!["a", "b"]);
        assert!(first.event.payload.deleted.is_empty());
        assert_eq!(first.event.payload.actor, "tester");
        let second = tokio::time::timeout(WAIT, events.recv()).await.unwrap().unwrap();
        assert_eq!(second.event.payload.version, 2);
        assert_eq!(second.event.payload.deleted, vec!["a"]);
        assert_eq!(second.event.payload.actor, "cleaner");
        // A rejected CAS emits nothing.
        let _ = e.write().set("a", "x").expect_version(0).commit().await.unwrap_err();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(events.try_recv().is_none());
    }
}

redis_test! {
    async fn agents_are_indexed_by_status_and_capability(redis) {
        let clock = ManualClock::new(1_700_000_000_000);
        let store = manual_store(&redis, redis.pool().await, &clock);
        let fleet = store.agents("fleet").unwrap();
        let previous = fleet
            .set_status("a1", &AgentStatus::new(Status::Idle).capability("rust").capability("sql"))
            .await
            .unwrap();
        assert_eq!(previous, None);
        fleet.set_status("a2", &AgentStatus::new(Status::Busy).task("t-9").capability("rust")).await.unwrap();
        fleet.set_status("a3", &AgentStatus::new(Status::Idle)).await.unwrap();
        // A status of one's own is indexed like the others.
        let draining = Status::Custom("draining".to_owned());
        fleet.set_status("a4", &AgentStatus::new(draining.clone())).await.unwrap();
        assert_eq!(fleet.with_status(&draining).await.unwrap(), vec!["a4"]);
        assert_eq!(fleet.get("a4").await.unwrap().unwrap().status.status, draining);
        assert_eq!(fleet.with_status(&Status::Idle).await.unwrap(), vec!["a1", "a3"]);
        assert_eq!(fleet.with_status(&Status::Busy).await.unwrap(), vec!["a2"]);
        assert_eq!(fleet.with_capability("rust").await.unwrap(), vec!["a1", "a2"]);
        assert_eq!(fleet.with_capability("sql").await.unwrap(), vec!["a1"]);

        // A change of status moves the agent between indexes atomically.
        let previous = fleet
            .set_status("a1", &AgentStatus::new(Status::Busy).task("t-1").capability("rust"))
            .await
            .unwrap();
        assert_eq!(previous, Some(Status::Idle));
        assert_eq!(fleet.with_status(&Status::Idle).await.unwrap(), vec!["a3"]);
        assert!(fleet.with_capability("sql").await.unwrap().is_empty());
        let a1 = fleet.get("a1").await.unwrap().unwrap();
        assert_eq!(a1.status.current_task.as_deref(), Some("t-1"));
        assert_eq!(a1.status.capabilities, BTreeSet::from(["rust".to_owned()]));

        // Heartbeats keep agents alive; the silent ones drop out of every answer.
        clock.advance(Duration::from_secs(20));
        assert!(fleet.heartbeat("a1").await.unwrap());
        assert!(fleet.heartbeat("a2").await.unwrap());
        clock.advance(Duration::from_secs(15));
        assert_eq!(fleet.with_status(&Status::Idle).await.unwrap(), Vec::<String>::new());
        assert_eq!(fleet.get("a3").await.unwrap(), None);
        assert!(!fleet.heartbeat("a3").await.unwrap(), "an expired agent came back by heartbeat");
        let all: Vec<String> = fleet.all().await.unwrap().into_iter().map(|r| r.agent).collect();
        assert_eq!(all, vec!["a1", "a2"]);
        assert!(fleet.remove("a2").await.unwrap());
        assert_eq!(fleet.with_capability("rust").await.unwrap(), vec!["a1"]);
        assert!(fleet.set_status("bad agent", &AgentStatus::new(Status::Idle)).await.is_err());
    }
}

redis_test! {
    async fn entities_are_listed_by_scan_in_pages(redis) {
        let store = store(&redis, redis.pool().await);
        for i in 0..60 {
            store.entity("task", &format!("t{i:02}")).unwrap().set([("n", "1")]).await.unwrap();
        }
        store.entity("other", "x").unwrap().set([("n", "1")]).await.unwrap();
        store.entity("task", "gone").unwrap().set([("n", "1")]).await.unwrap();
        store.entity("task", "gone").unwrap().delete().await.unwrap();
        let mut cursor = String::new();
        let mut ids = BTreeSet::new();
        loop {
            let page = store.list("task", &cursor, 10).await.unwrap();
            ids.extend(page.ids);
            match page.next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        let expected: BTreeSet<String> = (0..60).map(|i| format!("t{i:02}")).collect();
        assert_eq!(ids, expected);
    }
}

redis_test! {
    async fn set_state_flips_status_and_task_and_keeps_capabilities(redis) {
        let clock = ManualClock::new(1_700_000_000_000);
        let store = manual_store(&redis, redis.pool().await, &clock);
        let fleet = store.agents("fleet").unwrap();
        fleet
            .set_status("a1", &AgentStatus::new(Status::Idle).capability("rust").capability("sql"))
            .await
            .unwrap();
        let previous = fleet.set_state("a1", &Status::Busy, Some("t-7")).await.unwrap();
        assert_eq!(previous, Some(Status::Idle));
        let record = fleet.get("a1").await.unwrap().unwrap();
        assert_eq!(record.status.status, Status::Busy);
        assert_eq!(record.status.current_task.as_deref(), Some("t-7"));
        let caps: Vec<&str> = record.status.capabilities.iter().map(String::as_str).collect();
        assert_eq!(caps, ["rust", "sql"]);
        assert_eq!(fleet.with_capability("sql").await.unwrap(), vec!["a1"]);
        assert_eq!(fleet.with_status(&Status::Busy).await.unwrap(), vec!["a1"]);
        assert!(fleet.with_status(&Status::Idle).await.unwrap().is_empty());
        // Back to idle, no task: the capabilities stay.
        fleet.set_state("a1", &Status::Idle, None).await.unwrap();
        let record = fleet.get("a1").await.unwrap().unwrap();
        assert_eq!((record.status.current_task, record.status.capabilities.len()), (None, 2));
        // An agent the registry does not know registers without capabilities.
        assert_eq!(fleet.set_state("new", &Status::Idle, None).await.unwrap(), None);
        assert!(fleet.get("new").await.unwrap().unwrap().status.capabilities.is_empty());
        // Its record expired (an outage outlasted its heartbeats): it comes back with them.
        clock.advance(std::time::Duration::from_secs(3600));
        assert!(!fleet.heartbeat("a1").await.unwrap());
        fleet.set_state("a1", &Status::Busy, Some("t-8")).await.unwrap();
        assert_eq!(fleet.with_capability("rust").await.unwrap(), vec!["a1"]);
    }
}
