//! The Lua against the pure-Rust model: random acquire / record / time-advance / force / clear
//! sequences on a manual clock must give the same decisions, states, epochs and figures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coordkit_circuit_breaker::model::BreakerModel;
use coordkit_circuit_breaker::{
    BreakerConfig, CircuitBreaker, Forced, OpenDuration, Outcome, PermitKind, Window,
};
use coordkit_core::{Clock, ManualClock};
use coordkit_testkit::{TestRedis, Topology};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    Record {
        which: usize,
        outcome: Outcome,
        duration_ms: u64,
    },
    Advance(u64),
    Snapshot,
    Force(Forced),
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => Just(Op::Acquire),
        6 => (
            0usize..8,
            prop_oneof![4 => Just(Outcome::Failure), 4 => Just(Outcome::Success), 1 => Just(Outcome::Ignored)],
            prop_oneof![Just(5u64), Just(150u64)],
        )
            .prop_map(|(which, outcome, duration_ms)| Op::Record { which, outcome, duration_ms }),
        3 => (1u64..2_500).prop_map(Op::Advance),
        1 => Just(Op::Snapshot),
        1 => prop_oneof![Just(Forced::Open), Just(Forced::Disabled), Just(Forced::MetricsOnly)].prop_map(Op::Force),
        1 => Just(Op::Clear),
    ]
}

fn config(time_window: bool, clock: &ManualClock) -> BreakerConfig {
    BreakerConfig::builder()
        .window(if time_window {
            Window::Time {
                length: Duration::from_secs(4),
                buckets: 4,
            }
        } else {
            Window::Count(5)
        })
        .minimum_calls(3)
        .failure_rate(0.5)
        .slow_call_rate(0.6)
        .slow_call_duration(Duration::from_millis(100))
        .consecutive_failures(Some(4))
        .open_duration(OpenDuration::Exponential {
            base: Duration::from_millis(1000),
            factor: 2.0,
            max: Duration::from_millis(8000),
        })
        .half_open_permits(2)
        .half_open_successes(2)
        // Longer than the base open duration: a half-open rejection answers the shorter.
        .permit_lease(Duration::from_millis(1500))
        .half_open_max_wait(Some(Duration::from_millis(3000)))
        .clock(Clock::Manual(clock.clone()))
        .build()
        .unwrap()
}

fn check(time_window: bool) {
    let rt = coordkit_testkit::blocking_runtime();
    let redis = TestRedis::start(Topology::Standalone);
    let pool = rt.block_on(redis.pool());
    let keyspace = redis.keyspace();
    let clock = ManualClock::new(1_700_000_000_000);
    static CASE: AtomicU64 = AtomicU64::new(0);

    proptest!(ProptestConfig::with_cases(128), |(ops in proptest::collection::vec(op(), 1..60))| {
        let name = format!("case-{}", CASE.fetch_add(1, Ordering::Relaxed));
        let breaker = CircuitBreaker::builder(&pool, &keyspace, &name).config(config(time_window, &clock)).build().unwrap();
        let mut model = BreakerModel::new(config(time_window, &clock));
        // Permits held: (id, epoch, kind).
        let mut held: Vec<(String, u64, PermitKind)> = Vec::new();
        let mut next = 0;
        for op in ops {
            let now = clock.now_ms();
            match op {
                Op::Acquire => {
                    next += 1;
                    let id = format!("p{next}");
                    let lua = rt.block_on(breaker.raw_acquire(&id)).unwrap();
                    let expected = model.acquire(now, &id);
                    prop_assert_eq!(&lua, &expected, "acquire at {}", now);
                    if let Some(kind) = lua.kind {
                        held.push((id, lua.epoch, kind));
                    }
                }
                Op::Record { which, outcome, duration_ms } => {
                    if held.is_empty() {
                        continue;
                    }
                    let (id, epoch, kind) = held.remove(which % held.len());
                    let lua = rt.block_on(breaker.raw_record(&id, epoch, kind, outcome, duration_ms)).unwrap();
                    let expected = model.record(now, &id, epoch, kind, outcome, duration_ms);
                    prop_assert_eq!(lua, expected, "record {} {:?} at {}", id, outcome, now);
                }
                Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
                Op::Snapshot => {
                    let lua = rt.block_on(breaker.snapshot()).unwrap();
                    prop_assert_eq!(lua, model.snapshot(now));
                }
                Op::Force(to) => {
                    let lua = rt.block_on(breaker.force(to)).unwrap();
                    prop_assert_eq!(lua, model.force(to));
                }
                Op::Clear => {
                    let lua = rt.block_on(breaker.clear()).unwrap();
                    prop_assert_eq!(lua, model.clear(now));
                }
            }
            // Invariant: never more probes in flight than K.
            let snapshot = rt.block_on(breaker.snapshot()).unwrap();
            prop_assert!(snapshot.probes_in_flight <= 2);
            prop_assert_eq!(snapshot, model.snapshot(clock.now_ms()));
        }
    });
}

#[test]
fn lua_matches_the_model_with_a_count_window() {
    check(false);
}

#[test]
fn lua_matches_the_model_with_a_time_window() {
    check(true);
}
