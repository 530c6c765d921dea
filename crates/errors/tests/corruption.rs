//! Bad stored data (issue #15): every key of a tracker of another type, and every field of its
//! data hash (and its log and index) overwritten with garbage. No call panics or fails half-way:
//! a record always records (what it cannot decode it starts afresh and reports), a query
//! answers or names the key, other signatures and trackers are untouched, and once the key is
//! repaired or deleted everything works again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coordkit_core::{Clock, Error, Key, KeyKind, Keyspace, ManualClock, Pool, redis};
use coordkit_errors::{ErrorEvent, ErrorTracker, ErrorTrackerBuilder, Repair};
use coordkit_testkit::garbage::{Garbage, TYPES, garbage, overwrite_with_type, wrong_type};
use coordkit_testkit::{TestRedis, Topology, redis_test};
use proptest::prelude::*;

/// Records of the seeded tracker: A (task t-1), B (task t-2), C (a pair beyond the counter
/// cap, so "~o" exists).
fn event(which: char) -> ErrorEvent {
    match which {
        'A' => ErrorEvent::new("c", "K", "disk full").task("t-1"),
        'B' => ErrorEvent::new("d", "J", "no route").task("t-2"),
        'C' => ErrorEvent::new("e", "L", "bad gateway"),
        _ => ErrorEvent::new("f", "M", format!("new {which}")),
    }
}

struct Fixture {
    pool: Pool,
    t: ErrorTracker,
    data: Key,
    seen: Key,
    log: Key,
    a: String,
    b: String,
}

static CASE: AtomicU64 = AtomicU64::new(0);

/// A fresh tracker (manual clock, one call in flight so concurrent records batch), seeded with
/// A, B and C, so every field of its data hash exists.
async fn seeded(pool: &Pool, ks: &Keyspace, clock: &ManualClock) -> Fixture {
    seeded_with(pool, ks, clock, |b| b).await
}

/// [`seeded`] with settings of its own. A one-second correlation window: the next records
/// check the kinds' stamps.
async fn seeded_with(
    pool: &Pool,
    ks: &Keyspace,
    clock: &ManualClock,
    settings: impl FnOnce(ErrorTrackerBuilder) -> ErrorTrackerBuilder,
) -> Fixture {
    let name = format!("bad-{}", CASE.fetch_add(1, Ordering::Relaxed));
    let builder = ErrorTracker::builder(pool, ks, &name)
        .max_counters(2)
        .max_in_flight(1)
        .cascade_threshold(3)
        .correlation_window(Duration::from_secs(1))
        .clock(Clock::Manual(clock.clone()));
    let t = settings(builder).build().unwrap();
    let a = t.record(&event('A')).await.unwrap().signature;
    let b = t.record(&event('B')).await.unwrap().signature;
    t.record(&event('C')).await.unwrap();
    clock.advance(Duration::from_secs(2));
    let keys = t.keys();
    Fixture {
        pool: pool.clone(),
        data: keys[0].clone(),
        seen: keys[1].clone(),
        log: keys[2].clone(),
        t,
        a,
        b,
    }
}

impl Fixture {
    /// Every field of the data hash the seeding wrote, each as it is stored.
    async fn fields(&self) -> Vec<String> {
        let mut f: Vec<String> = self
            .pool
            .query(redis::cmd("HKEYS").arg(&self.data))
            .await
            .unwrap();
        f.sort();
        f
    }

    /// What `key` holds: its entries for a stream (a batch refused at the log's last ms takes
    /// its first entry back, which leaves the stream's last id moved on), else its DUMP.
    async fn dump(&self, key: &Key) -> redis::Value {
        let kind: String = self.pool.query(redis::cmd("TYPE").arg(key)).await.unwrap();
        let cmd = if kind == "stream" {
            redis::cmd("XRANGE").arg(key).arg("-").arg("+").clone()
        } else {
            redis::cmd("DUMP").arg(key).clone()
        };
        self.pool.query(&cmd).await.unwrap()
    }

    async fn field(&self, field: &str) -> Option<Vec<u8>> {
        self.pool
            .query(redis::cmd("HGET").arg(&self.data).arg(field))
            .await
            .unwrap()
    }

    async fn log_len(&self) -> u64 {
        self.pool
            .query(redis::cmd("XLEN").arg(&self.log))
            .await
            .unwrap()
    }

