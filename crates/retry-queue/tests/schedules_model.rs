//! The schedule scripts against the reference model: random upsert / remove / tick / read /
//! late replay of an old read / clock advance / list sequences on a manual clock give the same
//! answers and the same stored state (the schedules and the tasks they enqueued), and each tick
//! of each schedule is accounted for once: fired on time, or missed (skipped or caught up).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coordkit_core::{Clock, ManualClock, redis};
use coordkit_retry_queue::model::{QueueModel, Record, ScheduleDump, ScheduleModel};
use coordkit_retry_queue::{
    Missed, NewTask, Queue, RawDue, RawFire, Schedule, Scheduler, TaskOptions,
};
use coordkit_testkit::{TestRedis, Topology};
use proptest::prelude::*;

const NAMES: [&str; 3] = ["a", "b", "c"];
/// Interval specs (ms), and one cron expression (every 2 s).
const SPECS: [Option<u64>; 3] = [Some(300), Some(1_000), None];
const CRON: &str = "*/2 * * * * *";

#[derive(Debug, Clone)]
enum Op {
    /// Name, spec, catch-up, delayed task.
    Upsert(usize, usize, bool, bool),
    Remove(usize),
    Tick,
    /// A scheduler reads the due schedules (kept for a later replay).
    Read,
    /// It fires what it read, late.
    Replay,
    Advance(u64),
    List,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0usize..3, 0usize..3, any::<bool>(), any::<bool>())
            .prop_map(|(n, s, c, d)| Op::Upsert(n, s, c, d)),
        1 => (0usize..3).prop_map(Op::Remove),
        5 => Just(Op::Tick),
        2 => Just(Op::Read),
        2 => Just(Op::Replay),
        5 => prop_oneof![1u64..400, 400u64..3_500].prop_map(Op::Advance),
        1 => Just(Op::List),
    ]
}

fn schedule(spec: usize, catch_up: bool, delayed: bool) -> Schedule {
    let builder = match SPECS[spec] {
        Some(ms) => Schedule::every(Duration::from_millis(ms)),
        None => Schedule::cron(CRON),
    };
    let delay = Duration::from_millis(if delayed { 700 } else { 0 });
    builder
        .missed(if catch_up {
            Missed::CatchUp
        } else {
            Missed::Skip
        })
        .task(
            NewTask::new(format!("task-{spec}")).options(
                // Odd specs' tasks have a priority: the urgent lane.
                TaskOptions::default()
                    .delay(delay)
                    .priority(if spec % 2 == 1 { 4 } else { 0 }),
            ),
        )
        .build()
        .unwrap()
}

/// The spec bytes of `lua/lib/schedule.lua` (kind, then the interval or the expression).
fn spec_bytes(spec: usize) -> Vec<u8> {
    match SPECS[spec] {
        Some(ms) => [&[0u8][..], &ms.to_le_bytes()].concat(),
        None => [&[1u8][..], CRON.as_bytes()].concat(),
    }
}

/// The ready lanes: the list, and the urgent tasks by (id, rank).
type Lanes = (Vec<String>, Vec<(String, u64)>);

/// The state the schedules touch, read from Redis.
async fn dump(
    scheduler: &Scheduler,
) -> (
    ScheduleDump,
    Lanes,
    Vec<(String, u64)>,
    BTreeMap<String, Record>,
) {
    let pool = scheduler.queue().pool();
    let (sk, qk) = (scheduler.keys(), scheduler.queue().keys());
    let records: BTreeMap<String, Vec<u8>> =
        pool.query(redis::cmd("HGETALL").arg(&sk[0])).await.unwrap();
    let due: Vec<(String, u64)> = pool
        .query(
            redis::cmd("ZRANGE")
                .arg(&sk[1])
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES"),
        )
        .await
        .unwrap();
    let ready: Vec<String> = pool
        .query(redis::cmd("LRANGE").arg(&qk[1]).arg(0).arg(-1))
        .await
        .unwrap();
    let urgent: Vec<(String, u64)> = pool
        .query(
            redis::cmd("ZRANGE")
                .arg(&qk[12])
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES"),
        )
        .await
        .unwrap();
    let delayed: Vec<(String, u64)> = pool
        .query(
            redis::cmd("ZRANGE")
                .arg(&qk[2])
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES"),
        )
        .await
        .unwrap();
    let tasks: BTreeMap<String, Vec<u8>> =
        pool.query(redis::cmd("HGETALL").arg(&qk[0])).await.unwrap();
    let tasks = tasks
        .into_iter()
        .map(|(id, r)| (id, Record::decode(&r).unwrap()))
        .collect();
    (
        ScheduleDump { records, due },
        (ready, urgent),
        delayed,
        tasks,
    )
}

