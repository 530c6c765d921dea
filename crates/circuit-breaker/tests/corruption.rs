//! Bad stored data (issue #15). For each key of a breaker (the state hash and the probe leases;
//! the registry keeps nothing in Redis) and each field of the state hash: a wrong type, random
//! bytes, truncated values, huge numbers. Then every operation: no panic, an error naming the
//! key (and the field), nothing written by a failed call, other breakers unaffected, and once
//! the key is repaired (RESTORE) or deleted everything works again.

use std::time::Duration;

use coordkit_circuit_breaker::{
    BreakerConfig, CircuitBreaker, Forced, OpenDuration, Outcome, PermitKind, RecordStatus,
    Snapshot, State, Window,
};
use coordkit_core::{Clock, Error, Key, KeyKind, Keyspace, ManualClock, Pool};
use coordkit_testkit::garbage::{Garbage, TYPES, garbage, overwrite_with_type, wrong_type};
use coordkit_testkit::{TestRedis, Topology, redis_test};
use proptest::prelude::*;

/// The largest number the script accepts from storage: 2^48 - 1.
const MAXI: f64 = 281_474_976_710_655.0;

fn config(time: bool, clock: &ManualClock) -> BreakerConfig {
    BreakerConfig::builder()
        .window(if time {
            Window::Time {
                length: Duration::from_secs(4),
                buckets: 4,
            }
        } else {
            Window::Count(4)
        })
        .minimum_calls(2)
        .failure_rate(0.5)
        .open_duration(OpenDuration::Fixed(Duration::from_secs(10)))
        .half_open_permits(2)
        .half_open_successes(2)
        .permit_lease(Duration::from_secs(5))
        .half_open_max_wait(None)
        .clock(Clock::Manual(clock.clone()))
        .build()
        .unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    Closed,
    Open,
    HalfOpen,
}

