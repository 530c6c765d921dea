//! The Lua against the pure-Rust model: random enqueue / claim / ack / fail / defer /
//! dead-letter / extend / crash (abandoned leases) / time-advance / requeue / purge sequences
//! with tasks of several priorities and retries in place on a manual clock, acks with results
//! and what a waiter reads (a result until it expires, a dead letter, gone), must give the same
//! answers and the same stored state, and the invariants
//! hold: attempts never above max, every task in exactly one state, the DLQ holds exactly the
//! exhausted, stalled and malformed tasks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coordkit_core::{Clock, ManualClock, Pool, redis};
use coordkit_retry_queue::model::{Dump, GroupsDump, QueueModel, Record, decode_errors};
use coordkit_retry_queue::{
    Backoff, Jitter, Limits, NewTask, Queue, Rate, RawSettle, Settle, TaskOptions,
};
use coordkit_testkit::{TestRedis, Topology};
use proptest::prelude::*;

/// A task: backoff kind, max attempts, jitter, delay choice, lease, idempotency key, priority
/// choice, group choice.
type TaskSpec = (u8, u32, u8, u8, u64, Option<u8>, u8, u8);

/// The groups tasks may name.
const GROUPS: [&str; 2] = ["a", "b"];

#[derive(Debug, Clone)]
enum Op {
    Enqueue(Vec<TaskSpec>),
    Claim(usize),
    Settle(Vec<(usize, u8, u32)>),
    Stale(usize),
    Extend(usize),
    /// The holder of a lease crashes: it is never settled.
    Crash(usize),
    Advance(u64),
    Requeue(bool, bool),
    Purge(bool),
    MakeDue(usize),
    /// Pause (`true`) or resume.
    Pause(bool),
    /// Limits: max leased, and (starts, window ms).
    Limits(Option<u32>, Option<(u32, u64)>),
    /// A group's limits: max leased, and (starts, window ms).
    GroupLimits(usize, Option<u32>, Option<(u32, u64)>),
    /// A hold of the component `llm-api` for this long (0 ends it).
    Hold(u64),
    Stats,
    /// What a waiter reads of one of the ids enqueued so far.
    Outcome(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let task = (
        0u8..4,                                  // backoff kind
        1u32..4,                                 // max attempts
        0u8..4,                                  // jitter
        0u8..3,                                  // delay choice
        prop_oneof![Just(300u64), Just(1_500)],  // lease
        proptest::option::weighted(0.3, 0u8..3), // idempotency key
        0u8..4,                                  // priority choice
        0u8..4,                                  // group choice
    );
    prop_oneof![
        4 => proptest::collection::vec(task, 1..4).prop_map(Op::Enqueue),
        5 => (1usize..4).prop_map(Op::Claim),
        6 => proptest::collection::vec((0usize..8, 0u8..10, 0u32..65_536), 1..4).prop_map(Op::Settle),
        1 => (0usize..8).prop_map(Op::Stale),
        1 => (0usize..8).prop_map(Op::Extend),
        1 => (0usize..8).prop_map(Op::Crash),
        4 => prop_oneof![8 => 1u64..200, 8 => 200u64..2_000, 1 => 30_000u64..90_000].prop_map(Op::Advance),
        1 => (any::<bool>(), any::<bool>()).prop_map(|(a, b)| Op::Requeue(a, b)),
        1 => any::<bool>().prop_map(Op::Purge),
        1 => (0usize..8).prop_map(Op::MakeDue),
        1 => any::<bool>().prop_map(Op::Pause),
        1 => (
            proptest::option::of(1u32..4),
            proptest::option::of((1u32..4, prop_oneof![Just(100u64), Just(1_000)])),
        )
            .prop_map(|(l, r)| Op::Limits(l, r)),
        2 => (
            0usize..2,
            proptest::option::of(1u32..3),
            proptest::option::of((1u32..3, prop_oneof![Just(100u64), Just(1_000)])),
        )
            .prop_map(|(g, l, r)| Op::GroupLimits(g, l, r)),
        1 => prop_oneof![Just(0u64), Just(500), Just(3_000)].prop_map(Op::Hold),
        1 => Just(Op::Stats),
        2 => (0usize..16).prop_map(Op::Outcome),
    ]
}

fn options(spec: &TaskSpec) -> TaskOptions {
    let &(kind, max, jitter, delay, lease, key, priority, group) = spec;
    let backoff = match kind {
        0 => Backoff::Exponential {
            base: Duration::from_millis(100),
            factor: 2.5,
            max: Duration::from_millis(1_000),
        },
        1 => Backoff::Fixed(Duration::from_millis(250)),
        2 => Backoff::Schedule(vec![
            Duration::from_millis(50),
            Duration::from_millis(400),
            Duration::from_millis(900),
        ]),
        _ => Backoff::Exponential {
            base: Duration::from_millis(30),
            factor: 1.7,
            max: Duration::from_millis(2_000),
        },
    };
    let jitter = match (jitter, kind) {
        (0, _) => Jitter::None,
        (1, _) => Jitter::Full,
        (2, _) => Jitter::Equal,
        (_, 0 | 3) => Jitter::Decorrelated,
        _ => Jitter::Full,
    };
    let o = TaskOptions::default()
        .max_attempts(max)
        .backoff(backoff)
        .jitter(jitter)
        .delay(Duration::from_millis([0, 0, 700][delay as usize]))
        .lease(Duration::from_millis(lease))
        .priority([0, 0, 3, 9][priority as usize]);
    let mut o = match group {
        2 | 3 => o.group(GROUPS[group as usize - 2]),
        _ => o,
    };
    if kind == 2 {
        o = o.component("llm-api");
    }
    if let Some(k) = key {
        o = o.idempotency_key(format!("key-{k}"), Duration::from_millis(1_000));
    }
    o
}

async fn dump(pool: &Pool, queue: &Queue) -> Dump {
    let mut dump = dump_keys(pool, queue).await;
    // A group's task's lease names its group ("<token>:<group>"): the model keeps the token in
    // `leases` and the group as glease did.
    let raw: BTreeMap<String, String> = pool
        .query(redis::cmd("HGETALL").arg(&queue.keys()[4]))
        .await
        .unwrap();
    for (id, value) in raw {
        let (token, group) = match value.split_once(':') {
            Some((token, group)) => (token, Some(group)),
            None => (value.as_str(), None),
        };
        let token = token
            .parse()
            .unwrap_or_else(|_| panic!("lease of {id}: {value}"));
        dump.leases.insert(id.clone(), token);
        if let Some(group) = group {
            dump.groups.lease.insert(id, group.to_owned());
        }
    }
    dump
}

/// The queue's keys read into the model's form (`leases` and glease as stored).
async fn dump_keys(pool: &Pool, queue: &Queue) -> Dump {
    let k = queue.keys();
    let zset = |key: &coordkit_core::Key| {
        let mut c = redis::cmd("ZRANGE");
        c.arg(key).arg(0).arg(-1).arg("WITHSCORES");
        c
    };
    let hgetall = |key: &coordkit_core::Key| {
        let mut c = redis::cmd("HGETALL");
        c.arg(key);
        c
    };
    let ready: Vec<String> = pool
        .query(redis::cmd("LRANGE").arg(&k[1]).arg(0).arg(-1))
        .await
        .unwrap();
    let tasks: BTreeMap<String, Vec<u8>> = pool.query(&hgetall(&k[0])).await.unwrap();
    let errors: BTreeMap<String, Vec<u8>> = pool.query(&hgetall(&k[6])).await.unwrap();
    Dump {
        ready,
        urgent: pool.query(&zset(&k[12])).await.unwrap(),
        delayed: pool.query(&zset(&k[2])).await.unwrap(),
        leased: pool.query(&zset(&k[3])).await.unwrap(),
        leases: BTreeMap::new(),
        dlq: pool.query(&zset(&k[5])).await.unwrap(),
        tasks: tasks
            .into_iter()
            .map(|(id, rec)| {
                let r = Record::decode(&rec).unwrap_or_else(|| panic!("task {id}: {rec:?}"));
                (id, r)
            })
            .collect(),
        errors: errors
            .into_iter()
            .map(|(id, raw)| {
                let list = decode_errors(&raw).unwrap_or_else(|| panic!("errors of {id}"));
                (id, list)
            })
            .collect(),
        dead: pool.query(&hgetall(&k[7])).await.unwrap(),
        paused: {
            let flag: Option<String> = pool
                .query(redis::cmd("HGET").arg(&k[10]).arg("paused"))
                .await
                .unwrap();
            flag.as_deref() == Some("1")
        },
        limits: {
            let l: Vec<Option<u64>> = pool
                .query(
                    redis::cmd("HMGET")
                        .arg(&k[10])
                        .arg("max_leased")
                        .arg("rate_max")
                        .arg("rate_ms"),
                )
                .await
                .unwrap();
            (l[0].unwrap_or(0), l[1].unwrap_or(0), l[2].unwrap_or(0))
        },
        starts: pool.query(&zset(&k[11])).await.unwrap(),
        results: {
            // The result keys share the queue's prefix: `<prefix>:result:<id>`.
            let prefix = k[0].as_str().strip_suffix("tasks").unwrap();
            let pattern = format!("{}result:*", coordkit_core::escape_glob(prefix));
            let keys: Vec<String> = pool.query(redis::cmd("KEYS").arg(&pattern)).await.unwrap();
            let mut out = BTreeMap::new();
            for key in keys {
                let raw: Vec<u8> = pool.query(redis::cmd("GET").arg(&key)).await.unwrap();
                let expires = u64::from_le_bytes(raw[..8].try_into().unwrap());
                let id = key
                    .strip_prefix(&format!("{prefix}result:"))
                    .unwrap()
                    .to_owned();
                out.insert(id, (expires, raw[8..].to_vec()));
            }
            out
        },
        groups: groups(pool, k).await,
    }
}

/// The groups' keys read into the model's form.
async fn groups(pool: &Pool, k: &[coordkit_core::Key]) -> GroupsDump {
    let zset = |key: &str| {
        let mut c = redis::cmd("ZRANGE");
        c.arg(key).arg(0).arg(-1).arg("WITHSCORES");
        c
    };
    let raw: BTreeMap<String, Vec<u8>> =
        pool.query(redis::cmd("HGETALL").arg(&k[13])).await.unwrap();
    let state = raw
        .into_iter()
        .map(|(g, b)| {
            let n = |at: usize, len: usize| {
                let mut v = [0u8; 8];
                v[..len].copy_from_slice(&b[at..at + len]);
                u64::from_le_bytes(v)
            };
            assert_eq!(b.len(), 22, "group {g}'s state");
            (g, (n(0, 4), n(4, 4), n(8, 4), n(12, 8), n(20, 2) as u16))
        })
        .collect();
    // A group's keys: gstate's name with `gl<priority>:<group>` / `gs:<group>` in place of
    // `gstate`; a lane's front is its last element. (Each state's lanes, the bits of those that
    // hold tasks, are compared with the model's.)
    let prefix = k[13].as_str().strip_suffix("gstate").unwrap();
    let (mut lanes, mut starts) = (BTreeMap::new(), BTreeMap::new());
    for g in GROUPS {
        let mut lane = Vec::new();
        for p in (0..=coordkit_retry_queue::MAX_PRIORITY).rev() {
            let key = format!("{prefix}gl{p}:{g}");
            let ids: Vec<String> = pool
                .query(redis::cmd("LRANGE").arg(&key).arg(0).arg(-1))
                .await
                .unwrap();
            lane.extend(ids.into_iter().rev().map(|id| (id, p)));
        }
        if !lane.is_empty() {
            lanes.insert(g.to_owned(), lane);
        }
        let s: Vec<(String, u64)> = pool.query(&zset(&format!("{prefix}gs:{g}"))).await.unwrap();
        if !s.is_empty() {
            starts.insert(g.to_owned(), s);
        }
    }
    GroupsDump {
        state,
        ready: pool.query(&zset(k[14].as_str())).await.unwrap(),
        lease: pool.query(redis::cmd("HGETALL").arg(&k[15])).await.unwrap(),
        lanes,
        starts,
    }
}

/// The invariants on a dump: one state per task, attempts within budget, the DLQ holds exactly
/// the exhausted, stalled and malformed tasks.
fn check_invariants(d: &Dump, max_stalls: u32) -> Result<(), TestCaseError> {
    let mut seen = BTreeSet::new();
    let all = d
        .ready
        .iter()
        .chain(d.urgent.iter().map(|(id, _)| id))
        .chain(d.groups.lanes.values().flatten().map(|(id, _)| id))
        .chain(d.delayed.iter().map(|(id, _)| id))
        .chain(d.leased.iter().map(|(id, _)| id))
        .chain(d.dlq.iter().map(|(id, _)| id));
    for id in all {
        prop_assert!(seen.insert(id.clone()), "task {} in two states", id);
    }
    let held: BTreeSet<String> = d.tasks.keys().cloned().collect();
    prop_assert_eq!(&seen, &held, "every stored task is in one state");
    let leased: BTreeSet<&String> = d.leased.iter().map(|(id, _)| id).collect();
    let tokens: BTreeSet<&String> = d
        .leases
        .iter()
        .filter(|(_, t)| **t > 0)
        .map(|(id, _)| id)
        .collect();
    prop_assert_eq!(leased, tokens, "exactly the leased tasks have a token");
    let dead: BTreeSet<&String> = d.dlq.iter().map(|(id, _)| id).collect();
    for (id, record) in &d.tasks {
        let (attempts, stalls, max) = (record.attempts, record.stalls, record.max);
        prop_assert!(
            attempts <= max,
            "task {} attempts {} > max {}",
            id,
            attempts,
            max
        );
        let exhausted = attempts >= max;
        let stalled = stalls > max_stalls;
        let reason = d.dead.get(id).map(String::as_str);
        match reason {
            Some("exhausted") => prop_assert!(exhausted && dead.contains(id)),
            Some("stalled") => prop_assert!(stalled && dead.contains(id)),
            Some("malformed") => prop_assert!(dead.contains(id)),
            Some(other) => prop_assert!(false, "unexpected reason {}", other),
            None => prop_assert!(
                !exhausted && !stalled && !dead.contains(id),
                "task {} should be dead",
                id
            ),
        }
    }
    Ok(())
}

#[test]
fn lua_matches_the_model() {
    let rt = coordkit_testkit::blocking_runtime();
    let redis = TestRedis::start(Topology::Standalone);
    let pool = rt.block_on(redis.pool());
    let keyspace = redis.keyspace();
    let clock = ManualClock::new(1_700_000_000_000);
    let builder = |name: &str| {
        Queue::builder(&pool, &keyspace, name)
            .clock(Clock::Manual(clock.clone()))
            .max_stalls(1)
            .dlq_max_count(4)
            .dlq_max_age(Duration::from_millis(5_000))
            .errors_kept(2)
            .promote_limit(2)
            .reclaim_limit(2)
            .retry_in_place_below(Duration::from_millis(300))
            .result_ttl(Duration::from_secs(60))
            .build()
            .unwrap()
    };
    static CASE: AtomicU64 = AtomicU64::new(0);

    proptest!(ProptestConfig::with_cases(96), |(ops in proptest::collection::vec(op(), 1..50))| {
        let name = format!("case-{}", CASE.fetch_add(1, Ordering::Relaxed));
        let queue = builder(&name);
        let mut model = QueueModel::new(queue.config().clone());
        let mut held: Vec<coordkit_retry_queue::Task> = Vec::new();
        let mut payload_n = 0u32;
        for op in ops {
            let now = clock.now_ms();
            match op {
                Op::Enqueue(specs) => {
                    let batch: Vec<NewTask> = specs.iter().map(|s| {
                        payload_n += 1;
                        // Some payloads are not valid UTF-8: bytes must round-trip.
                        let mut p = format!("payload-{payload_n}").into_bytes();
                        if payload_n.is_multiple_of(3) { p.push(0xff); }
                        NewTask::new(p).options(options(s))
                    }).collect();
                    let lua = rt.block_on(queue.enqueue_batch(&batch)).unwrap();
                    prop_assert_eq!(lua, model.enqueue(now, &batch));
                }
                Op::Claim(n) => {
                    // Some claims by capabilities: group b first, then a; or b alone.
                    let caps: Option<&[&str]> = match n {
                        1 => Some(&["b", "a", "b"]),
                        2 => Some(&["b"]),
                        _ => None,
                    };
                    let (lua, expected) = match caps {
                        Some(caps) => (rt.block_on(queue.claim_capable(n, caps)).unwrap(), model.claim_capable(now, n, caps)),
                        None => (rt.block_on(queue.claim(n)).unwrap(), model.claim(now, n)),
                    };
                    prop_assert_eq!(&lua, &expected, "claim at {}", now);
                    held.extend(lua.tasks);
                }
                Op::Settle(items) => {
                    if held.is_empty() { continue; }
                    let mut ops = Vec::new();
                    for (which, kind, draw) in items {
                        if held.is_empty() { break; }
                        let task = held.remove(which % held.len());
                        let settle = match kind {
                            0..=1 => Settle::Ack,
                            2..=3 => Settle::AckWith(format!("{{\"n\":{draw}}}").into_bytes()),
                            4..=5 => Settle::Fail(format!("boom {which} ✗")),
                            6..=7 => Settle::FailInPlace(format!("boom {which} again")),
                            8 => Settle::Defer(Duration::from_millis(u64::from(draw % 900))),
                            _ => Settle::DeadLetter { reason: "malformed".into(), error: "bad json".into() },
                        };
                        ops.push(RawSettle { id: task.id, token: task.token, settle, draw, attempt: task.attempt });
                    }
                    let lua = rt.block_on(queue.settle_raw(&ops)).unwrap();
                    prop_assert_eq!(lua, model.settle(now, &ops), "settle {:?} at {}", ops, now);
                }
                Op::Stale(which) => {
                    if held.is_empty() { continue; }
                    let task = &held[which % held.len()];
                    let ops = vec![RawSettle { id: task.id.clone(), token: task.token + 1_000, settle: Settle::Ack, draw: 0, attempt: task.attempt }];
                    let lua = rt.block_on(queue.settle_raw(&ops)).unwrap();
                    prop_assert_eq!(&lua, &model.settle(now, &ops));
                    // A token never issued: the lease went elsewhere, or the task is gone.
                    prop_assert!(matches!(
                        lua[..],
                        [coordkit_retry_queue::Settled::LeaseLost | coordkit_retry_queue::Settled::AlreadySettled]
                    ));
                }
                Op::Extend(which) => {
                    if held.is_empty() { continue; }
                    let task = &held[which % held.len()];
                    let lua = rt.block_on(queue.extend(task, None)).unwrap();
                    prop_assert_eq!(lua, model.extend(now, &task.id, task.token, None));
                }
                Op::Crash(which) => {
                    if !held.is_empty() {
                        held.remove(which % held.len());
                    }
                }
                Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
                Op::MakeDue(skip) => {
                    // Some delayed tasks (a duplicate among them), and an id that is not.
                    let delayed: Vec<String> = model.dump().delayed.into_iter().map(|(id, _)| id).collect();
                    let mut ids: Vec<&str> = delayed.iter().skip(skip % 3).step_by(2).map(String::as_str).collect();
                    ids.extend(delayed.first().map(String::as_str));
                    ids.push("no-such");
                    let lua = rt.block_on(queue.make_due(&ids)).unwrap();
                    prop_assert_eq!(&lua, &model.make_due(now, &ids), "make_due {:?} at {}", ids, now);
                }
                Op::Requeue(all, reset) => {
                    let dead = model.dead_ids();
                    let lua = if all {
                        let n = rt.block_on(queue.requeue_all(reset)).unwrap();
                        let mut expected = 0;
                        loop {
                            let done = model.requeue(now, &[], coordkit_retry_queue::MAX_BATCH, reset);
                            if done.is_empty() { break; }
                            expected += done.len() as u64;
                        }
                        prop_assert_eq!(n, expected);
                        continue;
                    } else {
                        let ids: Vec<&str> = dead.iter().take(2).map(String::as_str).chain(["no-such"]).collect();
                        let lua = rt.block_on(queue.requeue(&ids, reset)).unwrap();
                        prop_assert_eq!(&lua, &model.requeue(now, &ids, 0, reset));
                        lua
                    };
                    let _ = lua;
                }
                Op::Purge(all) => {
                    if all {
                        let n = rt.block_on(queue.purge_all()).unwrap();
                        let mut expected = 0;
                        loop {
                            let k = model.purge(&[], coordkit_retry_queue::MAX_BATCH);
                            if k == 0 { break; }
                            expected += k;
                        }
                        prop_assert_eq!(n, expected);
                    } else {
                        let dead = model.dead_ids();
                        let ids: Vec<&str> = dead.iter().take(1).map(String::as_str).collect();
                        let n = rt.block_on(queue.purge(&ids)).unwrap();
                        prop_assert_eq!(n, model.purge(&ids, 0));
                    }
                }
                Op::Pause(pause) => {
                    let lua = if pause {
                        rt.block_on(queue.pause()).unwrap()
                    } else {
                        rt.block_on(queue.resume()).unwrap()
                    };
                    prop_assert_eq!(lua, model.pause(pause), "pause {}", pause);
                }
                Op::Limits(max_leased, rate) => {
                    let limits = Limits {
                        max_leased,
                        rate: rate.map(|(starts, ms)| Rate { starts, per: Duration::from_millis(ms) }),
                    };
                    rt.block_on(queue.set_limits(limits)).unwrap();
                    let (r, ms) = rate.unwrap_or((0, 0));
                    model.set_limits(u64::from(max_leased.unwrap_or(0)), u64::from(r), ms);
                }
                Op::GroupLimits(g, max_leased, rate) => {
                    let limits = Limits {
                        max_leased,
                        rate: rate.map(|(starts, ms)| Rate { starts, per: Duration::from_millis(ms) }),
                    };
                    rt.block_on(queue.set_group_limits(GROUPS[g], limits)).unwrap();
                    let (r, ms) = rate.unwrap_or((0, 0));
                    model.set_group_limits(now, GROUPS[g], u64::from(max_leased.unwrap_or(0)), u64::from(r), ms);
                }
                Op::Hold(ms) => {
                    rt.block_on(queue.hold_component("llm-api", Duration::from_millis(ms))).unwrap();
                    model.hold(now, "llm-api", ms);
                }
                Op::Outcome(which) => {
                    let id = (which % (payload_n as usize + 1) + 1).to_string();
                    let lua = rt.block_on(queue.task(&id).outcome()).unwrap();
                    prop_assert_eq!(lua, model.outcome(now, &id), "outcome of {} at {}", id, now);
                }
                Op::Stats => {
                    let lua = rt.block_on(queue.stats()).unwrap();
                    prop_assert_eq!(lua, model.stats(now));
                }
            }
            let lua = rt.block_on(dump(&pool, &queue));
            prop_assert_eq!(&lua, &model.dump(), "state after an op at {}", now);
            check_invariants(&lua, 1)?;
        }
    });
}

#[test]
fn backoff_policies_compute_the_documented_delays() {
    use coordkit_retry_queue::backoff_delay_ms;
    let exp = Backoff::Exponential {
        base: Duration::from_millis(100),
        factor: 2.0,
        max: Duration::from_millis(1_000),
    };
    let delays: Vec<u64> = (1..=6)
        .map(|a| backoff_delay_ms(&exp, Jitter::None, a, 0, 0))
        .collect();
    assert_eq!(delays, [100, 200, 400, 800, 1_000, 1_000]);
    assert_eq!(backoff_delay_ms(&exp, Jitter::Full, 3, 0, 32_768), 200);
    assert_eq!(backoff_delay_ms(&exp, Jitter::Equal, 3, 0, 0), 200);
    assert_eq!(backoff_delay_ms(&exp, Jitter::Equal, 3, 0, 65_535), 399);
    // Decorrelated: between base and 3 × the previous delay, capped.
    assert_eq!(
        backoff_delay_ms(&exp, Jitter::Decorrelated, 1, 0, 65_535),
        100
    );
    assert_eq!(backoff_delay_ms(&exp, Jitter::Decorrelated, 2, 300, 0), 100);
    assert_eq!(
        backoff_delay_ms(&exp, Jitter::Decorrelated, 2, 300, 65_535),
        899
    );
    assert_eq!(
        backoff_delay_ms(&exp, Jitter::Decorrelated, 2, 900, 65_535),
        1_000
    );
    let schedule = Backoff::Schedule(vec![Duration::from_millis(5), Duration::from_millis(50)]);
    let delays: Vec<u64> = (1..=3)
        .map(|a| backoff_delay_ms(&schedule, Jitter::None, a, 0, 0))
        .collect();
    assert_eq!(delays, [5, 50, 50]);
    assert_eq!(
        backoff_delay_ms(
            &Backoff::Fixed(Duration::from_millis(70)),
            Jitter::None,
            9,
            0,
            0
        ),
        70
    );
}

#[test]
fn options_are_validated_with_the_field_named() {
    let bad = [
        (TaskOptions::default().max_attempts(0), "max_attempts"),
        (TaskOptions::default().lease(Duration::ZERO), "lease"),
        (
            TaskOptions::default().backoff(Backoff::Exponential {
                base: Duration::from_secs(10),
                factor: 2.0,
                max: Duration::from_secs(1),
            }),
            "backoff",
        ),
        (
            TaskOptions::default()
                .backoff(Backoff::Fixed(Duration::from_secs(1)))
                .jitter(Jitter::Decorrelated),
            "jitter",
        ),
        (
            TaskOptions::default().backoff(Backoff::Schedule(vec![])),
            "backoff",
        ),
    ];
    for (options, field) in bad {
        let e = options.validate().unwrap_err().to_string();
        assert!(e.contains(field), "{e} should name {field}");
    }
    assert!(
        TaskOptions::default()
            .component("bad name")
            .validate()
            .is_err()
    );
    assert!(
        TaskOptions::default()
            .idempotency_key("k{x}", Duration::from_secs(1))
            .validate()
            .is_err()
    );
}
