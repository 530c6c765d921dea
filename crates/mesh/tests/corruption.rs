//! Bad stored data in an inbox: each key replaced by a value of another type, garbage in each
//! counter of `meta`, in the presence, in a stored message, a delivery count and a reply. Every
//! operation then works or fails with an error naming the bad key; a failed call writes
//! nothing (every key's `DUMP` is unchanged); a bad record is dead-lettered alone while the
//! rest is delivered; and once the key is deleted, sends, receives, acks and asks work again.
//! The same holds for corruptions proptest generates (any key, another type or garbage in any
//! of its values).

use std::time::Duration;

use coordkit_core::{Error, Key, KeyKind, Pool, redis};
use coordkit_mesh::{AgentError, Body, MeshAgent, Reply};
use coordkit_testkit::garbage::{Garbage, garbage, overwrite_with_type, wrong_type};
use coordkit_testkit::{TestRedis, Topology, redis_test};
use proptest::prelude::*;

/// The kinds of an inbox's keys, in `MeshAgent::keys` order.
const KINDS: [KeyKind; 10] = [
    KeyKind::Hash,
    KeyKind::List,
    KeyKind::List,
    KeyKind::ZSet,
    KeyKind::Hash,
    KeyKind::Hash,
    KeyKind::ZSet,
    KeyKind::Hash,
    KeyKind::String,
    KeyKind::List,
];

const COUNTERS: [&str; 8] = [
    "seq",
    "sent",
    "delivered",
    "acked",
    "expired",
    "trimmed",
    "late",
    "dead",
];

const SHAPES: [Garbage; 6] = [
    Garbage::Huge,
    Garbage::Negative,
    Garbage::Float,
    Garbage::Text,
    Garbage::Empty,
    Garbage::Lenient(0),
];

async fn dumps(pool: &Pool, keys: &[Key]) -> Vec<Option<Vec<u8>>> {
    let mut out = Vec::new();
    for key in keys {
        out.push(pool.query(redis::cmd("DUMP").arg(key)).await.unwrap());
    }
    out
}

/// Ok, or an error naming `bad`; and when an error, nothing written.
async fn ok_or_names<T: std::fmt::Debug>(
    pool: &Pool,
    keys: &[Key],
    bad: &Key,
    what: &str,
    before: Vec<Option<Vec<u8>>>,
    result: Result<T, AgentError>,
) {
    match result {
        Ok(_) => {}
        Err(AgentError::Core(Error::WrongType { key, .. } | Error::Corrupt { key, .. })) => {
            assert_eq!(key, bad.as_str(), "{what}: the error names another key");
            assert_eq!(
                dumps(pool, keys).await,
                before,
                "{what}: a failed call wrote"
            );
        }
        Err(e) => panic!("{what}: expected an error naming {bad}, got {e}"),
    }
}

/// Runs every operation on `bob`'s inbox with its key `bad` corrupted.
async fn every_operation(pool: &Pool, alice: &MeshAgent, bob: &MeshAgent, bad: &Key) {
    let keys = bob.keys();
    let before = dumps(pool, keys).await;
    ok_or_names(pool, keys, bad, "send", before, alice.send("bob", &1).await).await;
    let before = dumps(pool, keys).await;
    ok_or_names(
        pool,
        keys,
        bad,
        "receive",
        before,
        bob.receive::<u32>(5).await,
    )
    .await;
    let before = dumps(pool, keys).await;
    ok_or_names(pool, keys, bad, "ack", before, bob.ack(&["1", "2"]).await).await;
    let before = dumps(pool, keys).await;
    ok_or_names(pool, keys, bad, "heartbeat", before, bob.heartbeat().await).await;
    let before = dumps(pool, keys).await;
    ok_or_names(pool, keys, bad, "stats", before, bob.inbox_stats().await).await;
    let before = dumps(pool, keys).await;
    let asked = alice
        .ask::<_, u32>("bob", &1, Duration::from_millis(20))
        .await;
    ok_or_names(pool, keys, bad, "ask", before, asked).await;
    let before = dumps(pool, keys).await;
    let asked = bob
        .ask::<_, u32>("alice", &1, Duration::from_millis(20))
        .await;
    ok_or_names(pool, keys, bad, "ask from", before, asked).await;
}