    /// Every read-only operation: each answers, or fails naming `expected` key (with a reason).
    async fn queries(&self, expected: &Key) -> Result<usize, String> {
        let t = &self.t;
        let mut failed = 0;
        let mut check = |what: &str, r: Result<(), Error>| match r {
            Ok(()) => Ok(()),
            Err(Error::Corrupt { key, detail })
                if key == expected.as_str() && !detail.is_empty() =>
            {
                failed += 1;
                Ok(())
            }
            Err(Error::WrongType { key, .. }) if key == expected.as_str() => {
                failed += 1;
                Ok(())
            }
            Err(e) => Err(format!("{what}: {e:?}")),
        };
        check("top", t.top(Duration::from_secs(600), 10).await.map(drop))?;
        check("counts", t.counts().await.map(drop))?;
        check("recent", t.recent(None, 100).await.map(drop))?;
        check("task t-1", t.task("t-1").await.map(drop))?;
        check("task t-2", t.task("t-2").await.map(drop))?;
        check("signature A", t.signature(&self.a).await.map(drop))?;
        check("signature B", t.signature(&self.b).await.map(drop))?;
        check("signatures", t.signatures(100).await.map(drop))?;
        Ok(failed)
    }

    /// Concurrent records (batched behind the one in flight): their results, in order.
    async fn batch(&self, which: &[char]) -> Vec<Result<coordkit_errors::Recorded, Error>> {
        let calls: Vec<_> = which
            .iter()
            .map(|w| {
                let t = self.t.clone();
                let e = event(*w);
                tokio::spawn(async move { t.record(&e).await })
            })
            .collect();
        let mut out = Vec::new();
        for c in calls {
            out.push(c.await.unwrap());
        }
        out
    }

    /// The signature's count (0 when it is not tracked or does not decode).
    async fn count_of(&self, signature: &str) -> u64 {
        match self.t.signature(signature).await {
            Ok(d) => d.map_or(0, |d| d.count),
            Err(_) => 0,
        }
    }
}

/// One field of the data hash replaced with `bad`: queries answer or name the data key without
/// writing; records all record, B's count goes on exactly, the log grows by one entry per
/// record; with the field deleted, every query answers.
async fn field_case(fx: &Fixture, field: &str, bad: &Garbage, exact: bool) -> Result<(), String> {
    let original = fx.field(field).await.unwrap_or_default();
    let bytes = bad.apply(&original);
    let _: () = fx
        .pool
        .query(redis::cmd("HSET").arg(&fx.data).arg(field).arg(&bytes))
        .await
        .unwrap();
    let ctx = |what: &str| format!("{field:?} = {bad:?}: {what}");

    // Queries write nothing: the garbage stays as it was.
    fx.queries(&fx.data).await.map_err(|e| ctx(&e))?;
    if fx.field(field).await.as_deref() != Some(&bytes[..]) {
        return Err(ctx("a query wrote over the garbage"));
    }

    // A lone record of A, then a batch: every record recorded. The signature whose fields are
    // not the garbage (B, or A when they are B's) goes on exactly.
    let (other, records) = if field.starts_with(fx.b.as_str()) {
        (&fx.a, 3)
    } else {
        (&fx.b, 2)
    };
    let (other_before, log_before) = (fx.count_of(other).await, fx.log_len().await);
    let r =
        fx.t.record(&event('A'))
            .await
            .map_err(|e| ctx(&format!("{e:?}")))?;
    if r.repaired.contains(&Repair::SignatureState) && (r.count != 1 || !r.new_signature) {
        return Err(ctx(&format!("a restarted state goes on: {r:?}")));
    }
    let batch = fx.batch(&['A', 'B', 'x', 'A', 'B', 'y']).await;
    let mut repaired = r.repaired.clone();
    for r in &batch {
        match r {
            Ok(r) => repaired.extend(r.repaired.iter().copied()),
            Err(e) => return Err(ctx(&format!("a batched record failed: {e:?}"))),
        }
    }
    if exact {
        let expected = expected_repair(fx, field, &bytes);
        if expected.is_some_and(|e| !repaired.contains(&e)) {
            return Err(ctx(&format!(
                "want {expected:?} reported, got {repaired:?}"
            )));
        }
        if repaired.len() > usize::from(expected.is_some()) {
            return Err(ctx(&format!(
                "repairs reported beyond {expected:?}: {repaired:?}"
            )));
        }
    }
    if fx.log_len().await != log_before + 7 {
        return Err(ctx("the log did not grow by one entry per record"));
    }
    if fx.count_of(other).await != other_before + records {
        return Err(ctx("another signature's count was disturbed"));
    }

    // Deleted (what the records did not repair), everything answers again.
    let _: () = fx
        .pool
        .query(redis::cmd("HDEL").arg(&fx.data).arg(field))
        .await
        .unwrap();
    fx.t.record(&event('A'))
        .await
        .map_err(|e| ctx(&format!("after repair: {e:?}")))?;
    match fx.queries(&fx.data).await {
        Ok(0) => Ok(()),
        Ok(n) => Err(ctx(&format!(
            "{n} queries still fail after the field was deleted"
        ))),
        Err(e) => Err(ctx(&e)),
    }
}

