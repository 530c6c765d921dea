//! The instance index: recording, forgetting, listing in one call, pages, expiry, bad stored
//! data, concurrency, and a proptest against a pure-Rust model.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coordkit_core::index::MAX_PAGE;
use coordkit_core::{
    Clock, Error, InstanceIndex, Keyspace, Lifetime, ManualClock, Pool, Registration,
};
use coordkit_testkit::{TestRedis, Topology, redis_test};
use proptest::prelude::*;

/// Every page of `index`, `count` names at a time: the names and the number of calls.
async fn walk(index: &InstanceIndex, pool: &Pool, count: u32) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    let mut after: Option<String> = None;
    let mut calls = 0;
    loop {
        let page = index.page(pool, after.as_deref(), count).await.unwrap();
        calls += 1;
        assert!(page.malformed.is_empty(), "{page:?}");
        names.extend(page.names);
        match page.next {
            Some(next) => after = Some(next),
            None => return (names, calls),
        }
    }
}

/// How many times each command ran since the last `CONFIG RESETSTAT`, summed over every
/// server, but the `INFO` and `CONFIG` of the test itself. Commands a script runs count too.
fn calls_since_reset(redis: &TestRedis) -> BTreeMap<String, u64> {
    let mut calls = BTreeMap::new();
    for info in redis.on_every_server::<String>(&["INFO", "commandstats"]) {
        for line in info.lines() {
            let Some((command, stats)) = line
                .strip_prefix("cmdstat_")
                .and_then(|rest| rest.split_once(':'))
            else {
                continue;
            };
            if command == "info" || command.starts_with("config") {
                continue;
            }
            let n: u64 = stats
                .strip_prefix("calls=")
                .and_then(|s| s.split(',').next())
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("unreadable commandstats line {line:?}"));
            *calls.entry(command.to_owned()).or_default() += n;
        }
    }
    calls
}

redis_test! {
    async fn records_lists_and_forgets(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let queues = InstanceIndex::new(&ks, "queue").unwrap();
        let breakers = InstanceIndex::new(&ks, "cb").unwrap();
        assert!(queues.list(&pool).await.unwrap().names.is_empty());

        assert!(queues.record(&pool, "b", Lifetime::Forever).await.unwrap());
        assert!(queues.record(&pool, "a", Lifetime::Forever).await.unwrap());
        assert!(!queues.record(&pool, "a", Lifetime::Forever).await.unwrap());
        breakers.record(&pool, "x", Lifetime::Forever).await.unwrap();
        assert_eq!(queues.list(&pool).await.unwrap().names, ["a", "b"]);
        assert_eq!(breakers.list(&pool).await.unwrap().names, ["x"]);

        assert!(queues.forget(&pool, "a").await.unwrap());
        assert!(!queues.forget(&pool, "a").await.unwrap());
        assert_eq!(queues.list(&pool).await.unwrap().names, ["b"]);
        assert!(matches!(
            queues.record(&pool, "bad name", Lifetime::Forever).await,
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            queues.page(&pool, None, 0).await,
            Err(Error::InvalidConfig { field: "count", .. })
        ));
        assert!(queues.page(&pool, None, MAX_PAGE + 1).await.is_err());
    }
}

