//! Orchestrators racing: for each orphan, exactly one of many concurrent claimers wins, the
//! dead owner's writes are refused, and concurrent claims of pending work never hand one
//! workflow to two owners.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use coordkit_core::{Clock, ManualClock};
use coordkit_testkit::{TestRedis, redis_test};
use coordkit_workflow::{Claim, NewWorkflow, Outcome, WorkflowStore};

async fn store(redis: &TestRedis, clock: &ManualClock) -> WorkflowStore {
    WorkflowStore::builder(&redis.pool().await, &redis.keyspace(), "race")
        .clock(Clock::Manual(clock.clone()))
        .owner("dead")
        .lease(Duration::from_secs(5))
        .build()
        .unwrap()
}

redis_test! {
    async fn exactly_one_of_many_claimers_wins_each_orphan(redis) {
        let clock = ManualClock::new(1_000_000);
        let dead = store(&redis, &clock).await;
        let pool = redis.pool().await;
        for round in 0..10 {
            let id = format!("orphan-{round}");
            dead.create(NewWorkflow::new("t", "in").id(&id)).await.unwrap();
            let Claim::Claimed(mut stale) = dead.claim(&id).await.unwrap() else { panic!() };
            stale.checkpoint(1, "one").await.unwrap();
            clock.advance(Duration::from_secs(6));
            // 50 orchestrators at once: half by id, half through resume_orphans.
            let mut tasks = Vec::new();
            for o in 0..50 {
                let s = dead.with_owner(&format!("o{o}")).unwrap();
                let id = id.clone();
                tasks.push(tokio::spawn(async move {
                    if o % 2 == 0 {
                        match s.claim(&id).await.unwrap() {
                            Claim::Claimed(l) => vec![l],
                            _ => vec![],
                        }
                    } else {
                        s.resume_orphans(5).await.unwrap().leases
                    }
                }));
            }
            let mut winners = Vec::new();
            for t in tasks {
                winners.extend(t.await.unwrap());
            }
            assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
            let mut w = winners.pop().unwrap();
            assert_eq!((w.token(), w.next_step()), (2, 2));
            assert_eq!(w.last_checkpoint().unwrap().output, b"one");
            assert_eq!(stale.checkpoint(2, "stale").await.unwrap(), Outcome::LeaseLost);
            assert_eq!(w.checkpoint(2, "two").await.unwrap(), Outcome::Done);
            assert_eq!(stale.complete("stale").await.unwrap(), Outcome::LeaseLost);
            assert_eq!(w.complete("ok").await.unwrap(), Outcome::Done);
            let wf = dead.get(&id).await.unwrap().unwrap();
            assert_eq!(wf.outcome.as_deref(), Some(&b"ok"[..]));
            assert_eq!(wf.checkpoints.len(), 2);
        }
        common::assert_consistent(&pool, &dead).await;
    }
}

redis_test! {
    async fn concurrent_claims_of_pending_work_never_share_a_workflow(redis) {
        let clock = ManualClock::new(1_000_000);
        let s = store(&redis, &clock).await;
        for i in 0..300 {
            s.create(NewWorkflow::new("t", "").id(&format!("p{i}"))).await.unwrap();
        }
        let mut tasks = Vec::new();
        for o in 0..30 {
            let s = s.with_owner(&format!("o{o}")).unwrap();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let batch = s.claim_next(3).await.unwrap().leases;
                    if batch.is_empty() {
                        return got;
                    }
                    got.extend(batch.into_iter().map(|l| l.id().to_owned()));
                }
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let unique: BTreeSet<_> = all.iter().collect();
        assert_eq!((all.len(), unique.len()), (300, 300));
        common::assert_consistent(&redis.pool().await, &s).await;
    }
}