/// What the records of [`field_case`] must report for `bytes` in `field` (the fixed shapes,
/// whose decoding is known).
fn expected_repair(fx: &Fixture, field: &str, bytes: &[u8]) -> Option<Repair> {
    let decimal = std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .is_some_and(|n| n <= 1 << 53);
    if field == fx.a || field == fx.b {
        Some(Repair::SignatureState)
    } else if field == "~c K c" || field == "~c J d" {
        Some(Repair::Counter)
    } else if field == "~corr" {
        Some(Repair::Correlation)
    } else if field == "~np" && !decimal {
        Some(Repair::CounterFields)
    } else if field == "~o" && !decimal {
        Some(Repair::OtherCounter)
    } else {
        None
    }
}

/// A whole key of another type: every operation that touches it fails naming it (records and
/// resolutions with nothing written to the other keys), the rest answer; deleted, all works.
async fn key_case(fx: &Fixture, key: &Key, type_name: &str) -> Result<(), String> {
    let ctx = |what: String| format!("{key} as a {type_name}: {what}");
    overwrite_with_type(&fx.pool, key, type_name).await;
    let mut before = Vec::new();
    for k in [&fx.data, &fx.seen, &fx.log] {
        before.push(fx.dump(k).await);
    }
    let is_named = |r: &Result<coordkit_errors::Recorded, Error>| matches!(r, Err(Error::WrongType { key: k, .. }) if k == key.as_str());
    // A new signature touches every key.
    let r = fx.t.record(&event('n')).await;
    if !is_named(&r) {
        return Err(ctx(format!("a new signature: {r:?}")));
    }
    for r in fx.batch(&['A', 'B', 'p', 'q']).await {
        // A batch checks every key up front.
        if !is_named(&r) {
            return Err(ctx(format!("a batch: {r:?}")));
        }
    }
    let resolved = fx.t.resolve(&fx.a).await;
    let data_bad = *key == fx.data;
    match (&resolved, data_bad) {
        (Err(Error::WrongType { key: k, .. }), true) if k == key.as_str() => {}
        (Ok(_), false) => {
            // It wrote the data hash: compare without it.
            before[0] = fx.dump(&fx.data).await;
        }
        _ => return Err(ctx(format!("resolve: {resolved:?}"))),
    }
    for (k, was) in [&fx.data, &fx.seen, &fx.log].into_iter().zip(&before) {
        if fx.dump(k).await != *was {
            return Err(ctx(format!("{k} changed by a failed call")));
        }
    }
    fx.queries(key).await.map_err(ctx)?;

    let _: () = fx.pool.query(redis::cmd("DEL").arg(key)).await.unwrap();
    let r =
        fx.t.record(&event('A'))
            .await
            .map_err(|e| ctx(format!("{e:?}")))?;
    if r.count == 0 {
        return Err(ctx("no count after repair".into()));
    }
    match fx.queries(key).await {
        Ok(0) => Ok(()),
        Ok(n) => Err(ctx(format!(
            "{n} queries still fail after the key was deleted"
        ))),
        Err(e) => Err(ctx(e)),
    }
}

/// The fixed garbage shapes.
fn shapes() -> Vec<Garbage> {
    vec![
        Garbage::Random(b"\x00\xff garbage \x01".to_vec()),
        Garbage::Truncated(3),
        Garbage::Flipped(0),
        Garbage::Empty,
        Garbage::Huge,
        Garbage::Negative,
        Garbage::Float,
        Garbage::Text,
    ]
}

/// Another tracker's keys, dumped: corruption of one tracker leaves them as they were.
async fn dumps(fx: &Fixture) -> Vec<redis::Value> {
    let mut out = Vec::new();
    for k in [&fx.data, &fx.seen, &fx.log] {
        out.push(fx.dump(k).await);
    }
    out
}

