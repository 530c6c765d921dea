//! Regressions for bugs found in review (issue 18's review, bugs A to G): each failed on the
//! code before its fix.

use std::time::Duration;

use coordkit_core::{Clock, Error, ManualClock, Pool, redis};
use coordkit_testkit::{TestRedis, redis_test};
use coordkit_workflow::{Claim, Lease, NewWorkflow, Outcome, WorkflowError, WorkflowStore};

async fn store(redis: &TestRedis, clock: &ManualClock) -> (Pool, WorkflowStore) {
    let pool = redis.pool().await;
    let store = WorkflowStore::builder(&pool, &redis.keyspace(), "reg")
        .owner("o")
        .clock(Clock::Manual(clock.clone()))
        .lease(Duration::from_secs(10))
        .active_ttl(Duration::from_secs(100))
        .keep_finished(2)
        .build()
        .unwrap();
    (pool, store)
}

async fn started(store: &WorkflowStore, id: &str) -> Lease {
    store
        .create(NewWorkflow::new("t", "in").id(id))
        .await
        .unwrap();
    match store.claim(id).await.unwrap() {
        Claim::Claimed(l) => l,
        other => panic!("{other:?}"),
    }
}

async fn hget(pool: &Pool, store: &WorkflowStore, field: &str) -> Option<Vec<u8>> {
    pool.query(redis::cmd("HGET").arg(&store.keys()[0]).arg(field))
        .await
        .unwrap()
}

async fn hset(pool: &Pool, store: &WorkflowStore, field: &str, value: &[u8]) {
    let _: () = pool
        .query(redis::cmd("HSET").arg(&store.keys()[0]).arg(field).arg(value))
        .await
        .unwrap();
}

fn invalid_config(r: &Result<Outcome, WorkflowError>) -> &'static str {
    match r {
        Err(WorkflowError::Core(Error::InvalidConfig { field, .. })) => field,
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

redis_test! {
    /// A: `extend_by` with a huge duration stored a lease past 2^53, after which the header no
    /// longer decoded and every call on the workflow was Corrupt.
    async fn extend_by_a_huge_duration_is_refused_and_the_workflow_lives_on(redis) {
        let clock = ManualClock::new(1_000_000);
        let (_pool, s) = store(&redis, &clock).await;
        let mut l = started(&s, "w").await;
        for by in [Duration::MAX, Duration::from_millis((1 << 40) + 1)] {
            assert_eq!(invalid_config(&l.extend_by(by).await), "extend_by");
        }
        // The largest allowed works, and the workflow still decodes.
        assert_eq!(l.extend_by(Duration::from_millis(1 << 40)).await.unwrap(), Outcome::Done);
        assert_eq!(l.lease_until_ms(), 1_000_000 + (1 << 40));
        assert!(s.get("w").await.unwrap().is_some());
        assert_eq!(l.checkpoint(1, "x").await.unwrap(), Outcome::Done);
        // In memory the same.
        let m = WorkflowStore::in_memory("reg").clock(Clock::Manual(clock.clone())).build().unwrap();
        let mut l = started(&m, "w").await;
        assert_eq!(invalid_config(&l.extend_by(Duration::MAX).await), "extend_by");
    }
}
