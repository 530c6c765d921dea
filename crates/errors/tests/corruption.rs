//! Bad stored data (issue #15): every key of a tracker of another type, and every field of its
//! data hash (and its log and index) overwritten with garbage. No call panics or fails half-way:
//! a record always records (what it cannot decode it starts afresh and reports), a query
//! answers or names the key, other signatures and trackers are untouched, and once the key is
//! repaired or deleted everything works again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coordkit_core::{Clock, Error, Key, Keyspace, ManualClock, Pool, redis};
use coordkit_errors::{ErrorEvent, ErrorTracker, Repair, TrackerBuilder, TrackerError};
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
    settings: impl FnOnce(TrackerBuilder) -> TrackerBuilder,
) -> Fixture {
    let name = format!("bad-{}", CASE.fetch_add(1, Ordering::Relaxed));
    let builder = ErrorTracker::builder(pool.clone(), ks.clone(), &name)
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

    /// What `key` holds: its entries for a stream (a lone record whose index refresh fails
    /// takes its log entry back, which leaves the stream's last id moved on), else its DUMP.
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
        let mut check = |what: &str, r: Result<(), TrackerError>| match r {
            Ok(()) => Ok(()),
            Err(TrackerError::Core(Error::Corrupt { key, detail }))
                if key == expected.as_str() && !detail.is_empty() =>
            {
                failed += 1;
                Ok(())
            }
            Err(TrackerError::Core(Error::WrongType { key, .. })) if key == expected.as_str() => {
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
    async fn batch(&self, which: &[char]) -> Vec<Result<coordkit_errors::Recorded, TrackerError>> {
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
async fn field_case(fx: &Fixture, field: &str, bad: &Garbage) -> Result<(), String> {
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
    let r = fx.t.record(&event('A')).await.map_err(|e| ctx(&format!("{e:?}")))?;
    if r.repaired.contains(&Repair::SignatureState) && (r.count != 1 || !r.new_signature) {
        return Err(ctx(&format!("a restarted state goes on: {r:?}")));
    }
    let batch = fx.batch(&['A', 'B', 'x', 'A', 'B', 'y']).await;
    for r in &batch {
        if let Err(e) = r {
            return Err(ctx(&format!("a batched record failed: {e:?}")));
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
    fx.t.record(&event('A')).await.map_err(|e| ctx(&format!("after repair: {e:?}")))?;
    match fx.queries(&fx.data).await {
        Ok(0) => Ok(()),
        Ok(n) => Err(ctx(&format!("{n} queries still fail after the field was deleted"))),
        Err(e) => Err(ctx(&e)),
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
    let is_named = |r: &Result<coordkit_errors::Recorded, TrackerError>| {
        matches!(r, Err(TrackerError::Core(Error::WrongType { key: k, .. })) if k == key.as_str())
    };
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
        (Err(TrackerError::Core(Error::WrongType { key: k, .. })), true) if k == key.as_str() => {}
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
    let r = fx.t.record(&event('A')).await.map_err(|e| ctx(format!("{e:?}")))?;
    if r.count == 0 {
        return Err(ctx("no count after repair".into()));
    }
    match fx.queries(key).await {
        Ok(0) => Ok(()),
        Ok(n) => Err(ctx(format!("{n} queries still fail after the key was deleted"))),
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
                if let Err(e) = field_case(&fx, field, &bad).await {
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
