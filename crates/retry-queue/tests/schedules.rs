//! Schedules on both topologies: upsert, list, remove; a tick fires each due tick once, on a
//! manual clock; missed ticks are skipped or caught up once; a stale scheduler fires nothing;
//! events; a runner that sleeps until the next tick and wakes on an upsert; bad stored data
//! parks the one schedule and names its key.

use std::time::Duration;

use coordkit_core::{Clock, Error, ManualClock, redis};
use coordkit_retry_queue::{
    Every, Missed, NewTask, Parked, Queue, QueueError, QueueEventKind, RawFire, Schedule,
    Scheduler, TaskOptions, Upserted,
};
use coordkit_testkit::garbage::overwrite_with_type;
use coordkit_testkit::redis_test;

const T0: u64 = 1_700_000_000_000;

fn every(ms: u64) -> Schedule {
    Schedule::every(Duration::from_millis(ms))
        .task(NewTask::new("report").options(TaskOptions::default().max_attempts(2)))
        .build()
        .unwrap()
}

fn field_of(e: QueueError) -> &'static str {
    match e {
        QueueError::Core(Error::InvalidConfig { field, .. }) => field,
        other => panic!("not InvalidConfig: {other:?}"),
    }
}

#[test]
fn bad_schedules_are_refused_naming_the_setter() {
    let cases =
        [
            (Schedule::every(Duration::ZERO).build(), "every"),
            (
                Schedule::every(Duration::from_secs(1 << 40)).build(),
                "every",
            ),
            (Schedule::cron("61 * * * *").build(), "cron"),
            (Schedule::cron("x".repeat(201)).build(), "cron"),
            (
                Schedule::cron("@hourly")
                    .task(NewTask::new("x").options(TaskOptions::default().max_attempts(0)))
                    .build(),
                "max_attempts",
            ),
            (
                Schedule::every(Duration::from_secs(1))
                    .task(NewTask::new("x").options(
                        TaskOptions::default().idempotency_key("k", Duration::from_secs(1)),
                    ))
                    .build(),
                "task",
            ),
        ];
    for (built, field) in cases {
        assert_eq!(field_of(built.unwrap_err()), field);
    }
    assert!(Schedule::cron("*/5 * * * * *").build().is_ok());
}

redis_test! {
    async fn upsert_list_and_remove(redis) {
        let pool = redis.pool().await;
        let clock = ManualClock::new(T0);
        let queue = Queue::builder(&pool, &redis.keyspace(), "reports")
            .clock(Clock::Manual(clock.clone()))
            .max_payload_bytes(16)
            .build()
            .unwrap();
        let scheduler = Scheduler::builder(&queue).build().unwrap();
        assert!(format!("{scheduler:?}").contains("schedules"));
        let hourly = every(3_600_000);
        let first = scheduler.upsert("hourly", &hourly).await.unwrap();
        assert_eq!(first, Upserted::Created { next_ms: T0 - T0 % 3_600_000 + 3_600_000 });
        // Declared again (another process starting): the same ticks, nothing moves.
        clock.advance(Duration::from_secs(10));
        assert_eq!(
            scheduler.upsert("hourly", &hourly).await.unwrap(),
            Upserted::Updated { next_ms: first.next_ms() }
        );
        let cron = Schedule::cron("0 9 * * MON-FRI").missed(Missed::CatchUp).build().unwrap();
        let daily = scheduler.upsert("daily", &cron).await.unwrap();
        assert!(matches!(daily, Upserted::Created { .. }));
        // New ticks for an old name: armed again.
        assert!(matches!(
            scheduler.upsert("hourly", &every(60_000)).await.unwrap(),
            Upserted::Rescheduled { .. }
        ));
        let list = scheduler.list().await.unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].name, "daily");
        assert_eq!(list[0].schedule.as_ref(), Some(&cron));
        assert_eq!(list[0].next_ms, Some(daily.next_ms()));
        assert_eq!(list[1].schedule.as_ref().unwrap().ticks(), &Every::Interval(Duration::from_secs(60)));
        assert_eq!(list[1].schedule.as_ref().unwrap().task(), every(1).task());
        // Names and payloads are checked first.
        assert!(matches!(
            scheduler.upsert("bad name", &hourly).await,
            Err(QueueError::Core(Error::InvalidName { .. }))
        ));
        let big = Schedule::every(Duration::from_secs(1)).task(NewTask::new(vec![0; 17])).build().unwrap();
        assert!(matches!(
            scheduler.upsert("big", &big).await,
            Err(QueueError::PayloadTooLarge { len: 17, max: 16, .. })
        ));
        assert!(scheduler.remove("daily").await.unwrap());
        assert!(!scheduler.remove("daily").await.unwrap());
        assert_eq!(scheduler.list().await.unwrap().len(), 1);
        assert!(Scheduler::builder(&queue).batch(0).build().is_err());
        assert_eq!(
            field_of(Scheduler::builder(&queue).max_sleep(Duration::ZERO).build().unwrap_err()),
            "max_sleep"
        );
    }
}