/// After a repair everything works: a message round trip and an ask.
async fn works_again(alice: &MeshAgent, bob: &MeshAgent) {
    bob.receive::<serde_json::Value>(100).await.unwrap().len();
    let ids: Vec<String> = {
        alice.send("bob", &42u32).await.unwrap();
        let got = bob.receive::<serde_json::Value>(100).await.unwrap();
        assert!(got.iter().any(|d| d.payload == 42), "{got:?}");
        got.iter().map(|d| d.id.clone()).collect()
    };
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    bob.ack(&ids).await.unwrap();
    let server = bob
        .serve(|n: u32| async move { Ok::<_, String>(n + 1) })
        .await
        .unwrap();
    let reply: Reply<u32> = alice.ask("bob", &1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(reply, Reply::Answer(2));
    server.shutdown().await;
}

fn agents(pool: &Pool, ks: &coordkit_core::Keyspace) -> (MeshAgent, MeshAgent) {
    let a = MeshAgent::builder(pool, ks, "alice").build().unwrap();
    let b = MeshAgent::builder(pool, ks, "bob").build().unwrap();
    (a, b)
}

/// Some state in every key: waiting messages and requests, a pending delivery, a reply.
async fn populate(alice: &MeshAgent, bob: &MeshAgent) {
    for n in 0..3u32 {
        alice.send("bob", &n).await.unwrap();
    }
    bob.receive::<u32>(1).await.unwrap();
    bob.heartbeat().await.unwrap();
    let _: Reply<u32> = alice
        .ask("bob", &9u32, Duration::from_millis(1))
        .await
        .unwrap();
    let _: Reply<u32> = bob
        .ask("alice", &9u32, Duration::from_millis(1))
        .await
        .unwrap();
}

redis_test! {
    async fn a_key_of_another_type_is_named_and_nothing_is_written(redis) {
        let pool = redis.pool().await;
        for (i, kind) in KINDS.iter().enumerate() {
            let ks = redis.keyspace();
            let (alice, bob) = agents(&pool, &ks);
            populate(&alice, &bob).await;
            let bad = bob.keys()[i].clone();
            let other = if *kind == KeyKind::List { "hash" } else { "list" };
            overwrite_with_type(&pool, &bad, other).await;
            every_operation(&pool, &alice, &bob, &bad).await;
            let _: () = pool.query(redis::cmd("DEL").arg(&bad)).await.unwrap();
            works_again(&alice, &bob).await;
        }
    }
}

redis_test! {
    async fn garbage_in_a_counter_or_the_presence_fails_the_call_naming_the_key(redis) {
        let pool = redis.pool().await;
        for (n, shape) in SHAPES.iter().enumerate() {
            let ks = redis.keyspace();
            let (alice, bob) = agents(&pool, &ks);
            populate(&alice, &bob).await;
            let bad = shape.apply(b"1");
            let field = COUNTERS[n % COUNTERS.len()];
            let meta = &bob.keys()[7];
            let _: () = pool.query(redis::cmd("HSET").arg(meta).arg(field).arg(&bad)).await.unwrap();
            if !bad.is_empty() || field == "seq" {
                let before = dumps(&pool, bob.keys()).await;
                // The call that reads the counter: each reads only those it updates.
                let call = match field {
                    "delivered" => bob.receive::<u32>(5).await.map(drop),
                    "acked" => bob.ack(&["1", "2"]).await.map(drop),
                    "late" => bob.inbox_stats().await.map(drop),
                    _ => alice.send("bob", &1).await.map(drop),
                };
                match call {
                    Err(AgentError::Core(Error::Corrupt { key, detail })) => {
                        assert_eq!(key, meta.as_str());
                        assert!(detail.contains(field), "{detail}");
                    }
                    other if bad.is_empty() => assert!(other.is_err(), "{other:?}"),
                    other => panic!("{shape:?} in {field}: expected Corrupt, got {other:?}"),
                }
                assert_eq!(dumps(&pool, bob.keys()).await, before);
            }
            every_operation(&pool, &alice, &bob, meta).await;
            let _: () = pool.query(redis::cmd("HDEL").arg(meta).arg(field)).await.unwrap();
            works_again(&alice, &bob).await;

            let alive = &bob.keys()[8];
            let _: () = pool.query(redis::cmd("SET").arg(alive).arg(&bad)).await.unwrap();
            every_operation(&pool, &alice, &bob, alive).await;
            let _: () = pool.query(redis::cmd("DEL").arg(alive)).await.unwrap();
            works_again(&alice, &bob).await;
        }
    }
}

redis_test! {
    async fn a_bad_record_is_dead_lettered_alone(redis) {
        let pool = redis.pool().await;
        for shape in [Garbage::Truncated(5), Garbage::Empty, Garbage::Random(vec![0xff; 20]), Garbage::Flipped(16)] {
            let ks = redis.keyspace();
            let (alice, bob) = agents(&pool, &ks);
            for n in 0..3u32 {
                alice.send("bob", &n).await.unwrap();
            }
            let msgs = &bob.keys()[0];
            let rec: Vec<u8> = pool.query(redis::cmd("HGET").arg(msgs).arg("2")).await.unwrap();
            let _: () = pool.query(redis::cmd("HSET").arg(msgs).arg("2").arg(shape.apply(&rec))).await.unwrap();
            let got = bob.receive::<u32>(10).await.unwrap();
            let ns: Vec<u32> = got.iter().map(|d| d.payload).collect();
            assert_eq!(ns, [0, 2], "{shape:?}: the others are delivered");
            let stats = bob.inbox_stats().await.unwrap();
            assert_eq!((stats.dead, stats.dead_letters), (1, 1), "{shape:?}");
            // A bad delivery count fails the receive that needs it, naming the key.
            let tries = &bob.keys()[4];
            let _: () = pool.query(redis::cmd("HSET").arg(tries).arg("1").arg("x")).await.unwrap();
            let _: () = pool.query(redis::cmd("ZADD").arg(&bob.keys()[3]).arg(0).arg("1")).await.unwrap();
            let before = dumps(&pool, bob.keys()).await;
            match bob.receive::<u32>(10).await {
                Err(AgentError::Core(Error::Corrupt { key, .. })) => assert_eq!(key, tries.as_str()),
                other => panic!("expected Corrupt naming tries, got {other:?}"),
            }
            assert_eq!(dumps(&pool, bob.keys()).await, before);
            let _: () = pool.query(redis::cmd("HDEL").arg(tries).arg("1")).await.unwrap();
            works_again(&alice, &bob).await;
        }
    }
}

redis_test! {
    async fn a_bad_reply_is_an_error_naming_the_replies_key(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let alice = MeshAgent::builder(&pool, &ks, "alice")
            .fallback_wake(Duration::from_millis(20))
            .build()
            .unwrap();
        let bob = MeshAgent::builder(&pool, &ks, "bob").build().unwrap();
        bob.heartbeat().await.unwrap();
        let asking = tokio::spawn({
            let alice = alice.clone();
            async move { alice.ask::<_, u32>("bob", &1, Duration::from_secs(30)).await }
        });
        // Bob takes the request by hand (it was pushed, so it is pending: taken back as on a
        // restart); another program writes garbage where its reply goes.
        let request = loop {
            let got = bob.testing_receive(None, 1, 1, true).await.unwrap();
            if let Some(d) = got.deliveries.into_iter().next() {
                break d;
            }
            tokio::task::yield_now().await;
        };
        let corr = Body::decode(&request.body).unwrap().corr;
        let replies = alice.keys()[5].clone();
        let _: () = pool.query(redis::cmd("HSET").arg(&replies).arg(&corr).arg("bad")).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(60), asking).await.unwrap().unwrap() {
            Err(AgentError::Core(Error::Corrupt { key, detail })) => {
                assert_eq!(key, replies.as_str());
                assert!(detail.contains(&corr), "{detail}");
            }
            other => panic!("expected Corrupt naming replies, got {other:?}"),
        }
        let stats = alice.inbox_stats().await.unwrap();
        assert_eq!((stats.dead, stats.replies), (1, 0), "dead-lettered, gone from replies");
        bob.ack(&[request.id.as_str()]).await.unwrap();
        works_again(&alice, &bob).await;
    }
}