/// What is done to the breaker's keys.
#[derive(Debug, Clone)]
enum Target {
    /// The state hash becomes another type.
    StateType(&'static str),
    /// The probe leases become another type.
    ProbesType(&'static str),
    /// A probe lease with this deadline.
    ProbeDeadline(f64),
    /// The state hash field with this index (in HKEYS order) gets bad bytes.
    Field(usize, Bad),
}

/// Bad bytes for a field: a garbage shape, or one number of it replaced.
#[derive(Debug, Clone)]
enum Bad {
    Shape(Garbage),
    Number(usize, f64),
}

impl Bad {
    fn apply(&self, field: &str, original: &[u8]) -> Vec<u8> {
        match self {
            Bad::Shape(g) => g.apply(original),
            Bad::Number(i, x) if field.starts_with('b') => {
                let text = if x.is_finite() && *x >= 0.0 && x.fract() == 0.0 {
                    format!("{}", *x as u128)
                } else {
                    format!("{x}")
                };
                let mut parts: Vec<String> = String::from_utf8_lossy(original)
                    .split(':')
                    .map(str::to_owned)
                    .collect();
                let at = i % parts.len();
                parts[at] = text;
                parts.join(":").into_bytes()
            }
            Bad::Number(i, x) if !original.is_empty() && original.len().is_multiple_of(8) => {
                let mut bytes = original.to_vec();
                let at = (i % (original.len() / 8)) * 8;
                bytes[at..at + 8].copy_from_slice(&x.to_be_bytes());
                bytes
            }
            Bad::Number(i, _) => Garbage::Flipped(*i).apply(original),
        }
    }
}

/// Whether the script must refuse `bytes` in `field` whatever else is stored (a value it may
/// accept, or refuse only with some contents of other fields, is checked less strictly).
fn surely_invalid(field: &str, bytes: &[u8]) -> bool {
    let bad_number = |x: f64| !((0.0..=MAXI).contains(&x) && x.fract() == 0.0);
    let doubles = |len: usize| {
        bytes.len() != len
            || bytes
                .chunks(8)
                .any(|c| bad_number(f64::from_be_bytes(c.try_into().unwrap())))
    };
    match field {
        "s" => doubles(56) || f64::from_be_bytes(bytes[..8].try_into().unwrap()) > 5.0,
        "c" => doubles(40),
        f if f.starts_with('b') => {
            let parts: Vec<&[u8]> = bytes.split(|b| *b == b':').collect();
            if parts.len() != 4
                || parts
                    .iter()
                    .any(|p| p.is_empty() || !p.iter().all(u8::is_ascii_digit))
            {
                return true;
            }
            let n: Vec<f64> = parts
                .iter()
                .map(|p| std::str::from_utf8(p).unwrap().parse().unwrap())
                .collect();
            n.iter().any(|x| *x > MAXI) || n[2] > n[1] || n[3] > n[1]
        }
        // A ring is read one byte at a time (tests below), or is of another window size.
        _ => false,
    }
}

struct Subject {
    breaker: CircuitBreaker,
    state: Key,
    probes: Key,
    epoch: u64,
    probe: Option<String>,
}

async fn subject(pool: &Pool, ks: &Keyspace, name: &str, time: bool, setup: Setup) -> Subject {
    let clock = ManualClock::new(1_700_000_000_000);
    let breaker = CircuitBreaker::builder(pool, ks, name)
        .config(config(time, &clock))
        .build()
        .unwrap();
    breaker.clear().await.unwrap();
    let mut outcomes = vec![Outcome::Success, Outcome::Success];
    if setup != Setup::Closed {
        outcomes.extend([Outcome::Failure, Outcome::Failure]);
    }
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let id = format!("setup-{i}");
        let a = breaker.raw_acquire(&id).await.unwrap();
        breaker
            .raw_record(&id, a.epoch, PermitKind::Normal, outcome, 1)
            .await
            .unwrap();
    }
    let mut probe = None;
    if setup == Setup::HalfOpen {
        clock.advance(Duration::from_secs(10));
        let a = breaker.raw_acquire("probe").await.unwrap();
        assert_eq!(a.kind, Some(PermitKind::Probe));
        probe = Some("probe".to_owned());
    }
    let snapshot = breaker.snapshot().await.unwrap();
    let expected = match setup {
        Setup::Closed => State::Closed,
        Setup::Open => State::Open,
        Setup::HalfOpen => State::HalfOpen,
    };
    assert_eq!(snapshot.state, expected);
    Subject {
        state: breaker.state_key().clone(),
        probes: breaker.probes_key().clone(),
        epoch: snapshot.epoch,
        breaker,
        probe,
    }
}

async fn dump(pool: &Pool, key: &Key) -> Option<Vec<u8>> {
    pool.query(redis::cmd("DUMP").arg(key)).await.unwrap()
}

async fn hget(pool: &Pool, key: &Key, field: &str) -> Option<Vec<u8>> {
    pool.query(redis::cmd("HGET").arg(key).arg(field))
        .await
        .unwrap()
}

const OPS: [&str; 8] = [
    "acquire",
    "record",
    "record probe",
    "snapshot",
    "force metrics_only",
    "clear",
    "force open",
    "clear again",
];

/// Runs every operation once; a failed one must have written nothing. Answers each one's
/// error, if any.
async fn run_ops(pool: &Pool, s: &Subject) -> Vec<(&'static str, Option<Error>)> {
    let b = &s.breaker;
    let mut out = Vec::new();
    for op in OPS {
        let before = (dump(pool, &s.state).await, dump(pool, &s.probes).await);
        let result = match op {
            "acquire" => b.raw_acquire("op-acquire").await.map(drop),
            "record" => b
                .raw_record(
                    "op-record",
                    s.epoch,
                    PermitKind::Normal,
                    Outcome::Failure,
                    1,
                )
                .await
                .map(drop),
            "record probe" => match &s.probe {
                Some(id) => b
                    .raw_record(id, s.epoch, PermitKind::Probe, Outcome::Success, 1)
                    .await
                    .map(drop),
                None => continue,
            },
            "snapshot" => b.snapshot().await.map(drop),
            "force metrics_only" => b.force(Forced::MetricsOnly).await.map(drop),
            "force open" => b.force(Forced::Open).await.map(drop),
            _ => b.clear().await.map(drop),
        };
        if let Err(e) = &result {
            let after = (dump(pool, &s.state).await, dump(pool, &s.probes).await);
            assert!(before == after, "{op} failed ({e}) but wrote");
        }
        out.push((op, result.err()));
    }
    out
}

/// The key an error names, and its detail (`WRONGTYPE <found>` for a key of another type).
fn named(op: &str, e: &Error) -> (String, String) {
    match e {
        Error::Corrupt { key, detail } => (key.clone(), detail.clone()),
        Error::WrongType { key, found } => (key.clone(), format!("WRONGTYPE {found}")),
        other => panic!("{op}: not an error naming a key: {other:?}"),
    }
}

/// Every op (but those in `except`) failed naming `key`, with a detail starting with `detail`.
#[track_caller]
fn all_fail(results: &[(&str, Option<Error>)], except: &[&str], key: &Key, detail: &str) {
    for (op, e) in results.iter().filter(|(op, _)| !except.contains(op)) {
        let e = e
            .as_ref()
            .unwrap_or_else(|| panic!("{op} worked on a broken {key} ({detail})"));
        let (k, d) = named(op, e);
        assert_eq!(k, key.as_str(), "{op}: {d}");
        assert!(d.starts_with(detail), "{op}: {d:?} is not about {detail:?}");
    }
}

/// Whether the run was strict (every expectation of a refused value applied).
async fn case(
    pool: &Pool,
    ks: &Keyspace,
    name: &str,
    time: bool,
    setup: Setup,
    target: &Target,
) -> bool {
    let s = subject(pool, ks, name, time, setup).await;
    let sibling = subject(pool, ks, &format!("{name}-sibling"), time, Setup::Closed).await;
    let sibling_before = sibling.breaker.snapshot().await.unwrap();
    let original = (dump(pool, &s.state).await, dump(pool, &s.probes).await);
    let snapshot_before: Snapshot = s.breaker.snapshot().await.unwrap();

    let mut strict = true;
    let mut kept: Option<(String, Vec<u8>)> = None;
    match target {
        Target::StateType(t) => overwrite_with_type(pool, &s.state, t).await,
        Target::ProbesType(t) => overwrite_with_type(pool, &s.probes, t).await,
        Target::ProbeDeadline(d) => {
            let _: () = pool
                .query(redis::cmd("ZADD").arg(&s.probes).arg(*d).arg("garbage"))
                .await
                .unwrap();
            strict = *d > MAXI;
        }
        Target::Field(i, bad) => {
            let mut fields: Vec<String> =
                pool.query(redis::cmd("HKEYS").arg(&s.state)).await.unwrap();
            // (`g`, the rules as last written, is no input of the script: it only overwrites
            // it; tests/stored_rules.rs covers its garbage.)
            fields.retain(|f| f != "g");
            fields.sort();
            let field = fields[i % fields.len()].clone();
            let value = hget(pool, &s.state, &field).await.unwrap();
            let bytes = bad.apply(&field, &value);
            let _: () = pool
                .query(redis::cmd("HSET").arg(&s.state).arg(&field).arg(&bytes))
                .await
                .unwrap();
            strict = surely_invalid(&field, &bytes);
            kept = Some((field, bytes));
        }
    }

    let results = run_ops(pool, &s).await;
    // (`named` panics on any error that does not name a key.)
    for (op, e) in &results {
        if let Some(e) = e {
            let (key, _) = named(op, e);
            assert!(
                key == s.state.as_str() || key == s.probes.as_str(),
                "{op} named {key}"
            );
        }
    }
    let none_worked = results.iter().all(|(_, e)| e.is_some());
    match target {
        Target::StateType(t) => all_fail(&results, &[], &s.state, &format!("WRONGTYPE {t}")),
        Target::ProbesType(t) if setup != Setup::Closed => {
            all_fail(&results, &[], &s.probes, &format!("WRONGTYPE {t}"))
        }
        // Closed: nothing reads or writes the probe leases.
        Target::ProbesType(t) => {
            assert!(results.iter().all(|(_, e)| e.is_none()), "{results:?}");
            let found: String = pool.query(redis::cmd("TYPE").arg(&s.probes)).await.unwrap();
            assert_eq!(found, *t);
        }
        Target::ProbeDeadline(_) if strict && setup != Setup::Closed => all_fail(
            &results,
            &[],
            &s.probes,
            "probe \"garbage\": lease deadline",
        ),
        Target::Field(..) if strict => {
            let (field, bytes) = kept.as_ref().unwrap();
            let about = format!("field {field}");
            // Closed, the hot paths read only what they use (an acquire: the state and the
            // epoch; a record in a count window: s and r), and write only those when sound.
            let hot: &[&str] = if setup == Setup::Closed {
                &["acquire", "record"]
            } else {
                &[]
            };
            all_fail(&results, hot, &s.state, &about);
            let now = hget(pool, &s.state, field).await;
            assert_eq!(now.as_ref(), Some(bytes), "{field} was written over");
        }
        _ => {}
    }

    // Other breakers never noticed.
    assert_eq!(sibling.breaker.snapshot().await.unwrap(), sibling_before);
    assert!(
        sibling
            .breaker
            .raw_acquire("sibling")
            .await
            .unwrap()
            .admitted
    );

    // Repaired (nothing was written, so the old value is all it takes): as before.
    if none_worked {
        restore(pool, &s.state, original.0).await;
        restore(pool, &s.probes, original.1).await;
        assert_eq!(s.breaker.snapshot().await.unwrap(), snapshot_before);
    }
    // Deleted: a fresh, working breaker.
    let _: () = pool
        .query(redis::cmd("DEL").arg(&s.state).arg(&s.probes))
        .await
        .unwrap();
    works_again(&s.breaker).await;
    strict
}

async fn restore(pool: &Pool, key: &Key, value: Option<Vec<u8>>) {
    let _: () = pool.query(redis::cmd("DEL").arg(key)).await.unwrap();
    if let Some(value) = value {
        let _: () = pool
            .query(redis::cmd("RESTORE").arg(key).arg(0).arg(value))
            .await
            .unwrap();
    }
}

async fn works_again(b: &CircuitBreaker) {
    let a = b.raw_acquire("again").await.unwrap();
    assert!(a.admitted && a.state == State::Closed, "{a:?}");
    let r = b
        .raw_record("again", a.epoch, PermitKind::Normal, Outcome::Success, 1)
        .await
        .unwrap();
    assert_eq!(r.status, RecordStatus::Recorded);
    assert_eq!(b.snapshot().await.unwrap().calls, 1);
    assert_eq!(b.force(Forced::Open).await.unwrap().0, State::ForcedOpen);
    assert_eq!(b.clear().await.unwrap().0, State::Closed);
}

/// Numbers the script must refuse wherever it finds them.
const BAD_NUMBERS: [f64; 7] = [
    f64::NAN,
    f64::INFINITY,
    -1.0,
    1.5,
    281_474_976_710_656.0,
    1.152_921_504_606_847e18,
    1e300,
];

/// Every shape of bad bytes, and every number of a record replaced by a bad one.
fn every_bad() -> Vec<Bad> {
    let mut bad: Vec<Bad> = [
        Garbage::Random(b"\x00\xffgarbage\n".to_vec()),
        Garbage::Truncated(3),
        Garbage::Flipped(0),
        Garbage::Flipped(13),
        Garbage::Empty,
        Garbage::Huge,
        Garbage::Negative,
        Garbage::Float,
        Garbage::Text,
    ]
    .into_iter()
    .map(Bad::Shape)
    .collect();
    bad.extend((0..7).map(|i| Bad::Number(i, BAD_NUMBERS[i])));
    bad
}

redis_test! {
    async fn every_key_and_field_of_a_breaker_with_every_kind_of_garbage(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let mut n = 0;
        let mut strict = 0;
        for time in [false, true] {
            for setup in [Setup::Closed, Setup::Open, Setup::HalfOpen] {
                let mut targets: Vec<Target> = Vec::new();
                for t in TYPES.into_iter().filter(|t| *t != "hash") {
                    targets.push(Target::StateType(t));
                }
                for t in TYPES.into_iter().filter(|t| *t != "zset") {
                    targets.push(Target::ProbesType(t));
                }
                targets.extend([Target::ProbeDeadline(f64::INFINITY), Target::ProbeDeadline(1e300)]);
                // Three fields each: s, c, and r or the one bucket the setup's calls went to.
                for field in 0..3 {
                    targets.extend(every_bad().into_iter().map(|bad| Target::Field(field, bad)));
                }
                for target in &targets {
                    n += 1;
                    if case(&pool, &ks, &format!("c{n}"), time, setup, target).await {
                        strict += 1;
                    }
                }
            }
        }
        // Most of them were refused outright (the rest are rings of another length, read as
        // a new window, and probe leases in a closed breaker, never read).
        assert!(strict > n * 3 / 4, "{strict} strict cases of {n}");
    }
}

redis_test! {
    async fn a_record_checks_the_ring_byte_it_replaces(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        // Closed after two successes: r is "SS..", the next slot is 2.
        let s = subject(&pool, &ks, "ring", false, Setup::Closed).await;
        let set_ring = |ring: &'static [u8]| {
            let pool = pool.clone();
            let key = s.state.clone();
            async move {
                let _: () = pool.query(redis::cmd("HSET").arg(&key).arg("r").arg(ring)).await.unwrap();
            }
        };
        let record = || s.breaker.raw_record("x", s.epoch, PermitKind::Normal, Outcome::Success, 1);

        // The byte leaving the window is no call.
        set_ring(b"SSX.").await;
        let e = record().await.unwrap_err();
        let (key, detail) = named("record", &e);
        assert_eq!(key, s.state.as_str());
        assert!(detail.starts_with("field r: byte 2 is 88"), "{detail}");
        assert_eq!(hget(&pool, &s.state, "r").await.unwrap(), b"SSX.");
        // The figures say no call failed, the byte leaving says one did.
        set_ring(b"SSF.").await;
        let (_, detail) = named("record", &record().await.unwrap_err());
        assert!(detail.starts_with("field s: calls 2, failures 0"), "{detail}");
        assert_eq!(hget(&pool, &s.state, "r").await.unwrap(), b"SSF.");
        // A byte not read by this record is checked when its turn comes.
        set_ring(b"SX..").await;
        assert_eq!(record().await.unwrap().status, RecordStatus::Recorded);
        assert_eq!(hget(&pool, &s.state, "r").await.unwrap(), b"SXS.");
        // A ring of another length: the window's size changed, a new window starts.
        set_ring(b"SS").await;
        assert_eq!(record().await.unwrap().status, RecordStatus::Recorded);
        let snapshot = s.breaker.snapshot().await.unwrap();
        assert_eq!((snapshot.calls, snapshot.failures), (1, 0));
        assert_eq!(hget(&pool, &s.state, "r").await.unwrap(), b"S...");
    }
}