redis_test! {
    async fn each_tick_fires_once_and_missed_ticks_follow_the_policy(redis) {
        let pool = redis.pool().await;
        let clock = ManualClock::new(T0);
        let queue = Queue::builder(&pool, &redis.keyspace(), "ticks")
            .clock(Clock::Manual(clock.clone()))
            .build()
            .unwrap();
        let mut events = queue.events().await.unwrap();
        let scheduler = Scheduler::builder(&queue).build().unwrap();
        let other = Scheduler::builder(&queue).build().unwrap();
        let skip = every(1_000);
        let catch_up = Schedule::every(Duration::from_millis(1_000))
            .missed(Missed::CatchUp)
            .task(NewTask::new("c").options(TaskOptions::default().delay(Duration::from_millis(50))))
            .build()
            .unwrap();
        let t1 = scheduler.upsert("skip", &skip).await.unwrap().next_ms();
        scheduler.upsert("catch-up", &catch_up).await.unwrap();
        assert_eq!(t1, T0 + 1_000);

        // Nothing due yet.
        let tick = scheduler.tick().await.unwrap();
        assert!(tick.fired.is_empty());
        assert_eq!(tick.next_ms, Some(t1));

        // Due: one scheduler fires both, the other then finds nothing.
        clock.set(t1 + 5);
        let (now, _, due) = other.due_raw().await.unwrap();
        let tick = scheduler.tick().await.unwrap();
        assert_eq!(tick.fired.len(), 2);
        assert!(tick.fired.iter().all(|f| f.tick_ms == t1 && f.missed == 0 && f.tasks.len() == 1));
        assert_eq!(tick.next_ms, Some(t1 + 1_000));
        assert!(other.tick().await.unwrap().fired.is_empty());
        // A scheduler that read the same tick before and fires late fires nothing.
        let stale: Vec<RawFire> = due.iter().map(|(name, _, t)| RawFire {
            name: name.clone(),
            tick: t.unwrap(),
            latest: t.unwrap(),
            next: t.unwrap() + 1_000,
            missed: 0,
            spec: Vec::new(),
        }).collect();
        let (_, answers) = other.fire_raw(&stale).await.unwrap();
        assert!(answers.iter().all(|a| a.0 == 2 && a.1 == t1 + 1_000), "{answers:?} at {now}");
        assert_eq!(queue.stats().await.unwrap().ready + queue.stats().await.unwrap().delayed, 2);

        // Three periods without a scheduler: skip fires the latest tick; catch-up one more.
        clock.set(t1 + 3_500);
        let tick = scheduler.tick().await.unwrap();
        let by = |name: &str| tick.fired.iter().find(|f| f.schedule == name).unwrap().clone();
        assert_eq!((by("skip").tick_ms, by("skip").missed, by("skip").tasks.len()), (t1 + 3_000, 2, 1));
        assert_eq!((by("catch-up").tick_ms, by("catch-up").missed, by("catch-up").tasks.len()), (t1 + 3_000, 2, 2));
        assert_eq!(tick.next_ms, Some(t1 + 4_000));
        let list = scheduler.list().await.unwrap();
        let info = |name: &str| list.iter().find(|i| i.name == name).unwrap().clone();
        assert_eq!((info("skip").fired, info("skip").missed, info("skip").last_fired_ms), (2, 2, Some(t1 + 3_000)));
        assert_eq!((info("catch-up").fired, info("catch-up").missed), (3, 2));
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.ready, stats.delayed), (2, 3), "skip's 2 ready, catch-up's 3 delayed");

        // The events: one `fired` per task, the catch-up marked.
        let mut fired = Vec::new();
        while fired.len() < 5 {
            let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .expect("the fired events")
                .unwrap();
            if let QueueEventKind::Fired { schedule, tick_ms, catch_up, .. } = event.kind {
                fired.push((schedule, tick_ms, catch_up));
            }
        }
        assert!(fired.contains(&("catch-up".into(), t1 + 1_000, true)), "{fired:?}");
        assert_eq!(fired.iter().filter(|f| f.2).count(), 1);
    }
}

