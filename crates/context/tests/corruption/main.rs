//! Corrupt stored data (#15): keys of another type, stamps and history entries that do not
//! decode, agent records that do not decode. Every operation fails with an error naming the
//! key (or works, when it does not need the bad value), writes nothing over the garbage, leaves
//! the other entities alone, and works again once the key is repaired or deleted.
//!
//! `entity` covers an entity's keys and fields, `agents` an agent registry's; here, the shared
//! checks and the proptest that generates corruptions of both.

mod agents;
mod entity;

use std::time::Duration;

use coordkit_context::{
    AgentRegistry, AgentStatus, ContextError, ContextStore, Entity, Status, WatchEvent,
};
use coordkit_core::{Clock, Error, InstanceKeys, Key, KeyKind, Keyspace, ManualClock, Pool};
use coordkit_testkit::garbage::{Garbage, TYPES, garbage, overwrite_with_type, wrong_type};
use coordkit_testkit::{TestRedis, Topology, redis_test};
use proptest::prelude::*;

pub(crate) const START_MS: u64 = 1_700_000_000_000;

use agents::Agents;
use entity::Fixture;

/// An error that names `key` as holding another type or corrupt data.
pub(crate) fn names_key(outcome: &Result<(), ContextError>, key: &Key) -> bool {
    matches!(outcome, Err(ContextError::Core(Error::WrongType { key: k, .. } | Error::Corrupt { key: k, .. })) if k == key.as_str())
}

/// Every operation either worked or failed naming `key`; the names of those that failed.
pub(crate) fn failed_naming(
    outcomes: &[(&'static str, Result<(), ContextError>)],
    key: &Key,
) -> Vec<&'static str> {
    for (op, outcome) in outcomes {
        assert!(
            outcome.is_ok() || names_key(outcome, key),
            "{op}: {outcome:?} does not name {key}"
        );
    }
    outcomes
        .iter()
        .filter(|(_, o)| o.is_err())
        .map(|(op, _)| *op)
        .collect()
}

pub(crate) async fn set_field(pool: &Pool, key: &Key, field: &str, value: &[u8]) {
    let _: () = pool
        .query(redis::cmd("HSET").arg(key).arg(field).arg(value))
        .await
        .unwrap();
}

pub(crate) async fn lset(pool: &Pool, key: &Key, index: i64, value: &[u8]) {
    let _: () = pool
        .query(redis::cmd("LSET").arg(key).arg(index).arg(value))
        .await
        .unwrap();
}

/// One corruption of one key (or stored field) of an entity or an agent registry.
#[derive(Debug, Clone)]
enum Target {
    DataType(&'static str),
    HistoryType(&'static str),
    Stamp(&'static str, Garbage),
    NewestEntry(Garbage),
    OldestEntry(Garbage),
    TombstoneEntry(Garbage),
    AgentRecord(Garbage),
    AgentKeyType(&'static str, &'static str),
}

fn target() -> impl Strategy<Value = Target> {
    let stamp = proptest::sample::select(vec![
        "__version",
        "__updated_ms",
        "__expires_ms",
        "__updated_by",
    ]);
    let agent_key = proptest::sample::select(vec!["alive", "by_status", "by_cap"]);
    prop_oneof![
        1 => wrong_type(KeyKind::Hash).prop_map(Target::DataType),
        1 => wrong_type(KeyKind::List).prop_map(Target::HistoryType),
        3 => (stamp, garbage()).prop_map(|(f, g)| Target::Stamp(f, g)),
        1 => garbage().prop_map(Target::NewestEntry),
        1 => garbage().prop_map(Target::OldestEntry),
        1 => garbage().prop_map(Target::TombstoneEntry),
        2 => garbage().prop_map(Target::AgentRecord),
        1 => (agent_key, wrong_type(KeyKind::ZSet)).prop_map(|(k, t)| Target::AgentKeyType(k, t)),
        1 => wrong_type(KeyKind::Hash).prop_map(|t| Target::AgentKeyType("records", t)),
    ]
}

async fn corrupt_entity(f: &Fixture, target: &Target) -> Key {
    let pool = &f.pool;
    match target {
        Target::DataType(t) => {
            overwrite_with_type(pool, &f.data(), t).await;
            f.data()
        }
        Target::HistoryType(t) => {
            overwrite_with_type(pool, &f.history(), t).await;
            f.history()
        }
        Target::Stamp(field, g) => {
            let original: Vec<u8> = pool
                .query(redis::cmd("HGET").arg(f.data()).arg(*field))
                .await
                .unwrap();
            set_field(pool, &f.data(), field, &g.apply(&original)).await;
            f.data()
        }
        Target::NewestEntry(g) | Target::OldestEntry(g) | Target::TombstoneEntry(g) => {
            if matches!(target, Target::TombstoneEntry(_)) {
                f.entity(&f.victim).delete().await.unwrap();
            }
            let index = if matches!(target, Target::OldestEntry(_)) {
                0
            } else {
                -1
            };
            let original: Vec<u8> = pool
                .query(redis::cmd("LINDEX").arg(f.history()).arg(index))
                .await
                .unwrap();
            lset(pool, &f.history(), index, &g.apply(&original)).await;
            f.history()
        }
        _ => unreachable!("not an entity target"),
    }
}

fn corruptions_are_named_and_repairable(topology: Topology, cases: u32) {
    let rt = coordkit_testkit::blocking_runtime();
    let redis = TestRedis::start(topology);
    let pool = rt.block_on(redis.pool());
    proptest!(ProptestConfig::with_cases(cases), |(target in target())| {
        rt.block_on(async {
            match &target {
                Target::AgentRecord(_) | Target::AgentKeyType(..) => {
                    let agents = Agents::new(pool.clone(), redis.keyspace(), "fleet").await;
                    let original = agents.dumps().await;
                    let key = match &target {
                        Target::AgentRecord(g) => {
                            let valid = agents.record("a").await.unwrap();
                            let _: () = pool.query(redis::cmd("HSET").arg(agents.key("records")).arg("a").arg(g.apply(&valid))).await.unwrap();
                            agents.key("records")
                        }
                        Target::AgentKeyType(suffix, t) => {
                            overwrite_with_type(&pool, &agents.key(suffix), t).await;
                            agents.key(suffix)
                        }
                        _ => unreachable!(),
                    };
                    failed_naming(&agents.run_ops().await, &key);
                    // Repaired, everything works.
                    for (suffix, dumped) in ["alive", "records", "by_status", "by_cap"].iter().zip(original) {
                        let _: () = pool.query(redis::cmd("DEL").arg(agents.key(suffix))).await.unwrap();
                        if let Some(bytes) = dumped {
                            let _: () = pool.query(redis::cmd("RESTORE").arg(agents.key(suffix)).arg(0).arg(bytes)).await.unwrap();
                        }
                    }
                    for (op, outcome) in agents.run_ops().await {
                        assert!(outcome.is_ok(), "after the repair, {op} failed: {outcome:?}");
                    }
                }
                _ => {
                    let f = Fixture::new(pool.clone(), redis.keyspace(), "generated").await;
                    let key = corrupt_entity(&f, &target).await;
                    failed_naming(&f.run_ops().await, &key);
                    f.check_recovered().await;
                }
            }
        });
    });
}

#[test]
fn generated_corruptions_are_named_and_repairable_standalone() {
    corruptions_are_named_and_repairable(Topology::Standalone, 96);
}

#[test]
fn generated_corruptions_are_named_and_repairable_on_a_cluster() {
    corruptions_are_named_and_repairable(Topology::Cluster, 32);
}
