//! The Lua against the pure-Rust model: random sends (messages and requests, with and without
//! an expiry of their own or a live receiver required), replies with deadlines, receives of
//! either lane (with and without recovery), acks and dead letters, takes of replies, presence
//! beats and leaves, and time advancing on a manual clock (by exactly the TTL, the visibility
//! timeout or the age cap too, where the boundaries are) must give the same answers and leave
//! the same stored state, on a standalone server and a cluster; for an agent's inbox and for a
//! capability's, whose presence is its members. The caps are small so that the count cap, the
//! age cap, expiry and redelivery all happen.

use std::collections::BTreeMap;
use std::time::Duration;

use coordkit_core::{Clock, Key, ManualClock, Pool, redis};
use coordkit_mesh::model::{InboxModel, Record, Send};
use coordkit_mesh::{InboxStats, MeshAgent, RawSent};
use coordkit_testkit::{TestRedis, Topology};
use proptest::prelude::*;

const MAX_WAITING: u64 = 3;
const MAX_AGE_MS: u64 = 5_000;
const VISIBILITY_MS: u64 = 1_000;
const TTL_MS: u64 = 3_000;

#[derive(Debug, Clone)]
enum Op {
    Send {
        lane: u8,
        expiry: u64,
        require_alive: bool,
        body: u8,
    },
    Reply {
        corr: u8,
        deadline: i64,
        body: u8,
    },
    Receive {
        lane: u8,
        max: u64,
        recover: bool,
    },
    Ack(Vec<(usize, bool)>),
    Take(u8),
    /// Forgets the stored replies of these correlation ids (they came by push).
    Forget(Vec<u8>),
    /// A heartbeat (or a leave) of bob, or in a capability of member `1` (bob or carol).
    /// The third: as a server's (its visibility recorded: requests are pushed to it).
    Alive(bool, bool, bool),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..2, prop::sample::select(vec![0u64, 500, 3_000]), any::<bool>(), any::<u8>())
            .prop_map(|(lane, expiry, require_alive, body)| Op::Send { lane, expiry, require_alive, body }),
        2 => (0u8..4, prop::sample::select(vec![-100i64, 0, 1, 300, 3_000]), any::<u8>())
            .prop_map(|(corr, deadline, body)| Op::Reply { corr, deadline, body }),
        5 => (0u8..2, 1u64..4, prop::bool::weighted(0.15))
            .prop_map(|(lane, max, recover)| Op::Receive { lane, max, recover }),
        3 => prop::collection::vec((0usize..16, prop::bool::weighted(0.2)), 1..4).prop_map(Op::Ack),
        2 => (0u8..4).prop_map(Op::Take),
        1 => prop::collection::vec(0u8..5, 0..3).prop_map(Op::Forget),
        1 => (any::<bool>(), any::<bool>(), any::<bool>())
            .prop_map(|(on, who, serving)| Op::Alive(on, who, serving)),
        4 => prop_oneof![
            1u64..300,
            300u64..2_000,
            // Exactly the TTL, the visibility timeout, the age cap: the boundaries.
            Just(TTL_MS),
            Just(VISIBILITY_MS),
            Just(MAX_AGE_MS),
        ]
        .prop_map(Op::Advance),
    ]
}