/// One generated corruption of one of bob's keys: another type, or bad bytes in one value.
#[derive(Debug, Clone)]
enum Spoil {
    /// The key holds a value of this type instead.
    Type(&'static str),
    /// A field of a hash (`msgs`, `tries`, `replies`, `meta`) set to garbage of its value.
    Field(&'static str, Garbage),
    /// The first entry of a list (`ready`, `asks`, `dead`) set to garbage of it.
    Entry(Garbage),
    /// A member of a sorted set (`pending`, `reply_exp`) that names nothing, due now.
    Member(Vec<u8>),
    /// The presence set to garbage.
    Presence(Garbage),
}

/// The fields a generated corruption of hash key `k` picks from: the records and counts
/// `populate` leaves, the counters and a server's recorded visibility, and names of nothing.
fn fields(k: usize) -> Vec<&'static str> {
    match k {
        0 | 4 => vec!["1", "2", "3", "4", "garbage"],
        5 => vec!["garbage"],
        _ => COUNTERS
            .iter()
            .copied()
            .chain(["visibility", "garbage"])
            .collect(),
    }
}

fn spoil() -> impl Strategy<Value = (usize, Spoil)> {
    (
        0usize..KINDS.len(),
        any::<bool>(),
        garbage(),
        any::<proptest::sample::Index>(),
    )
        .prop_flat_map(|(k, retype, g, pick)| {
            wrong_type(KINDS[k]).prop_map(move |t| {
                let spoil = if retype {
                    Spoil::Type(t)
                } else {
                    match KINDS[k] {
                        KeyKind::Hash => Spoil::Field(pick.get::<&str>(&fields(k)), g.clone()),
                        KeyKind::List => Spoil::Entry(g.clone()),
                        KeyKind::ZSet => Spoil::Member(g.apply(b"garbage")),
                        _ => Spoil::Presence(g.clone()),
                    }
                };
                (k, spoil)
            })
        })
}

async fn apply(pool: &Pool, key: &Key, spoil: &Spoil) {
    let cmd = match spoil {
        Spoil::Type(t) => return overwrite_with_type(pool, key, t).await,
        Spoil::Field(field, g) => {
            let now: Option<Vec<u8>> = pool
                .query(redis::cmd("HGET").arg(key).arg(*field))
                .await
                .unwrap();
            redis::cmd("HSET")
                .arg(key)
                .arg(*field)
                .arg(g.apply(&now.unwrap_or_else(|| b"1".to_vec())))
                .clone()
        }
        Spoil::Entry(g) => {
            let now: Option<Vec<u8>> = pool
                .query(redis::cmd("LINDEX").arg(key).arg(0))
                .await
                .unwrap();
            match now {
                Some(now) => redis::cmd("LSET")
                    .arg(key)
                    .arg(0)
                    .arg(g.apply(&now))
                    .clone(),
                None => redis::cmd("RPUSH").arg(key).arg(g.apply(b"1")).clone(),
            }
        }
        Spoil::Member(member) => redis::cmd("ZADD")
            .arg(key)
            .arg(0)
            .arg(member.as_slice())
            .clone(),
        Spoil::Presence(g) => redis::cmd("SET")
            .arg(key)
            .arg(g.apply(b"1700000000000"))
            .clone(),
    };
    let _: () = pool.query(&cmd).await.unwrap();
}

fn generated_corruptions(topology: Topology, cases: u32) {
    let rt = coordkit_testkit::blocking_runtime();
    let redis = TestRedis::start(topology);
    let pool = rt.block_on(redis.pool());
    proptest!(ProptestConfig::with_cases(cases), |((k, spoil) in spoil())| {
        rt.block_on(async {
            let ks = redis.keyspace();
            let (alice, bob) = agents(&pool, &ks);
            populate(&alice, &bob).await;
            let bad = bob.keys()[k].clone();
            apply(&pool, &bad, &spoil).await;
            every_operation(&pool, &alice, &bob, &bad).await;
            let _: () = pool.query(redis::cmd("DEL").arg(&bad)).await.unwrap();
            works_again(&alice, &bob).await;
        });
    });
}

#[test]
fn generated_corruptions_are_named_and_repairable_standalone() {
    generated_corruptions(Topology::Standalone, 64);
}

#[test]
fn generated_corruptions_are_named_and_repairable_on_a_cluster() {
    generated_corruptions(Topology::Cluster, 24);
}
