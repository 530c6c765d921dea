//! Bad stored data anywhere in a store: each key of another Redis type, garbage in a record's
//! header (whole or one field), in a checkpoint, stray index entries. Every
//! operation then works or fails with an error naming the bad key, a failed one writes
//! nothing, a batch skips (and names) the bad record alone, nothing panics; once the key is
//! repaired every operation works again and the indexes agree with the records.

mod common;

use std::time::Duration;

use coordkit_core::{Clock, Error, Key, KeyKind, ManualClock, Pool, redis};
use coordkit_testkit::garbage::{Garbage, garbage, overwrite_with_type, wrong_type};
use coordkit_testkit::{TestRedis, Topology, redis_test};
use coordkit_workflow::{Claim, Lease, Listing, NewWorkflow, Status, WorkflowError, WorkflowStore};
use proptest::prelude::*;

const KINDS: [KeyKind; 9] = [
    KeyKind::Hash,
    KeyKind::ZSet,
    KeyKind::ZSet,
    KeyKind::ZSet,
    KeyKind::ZSet,
    KeyKind::ZSet,
    KeyKind::ZSet,
    KeyKind::ZSet,
    KeyKind::ZSet,
];

/// Byte ranges of the header's fixed fields: status, step, checkpoints, token, lease,
/// created, started, updated, finished, expires, claims, type length.
const FIELDS: [(usize, usize); 12] = [
    (0, 1),
    (1, 4),
    (5, 4),
    (9, 8),
    (17, 8),
    (25, 8),
    (33, 8),
    (41, 8),
    (49, 8),
    (57, 8),
    (65, 4),
    (69, 2),
];