/// What the inbox's keys hold, in the model's terms.
async fn dump(pool: &Pool, keys: &[Key], capability: bool) -> InboxModel {
    let hgetall = |key: &Key| {
        let mut c = redis::cmd("HGETALL");
        c.arg(key);
        c
    };
    let zrange = |key: &Key| {
        let mut c = redis::cmd("ZRANGE");
        c.arg(key).arg(0).arg(-1).arg("WITHSCORES");
        c
    };
    let lrange = |key: &Key| {
        let mut c = redis::cmd("LRANGE");
        c.arg(key).arg(0).arg(-1);
        c
    };
    let msgs: BTreeMap<u64, Vec<u8>> = pool.query(&hgetall(&keys[0])).await.unwrap();
    let replies: BTreeMap<String, Vec<u8>> = pool.query(&hgetall(&keys[5])).await.unwrap();
    let meta: BTreeMap<String, u64> = pool.query(&hgetall(&keys[7])).await.unwrap();
    let (alive, members): (Option<u64>, BTreeMap<String, u64>) = if capability {
        (None, pool.query(&zrange(&keys[8])).await.unwrap())
    } else {
        let alive = pool.query(redis::cmd("GET").arg(&keys[8])).await.unwrap();
        (alive, BTreeMap::new())
    };
    let dead: Vec<Vec<u8>> = pool.query(&lrange(&keys[9])).await.unwrap();
    let m = |name: &str| meta.get(name).copied().unwrap_or(0);
    let visibility = meta
        .iter()
        .filter_map(|(field, v)| {
            let receiver = field.strip_prefix("visibility")?;
            Some((
                receiver.strip_prefix(':').unwrap_or(receiver).to_owned(),
                *v,
            ))
        })
        .collect();
    InboxModel {
        max_waiting: MAX_WAITING,
        max_age_ms: MAX_AGE_MS,
        msgs: msgs
            .into_iter()
            .map(|(id, r)| (id, Record::decode(&r).unwrap()))
            .collect(),
        ready: pool
            .query::<Vec<u64>>(&lrange(&keys[1]))
            .await
            .unwrap()
            .into(),
        asks: pool
            .query::<Vec<u64>>(&lrange(&keys[2]))
            .await
            .unwrap()
            .into(),
        pending: pool.query(&zrange(&keys[3])).await.unwrap(),
        tries: pool.query(&hgetall(&keys[4])).await.unwrap(),
        replies: replies
            .into_iter()
            .map(|(c, r)| (c, Record::decode(&r).unwrap()))
            .collect(),
        reply_exp: pool.query(&zrange(&keys[6])).await.unwrap(),
        seq: m("seq"),
        meta: InboxStats {
            sent: m("sent"),
            delivered: m("delivered"),
            acked: m("acked"),
            expired: m("expired"),
            trimmed: m("trimmed"),
            late: m("late"),
            dead: m("dead"),
            ..InboxStats::default()
        },
        capability,
        alive,
        members,
        visibility,
        dead: dead
            .into_iter()
            .map(|d| {
                let len = usize::from(u16::from_le_bytes([d[0], d[1]]));
                (
                    String::from_utf8(d[2..2 + len].to_vec()).unwrap(),
                    d[2 + len..].to_vec(),
                )
            })
            .collect(),
    }
}

/// The suffixes of an inbox's keys, in the script's order.
const SUFFIXES: [&str; 10] = [
    "msgs",
    "ready",
    "asks",
    "pending",
    "tries",
    "replies",
    "reply_exp",
    "meta",
    "alive",
    "dead",
];

