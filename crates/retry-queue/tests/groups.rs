//! Groups against a real Redis, standalone and a 3-master cluster: a group's concurrency and
//! rate limits hold back only its own tasks; a settle or a lost lease frees its slot; a group
//! waiting for its rate says when it may start again; its tasks keep their priority; retries,
//! stalls and requeues come back to its lane; bad input names the field; a lease made before
//! leases named their group (its group in glease) still frees its group's slot, and a log of
//! starts made before it held an entry per claim still counts each of its starts; a log whose
//! total is wrong or garbage is counted again; a ranked lane an earlier build wrote goes first
//! in its priority until drained, and one its enqueue adds to later is found; a group state
//! deleted by hand loses no task, and one that is garbage fails the claim by name while the
//! stats still count its lanes.

use std::time::Duration;

use coordkit_core::{Clock, Error, ManualClock, redis};
use coordkit_retry_queue::{
    Backoff, Jitter, Limits, NewTask, Queue, QueueError, Rate, Settle, TaskOptions,
};
use coordkit_testkit::redis_test;

mod common;
use common::{hget, hset, names};

fn manual(redis: &coordkit_testkit::TestRedis, pool: &coordkit_core::Pool) -> (ManualClock, Queue) {
    let clock = ManualClock::new(1_800_000_000_000);
    let queue = Queue::builder(pool, &redis.keyspace(), "groups")
        .clock(Clock::Manual(clock.clone()))
        .build()
        .unwrap();
    (clock, queue)
}

/// A rate limit of three starts a second.
fn three_a_second() -> Limits {
    Limits {
        max_leased: None,
        rate: Some(Rate {
            starts: 3,
            per: Duration::from_secs(1),
        }),
    }
}

fn of(group: &str) -> TaskOptions {
    TaskOptions::default()
        .group(group)
        .lease(Duration::from_secs(5))
        .backoff(Backoff::Fixed(Duration::from_millis(100)))
        .jitter(Jitter::None)
}

redis_test! {
    async fn a_groups_concurrency_limit_holds_back_only_its_own_tasks(redis) {
        let pool = redis.pool().await;
        let (_, queue) = manual(&redis, &pool);
        let two = Limits { max_leased: Some(2), rate: None };
        queue.set_group_limits("api", two).await.unwrap();
        let mut batch: Vec<NewTask> = (0..5).map(|i| NewTask::new(format!("api{i}")).options(of("api"))).collect();
        batch.push(NewTask::new("free"));
        batch.push(NewTask::new("other").options(of("search")));
        queue.enqueue_batch(&batch).await.unwrap();
        assert_eq!(queue.stats().await.unwrap().ready, 7);
        let claim = queue.claim(10).await.unwrap();
        let mut got = names(&claim);
        got.sort();
        assert_eq!(got, ["api0", "api1", "free", "other"]);
        assert!(claim.tasks.iter().any(|t| t.group.as_deref() == Some("search")));
        let api = queue.group_stats("api").await.unwrap();
        assert_eq!((api.leased, api.ready, api.limits), (2, 3, two));
        assert!(queue.claim(10).await.unwrap().tasks.is_empty(), "api is full");
        // An ack frees one slot: one more of api, first in first out.
        let first = claim.tasks.iter().find(|t| t.payload == b"api0").unwrap();
        queue.settle(&[(first, Settle::Ack)]).await.unwrap();
        assert_eq!(names(&queue.claim(10).await.unwrap()), ["api2"]);
        // Lifting the limit lets the rest go.
        queue.set_group_limits("api", Limits::default()).await.unwrap();
        assert_eq!(names(&queue.claim(10).await.unwrap()), ["api3", "api4"]);
        assert_eq!(queue.group_stats("api").await.unwrap().leased, 4);
    }
}

