//! Retention: each finished index keeps its newest N and their records, evicted ones leave
//! nothing behind; records whose TTL ran out vanish from reads at once and are swept by
//! creates with every index entry; restore pages through everything in a few calls.

mod common;

use std::time::Duration;

use coordkit_core::{Clock, ManualClock};
use coordkit_testkit::{TestRedis, redis_test};
use coordkit_workflow::{Claim, Listing, NewWorkflow, Outcome, Status, WorkflowStore};

use common::{assert_consistent, record_fields};

async fn store(redis: &TestRedis, clock: &ManualClock) -> WorkflowStore {
    WorkflowStore::builder(&redis.pool().await, &redis.keyspace(), "keep")
        .clock(Clock::Manual(clock.clone()))
        .keep_finished(3)
        .lease(Duration::from_secs(90))
        .active_ttl(Duration::from_secs(100))
        .finished_ttl(Duration::from_secs(1_000))
        .sweep_limit(1_000)
        .build()
        .unwrap()
}

redis_test! {
    async fn finished_indexes_keep_the_newest_and_delete_the_rest(redis) {
        let clock = ManualClock::new(1_000_000);
        let pool = redis.pool().await;
        let s = store(&redis, &clock).await;
        for i in 0..10 {
            let id = format!("w{i}");
            s.create(NewWorkflow::new("t", "input").id(&id)).await.unwrap();
            let Claim::Claimed(mut l) = s.claim(&id).await.unwrap() else { panic!() };
            assert_eq!(l.checkpoint(1, "one").await.unwrap(), Outcome::Done);
            assert_eq!(l.checkpoint(2, "two").await.unwrap(), Outcome::Done);
            let o = if i % 2 == 0 { l.complete("r").await } else { l.fail("e").await };
            assert_eq!(o.unwrap(), Outcome::Done);
            clock.advance(Duration::from_millis(10));
        }
        let ids = |p: coordkit_workflow::Page| p.items.into_iter().map(|i| i.id).collect::<Vec<_>>();
        let done = ids(s.list(&Listing::Status(Status::Completed), None, 100).await.unwrap());
        assert_eq!(done, ["w4", "w6", "w8"]);
        let failed = ids(s.list(&Listing::Status(Status::Failed), None, 100).await.unwrap());
        assert_eq!(failed, ["w5", "w7", "w9"]);
        let left = assert_consistent(&pool, &s).await;
        assert_eq!(left.len(), 6);
        assert!(s.get("w0").await.unwrap().is_none());
        // The evicted records' fields (input, checkpoints, result) are gone too.
        assert_eq!(record_fields(&pool, &s).await.len(), 6 * 6);
        let stats = s.stats(Duration::from_secs(3600)).await.unwrap();
        assert_eq!(stats.by_status[&Status::Completed], 3);
        assert_eq!(stats.by_status[&Status::Failed], 3);
    }
}

redis_test! {
    async fn records_whose_ttl_ran_out_vanish_and_are_swept(redis) {
        let clock = ManualClock::new(1_000_000);
        let pool = redis.pool().await;
        let s = store(&redis, &clock).await;
        for i in 0..5 {
            s.create(NewWorkflow::new("t", "x").id(&format!("a{i}"))).await.unwrap();
        }
        let Claim::Claimed(mut l) = s.claim("a0").await.unwrap() else { panic!() };
        l.complete("r").await.unwrap();
        let Claim::Claimed(mut l1) = s.claim("a1").await.unwrap() else { panic!() };
        clock.advance(Duration::from_secs(60));
        // Activity refreshes the TTL.
        assert_eq!(l1.extend_by(Duration::from_secs(500)).await.unwrap(), Outcome::Done);
        clock.advance(Duration::from_secs(50));
        // a2..a4 had no activity for 110 s: gone from every read before any sweep.
        assert!(s.get("a2").await.unwrap().is_none());
        assert!(matches!(s.claim("a3").await.unwrap(), Claim::NotFound));
        let active: Vec<String> = s.list(&Listing::Active, None, 100).await.unwrap().items.into_iter().map(|i| i.id).collect();
        assert_eq!(active, ["a1"]);
        s.create(NewWorkflow::new("t", "x").id("b")).await.unwrap();
        let ids = assert_consistent(&pool, &s).await;
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), ["a0", "a1", "b"]);
        // The finished one lasts its own TTL.
        clock.advance(Duration::from_secs(1_000));
        s.create(NewWorkflow::new("t", "x").id("c")).await.unwrap();
        let ids = assert_consistent(&pool, &s).await;
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), ["c"]);
        let stats = s.stats(Duration::from_secs(3600)).await.unwrap();
        assert_eq!(stats.by_status.values().sum::<u64>(), 1);
    }
}

redis_test! {
    async fn restore_pages_through_everything_in_a_few_calls(redis) {
        let clock = ManualClock::new(1_000_000);
        let s = WorkflowStore::builder(&redis.pool().await, &redis.keyspace(), "restore")
            .clock(Clock::Manual(clock.clone()))
            .keep_finished(50)
            .build()
            .unwrap();
        // 2,500 active workflows, many sharing a creation time, some claimed.
        for i in 0..2_500 {
            s.create(NewWorkflow::new("t", "").id(&format!("w{i:05}"))).await.unwrap();
            if i % 7 == 0 {
                clock.advance(Duration::from_millis(1));
            }
        }
        let claimed = s.claim_next(300).await.unwrap();
        assert_eq!(claimed.leases.len(), 300);
        for mut l in claimed.leases.into_iter().take(80) {
            assert_eq!(l.complete("r").await.unwrap(), Outcome::Done);
        }
        let r = s.restore().await.unwrap();
        assert_eq!(r.active.len(), 2_420);
        assert_eq!(r.finished.len(), 50);
        let mut ids: Vec<&str> = r.active.iter().map(|i| i.id.as_str()).collect();
        ids.dedup();
        assert_eq!(ids.len(), 2_420, "each active workflow once");
        assert!(r.calls <= 6, "{} calls", r.calls);
        // Paging by hand with a small page, while workflows finish between pages, sees every
        // workflow that stays active exactly once.
        let mut seen = Vec::new();
        let mut after = None;
        let mut finishing = s.claim_next(10).await.unwrap().leases;
        loop {
            let page = s.list(&Listing::Active, after.as_ref(), 97).await.unwrap();
            seen.extend(page.items.into_iter().map(|i| i.id));
            if let Some(mut l) = finishing.pop() {
                l.fail("e").await.unwrap();
            }
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let unique: std::collections::BTreeSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "no workflow twice");
        let now_active = s.restore().await.unwrap().active;
        assert_eq!(now_active.len(), 2_410);
        for i in &now_active {
            assert!(unique.contains(&i.id), "{} missed", i.id);
        }
    }
}