redis_test! {
    async fn a_runner_sleeps_until_the_next_tick_and_wakes_on_an_upsert(redis) {
        let pool = redis.pool().await;
        let queue = Queue::builder(&pool, &redis.keyspace(), "runner").build().unwrap();
        // Without a schedule it would sleep a minute: the upsert must wake it.
        let scheduler = Scheduler::builder(&queue).max_sleep(Duration::from_secs(60)).build().unwrap();
        let runner = scheduler.start().await.unwrap();
        assert!(format!("{runner:?}").contains("SchedulerRunner"));
        scheduler.upsert("fast", &every(50)).await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), async {
            while scheduler.list().await.unwrap()[0].fired < 3 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the runner fired three ticks");
        runner.shutdown().await;
        let info = &scheduler.list().await.unwrap()[0];
        assert_eq!(queue.stats().await.unwrap().ready, info.fired);
    }
}

redis_test! {
    async fn bad_stored_data_parks_one_schedule_and_names_the_key(redis) {
        let pool = redis.pool().await;
        let clock = ManualClock::new(T0);
        let queue = Queue::builder(&pool, &redis.keyspace(), "corrupt")
            .clock(Clock::Manual(clock.clone()))
            .build()
            .unwrap();
        let scheduler = Scheduler::builder(&queue).build().unwrap();
        let (sched, due) = (scheduler.keys()[0].clone(), scheduler.keys()[1].clone());
        for name in ["good", "bad", "bad-tick"] {
            scheduler.upsert(name, &every(1_000)).await.unwrap();
        }
        let hset = |field: &str, value: &[u8]| {
            let mut c = redis::cmd("HSET");
            c.arg(&sched).arg(field).arg(value);
            c
        };
        let good_record: Vec<u8> = pool.query(redis::cmd("HGET").arg(&sched).arg("good")).await.unwrap();
        let _: () = pool.query(&hset("bad", &good_record[..20])).await.unwrap();
        let _: () = pool.query(redis::cmd("ZADD").arg(&due).arg("1.5").arg("bad-tick")).await.unwrap();
        clock.advance(Duration::from_millis(1_000));
        let tick = scheduler.tick().await.unwrap();
        assert_eq!(tick.fired.iter().map(|f| f.schedule.as_str()).collect::<Vec<_>>(), ["good"]);
        let mut parked = tick.parked.clone();
        parked.sort_by(|a, b| a.schedule.cmp(&b.schedule));
        assert_eq!(parked, [
            Parked { schedule: "bad".into(), key: sched.to_string() },
            Parked { schedule: "bad-tick".into(), key: sched.to_string() },
        ]);
        // Parked: not due again (no busy loop), listed with its bytes, nothing else lost.
        assert_eq!(tick.next_ms, Some(T0 + 2_000));
        let list = scheduler.list().await.unwrap();
        let bad = list.iter().find(|i| i.name == "bad").unwrap();
        assert_eq!((bad.schedule.is_none(), bad.next_ms, bad.raw_record.as_deref()), (true, None, Some(&good_record[..20])));
        assert_eq!(queue.stats().await.unwrap().ready, 1);
        // Upserting it again re-arms it.
        assert!(matches!(scheduler.upsert("bad", &every(1_000)).await.unwrap(), Upserted::Rescheduled { .. }));

        // A key of another type fails the call naming it, with nothing written.
        clock.advance(Duration::from_millis(1_000));
        for (key, kind) in [(&sched, "string"), (&due, "list")] {
            let saved: Vec<u8> = pool.query(redis::cmd("DUMP").arg(key)).await.unwrap();
            overwrite_with_type(&pool, key, kind).await;
            match scheduler.tick().await {
                Err(QueueError::Core(Error::WrongType { key: k, .. })) => assert_eq!(k, key.as_str()),
                other => panic!("{key}: {other:?}"),
            }
            assert!(scheduler.upsert("x", &every(1_000)).await.is_err());
            let _: () = pool.query(redis::cmd("RESTORE").arg(key).arg(0).arg(saved).arg("REPLACE")).await.unwrap();
        }
        // A queue counter that does not decode: CORRUPT naming the key, nothing fired.
        let info = queue.keys()[10].clone();
        let _: () = pool.query(redis::cmd("HSET").arg(&info).arg("seq").arg("garbage")).await.unwrap();
        match scheduler.tick().await {
            Err(QueueError::Core(Error::Corrupt { key, .. })) => assert_eq!(key, info.as_str()),
            other => panic!("{other:?}"),
        }
        let _: () = pool.query(redis::cmd("HSET").arg(&info).arg("seq").arg(1)).await.unwrap();
        let tick = scheduler.tick().await.unwrap();
        assert_eq!(tick.fired.len(), 2, "good and the repaired bad: {tick:?}");
        assert_eq!(queue.stats().await.unwrap().ready, 3);
    }
}