redis_test! {
    async fn a_groups_rate_limit_says_when_it_may_start_again(redis) {
        let pool = redis.pool().await;
        let (clock, queue) = manual(&redis, &pool);
        let rate = Limits { max_leased: None, rate: Some(Rate { starts: 3, per: Duration::from_secs(1) }) };
        queue.set_group_limits("llm", rate).await.unwrap();
        let batch: Vec<NewTask> = (0..8).map(|i| NewTask::new(format!("l{i}")).options(of("llm"))).collect();
        queue.enqueue_batch(&batch).await.unwrap();
        let t0 = clock.now_ms();
        let first = queue.claim(10).await.unwrap();
        assert_eq!(names(&first), ["l0", "l1", "l2"]);
        clock.advance(Duration::from_millis(400));
        let none = queue.claim(10).await.unwrap();
        assert!(none.tasks.is_empty());
        assert_eq!(none.next_start_ms, Some(t0 + 1_000), "when the first start leaves the window");
        assert_eq!(queue.group_stats("llm").await.unwrap().next_start_ms, Some(t0 + 1_000));
        // Others are not held back meanwhile.
        queue.enqueue(NewTask::new("free")).await.unwrap();
        assert_eq!(names(&queue.claim(10).await.unwrap()), ["free"]);
        clock.advance(Duration::from_millis(600));
        assert_eq!(names(&queue.claim(10).await.unwrap()), ["l3", "l4", "l5"]);
    }
}

redis_test! {
    async fn retries_stalls_and_requeues_come_back_to_the_groups_lane(redis) {
        let pool = redis.pool().await;
        let (clock, queue) = manual(&redis, &pool);
        let one = Limits { max_leased: Some(1), rate: None };
        queue.set_group_limits("api", one).await.unwrap();
        let batch = [
            NewTask::new("a").options(of("api")),
            NewTask::new("b").options(of("api").priority(5)),
            NewTask::new("c").options(of("api").max_attempts(1)),
        ];
        queue.enqueue_batch(&batch).await.unwrap();
        // The priority goes first within the group.
        let b = queue.claim(10).await.unwrap().tasks.remove(0);
        assert_eq!(b.payload, b"b");
        queue.settle(&[(&b, Settle::Fail("busy".into()))]).await.unwrap();
        // Its retry waits 100 ms in the delayed set; meanwhile a runs, and its lease runs out.
        let a = queue.claim(10).await.unwrap().tasks.remove(0);
        assert_eq!(a.payload, b"a");
        clock.advance(Duration::from_secs(6));
        // The claim reclaims a (its slot freed: the full group, out of gready, goes back, and
        // the idle workers are woken) and promotes b: both back in the lane, b first. The group
        // was not ready when this claim read gready: the next claim serves it.
        assert!(queue.claim(10).await.unwrap().tasks.is_empty());
        let s = queue.group_stats("api").await.unwrap();
        assert_eq!((s.leased, s.ready), (0, 3), "{s:?}");
        assert_eq!(names(&queue.claim(10).await.unwrap()), ["b"]);
        clock.advance(Duration::from_secs(6));
        assert!(queue.claim(10).await.unwrap().tasks.is_empty(), "b reclaimed");
        let next = queue.claim(10).await.unwrap();
        assert_eq!(names(&next), ["b"], "b again: its lease ran out too");
        queue.settle(&[(&next.tasks[0], Settle::Ack)]).await.unwrap();
        let c_or_a = queue.claim(10).await.unwrap();
        let c = c_or_a.tasks.iter().find(|t| t.payload == b"c");
        if let Some(c) = c {
            queue.settle(&[(c, Settle::Fail("once".into()))]).await.unwrap();
            assert_eq!(queue.requeue_all(false).await.unwrap(), 1);
            assert_eq!(queue.group_stats("api").await.unwrap().ready, 2, "back in the lane");
        }
        let stats = queue.stats().await.unwrap();
        assert_eq!(stats.ready + stats.leased, 2, "{stats:?}");
    }
}

redis_test! {
    async fn a_bad_group_or_limit_is_named(redis) {
        let pool = redis.pool().await;
        let (_, queue) = manual(&redis, &pool);
        let bad = NewTask::new("x").options(TaskOptions::default().group("has space"));
        assert!(matches!(queue.enqueue(bad).await, Err(QueueError::Core(Error::InvalidName { .. }))));
        let zero = Limits { max_leased: Some(0), rate: None };
        match queue.set_group_limits("api", zero).await {
            Err(QueueError::Core(Error::InvalidConfig { field, .. })) => assert_eq!(field, "max_leased"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            queue.set_group_limits("{tag}", Limits::default()).await,
            Err(QueueError::Core(Error::InvalidName { .. }))
        ));
        assert_eq!(queue.group_stats("api").await.unwrap().limits, Limits::default(), "nothing written");
    }
}