redis_test! {
    async fn deadlines_expire_extend_and_reset(redis) {
        let pool = redis.pool().await;
        let clock = ManualClock::new(1_000_000);
        let index = InstanceIndex::new(&redis.keyspace(), "cb")
            .unwrap()
            .with_clock(Clock::Manual(clock.clone()));
        let ms = Duration::from_millis;
        index.record(&pool, "short", Lifetime::For(ms(1_000))).await.unwrap();
        index.record(&pool, "long", Lifetime::For(ms(5_000))).await.unwrap();
        index.record(&pool, "forever", Lifetime::Forever).await.unwrap();
        // An extend never shortens, and never gives a deadline to an instance without one.
        index.record(&pool, "long", Lifetime::For(ms(10))).await.unwrap();
        index.record(&pool, "forever", Lifetime::For(ms(10))).await.unwrap();

        clock.advance(ms(999));
        assert_eq!(index.list(&pool).await.unwrap().names, ["forever", "long", "short"]);
        clock.advance(ms(1));
        assert_eq!(index.list(&pool).await.unwrap().names, ["forever", "long"]);
        // The list removed the expired entry: it is new again when recorded.
        let names: i64 = pool
            .query(redis::cmd("ZCARD").arg(index.keys()[0]))
            .await
            .unwrap();
        assert_eq!(names, 2);
        assert!(index.record(&pool, "short", Lifetime::For(ms(1_000))).await.unwrap());

        // A reset sets the deadline exactly, shorter or not.
        index.reset(&pool, "forever", Lifetime::For(ms(100))).await.unwrap();
        index.reset(&pool, "long", Lifetime::For(ms(100))).await.unwrap();
        clock.advance(ms(100));
        assert_eq!(index.list(&pool).await.unwrap().names, ["short"]);
        // An instance recorded without expiry loses its deadline, even after it passed.
        index.record(&pool, "short", Lifetime::Forever).await.unwrap();
        clock.advance(ms(1_000_000));
        assert_eq!(index.list(&pool).await.unwrap().names, ["short"]);
    }
}

redis_test! {
    async fn pages_walk_every_name_once(redis) {
        let pool = redis.pool().await;
        let clock = ManualClock::new(5_000);
        let index = InstanceIndex::new(&redis.keyspace(), "queue")
            .unwrap()
            .with_clock(Clock::Manual(clock.clone()));
        let mut expected = Vec::new();
        for i in 0..57 {
            let name = format!("q-{i:03}");
            if i % 5 == 0 {
                // Expired before the walk: skipped by pages, though still stored.
                index.record(&pool, &name, Lifetime::For(Duration::from_millis(10))).await.unwrap();
            } else {
                index.record(&pool, &name, Lifetime::Forever).await.unwrap();
                expected.push(name);
            }
        }
        clock.advance(Duration::from_millis(10));
        for count in [1, 7, 56, 57, 1000] {
            let (names, calls) = walk(&index, &pool, count).await;
            assert_eq!(names, expected, "count {count}");
            assert_eq!(calls, 57 / count as usize + 1, "count {count}");
        }
        assert_eq!(index.list(&pool).await.unwrap().names, expected);
    }
}

