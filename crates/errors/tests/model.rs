//! The Lua against the reference model: random records, resolutions, clock moves and queries
//! with a manual clock must give the same counts, flags, evictions, windows and answers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coordkit_core::{Clock, ManualClock, redis};
use coordkit_errors::model::{ModelConfig, ModelRecord, TrackerModel};
use coordkit_errors::{ErrorEvent, ErrorTracker, Resolution};
use coordkit_testkit::{TestRedis, Topology};
use proptest::prelude::*;

const CFG: ModelConfig = ModelConfig {
    log_max_len: 6,
    log_max_age_ms: 5_000,
    task_ttl_ms: 3_000,
    max_signatures: 3,
    max_tasks: 3,
    max_counters: 4,
    window_ms: 1_000,
    threshold: 3,
};

const TEMPLATES: [&str; 4] = [
    "timeout after {}ms",
    "connection to 10.0.0.{} refused",
    "user {} not found",
    "disk full",
];
const KINDS: [&str; 4] = ["Timeout", "Io", "NotFound", "Disk"];
const COMPONENTS: [&str; 3] = ["fetcher", "indexer", "planner"];

#[derive(Debug, Clone)]
enum Op {
    Record {
        template: usize,
        n: u32,
        kind: usize,
        component: usize,
        task: Option<u8>,
        occurred: Option<i64>,
    },
    Resolve(usize),
    Advance(u64),
    Recent,
    Top(u64),
    Counts,
    Signature(usize),
    Task(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let record = (
        0..TEMPLATES.len(),
        0u32..1000,
        0..KINDS.len(),
        0..COMPONENTS.len(),
        proptest::option::of(0u8..6),
        prop_oneof![4 => Just(None), 1 => (-800i64..800).prop_map(Some)],
    )
        .prop_map(
            |(template, n, kind, component, task, occurred)| Op::Record {
                template,
                n,
                kind,
                component,
                task,
                occurred,
            },
        );
    prop_oneof![
        8 => record,
        2 => (0usize..8).prop_map(Op::Resolve),
        3 => prop_oneof![Just(0u64), 1u64..600, 600u64..4_000].prop_map(Op::Advance),
        1 => Just(Op::Recent),
        1 => (1u64..6_000).prop_map(Op::Top),
        1 => Just(Op::Counts),
        2 => (0usize..8).prop_map(Op::Signature),
        1 => (0u8..6).prop_map(Op::Task),
    ]
}

#[test]
fn lua_matches_the_model() {
    lua_matches_the_model_on(Topology::Standalone, 128);
}

#[test]
fn lua_matches_the_model_on_a_cluster() {
    lua_matches_the_model_on(Topology::Cluster, 48);
}

/// Random operation sequences, each on a fresh tracker, against the model: every answer and
/// query compared.
fn lua_matches_the_model_on(topology: Topology, cases: u32) {
    let rt = coordkit_testkit::blocking_runtime();
    let redis = TestRedis::start(topology);
    let pool = rt.block_on(redis.pool());
    let clock = ManualClock::new(1_700_000_000_000);
    static CASE: AtomicU64 = AtomicU64::new(0);

    let config = ProptestConfig::with_cases(cases);
    proptest!(config, |(ops in proptest::collection::vec(op(), 1..60))| {
        let name = format!("case-{}", CASE.fetch_add(1, Ordering::Relaxed));
        let tracker = ErrorTracker::builder(&pool, &redis.keyspace(), &name)
            .log_max_len(CFG.log_max_len as u32)
            .log_max_age(Duration::from_millis(CFG.log_max_age_ms))
            .task_ttl(Duration::from_millis(CFG.task_ttl_ms))
            .max_signatures(CFG.max_signatures as u32)
            .max_tasks(CFG.max_tasks as u32)
            .max_counters(CFG.max_counters as u32)
            .correlation_window(Duration::from_millis(CFG.window_ms))
            .cascade_threshold(CFG.threshold as u32)
            .clock(Clock::Manual(clock.clone()))
            .build()
            .unwrap();
        let mut model = TrackerModel::new(CFG);
        let mut signatures: Vec<String> = Vec::new();
        for op in ops {
            let now = clock.now_ms();
            match op {
                Op::Record { template, n, kind, component, task, occurred } => {
                    let mut event = ErrorEvent::new(
                        COMPONENTS[component],
                        KINDS[kind],
                        TEMPLATES[template].replace("{}", &n.to_string()),
                    );
                    if let Some(t) = task {
                        event = event.task(format!("task-{t}"));
                    }
                    if let Some(offset) = occurred {
                        event = event.occurred_ms(now.saturating_add_signed(offset));
                    }
                    let sig = tracker.signature_of(&event);
                    if !signatures.contains(&sig) {
                        signatures.push(sig.clone());
                    }
                    let expected = model.record(now, &ModelRecord {
                        signature: sig.clone(),
                        kind: KINDS[kind].into(),
                        component: COMPONENTS[component].into(),
                        task: task.map(|t| format!("task-{t}")),
                        occurred_ms: event.occurred_ms,
                    });
                    let got = rt.block_on(tracker.record(&event)).unwrap();
                    prop_assert_eq!(&got.signature, &sig);
                    prop_assert_eq!(got.ts_ms, now);
                    prop_assert_eq!(
                        (got.count, got.first_seen_ms, got.new_signature, got.regression, got.cascade),
                        (expected.count, expected.first_seen_ms, expected.new_signature, expected.regression, expected.cascade)
                    );
                }
                Op::Resolve(i) => {
                    let Some(sig) = signatures.get(i % signatures.len().max(1)) else { continue };
                    let got = rt.block_on(tracker.resolve(sig)).unwrap();
                    let expected = match model.resolve(now, sig) {
                        Ok(at) => Resolution::Resolved { at_ms: at },
                        Err(Some(at)) => Resolution::AlreadyResolved { at_ms: at },
                        Err(None) => Resolution::Unknown,
                    };
                    prop_assert_eq!(got, expected);
                }
                Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
                Op::Recent => {
                    let page = rt.block_on(tracker.recent(None, 100)).unwrap();
                    let got: Vec<(u64, String)> = page.entries.into_iter().map(|e| (e.ts_ms, e.signature)).collect();
                    prop_assert_eq!(got, model.recent(now));
                }
                Op::Top(window) => {
                    let top = rt.block_on(tracker.top(Duration::from_millis(window), 10)).unwrap();
                    let got: Vec<(String, u64)> = top.signatures.into_iter().map(|s| (s.signature, s.in_window)).collect();
                    prop_assert_eq!(got, model.top(now, window, 10));
                }
                Op::Counts => {
                    let counts = rt.block_on(tracker.counts()).unwrap();
                    let mut got: BTreeMap<String, u64> = counts
                        .by_pair
                        .into_iter()
                        .map(|((k, c), n)| (format!("{k} {c}"), n))
                        .collect();
                    if counts.other > 0 {
                        got.insert("~other".into(), counts.other);
                    }
                    prop_assert_eq!(&got, model.counts());
                }
                Op::Signature(i) => {
                    let Some(sig) = signatures.get(i % signatures.len().max(1)) else { continue };
                    let got = rt.block_on(tracker.signature(sig)).unwrap();
                    match (model.signature(sig), got) {
                        (None, None) => {}
                        (Some(e), Some(g)) => {
                            prop_assert_eq!(
                                (e.count, e.first_seen_ms, e.last_seen_ms, e.resolved_at_ms, e.regressions, &e.components),
                                (g.count, g.first_seen_ms, g.last_seen_ms, g.resolved_at_ms, g.regressions, &g.components)
                            );
                            let sample = g.last_sample.unwrap();
                            prop_assert_eq!(sample.ts_ms, e.last_seen_ms);
                            prop_assert_eq!(sample.count, e.count);
                        }
                        (e, g) => prop_assert!(false, "model {e:?}, lua {g:?}"),
                    }
                }
                Op::Task(t) => {
                    let task = format!("task-{t}");
                    let got = rt.block_on(tracker.task(&task)).unwrap();
                    prop_assert_eq!(got.map(|r| r.signature), model.task(now, &task).map(str::to_owned));
                }
            }
        }
    });
}

/// Concurrent records share script calls (group commit); applied in the log's order, the model
/// must end in the same state.
#[test]
fn batched_records_match_the_model_in_log_order() {
    let rt = coordkit_testkit::blocking_runtime();
    let redis = TestRedis::start(Topology::Standalone);
    let pool = rt.block_on(redis.pool());
    let clock = ManualClock::new(1_700_000_000_000);
    let cfg = ModelConfig {
        log_max_len: 10_000,
        ..CFG
    };
    let tracker = ErrorTracker::builder(&pool, &redis.keyspace(), "batched")
        .log_max_len(cfg.log_max_len as u32)
        .log_max_age(Duration::from_millis(cfg.log_max_age_ms))
        .task_ttl(Duration::from_millis(cfg.task_ttl_ms))
        .max_signatures(cfg.max_signatures as u32)
        .max_tasks(cfg.max_tasks as u32)
        .max_counters(cfg.max_counters as u32)
        .correlation_window(Duration::from_millis(cfg.window_ms))
        .cascade_threshold(cfg.threshold as u32)
        .clock(Clock::Manual(clock.clone()))
        .build()
        .unwrap();
    let script_calls = || -> u64 {
        let info: String = rt
            .block_on(pool.query::<String>(redis::cmd("INFO").arg("commandstats")))
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    };
    let calls_before = script_calls();
    let results = rt.block_on(async {
        let writers: Vec<_> = (0..16u32)
            .map(|w| {
                let t = tracker.clone();
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    for i in 0..30u32 {
                        let x = (w * 31 + i * 7) as usize;
                        let e = ErrorEvent::new(
                            COMPONENTS[x % 3],
                            KINDS[x % 4],
                            TEMPLATES[x % 4].replace("{}", &i.to_string()),
                        )
                        .task(format!("task-{}", x % 6));
                        out.push(t.record(&e).await.unwrap());
                    }
                    out
                })
            })
            .collect();
        let mut all = Vec::new();
        for w in writers {
            all.extend(w.await.unwrap());
        }
        all
    });
    let now = clock.now_ms();
    // The log, oldest first, is the order the records were applied in.
    let mut entries = Vec::new();
    let mut cursor = None;
    loop {
        let page = rt.block_on(tracker.recent(cursor.as_deref(), 100)).unwrap();
        entries.extend(page.entries);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    entries.reverse();
    assert_eq!(entries.len(), results.len());
    let mut model = TrackerModel::new(cfg);
    let mut outcomes = Vec::new();
    for e in &entries {
        outcomes.push(model.record(
            now,
            &ModelRecord {
                signature: e.signature.clone(),
                kind: e.occurrence.kind.clone(),
                component: e.occurrence.component.clone(),
                task: e.occurrence.task_id.clone(),
                occurred_ms: None,
            },
        ));
    }
    // The records did share calls (the recent() pages above are scripts too, one per page).
    let pages = entries.len().div_ceil(100) as u64 + 1;
    let calls = script_calls() - calls_before - pages;
    assert!(
        calls < results.len() as u64,
        "{calls} script calls for {} records: no batch formed",
        results.len()
    );
    // Each record's answer is the model's for the same occurrence (a signature's count names
    // it), and the final state is the same.
    let mut answered: Vec<_> = results
        .iter()
        .map(|r| {
            (
                r.signature.clone(),
                r.count,
                r.first_seen_ms,
                r.new_signature,
                r.regression,
                r.cascade,
            )
        })
        .collect();
    let mut modelled: Vec<_> = entries
        .iter()
        .zip(&outcomes)
        .map(|(e, o)| {
            (
                e.signature.clone(),
                o.count,
                o.first_seen_ms,
                o.new_signature,
                o.regression,
                o.cascade,
            )
        })
        .collect();
    answered.sort();
    modelled.sort();
    assert_eq!(answered, modelled);
    let count =
        |f: &dyn Fn(&coordkit_errors::Recorded) -> bool| results.iter().filter(|r| f(r)).count();
    assert_eq!(
        count(&|r| r.cascade),
        outcomes.iter().filter(|o| o.cascade).count()
    );
    assert_eq!(
        count(&|r| r.new_signature),
        outcomes.iter().filter(|o| o.new_signature).count()
    );
    let mut sigs: Vec<String> = entries.iter().map(|e| e.signature.clone()).collect();
    sigs.sort();
    sigs.dedup();
    for sig in &sigs {
        let got = rt.block_on(tracker.signature(sig)).unwrap();
        match (model.signature(sig), got) {
            (None, None) => {}
            (Some(m), Some(g)) => assert_eq!(
                (m.count, &m.components, m.first_seen_ms),
                (g.count, &g.components, g.first_seen_ms),
                "{sig}"
            ),
            (m, g) => panic!("{sig}: model {m:?}, lua {g:?}"),
        }
    }
    let counts = rt.block_on(tracker.counts()).unwrap();
    let mut got: BTreeMap<String, u64> = counts
        .by_pair
        .into_iter()
        .map(|((k, c), n)| (format!("{k} {c}"), n))
        .collect();
    if counts.other > 0 {
        got.insert("~other".into(), counts.other);
    }
    assert_eq!(&got, model.counts());
    for t in 0..6 {
        let task = format!("task-{t}");
        let got = rt
            .block_on(tracker.task(&task))
            .unwrap()
            .map(|r| r.signature);
        assert_eq!(got.as_deref(), model.task(now, &task), "{task}");
    }
}