redis_test! {
    async fn a_lease_whose_group_is_in_glease_still_frees_its_slot(redis) {
        let pool = redis.pool().await;
        let (clock, queue) = manual(&redis, &pool);
        let one = Limits { max_leased: Some(1), rate: None };
        queue.set_group_limits("api", one).await.unwrap();
        let batch: Vec<NewTask> = (0..3).map(|i| NewTask::new(format!("api{i}")).options(of("api"))).collect();
        queue.enqueue_batch(&batch).await.unwrap();
        let k = queue.keys();
        // A lease as it was stored before `leases` named its group: the bare token, and the
        // group in glease.
        let legacy = |id: String, token: u64| {
            let (leases, glease) = (k[4].clone(), k[15].clone());
            let pool = pool.clone();
            async move {
                let mut c = redis::cmd("HSET");
                c.arg(&leases).arg(&id).arg(token);
                let _: () = pool.query(&c).await.unwrap();
                let mut c = redis::cmd("HSET");
                c.arg(&glease).arg(&id).arg("api");
                let _: () = pool.query(&c).await.unwrap();
            }
        };
        let first = queue.claim(10).await.unwrap();
        assert_eq!(names(&first), ["api0"]);
        let t = &first.tasks[0];
        legacy(t.id.clone(), t.token).await;
        // Its ack frees the slot and its glease entry.
        queue.settle(&[(t, Settle::Ack)]).await.unwrap();
        assert_eq!(queue.group_stats("api").await.unwrap().leased, 0);
        let glease: u64 = pool.query(redis::cmd("HLEN").arg(&k[15])).await.unwrap();
        assert_eq!(glease, 0);
        // A lease that runs out frees it too.
        let second = queue.claim(10).await.unwrap();
        assert_eq!(names(&second), ["api1"]);
        legacy(second.tasks[0].id.clone(), second.tasks[0].token).await;
        assert!(queue.claim(10).await.unwrap().tasks.is_empty(), "api is full");
        clock.advance(Duration::from_secs(6));
        // The claim that reclaims it frees the slot (the group is ready again for the next).
        queue.claim(10).await.unwrap();
        assert_eq!(queue.group_stats("api").await.unwrap().leased, 0);
        let glease: u64 = pool.query(redis::cmd("HLEN").arg(&k[15])).await.unwrap();
        assert_eq!(glease, 0);
        assert_eq!(queue.claim(10).await.unwrap().tasks.len(), 1);
    }
}

redis_test! {
    async fn a_log_of_starts_with_a_token_per_start_still_counts_each(redis) {
        let pool = redis.pool().await;
        let (clock, queue) = manual(&redis, &pool);
        queue.set_group_limits("api", three_a_second()).await.unwrap();
        let batch: Vec<NewTask> = (0..6).map(|i| NewTask::new(format!("api{i}")).options(of("api"))).collect();
        queue.enqueue_batch(&batch).await.unwrap();
        // The group's log as an earlier build wrote it: a bare token per start, no total.
        let k = queue.keys();
        let log = format!("{}gs:api", k[13].as_str().strip_suffix("gstate").unwrap());
        let t0 = clock.now_ms();
        let mut c = redis::cmd("ZADD");
        c.arg(&log).arg(t0).arg("901").arg(t0).arg("902");
        let _: () = pool.query(&c).await.unwrap();
        let entries = || {
            let (pool, log) = (pool.clone(), log.clone());
            async move {
                let mut v: Vec<String> = pool.query(redis::cmd("ZRANGE").arg(&log).arg(0).arg(-1)).await.unwrap();
                v.sort();
                v
            }
        };
        // Two of the three starts are taken: one more now, logged with its count and the total.
        let first = queue.claim(10).await.unwrap();
        assert_eq!(names(&first), ["api0"]);
        let tok = first.tasks[0].token;
        let mut want = vec!["#3".to_owned(), "901".to_owned(), "902".to_owned(), format!("{tok}:1")];
        want.sort();
        assert_eq!(entries().await, want);
        // Full until the earliest start leaves the window.
        let full = queue.claim(10).await.unwrap();
        assert!(full.tasks.is_empty());
        assert_eq!(full.next_start_ms, Some(t0 + 1000));
        // Then all three again, in one entry; the old ones and the old total gone.
        clock.advance(Duration::from_millis(1001));
        let next = queue.claim(10).await.unwrap();
        assert_eq!(names(&next), ["api1", "api2", "api3"]);
        let tok = next.tasks[0].token;
        assert_eq!(entries().await, ["#3", &format!("{tok}:3")]);
    }
}

