//! The Lua against the reference model: random set / delete / CAS / delete-entity / expire
//! sequences with a manual clock, and reads of all or some fields, must give the same versions,
//! conflicts, snapshots and history, on a standalone server and on a cluster.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coordkit_context::model::{EntityModel, ModelSnapshot, WriteOp};
use coordkit_context::{ContextError, ContextStore, EntitySnapshot};
use coordkit_core::{Clock, ManualClock};
use coordkit_testkit::{TestRedis, Topology};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const HISTORY_LEN: u32 = 4;
const TTL_MS: u64 = 10_000;

#[derive(Debug, Clone)]
enum Op {
    Write(WriteOp, Option<i64>),
    Advance(u64),
    Read,
    ReadFields(Vec<String>),
    ChangesSince(u64),
}

fn field() -> impl Strategy<Value = String> {
    prop_oneof![Just("a"), Just("b"), Just("c"), Just("status")].prop_map(str::to_owned)
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z0-9]{1,6}", "\\PC{0,8}"]
}

fn op() -> impl Strategy<Value = Op> {
    let write = (
        proptest::collection::vec((field(), value()), 0..4),
        proptest::collection::vec(field(), 0..3),
        prop_oneof![3 => Just(None), 2 => (-1i64..=1).prop_map(Some)],
        prop_oneof![9 => Just(false), 1 => Just(true)],
        prop_oneof![Just("alice"), Just("bob")],
    )
        .prop_map(|(set, delete, cas, delete_entity, actor)| {
            Op::Write(
                WriteOp {
                    set,
                    delete,
                    expected: None,
                    delete_entity,
                    actor: actor.to_owned(),
                },
                cas,
            )
        });
    prop_oneof![
        6 => write,
        2 => (0u64..6_000).prop_map(Op::Advance),
        2 => Just(Op::Read),
        1 => proptest::collection::vec(field(), 0..3).prop_map(Op::ReadFields),
        2 => (0u64..12).prop_map(Op::ChangesSince),
    ]
}

#[test]
fn lua_matches_the_model_with_idle_expiry() {
    check_against_model(Topology::Standalone, Some(TTL_MS), 96);
}

/// Without an idle TTL reads skip the script (plain HGETALL): the same answers are required.
#[test]
fn lua_matches_the_model_without_expiry() {
    check_against_model(Topology::Standalone, None, 96);
}

/// The same on a cluster.
#[test]
fn lua_matches_the_model_on_a_cluster() {
    check_against_model(Topology::Cluster, Some(TTL_MS), 96);
}

/// The model's snapshot and the one read from Redis agree (`what`: which read, for the message).
fn same_snapshot(
    expected: Option<ModelSnapshot>,
    got: Option<EntitySnapshot>,
    what: &str,
) -> Result<(), TestCaseError> {
    match (expected, got) {
        (None, None) => {}
        (Some(e), Some(g)) => {
            prop_assert_eq!(e.version, g.version);
            prop_assert_eq!(e.updated_ms, g.updated_ms);
            prop_assert_eq!(&e.updated_by, &g.updated_by);
            prop_assert_eq!(e.expires_ms, g.expires_ms);
            prop_assert_eq!(&e.fields, &g.fields);
        }
        (e, g) => prop_assert!(false, "{what}: model {e:?}, lua {g:?}"),
    }
    Ok(())
}

fn check_against_model(topology: Topology, ttl_ms: Option<u64>, cases: u32) {
    let rt = coordkit_testkit::blocking_runtime();
    let redis = TestRedis::start(topology);
    let pool = rt.block_on(redis.pool());
    let clock = ManualClock::new(1_700_000_000_000);
    let store = ContextStore::builder(&pool, &redis.keyspace())
        .history_len(HISTORY_LEN)
        .idle_ttl(ttl_ms.map(Duration::from_millis))
        .clock(Clock::Manual(clock.clone()))
        .build()
        .unwrap();
    static CASE: AtomicU64 = AtomicU64::new(0);

    let config = ProptestConfig::with_cases(cases);
    proptest!(config, |(ops in proptest::collection::vec(op(), 1..40))| {
        let entity = store.entity("doc", &format!("case-{}", CASE.fetch_add(1, Ordering::Relaxed))).unwrap();
        let mut model = EntityModel::new(HISTORY_LEN as usize, ttl_ms);
        for op in ops {
            let now = clock.now_ms();
            match op {
                Op::Write(mut write_op, cas) => {
                    let current = rt.block_on(entity.current_version()).unwrap();
                    write_op.expected = cas.map(|offset| current.saturating_add_signed(offset));
                    let mut write = entity.write().actor(write_op.actor.clone());
                    for (k, v) in &write_op.set {
                        write = write.set(k.clone(), v.clone());
                    }
                    for k in &write_op.delete {
                        write = write.delete(k.clone());
                    }
                    if let Some(v) = write_op.expected {
                        write = write.expect_version(v);
                    }
                    if write_op.delete_entity {
                        write = write.delete_entity();
                    }
                    let got = rt.block_on(write.commit());
                    match (model.write(now, &write_op), got) {
                        (Ok(expected), Ok(version)) => prop_assert_eq!(expected, version),
                        (Err(current), Err(ContextError::Conflict { current: got, .. })) => {
                            prop_assert_eq!(current, got)
                        }
                        (expected, got) => prop_assert!(false, "model {expected:?}, lua {got:?}"),
                    }
                }
                Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
                Op::Read => {
                    let got = rt.block_on(entity.get_all()).unwrap();
                    same_snapshot(model.read(now), got, "all fields")?;
                }
                Op::ReadFields(fields) => {
                    let asked: Vec<&str> = fields.iter().map(String::as_str).collect();
                    let got = rt.block_on(entity.get(&asked)).unwrap();
                    // The model's whole snapshot, cut down to the fields asked that exist.
                    let expected = model.read(now).map(|mut e| {
                        e.fields.retain(|k, _| fields.contains(k));
                        e
                    });
                    same_snapshot(expected, got, &format!("fields {fields:?}"))?;
                }
                Op::ChangesSince(since) => {
                    let got = rt.block_on(entity.changes_since(since, 100));
                    match (model.changes_since(now, since), got) {
                        (Ok(e), Ok(g)) => prop_assert_eq!(e, g),
                        (Err(oldest), Err(ContextError::Compacted { oldest: got, .. })) => {
                            prop_assert_eq!(oldest, got)
                        }
                        (e, g) => prop_assert!(false, "since {since}: model {e:?}, lua {g:?}"),
                    }
                }
            }
        }
    });
}