redis_test! {
    async fn every_field_with_every_garbage(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let clock = ManualClock::new(1_700_000_000_000);
        let bystander = seeded(&pool, &ks, &clock).await;
        let untouched = dumps(&bystander).await;
        let fields = seeded(&pool, &ks, &clock).await.fields().await;
        // A's state, sample and meta; the counters, "~np", "~o", "~corr", the kind stamps, the
        // task owners and records.
        assert!(fields.len() >= 14, "{fields:?}");
        for field in &fields {
            for bad in shapes() {
                let fx = seeded(&pool, &ks, &clock).await;
                if let Err(e) = field_case(&fx, field, &bad, true).await {
                    panic!("{e}");
                }
            }
        }
        assert_eq!(dumps(&bystander).await, untouched, "another tracker was touched");
        assert_eq!(bystander.t.record(&event('A')).await.unwrap().count, 2);
    }
}

redis_test! {
    async fn every_key_of_every_other_type(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let clock = ManualClock::new(1_700_000_000_000);
        let bystander = seeded(&pool, &ks, &clock).await;
        let untouched = dumps(&bystander).await;
        for (which, own) in [(0, "hash"), (1, "zset"), (2, "stream")] {
            for type_name in TYPES.into_iter().filter(|t| *t != own) {
                let fx = seeded(&pool, &ks, &clock).await;
                let key = [&fx.data, &fx.seen, &fx.log][which].clone();
                if let Err(e) = key_case(&fx, &key, type_name).await {
                    panic!("{e}");
                }
            }
        }
        assert_eq!(dumps(&bystander).await, untouched, "another tracker was touched");
    }
}