#[test]
fn lua_matches_the_model() {
    let rt = coordkit_testkit::blocking_runtime();
    let redis = TestRedis::start(Topology::Standalone);
    let pool = rt.block_on(redis.pool());
    let keyspace = redis.keyspace();
    let clock = ManualClock::new(1_700_000_000_000);
    static CASE: AtomicU64 = AtomicU64::new(0);

    proptest!(ProptestConfig::with_cases(64), |(ops in proptest::collection::vec(op(), 1..40))| {
        let name = format!("case-{}", CASE.fetch_add(1, Ordering::Relaxed));
        let queue = Queue::builder(&pool, &keyspace, &name)
            .clock(Clock::Manual(clock.clone()))
            .build()
            .unwrap();
        // A small batch, so that some ticks leave due schedules to the next.
        let scheduler = Scheduler::builder(&queue).batch(2).build().unwrap();
        let mut qm = QueueModel::new(queue.config().clone());
        let mut sm = ScheduleModel::new(2, scheduler.keys()[0].as_str());
        let mut specs: BTreeMap<String, usize> = BTreeMap::new();
        let mut fired_gone = 0u64;
        let mut read: Option<(u64, Vec<RawDue>)> = None;
        for op in ops {
            let now = clock.now_ms();
            match op {
                Op::Upsert(n, spec, catch_up, delayed) => {
                    let s = schedule(spec, catch_up, delayed);
                    let lua = rt.block_on(scheduler.upsert(NAMES[n], &s)).unwrap();
                    prop_assert_eq!(lua, sm.upsert(now, NAMES[n], &s).unwrap());
                    specs.insert(NAMES[n].to_owned(), spec);
                }
                Op::Remove(n) => {
                    fired_gone += sm.list().iter().filter(|i| i.name == NAMES[n]).map(|i| i.fired).sum::<u64>();
                    let lua = rt.block_on(scheduler.remove(NAMES[n])).unwrap();
                    prop_assert_eq!(lua, sm.remove(NAMES[n]));
                    specs.remove(NAMES[n]);
                }
                Op::Tick => {
                    let lua = rt.block_on(scheduler.tick()).unwrap();
                    prop_assert_eq!(&lua, &sm.tick(&mut qm, now), "tick at {}", now);
                }
                Op::Read => {
                    let (at, next, due) = rt.block_on(scheduler.due_raw()).unwrap();
                    prop_assert_eq!((next, &due), (sm.due(now).0, &sm.due(now).1));
                    read = Some((at, due));
                }
                Op::Replay => {
                    let Some((at, due)) = read.take() else { continue };
                    // What that scheduler computed then, for the interval schedules it read.
                    let ops: Vec<RawFire> = due.iter().filter_map(|(name, _, tick)| {
                        let spec = *specs.get(name)?;
                        let every = SPECS[spec]?;
                        let tick = (*tick)?;
                        let k = (at - tick) / every;
                        Some(RawFire {
                            name: name.clone(),
                            tick,
                            latest: tick + k * every,
                            next: tick + (k + 1) * every,
                            missed: k,
                            spec: spec_bytes(spec),
                        })
                    }).collect();
                    if ops.is_empty() { continue; }
                    let (_, lua) = rt.block_on(scheduler.fire_raw(&ops)).unwrap();
                    prop_assert_eq!(&lua, &sm.fire(&mut qm, now, &ops), "replay {:?} at {}", ops, now);
                }
                Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
                Op::List => {
                    let lua = rt.block_on(scheduler.list()).unwrap();
                    prop_assert_eq!(lua, sm.list());
                }
            }
            let (sched, ready, delayed, tasks) = rt.block_on(dump(&scheduler));
            prop_assert_eq!(&sched, &sm.dump(), "schedules after an op at {}", now);
            let q = qm.dump();
            let lanes = (q.ready.clone(), q.urgent.clone());
            prop_assert_eq!((&ready, &delayed, &tasks), (&lanes, &q.delayed, &q.tasks));
            // Every task enqueued is counted by its schedule once, and no fired tick is due
            // again.
            let list = sm.list();
            prop_assert_eq!(tasks.len() as u64, list.iter().map(|i| i.fired).sum::<u64>() + fired_gone);
            for info in list {
                prop_assert!(info.last_fired_ms.is_none_or(|l| info.next_ms.is_none_or(|n| n > l)));
            }
        }
    });
}