redis_test! {
    async fn a_log_whose_total_is_wrong_is_counted_again(redis) {
        let pool = redis.pool().await;
        let (clock, queue) = manual(&redis, &pool);
        let k = queue.keys();
        let prefix = k[13].as_str().strip_suffix("gstate").unwrap().to_owned();
        let t0 = clock.now_ms();
        for g in ["api", "web"] {
            queue.set_group_limits(g, three_a_second()).await.unwrap();
            let batch: Vec<NewTask> = (0..4).map(|i| NewTask::new(format!("{g}{i}")).options(of(g))).collect();
            queue.enqueue_batch(&batch).await.unwrap();
        }
        // api's total says 7 where its one entry counts 3 (an entry removed by hand); web's is
        // no number.
        let mut c = redis::cmd("ZADD");
        c.arg(format!("{prefix}gs:api")).arg(0).arg("#7").arg(t0).arg("41:3");
        let _: () = pool.query(&c).await.unwrap();
        let mut c = redis::cmd("ZADD");
        c.arg(format!("{prefix}gs:web")).arg(0).arg("#2.5");
        let _: () = pool.query(&c).await.unwrap();
        // web starts its three; api is full until its entry leaves the window, not for good.
        let first = queue.claim(10).await.unwrap();
        assert_eq!(names(&first), ["web0", "web1", "web2"]);
        assert_eq!(first.next_start_ms, Some(t0 + 1000));
        clock.advance(Duration::from_millis(1001));
        let mut second = names(&queue.claim(10).await.unwrap());
        second.sort();
        assert_eq!(second, ["api0", "api1", "api2", "web3"]);
    }
}

redis_test! {
    async fn a_lane_of_an_earlier_build_goes_first_in_its_priority_until_drained(redis) {
        let pool = redis.pool().await;
        let (_clock, queue) = manual(&redis, &pool);
        let k = queue.keys();
        let prefix = k[13].as_str().strip_suffix("gstate").unwrap().to_owned();
        let task = |name: &str, p: u8| NewTask::new(name).options(of("old").priority(p));
        // As an earlier build left them: the group's tasks in one lane `gl:old` ranked
        // (9 − priority) × 2^49 + id, and its state of 20 bytes, without lanes.
        let mut lane = redis::cmd("ZADD");
        lane.arg(format!("{prefix}gl:old"));
        for (name, p) in [("o5a", 5), ("o0", 0), ("o5b", 5)] {
            let id: u64 = queue.enqueue(task(name, p)).await.unwrap().id().parse().unwrap();
            lane.arg((9 - u64::from(p)) * (1 << 49) + id).arg(id);
        }
        for p in [0, 5] {
            let _: () = pool.query(redis::cmd("DEL").arg(format!("{prefix}gl{p}:old"))).await.unwrap();
        }
        let _: () = pool.query(&lane).await.unwrap();
        let state = hget(&pool, &k[13], "old").await.unwrap();
        hset(&pool, &k[13], "old", &state[..20]).await;
        // This build's tasks go behind those of their priority.
        for (name, p) in [("n5", 5), ("n9", 9), ("n0", 0)] {
            queue.enqueue(task(name, p)).await.unwrap();
        }
        assert_eq!(queue.group_stats("old").await.unwrap().ready, 6);
        assert_eq!(queue.stats().await.unwrap().ready, 6);
        let mut got = Vec::new();
        loop {
            let claimed = names(&queue.claim(2).await.unwrap());
            if claimed.is_empty() {
                break;
            }
            got.extend(claimed);
        }
        assert_eq!(got, ["n9", "o5a", "o5b", "n5", "o0", "n0"]);
        // Drained: the old lane is gone and the state has this build's layout, without the
        // old lane's bit (1 << 10).
        let exists: u64 = pool.query(redis::cmd("EXISTS").arg(format!("{prefix}gl:old"))).await.unwrap();
        assert_eq!(exists, 0);
        let state = hget(&pool, &k[13], "old").await.unwrap();
        assert_eq!(state.len(), 22);
        assert_eq!(u16::from_le_bytes([state[20], state[21]]) & 1 << 10, 0);
    }
}