/// A corruption of a seeded tracker: one field of its data hash (by index in its sorted
/// fields), or one of its keys (data, seen, log) of another type.
#[derive(Debug, Clone)]
enum Corruption {
    Field(usize, Garbage),
    Key(usize, &'static str),
}

fn corruption() -> impl Strategy<Value = Corruption> {
    prop_oneof![
        3 => (0usize..64, garbage()).prop_map(|(i, g)| Corruption::Field(i, g)),
        1 => (0usize..3).prop_flat_map(|k| {
            let kind = [KeyKind::Hash, KeyKind::ZSet, KeyKind::Stream][k];
            wrong_type(kind).prop_map(move |t| Corruption::Key(k, t))
        }),
    ]
}

fn random_corruptions_on(topology: Topology, cases: u32) {
    let rt = coordkit_testkit::blocking_runtime();
    let redis = TestRedis::start(topology);
    let pool = rt.block_on(redis.pool());
    let ks = redis.keyspace();
    let clock = ManualClock::new(1_700_000_000_000);
    let bystander = rt.block_on(seeded(&pool, &ks, &clock));
    let untouched = rt.block_on(dumps(&bystander));
    let config = ProptestConfig::with_cases(cases);
    proptest!(config, |(c in corruption())| {
        let outcome = rt.block_on(async {
            let fx = seeded(&pool, &ks, &clock).await;
            match &c {
                Corruption::Field(i, bad) => {
                    let fields = fx.fields().await;
                    field_case(&fx, &fields[i % fields.len()], bad, false).await
                }
                Corruption::Key(k, type_name) => {
                    let key = [&fx.data, &fx.seen, &fx.log][*k].clone();
                    key_case(&fx, &key, type_name).await
                }
            }
        });
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    });
    assert_eq!(
        rt.block_on(dumps(&bystander)),
        untouched,
        "another tracker was touched"
    );
}

#[test]
fn random_corruptions_standalone() {
    random_corruptions_on(Topology::Standalone, 96);
}

#[test]
fn random_corruptions_cluster() {
    random_corruptions_on(Topology::Cluster, 48);
}

async fn hset(fx: &Fixture, key: &Key, field: &str, value: &[u8]) {
    let _: () = fx
        .pool
        .query(redis::cmd("HSET").arg(key).arg(field).arg(value))
        .await
        .unwrap();
}

fn corrupt_naming(r: Result<impl std::fmt::Debug, Error>, key: &Key, word: &str) {
    match r {
        Err(Error::Corrupt { key: k, detail }) if k == key.as_str() && detail.contains(word) => {}
        other => panic!("want Corrupt {{ {key}, ..{word}.. }}, got {other:?}"),
    }
}

redis_test! {
    async fn a_bad_state_restarts_the_signature_and_says_so(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let clock = ManualClock::new(1_700_000_000_000);
        let fx = seeded(&pool, &ks, &clock).await;
        let mut sub = pool
            .subscriber()
            .pattern(ks.channel_pattern(Some("errors")).unwrap())
            .subscribe::<serde_json::Value>()
            .await
            .unwrap();
        // Cut inside its numbers: the script used to fail after its log entry.
        let state = fx.field(&fx.a).await.unwrap();
        hset(&fx, &fx.data, &fx.a, &state[..20]).await;
        corrupt_naming(fx.t.resolve(&fx.a).await, &fx.data, &fx.a);
        corrupt_naming(fx.t.signature(&fx.a).await, &fx.data, &fx.a);
        assert_eq!(fx.field(&fx.a).await.unwrap(), &state[..20], "nothing written");
        let log = fx.log_len().await;
        let r = fx.t.record(&event('A')).await.unwrap();
        assert_eq!((r.count, r.new_signature), (1, true));
        assert_eq!(r.repaired, vec![Repair::SignatureState]);
        assert_eq!(fx.log_len().await, log + 1);
        // On a cluster the seeding's events may still arrive (PUBLISH crosses the cluster bus):
        // A's is the one.
        let got = loop {
            let got = tokio::time::timeout(Duration::from_secs(15), sub.recv()).await.unwrap().unwrap();
            if got.event.payload["record"]["signature"] == fx.a.as_str() {
                break got;
            }
        };
        assert_eq!(got.event.kind, "new_signature", "{:?}", got.event);
        assert_eq!(got.event.payload["repaired"], 1, "{:?}", got.event);
        assert_eq!(fx.t.signature(&fx.a).await.unwrap().unwrap().count, 1);
        assert!(matches!(fx.t.resolve(&fx.a).await, Ok(coordkit_errors::Resolution::Resolved { .. })));
    }
}

redis_test! {
    async fn one_bad_counter_of_a_batch_is_handled_alone(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let clock = ManualClock::new(1_700_000_000_000);
        let fx = seeded(&pool, &ks, &clock).await;
        hset(&fx, &fx.data, "~c K c", b"\x01\x02\x03").await;
        corrupt_naming(fx.t.counts().await, &fx.data, "~c K c");
        // Concurrent: behind the first in flight, the others go in one call.
        let out = fx.batch(&['B', 'A', 'B', 'A']).await;
        let out: Vec<_> = out.into_iter().map(Result::unwrap).collect();
        // Spawned, they arrive in any order: A's first occurrence (its count 2) repaired it.
        for r in &out {
            let first_a = r.signature == fx.a && r.count == 2;
            let want = if first_a { vec![Repair::Counter] } else { vec![] };
            assert_eq!(r.repaired, want, "{r:?}");
        }
        let counts = fx.t.counts().await.unwrap();
        // A's counter restarted at its first occurrence; B's went on.
        assert_eq!(counts.by_pair[&("K".to_string(), "c".to_string())], 1 + 1);
        assert_eq!(counts.by_pair[&("J".to_string(), "d".to_string())], 1 + 2);
        let mut finals: Vec<_> = out.iter().map(|r| (r.signature.clone(), r.count)).collect();
        finals.sort();
        assert_eq!(finals.iter().filter(|(_, n)| *n == 3).count(), 2, "{finals:?}");
        assert_eq!(fx.field("~c K c").await.unwrap(), 2f64.to_be_bytes());
    }
}

redis_test! {
    async fn undecodable_task_owners_and_times(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let clock = ManualClock::new(1_700_000_000_000);
        // One slot: every task's two slots are "~to 0".
        let fx = seeded_with(&pool, &ks, &clock, |b| b.max_tasks(1)).await;
        assert!(fx.t.task("t-2").await.unwrap().is_some());
        // Its owner's time does not decode: the task's query names the field.
        hset(&fx, &fx.data, "~to 0", b"t-2\tsoon").await;
        corrupt_naming(fx.t.task("t-2").await, &fx.data, "~to 0");
        // An owner that is no task at all: the script used to fail after its log entry.
        hset(&fx, &fx.data, "~to 0", b"garbage").await;
        assert_eq!(fx.t.task("t-1").await.unwrap(), None);
        let r = fx.t.record(&event('A')).await.unwrap();
        assert_eq!(r.repaired, vec![Repair::TaskSlot]);
        assert_eq!(fx.t.task("t-1").await.unwrap().unwrap().signature, fx.a);
    }
}

redis_test! {
    async fn bad_correlation_state_never_deletes_other_fields(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let clock = ManualClock::new(1_700_000_000_000);
        let fx = seeded(&pool, &ks, &clock).await;
        // No line end: the script used to fail before writing, with an untyped error.
        hset(&fx, &fx.data, "~corr", b"garbage").await;
        let r = fx.t.record(&event('A')).await.unwrap();
        assert_eq!(r.repaired, vec![Repair::Correlation]);
        // Lines naming B's state (and a kind twice): a cascade check used to read B's state
        // as a kind's time and delete it.
        clock.advance(Duration::from_secs(5));
        let lines = format!("0\n{}\n~k K\n~k K\n", fx.b);
        hset(&fx, &fx.data, "~corr", lines.as_bytes()).await;
        let r = fx.t.record(&event('A')).await.unwrap();
        assert!(r.repaired.is_empty() && !r.cascade, "{r:?}");
        assert_eq!(fx.t.signature(&fx.b).await.unwrap().unwrap().count, 1, "B kept");
        let corr = fx.field("~corr").await.unwrap();
        assert_eq!(corr, b"0\n~k K\n", "only our own lines kept");
    }
}

redis_test! {
    async fn index_members_and_log_entries_of_others(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let clock = ManualClock::new(1_700_000_000_000);
        let fx = seeded_with(&pool, &ks, &clock, |b| b.max_signatures(3)).await;
        // A member no signature can be, lowest: a new signature's eviction used to delete the
        // field of that name.
        let _: () = pool.query(redis::cmd("ZADD").arg(&fx.seen).arg(0).arg("~np")).await.unwrap();
        let n = fx.t.record(&event('n')).await.unwrap();
        assert_eq!(fx.field("~np").await.as_deref(), Some(&b"2"[..]), "~np kept");
        // "~np" and one signature left the index: three tracked, the new one among them.
        let listed = fx.t.signatures(10).await.unwrap();
        assert_eq!(listed.len(), 3);
        assert!(listed.iter().any(|(s, _)| *s == n.signature));
        // A score that is no time.
        let _: () = pool.query(redis::cmd("ZADD").arg(&fx.seen).arg("1e300").arg(&fx.b)).await.unwrap();
        corrupt_naming(fx.t.signatures(10).await, &fx.seen, &fx.b);
        // Log entries without a signature, or naming the tracker's own fields.
        for fields in [&["junk", "1"][..], &["f", "~corr", "e", "\u{1}"][..]] {
            let mut xadd = redis::cmd("XADD");
            xadd.arg(&fx.log).arg("*").arg(fields);
            let _: String = pool.query(&xadd).await.unwrap();
        }
        let page = fx.t.recent(None, 100).await.unwrap();
        assert_eq!(page.undecodable.len(), 2);
        assert_eq!(page.entries.len(), 4);
        let top = fx.t.top(Duration::from_secs(3600), 10).await.unwrap();
        assert_eq!(top.undecodable, 2);
        assert!(top.signatures.iter().all(|s| !s.signature.starts_with('~')));
    }
}

redis_test! {
    async fn a_bad_counter_count_is_taken_as_full(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let clock = ManualClock::new(1_700_000_000_000);
        let fx = seeded_with(&pool, &ks, &clock, |b| b.max_counters(5)).await;
        // Text read as 0 used to let the counter fields grow past their cap.
        hset(&fx, &fx.data, "~np", b"lots").await;
        let r = fx.t.record(&event('x')).await.unwrap();
        assert_eq!(r.repaired, vec![Repair::CounterFields]);
        assert_eq!(fx.field("~np").await.as_deref(), Some(&b"5"[..]));
        let counts = fx.t.counts().await.unwrap();
        assert_eq!((counts.other, counts.by_pair.len(), counts.total()), (1, 3, 4));
        // "~o" of text: counts name it; the next occurrence beyond the cap restarts it.
        hset(&fx, &fx.data, "~o", b"\xffbad").await;
        corrupt_naming(fx.t.counts().await, &fx.data, "~o");
        let r = fx.t.record(&event('y')).await.unwrap();
        assert_eq!(r.repaired, vec![Repair::OtherCounter]);
        assert_eq!(fx.t.counts().await.unwrap().other, 1);
    }
}