#[derive(Debug, Clone)]
enum Corruption {
    /// Key `i` replaced by a value of another type.
    KeyType(usize, &'static str),
    /// Workflow `w`'s header replaced.
    Header(usize, Garbage),
    /// One field of workflow `w`'s header set to these bytes (cycled to the field's width).
    Field(usize, usize, Vec<u8>),
    /// Workflow 0's first checkpoint.
    Checkpoint(Garbage),
    /// A member without record added to index `i`.
    Stray(usize, String),
}

fn corruption() -> impl Strategy<Value = Corruption> {
    let key_type = (0usize..9).prop_flat_map(|i| wrong_type(KINDS[i]).prop_map(move |t| (i, t)));
    let bytes = prop_oneof![
        Just(vec![0xff]),
        Just(vec![0]),
        proptest::collection::vec(any::<u8>(), 1..8),
    ];
    prop_oneof![
        2 => key_type.prop_map(|(i, t)| Corruption::KeyType(i, t)),
        3 => (0usize..6, garbage()).prop_map(|(w, g)| Corruption::Header(w, g)),
        4 => (0usize..6, 0usize..FIELDS.len(), bytes).prop_map(|(w, f, b)| Corruption::Field(w, f, b)),
        1 => garbage().prop_map(Corruption::Checkpoint),
        1 => (1usize..9, "[a-z ]{0,6}").prop_map(|(i, m)| Corruption::Stray(i, m)),
    ]
}

/// w0, w1 running (w0 with a checkpoint), w2 completed, w3 cancelled, w4, w5 pending.
async fn setup(store: &WorkflowStore) -> Vec<Lease> {
    for i in 0..6 {
        let kind = if i % 2 == 0 { "a" } else { "b" };
        store
            .create(NewWorkflow::new(kind, "input").id(&format!("w{i}")))
            .await
            .unwrap();
    }
    let mut leases = Vec::new();
    for id in ["w0", "w1", "w2"] {
        let Claim::Claimed(l) = store.claim(id).await.unwrap() else {
            panic!()
        };
        leases.push(l);
    }
    leases[0].checkpoint(1, "one").await.unwrap();
    leases.pop().unwrap().complete("done").await.unwrap();
    store.cancel("w3").await.unwrap();
    leases
}

async fn dump(pool: &Pool, store: &WorkflowStore) -> Vec<Option<Vec<u8>>> {
    let mut out = Vec::new();
    for k in store.keys() {
        out.push(pool.query(redis::cmd("DUMP").arg(k)).await.unwrap());
    }
    out
}

/// `Ok`, or an error naming `bad` (a key of the wrong type or holding bad data).
fn names(r: &Result<(), WorkflowError>, bad: &Key, what: &str) -> bool {
    match r {
        Ok(()) => false,
        Err(WorkflowError::Core(Error::WrongType { key, .. } | Error::Corrupt { key, .. })) => {
            assert_eq!(key, bad.as_str(), "{what}: {r:?}");
            true
        }
        Err(e) => panic!("{what}: an unexpected error {e:?}"),
    }
}

/// Runs every operation; each works or fails naming `bad`, and a failed one writes nothing.
/// With `bad` None every operation must work.
async fn operate(pool: &Pool, store: &WorkflowStore, leases: &mut [Lease], bad: Option<&Key>) {
    let ok = |r: Result<(), WorkflowError>, what: &str| -> Result<(), WorkflowError> {
        if bad.is_none() {
            assert!(r.is_ok(), "{what} after the repair: {r:?}");
        }
        r
    };
    macro_rules! step {
        ($what:expr, $e:expr) => {{
            let before = dump(pool, store).await;
            let r = ok($e.await.map(|_| ()), $what);
            if let Some(bad) = bad {
                if names(&r, bad, $what) {
                    let after = dump(pool, store).await;
                    let changed: Vec<&str> = (0..after.len())
                        .filter(|&i| after[i] != before[i])
                        .map(|i| store.keys()[i].as_str())
                        .collect();
                    assert!(
                        changed.is_empty(),
                        "{} wrote {changed:?} before failing",
                        $what
                    );
                }
            }
        }};
    }
    step!("create", store.create(NewWorkflow::new("a", "x").id("new")));
    step!("claim", store.claim("w4"));
    step!("claim_next", store.claim_next(2));
    step!("resume_orphans", store.resume_orphans(5));
    let [l0, l1] = leases else { panic!() };
    step!("checkpoint", l0.checkpoint(l0.next_step() + 1, "more"));
    step!("extend", l0.extend());
    step!("complete", l1.complete("r"));
    step!("cancel", store.cancel("w5"));
    for id in ["w0", "w1", "w2", "w3", "w4", "w5"] {
        step!("get", store.get(id));
    }
    for listing in [
        Listing::Active,
        Listing::Status(Status::Completed),
        Listing::Type("a".into()),
    ] {
        step!("list", store.list(&listing, None, 10));
    }
    step!("restore", store.restore());
    step!("stats", store.stats(Duration::from_secs(60)));
}

async fn hset(pool: &Pool, key: &Key, field: &str, value: &[u8]) {
    let _: () = pool
        .query(redis::cmd("HSET").arg(key).arg(field).arg(value))
        .await
        .unwrap();
}

async fn hget(pool: &Pool, key: &Key, field: &str) -> Option<Vec<u8>> {
    pool.query(redis::cmd("HGET").arg(key).arg(field))
        .await
        .unwrap()
}

/// Applies `c`, runs everything, repairs, runs everything again.
async fn case(pool: &Pool, store: &WorkflowStore, c: &Corruption) {
    let mut leases = setup(store).await;
    let keys = store.keys().to_vec();
    let records = &keys[0];
    // What to put back, and the key at fault.
    let (bad, repair): (Key, Box<dyn Fn() -> _>) = match c {
        Corruption::KeyType(i, t) => {
            let saved: Option<Vec<u8>> =
                pool.query(redis::cmd("DUMP").arg(&keys[*i])).await.unwrap();
            overwrite_with_type(pool, &keys[*i], t).await;
            let key = keys[*i].clone();
            (
                keys[*i].clone(),
                Box::new(move || {
                    let mut cmd = redis::cmd("DEL");
                    cmd.arg(&key);
                    let mut restore = None;
                    if let Some(s) = &saved {
                        let mut r = redis::cmd("RESTORE");
                        r.arg(&key).arg(0).arg(s.as_slice()).arg("REPLACE");
                        restore = Some(r);
                    }
                    (cmd, restore)
                }),
            )
        }
        Corruption::Header(w, _) | Corruption::Field(w, _, _) => {
            let id = format!("w{w}");
            let original = hget(pool, records, &id).await.unwrap();
            let bad_header = match c {
                Corruption::Header(_, g) => g.apply(&original),
                Corruption::Field(_, f, b) => {
                    let (at, len) = FIELDS[*f];
                    let mut h = original.clone();
                    for i in 0..len {
                        h[at + i] = b[i % b.len()];
                    }
                    h
                }
                _ => unreachable!(),
            };
            hset(pool, records, &id, &bad_header).await;
            (
                records.clone(),
                repair_field(records, &id, bad_header, original),
            )
        }
        Corruption::Checkpoint(g) => {
            let original = hget(pool, records, "w0 c1").await.unwrap();
            let bad = g.apply(&original);
            hset(pool, records, "w0 c1", &bad).await;
            (
                records.clone(),
                repair_field(records, "w0 c1", bad, original),
            )
        }
        Corruption::Stray(i, m) => {
            let _: () = pool
                .query(redis::cmd("ZADD").arg(&keys[*i]).arg(0).arg(m))
                .await
                .unwrap();
            // Skipped by reads and cleaned by the writes that meet it; the repair removes it
            // where no write met it (a listing writes nothing).
            let (key, m) = (keys[*i].clone(), m.clone());
            (
                keys[*i].clone(),
                Box::new(move || {
                    let mut cmd = redis::cmd("ZREM");
                    cmd.arg(&key).arg(&m);
                    (cmd, None)
                }),
            )
        }
    };
    operate(pool, store, &mut leases, Some(&bad)).await;
    let (first, second) = repair();
    let _: () = pool.query(&first).await.unwrap();
    if let Some(second) = second {
        let _: () = pool.query(&second).await.unwrap();
    }
    let mut leases = setup_again(store).await;
    operate(pool, store, &mut leases, None).await;
    common::assert_consistent(pool, store).await;
}

/// Puts `original` back in `field` of `key` when the field still holds `bad` (an operation
/// may have rewritten it, when the bad bytes still decoded, or deleted it, evicted or swept:
/// then it stays as it is).
fn repair_field(
    key: &Key,
    field: &str,
    bad: Vec<u8>,
    original: Vec<u8>,
) -> Box<dyn Fn() -> (redis::Cmd, Option<redis::Cmd>)> {
    let (key, field) = (key.clone(), field.to_owned());
    Box::new(move || {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(
            "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then \
             redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end",
        )
        .arg(1)
        .arg(&key)
        .arg(&field)
        .arg(bad.as_slice())
        .arg(original.as_slice());
        (cmd, None)
    })
}

/// Two fresh running workflows after the repair (the first ones' leases may be gone).
async fn setup_again(store: &WorkflowStore) -> Vec<Lease> {
    let mut leases = Vec::new();
    for id in ["again-0", "again-1"] {
        store
            .create(NewWorkflow::new("a", "input").id(id))
            .await
            .unwrap();
        let Claim::Claimed(l) = store.claim(id).await.unwrap() else {
            panic!()
        };
        leases.push(l);
    }
    leases
}

fn store(pool: &Pool, redis: &TestRedis, clock: &ManualClock) -> WorkflowStore {
    WorkflowStore::builder(pool, &redis.keyspace(), "corrupt")
        .clock(Clock::Manual(clock.clone()))
        .keep_finished(2)
        .build()
        .unwrap()
}

redis_test! {
    async fn every_key_of_the_wrong_type_is_named_and_nothing_is_written(redis) {
        let pool = redis.pool().await;
        let clock = ManualClock::new(1_000_000);
        for (i, kind) in KINDS.iter().enumerate() {
            for t in coordkit_testkit::garbage::TYPES {
                if t == kind.type_name() {
                    continue;
                }
                case(&pool, &store(&pool, &redis, &clock), &Corruption::KeyType(i, t)).await;
            }
        }
    }
}

redis_test! {
    async fn bad_records_fail_alone_and_batches_skip_them(redis) {
        let pool = redis.pool().await;
        let clock = ManualClock::new(1_000_000);
        let s = store(&pool, &redis, &clock);
        let _leases = setup(&s).await;
        hset(&pool, &s.keys()[0], "w4", b"garbage").await;
        hset(&pool, &s.keys()[0], "w1", b"").await;
        let e = s.claim("w4").await.unwrap_err().to_string();
        assert!(e.contains("records") && e.contains("w4"), "{e}");
        // The oldest pending is w4 (bad): skipped and named; w5 is claimed.
        let c = s.claim_next(5).await.unwrap();
        assert_eq!(c.skipped, ["w4"]);
        assert_eq!(c.leases.iter().map(|l| l.id()).collect::<Vec<_>>(), ["w5"]);
        let page = s.list(&Listing::Active, None, 10).await.unwrap();
        assert_eq!(page.skipped, ["w1", "w4"]);
        assert_eq!(page.items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["w0", "w5"]);
        let r = s.restore().await.unwrap();
        assert_eq!(r.skipped, ["w1", "w4"]);
        // Deleting the bad record's header lets everything work again.
        let _: () = pool.query(redis::cmd("HDEL").arg(&s.keys()[0]).arg("w4").arg("w1")).await.unwrap();
        assert!(matches!(s.claim("w4").await.unwrap(), Claim::NotFound));
        assert!(s.claim_next(5).await.unwrap().skipped.is_empty());
    }
}

fn generated(topology: Topology, cases: u32) {
    let rt = coordkit_testkit::blocking_runtime();
    let redis = TestRedis::start(topology);
    let pool = rt.block_on(redis.pool());
    let clock = ManualClock::new(1_000_000);
    proptest!(ProptestConfig::with_cases(cases), |(c in corruption())| {
        rt.block_on(case(&pool, &store(&pool, &redis, &clock), &c));
    });
}

#[test]
fn generated_corruptions_standalone() {
    generated(Topology::Standalone, 64);
}

#[test]
fn generated_corruptions_cluster() {
    generated(Topology::Cluster, 24);
}