redis_test! {
    async fn bad_stored_data_is_named(redis) {
        let pool = redis.pool().await;
        let index = InstanceIndex::new(&redis.keyspace(), "queue").unwrap();
        let [names, expiry] = index.keys().map(|k| k.clone());
        index.record(&pool, "ok", Lifetime::Forever).await.unwrap();

        // Entries that are not names: listed apart, with the reason.
        let _: i64 = pool
            .query(redis::cmd("ZADD").arg(&names).arg(0).arg("a{b").arg(0).arg(&[0xffu8, 0xfe][..]))
            .await
            .unwrap();
        let listing = index.list(&pool).await.unwrap();
        assert_eq!(listing.names, ["ok"]);
        assert_eq!(listing.malformed.len(), 2, "{listing:?}");
        assert!(listing.malformed.iter().any(|m| m.entry == "a{b"));
        assert!(listing.malformed.iter().any(|m| m.reason == "not UTF-8"));
        let page = index.page(&pool, None, 10).await.unwrap();
        assert_eq!((page.names.as_slice(), page.malformed.len()), (&["ok".to_owned()][..], 2));

        // Deadlines that are not times: compared, never a failure.
        let _: i64 = pool
            .query(redis::cmd("ZADD").arg(&expiry).arg("inf").arg("ok").arg("-inf").arg("gone"))
            .await
            .unwrap();
        let _: i64 = pool.query(redis::cmd("ZADD").arg(&names).arg(0).arg("gone")).await.unwrap();
        assert_eq!(index.page(&pool, None, 10).await.unwrap().names, ["ok"]);
        assert_eq!(index.list(&pool).await.unwrap().names, ["ok"]);
        index.record(&pool, "ok", Lifetime::For(Duration::from_secs(1))).await.unwrap();

        // A name whose score is not 0 breaks pages by name: named; a recording repairs it.
        let _: i64 = pool.query(redis::cmd("ZADD").arg(&names).arg(7).arg("ok")).await.unwrap();
        match index.page(&pool, None, 10).await {
            Err(Error::Corrupt { key, .. }) => assert_eq!(key, names.as_str()),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        index.record(&pool, "ok", Lifetime::Forever).await.unwrap();
        assert_eq!(index.page(&pool, None, 10).await.unwrap().names, ["ok"]);

        // A key of another type: WrongType naming it, for every operation, nothing written.
        for key in [&names, &expiry] {
            let _: i64 = pool.query(redis::cmd("DEL").arg(key)).await.unwrap();
            let _: () = pool.query(redis::cmd("SET").arg(key).arg("x")).await.unwrap();
            let results = [
                index.record(&pool, "n", Lifetime::Forever).await.map(|_| ()),
                index.forget(&pool, "n").await.map(|_| ()),
                index.list(&pool).await.map(|_| ()),
                index.page(&pool, None, 10).await.map(|_| ()),
            ];
            for result in results {
                match result {
                    Err(Error::WrongType { key: named, found }) => {
                        assert_eq!((named.as_str(), found.as_str()), (key.as_str(), "string"));
                    }
                    other => panic!("expected WrongType on {key}, got {other:?}"),
                }
            }
            let _: i64 = pool.query(redis::cmd("DEL").arg(key)).await.unwrap();
        }
        index.record(&pool, "n", Lifetime::Forever).await.unwrap();
        assert!(index.list(&pool).await.unwrap().names.contains(&"n".to_owned()));
    }
}

redis_test! {
    async fn listing_100_000_instances_takes_one_call(redis) {
        // A debug build on a busy machine may take more than the default 2 s to read them.
        let config = redis.config().command_timeout(Duration::from_secs(60));
        let pool = Pool::connect(config).await.unwrap();
        let index = InstanceIndex::new(&redis.keyspace(), "queue").unwrap();
        // 100,000 entries written directly, 10,000 to a ZADD.
        let mut expected = Vec::with_capacity(100_000);
        for chunk in 0..10 {
            let mut zadd = redis::cmd("ZADD");
            zadd.arg(index.keys()[0]);
            for i in 0..10_000 {
                let name = format!("queue-{:06}", chunk * 10_000 + i);
                zadd.arg(0).arg(&name);
                expected.push(name);
            }
            let added: i64 = pool.query(&zadd).await.unwrap();
            assert_eq!(added, 10_000);
        }
        // The script loaded once, then the counted listing.
        index.list(&pool).await.unwrap();
        redis.reset_stats();
        let listing = index.list(&pool).await.unwrap();
        // One EVALSHA from the client; the rest ran inside the script (its two type checks,
        // its clock, the expired entries and the names).
        let calls = calls_since_reset(&redis);
        let expected_calls: BTreeMap<String, u64> =
            [("evalsha", 1), ("zcard", 2), ("time", 1), ("zrange", 2)]
                .map(|(c, n)| (c.to_owned(), n))
                .into();
        assert_eq!(calls, expected_calls);
        assert!(listing.malformed.is_empty());
        assert_eq!(listing.names, expected);
    }
}

redis_test! {
    async fn stays_exact_under_concurrent_recordings(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let index = InstanceIndex::new(&ks, "queue").unwrap();
        // 16 tasks, each recording 40 names of which half are shared by every task, through
        // registrations (many handles of one instance) and the index directly; another task
        // lists all along: each listing holds every name recorded before it began.
        let done = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for t in 0..16u64 {
            let (pool, index, done) = (pool.clone(), index.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..40u64 {
                    let name = if i % 2 == 0 { format!("shared-{i}") } else { format!("own-{t}-{i}") };
                    if t % 2 == 0 {
                        let reg = Registration::new(index.clone(), &name);
                        assert!(reg.ensure(&pool, Lifetime::Forever).await.unwrap());
                        assert!(!reg.ensure(&pool, Lifetime::Forever).await.unwrap());
                    } else {
                        index.record(&pool, &name, Lifetime::Forever).await.unwrap();
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        let lister = {
            let (pool, index) = (pool.clone(), index.clone());
            tokio::spawn(async move {
                let mut previous = BTreeSet::new();
                for _ in 0..30 {
                    let now: BTreeSet<String> =
                        index.list(&pool).await.unwrap().names.into_iter().collect();
                    assert!(now.is_superset(&previous), "a listed name went away");
                    previous = now;
                }
            })
        };
        for task in tasks {
            task.await.unwrap();
        }
        lister.await.unwrap();
        let mut expected = BTreeSet::new();
        for t in 0..16 {
            for i in 0..40 {
                expected.insert(if i % 2 == 0 { format!("shared-{i}") } else { format!("own-{t}-{i}") });
            }
        }
        let listed: BTreeSet<String> = index.list(&pool).await.unwrap().names.into_iter().collect();
        assert_eq!(listed, expected);
        assert_eq!(done.load(Ordering::SeqCst), 640);

        // Half of them forgotten concurrently with re-recordings of the others.
        let mut tasks = Vec::new();
        for name in &expected {
            let (pool, index, name) = (pool.clone(), index.clone(), name.clone());
            tasks.push(tokio::spawn(async move {
                if name.starts_with("shared") {
                    index.forget(&pool, &name).await.unwrap();
                } else {
                    index.record(&pool, &name, Lifetime::Forever).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let listed: BTreeSet<String> = index.list(&pool).await.unwrap().names.into_iter().collect();
        let own: BTreeSet<String> = expected.into_iter().filter(|n| n.starts_with("own")).collect();
        assert_eq!(listed, own);
    }
}

redis_test! {
    async fn a_registration_records_once_per_period_and_again_after_forget(redis) {
        let pool = redis.pool().await;
        let index = InstanceIndex::new(&redis.keyspace(), "cb").unwrap();
        let reg = Registration::new(index.clone(), "payments");
        let ttl = Lifetime::For(Duration::from_secs(60));
        assert!(reg.ensure(&pool, ttl).await.unwrap());
        assert!(!reg.ensure(&pool, ttl).await.unwrap());
        // The recorded deadline is 1.25 lifetimes ahead, on the server's clock.
        let deadline: f64 = pool
            .query(redis::cmd("ZSCORE").arg(index.keys()[1]).arg("payments"))
            .await
            .unwrap();
        let (secs, _): (u64, u64) = pool.query(&redis::cmd("TIME")).await.unwrap();
        let ahead = deadline - (secs * 1000) as f64;
        assert!((74_000.0..=76_000.0).contains(&ahead), "{ahead}");
        // Another lifetime records again; so does a forget.
        assert!(reg.ensure(&pool, Lifetime::Forever).await.unwrap());
        assert!(!reg.ensure(&pool, Lifetime::Forever).await.unwrap());
        assert!(reg.forget(&pool).await.unwrap());
        assert!(index.list(&pool).await.unwrap().names.is_empty());
        assert!(reg.ensure(&pool, Lifetime::Forever).await.unwrap());
        assert_eq!(index.list(&pool).await.unwrap().names, ["payments"]);
        // Leaving "forever" for a lifetime sets the deadline (an extend would keep none).
        assert!(reg.ensure(&pool, Lifetime::For(Duration::from_millis(1))).await.unwrap());
        let deadline: Option<f64> = pool
            .query(redis::cmd("ZSCORE").arg(index.keys()[1]).arg("payments"))
            .await
            .unwrap();
        assert!(deadline.is_some());
    }
}

// The model: name -> deadline (None: no expiry).
#[derive(Debug, Default)]
struct Model(BTreeMap<String, Option<u64>>);

impl Model {
    fn live(&self, name: &str, now: u64) -> bool {
        self.0.get(name).is_some_and(|d| d.is_none_or(|d| d > now))
    }

    fn record(&mut self, name: &str, lifetime: Option<u64>, set: bool, now: u64) -> bool {
        let was_live = self.live(name, now);
        let old = self.0.get(name).copied();
        let new = match lifetime {
            None => None,
            Some(l) => match old {
                Some(Some(d)) if !set && d > now => Some(d.max(now + l)),
                Some(None) if !set => None,
                _ => Some(now + l),
            },
        };
        self.0.insert(name.to_owned(), new);
        !was_live
    }

    fn list(&mut self, now: u64) -> Vec<String> {
        self.0.retain(|_, d| d.is_none_or(|d| d > now));
        self.0.keys().cloned().collect()
    }

    fn page(&self, after: Option<&str>, count: usize, now: u64) -> (Vec<String>, Option<String>) {
        let scanned: Vec<&String> = self
            .0
            .keys()
            .filter(|n| after.is_none_or(|a| n.as_str() > a))
            .take(count)
            .collect();
        let next = (scanned.len() == count).then(|| scanned[count - 1].clone());
        let names = scanned
            .into_iter()
            .filter(|n| self.live(n, now))
            .cloned()
            .collect();
        (names, next)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Record {
        name: u8,
        lifetime: Option<u64>,
        set: bool,
    },
    Forget(u8),
    Advance(u64),
    List,
    Page {
        after: Option<u8>,
        count: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..12, prop::option::weighted(0.6, 1u64..3_000), any::<bool>())
            .prop_map(|(name, lifetime, set)| Op::Record { name, lifetime, set }),
        2 => (0u8..12).prop_map(Op::Forget),
        3 => (1u64..2_000).prop_map(Op::Advance),
        2 => Just(Op::List),
        2 => (prop::option::of(0u8..12), 1u32..6).prop_map(|(after, count)| Op::Page { after, count }),
    ]
}

fn name(n: u8) -> String {
    format!("i-{n:02}")
}

#[test]
fn lua_matches_the_model() {
    let rt = coordkit_testkit::blocking_runtime();
    let redis = TestRedis::start(Topology::Standalone);
    let pool = rt.block_on(redis.pool());
    static CASE: AtomicU64 = AtomicU64::new(0);
    proptest!(ProptestConfig::with_cases(96), |(ops in proptest::collection::vec(op(), 1..50))| {
        let ks = Keyspace::new(&format!("case-{}", CASE.fetch_add(1, Ordering::Relaxed))).unwrap();
        let clock = ManualClock::new(1_000_000);
        let index = InstanceIndex::new(&ks, "cb").unwrap().with_clock(Clock::Manual(clock.clone()));
        let mut model = Model::default();
        for op in ops {
            let now = clock.now_ms();
            match op {
                Op::Record { name: n, lifetime, set } => {
                    let l = lifetime.map_or(Lifetime::Forever, |ms| Lifetime::For(Duration::from_millis(ms)));
                    let lua = if set {
                        rt.block_on(index.reset(&pool, &name(n), l)).unwrap()
                    } else {
                        rt.block_on(index.record(&pool, &name(n), l)).unwrap()
                    };
                    prop_assert_eq!(lua, model.record(&name(n), lifetime, set, now));
                }
                Op::Forget(n) => {
                    let lua = rt.block_on(index.forget(&pool, &name(n))).unwrap();
                    prop_assert_eq!(lua, model.0.remove(&name(n)).is_some());
                }
                Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
                Op::List => {
                    let lua = rt.block_on(index.list(&pool)).unwrap();
                    prop_assert_eq!(lua.names, model.list(now));
                }
                Op::Page { after, count } => {
                    let after = after.map(name);
                    let lua = rt.block_on(index.page(&pool, after.as_deref(), count)).unwrap();
                    let (names, next) = model.page(after.as_deref(), count as usize, now);
                    prop_assert_eq!(lua.names, names);
                    prop_assert_eq!(lua.next, next);
                }
            }
        }
        // Whatever happened, a walk of the pages agrees with the listing.
        let (walked, _) = rt.block_on(walk(&index, &pool, 3));
        let listed = rt.block_on(index.list(&pool)).unwrap().names;
        prop_assert_eq!(&walked, &listed);
        prop_assert_eq!(listed, model.list(clock.now_ms()));
    });
}