redis_test! {
    async fn a_group_state_deleted_by_hand_loses_no_ready_task(redis) {
        let pool = redis.pool().await;
        let (_clock, queue) = manual(&redis, &pool);
        let k = queue.keys();
        for (name, p) in [("a", 0), ("b", 3), ("c", 0), ("d", 9)] {
            queue.enqueue(NewTask::new(name).options(of("api").priority(p))).await.unwrap();
        }
        // Its state, which marks the lanes holding tasks, is gone: every lane is read again.
        let _: () = pool.query(redis::cmd("HDEL").arg(&k[13]).arg("api")).await.unwrap();
        assert_eq!(queue.group_stats("api").await.unwrap().ready, 4);
        assert_eq!(names(&queue.claim(10).await.unwrap()), ["d", "b", "a", "c"]);
        assert!(queue.claim(10).await.unwrap().tasks.is_empty());
    }
}

redis_test! {
    async fn a_task_an_earlier_builds_enqueue_ranks_after_this_builds_state_is_claimed(redis) {
        let pool = redis.pool().await;
        let (_clock, queue) = manual(&redis, &pool);
        let k = queue.keys();
        let prefix = k[13].as_str().strip_suffix("gstate").unwrap().to_owned();
        let task = |name: &str| NewTask::new(name).options(of("mixed"));
        queue.enqueue(task("new")).await.unwrap();
        // An earlier build's enqueue, which does not read the state this build wrote, puts its
        // task in the ranked lane `gl:mixed`.
        let old: u64 = queue.enqueue(task("old")).await.unwrap().id().parse().unwrap();
        let mut c = redis::cmd("LREM");
        c.arg(format!("{prefix}gl0:mixed")).arg(0).arg(old);
        let _: () = pool.query(&c).await.unwrap();
        let mut c = redis::cmd("ZADD");
        c.arg(format!("{prefix}gl:mixed")).arg((9u64 << 49) + old).arg(old);
        let _: () = pool.query(&c).await.unwrap();
        // The claim that empties the lists finds it, and the next serves it.
        assert_eq!(names(&queue.claim(10).await.unwrap()), ["new"]);
        assert_eq!(names(&queue.claim(10).await.unwrap()), ["old"]);
        assert!(queue.claim(10).await.unwrap().tasks.is_empty());
        assert_eq!(queue.group_stats("mixed").await.unwrap().ready, 0);
    }
}

redis_test! {
    async fn a_garbage_group_state_fails_the_claim_by_name_and_stats_still_count(redis) {
        let pool = redis.pool().await;
        let (_clock, queue) = manual(&redis, &pool);
        let k = queue.keys();
        for (name, p) in [("a", 0), ("b", 3)] {
            queue.enqueue(NewTask::new(name).options(of("api").priority(p))).await.unwrap();
        }
        hset(&pool, &k[13], "api", b"garbage").await;
        match queue.claim(10).await {
            Err(QueueError::Core(Error::Corrupt { key, detail })) => {
                assert_eq!(key, k[13].as_str());
                assert!(detail.contains("group api"), "{detail}");
            }
            other => panic!("expected Corrupt naming gstate, got {other:?}"),
        }
        // Stats read every lane of a state they cannot decode.
        assert_eq!(queue.stats().await.unwrap().ready, 2);
    }
}