fn setup() -> impl Strategy<Value = Setup> {
    prop_oneof![
        Just(Setup::Closed),
        Just(Setup::Open),
        Just(Setup::HalfOpen)
    ]
}

fn bad_number() -> impl Strategy<Value = f64> {
    prop_oneof![
        proptest::sample::select(BAD_NUMBERS.to_vec()),
        // Plausible numbers: the script may take them.
        (0u64..1 << 48).prop_map(|n| n as f64),
        (0u64..8).prop_map(|n| n as f64),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    let deadline = prop_oneof![
        proptest::sample::select(vec![
            f64::INFINITY,
            1e300,
            MAXI + 1.0,
            f64::NEG_INFINITY,
            -1.0
        ]),
        (1_699_999_990_000u64..1_700_000_100_000).prop_map(|n| n as f64),
    ];
    let bad = prop_oneof![
        garbage().prop_map(Bad::Shape),
        (0usize..7, bad_number()).prop_map(|(i, x)| Bad::Number(i, x)),
    ];
    prop_oneof![
        1 => wrong_type(KeyKind::Hash).prop_map(Target::StateType),
        1 => wrong_type(KeyKind::ZSet).prop_map(Target::ProbesType),
        1 => deadline.prop_map(Target::ProbeDeadline),
        4 => (0usize..3, bad).prop_map(|(field, bad)| Target::Field(field, bad)),
    ]
}

#[test]
fn generated_corruptions_are_refused_naming_the_key_and_leave_nothing_behind() {
    let rt = coordkit_testkit::blocking_runtime();
    let redis = TestRedis::start(Topology::Standalone);
    let pool = rt.block_on(redis.pool());
    let ks = redis.keyspace();
    let n = std::sync::atomic::AtomicU64::new(0);
    proptest!(ProptestConfig::with_cases(128), |(time in any::<bool>(), setup in setup(), target in target())| {
        let name = format!("p{}", n.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        rt.block_on(case(&pool, &ks, &name, time, setup, &target));
    });
}