/// Runs `ops` on bob's inbox, or with `capability` on the inbox of the capability `work`
/// whose members are bob and carol (replies go there too; takes are left out).
async fn run(redis: &TestRedis, ops: Vec<Op>, capability: bool) {
    let pool = redis.pool().await;
    let ks = redis.keyspace();
    let clock = ManualClock::new(1_000_000);
    let agent = |name: &str| {
        MeshAgent::builder(&pool, &ks, name)
            .clock(Clock::Manual(clock.clone()))
            .max_messages(MAX_WAITING)
            .max_age(Duration::from_millis(MAX_AGE_MS))
            .visibility_timeout(Duration::from_millis(VISIBILITY_MS))
            .build()
            .unwrap()
    };
    let (alice, bob, carol) = (agent("alice"), agent("bob"), agent("carol"));
    let (target, cap) = if capability {
        ("work", Some("work"))
    } else {
        ("bob", None)
    };
    let keys: Vec<Key> = if capability {
        let instance = ks.instance("cap", "work").unwrap();
        SUFFIXES.iter().map(|s| instance.key(s)).collect()
    } else {
        bob.keys().to_vec()
    };
    let mut model = if capability {
        InboxModel::capability(MAX_WAITING, MAX_AGE_MS)
    } else {
        InboxModel::new(MAX_WAITING, MAX_AGE_MS)
    };
    let mut delivered: Vec<String> = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        let now = clock.now_ms();
        match &op {
            Op::Send {
                lane,
                expiry,
                require_alive,
                body,
            } => {
                let s = Send {
                    lane: *lane,
                    expiry_ms: *expiry,
                    deadline_ms: 0,
                    require_alive: *require_alive,
                    // What the agent's send asks for: a request to a live server is pushed.
                    push: *lane == 1 && *require_alive,
                    corr: String::new(),
                    body: vec![*body; usize::from(*body % 5)],
                };
                let got = alice
                    .testing_send(target, capability, s.outgoing(), s.body.clone())
                    .await
                    .unwrap();
                assert_eq!(got, model.send(now, &s), "step {step}: {op:?}");
                // A pushed request is delivered by its send.
                if let RawSent::Sent { id, .. } = &got
                    && model.pending.contains_key(id)
                {
                    delivered.push(id.to_string());
                }
            }
            Op::Reply {
                corr,
                deadline,
                body,
            } => {
                let corr = format!("c{corr}");
                let deadline = now.saturating_add_signed(*deadline).max(1);
                let s = Send::reply(&corr, vec![*body], deadline);
                let got = alice
                    .testing_send(target, capability, s.outgoing(), s.body.clone())
                    .await
                    .unwrap();
                assert_eq!(got, model.send(now, &s), "step {step}: {op:?}");
            }
            Op::Receive { lane, max, recover } => {
                // A capability's receive never takes back the other members' deliveries.
                let recover = *recover && !capability;
                let got = bob
                    .testing_receive(cap, *lane, *max as usize, recover)
                    .await
                    .unwrap();
                let expected = model.receive(now, *lane, *max, VISIBILITY_MS, recover);
                assert_eq!(got, expected, "step {step}: {op:?}");
                delivered.extend(got.deliveries.iter().map(|d| d.id.clone()));
            }
            Op::Ack(picks) => {
                if delivered.is_empty() {
                    continue;
                }
                let ids: Vec<&str> = picks
                    .iter()
                    .map(|(i, _)| delivered[i % delivered.len()].as_str())
                    .collect();
                let reasons: Vec<&str> = picks
                    .iter()
                    .map(|(_, dead)| if *dead { "bad" } else { "" })
                    .collect();
                let got = bob.testing_ack(cap, &ids, &reasons).await.unwrap();
                assert_eq!(got, model.ack(&ids, &reasons), "step {step}: {op:?}");
            }
            Op::Take(corr) => {
                if capability {
                    continue;
                }
                let corr = format!("c{corr}");
                let got = bob.testing_take(&corr).await.unwrap();
                assert_eq!(got, model.take(now, &corr), "step {step}: {op:?}");
            }
            Op::Forget(picks) => {
                if capability {
                    continue;
                }
                let corrs: Vec<String> = picks.iter().map(|c| format!("c{c}")).collect();
                let refs: Vec<&str> = corrs.iter().map(String::as_str).collect();
                let got = bob.testing_forget(&corrs).await.unwrap();
                assert_eq!(got, model.forget(&refs), "step {step}: {op:?}");
            }
            Op::Alive(on, who, serving) => {
                let ttl = if *on { TTL_MS } else { 0 };
                let member = if *who && capability { &carol } else { &bob };
                let got = member.testing_alive(cap, ttl, *serving).await.unwrap();
                let visibility = if *serving { VISIBILITY_MS } else { 0 };
                let expected = if capability {
                    model.join(now, member.name(), ttl, visibility)
                } else {
                    model.alive(now, ttl, visibility)
                };
                assert_eq!(got, expected, "step {step}: {op:?}");
            }
            Op::Advance(ms) => clock.advance(Duration::from_millis(*ms)),
        }
        assert_eq!(
            dump(&pool, &keys, capability).await,
            model,
            "state after step {step}: {op:?}"
        );
    }
}

fn check(topology: Topology, cases: u32, capability: bool) {
    let rt = coordkit_testkit::blocking_runtime();
    let redis = TestRedis::start(topology);
    let config = ProptestConfig {
        cases,
        ..ProptestConfig::default()
    };
    proptest!(config, |(ops in prop::collection::vec(op(), 1..40))| {
        rt.block_on(run(&redis, ops, capability));
    });
}

#[test]
fn the_lua_matches_the_model_standalone() {
    check(Topology::Standalone, 96, false);
}

#[test]
fn a_capabilitys_inbox_matches_the_model_standalone() {
    check(Topology::Standalone, 64, true);
}

#[test]
fn the_lua_matches_the_model_on_a_cluster() {
    check(Topology::Cluster, 32, false);
}

#[test]
fn a_capabilitys_inbox_matches_the_model_on_a_cluster() {
    check(Topology::Cluster, 24, true);
}
