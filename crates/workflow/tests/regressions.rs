//! Regressions for bugs found in review (issue 18's review, bugs A to G): each failed on the
//! code before its fix.

mod common;

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
        .query(
            redis::cmd("HSET")
                .arg(&store.keys()[0])
                .arg(field)
                .arg(value),
        )
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

fn corrupt_key(r: Result<impl std::fmt::Debug, WorkflowError>) -> String {
    match r {
        Err(WorkflowError::Core(Error::Corrupt { key, .. })) => key,
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

redis_test! {
    /// B: a claim returned a last checkpoint shorter than 4 bytes, which Rust reported as
    /// Corrupt after the script had taken the lease: in a batch, every workflow claimed with
    /// it stayed leased with no handle. Also a skipped id that is not UTF-8 failed the batch.
    async fn a_bad_checkpoint_is_skipped_before_anything_is_written(redis) {
        let clock = ManualClock::new(1_000_000);
        let (pool, s) = store(&redis, &clock).await;
        let mut l0 = started(&s, "w0").await;
        l0.checkpoint(1, "one").await.unwrap();
        let mut l2 = started(&s, "w2").await;
        l2.checkpoint(1, "one").await.unwrap();
        let _l1 = started(&s, "w1").await;
        hset(&pool, &s, "w0 c1", b"ab").await;
        let _: () = pool.query(redis::cmd("HDEL").arg(&s.keys()[0]).arg("w2 c1")).await.unwrap();
        // A bad record whose id is not UTF-8, in the leases index.
        let _: () = pool
            .query(redis::cmd("HSET").arg(&s.keys()[0]).arg(&b"x\xff"[..]).arg("garbage"))
            .await
            .unwrap();
        let _: () = pool
            .query(redis::cmd("ZADD").arg(&s.keys()[3]).arg(0).arg(&b"x\xff"[..]))
            .await
            .unwrap();
        clock.advance(Duration::from_secs(11));
        let (h0, h2) = (hget(&pool, &s, "w0").await, hget(&pool, &s, "w2").await);
        let c = s.resume_orphans(5).await.unwrap();
        let mut skipped = c.skipped.clone();
        skipped.sort();
        assert_eq!(skipped, ["w0", "w2", "x\u{fffd}"]);
        assert_eq!(c.leases.iter().map(|l| l.id()).collect::<Vec<_>>(), ["w1"]);
        // Nothing was written to the skipped ones.
        assert_eq!(hget(&pool, &s, "w0").await, h0);
        assert_eq!(hget(&pool, &s, "w2").await, h2);
        // By id: Corrupt naming the records, nothing written.
        assert_eq!(corrupt_key(s.claim("w0").await), s.keys()[0].as_str());
        assert_eq!(hget(&pool, &s, "w0").await, h0);
        // Repaired, it resumes from its checkpoint.
        hset(&pool, &s, "w0 c1", b"\x01\0\0\0one").await;
        let Claim::Claimed(l) = s.claim("w0").await.unwrap() else { panic!() };
        assert_eq!(l.last_checkpoint().map(|c| c.step), Some(1));
    }
}

redis_test! {
    /// A header whose owner or type is not UTF-8 decoded in the scripts but not in Rust: a
    /// step wrote, then answered Decode (found by the corruption proptest).
    async fn a_header_whose_names_are_not_utf8_is_corrupt_before_any_write(redis) {
        let clock = ManualClock::new(1_000_000);
        let (pool, s) = store(&redis, &clock).await;
        let mut l = started(&s, "w").await;
        let good = hget(&pool, &s, "w").await.unwrap();
        for bad in [&b"\xff"[..], b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"] {
            // The owner is the header's last field ("o"): replace it.
            let mut h = good[..good.len() - 3].to_vec();
            h.extend_from_slice(&u16::try_from(bad.len()).unwrap().to_le_bytes());
            h.extend_from_slice(bad);
            hset(&pool, &s, "w", &h).await;
            assert_eq!(corrupt_key(l.extend().await), s.keys()[0].as_str(), "{bad:?}");
            assert_eq!(hget(&pool, &s, "w").await.unwrap(), h);
        }
        // UTF-8 beyond ASCII is fine.
        let mut h = good[..good.len() - 3].to_vec();
        h.extend_from_slice(&[3, 0]);
        h.extend_from_slice("é!".as_bytes());
        hset(&pool, &s, "w", &h).await;
        assert_eq!(l.extend().await.unwrap(), Outcome::Done);
        assert_eq!(l.info().owner.as_deref(), Some("é!"));
    }
}

redis_test! {
    /// C: claim and create re-scored lagging index entries with one `ZADD key unpack(list)`
    /// in their write section: past ~4,000 entries Lua's unpack failed after the deletions
    /// were written, and every later call failed the same way.
    async fn thousands_of_rescores_do_not_fail_half_way(redis) {
        let clock = ManualClock::new(1_000_000);
        let pool = redis.pool().await;
        let s = WorkflowStore::builder(&pool, &redis.keyspace(), "many")
            .clock(Clock::Manual(clock.clone()))
            .lease(Duration::from_secs(5))
            .active_ttl(Duration::from_secs(10))
            .sweep_limit(10_000)
            .build()
            .unwrap();
        const N: usize = 4_100;
        for i in 0..N {
            s.create(NewWorkflow::new("t", "in").id(&format!("w{i}"))).await.unwrap();
        }
        clock.advance(Duration::from_secs(6));
        let mut leases = s.claim_next(10_000).await.unwrap().leases;
        assert_eq!(leases.len(), N);
        clock.advance(Duration::from_secs(3));
        // The headers' leases and TTLs move on; the leases and expiry indexes lag behind.
        for l in &mut leases {
            assert_eq!(l.extend().await.unwrap(), Outcome::Done);
        }
        clock.advance(Duration::from_secs(3));
        // Every entry of the leases index is due, and every header says later: re-scored.
        let c = s.resume_orphans(10_000).await.unwrap();
        assert!(c.leases.is_empty() && c.skipped.is_empty());
        // The same for the sweep of the expiry index.
        s.create(NewWorkflow::new("t", "in").id("new")).await.unwrap();
        let due: Vec<String> = pool
            .query(redis::cmd("ZRANGEBYSCORE").arg(&s.keys()[8]).arg("-inf").arg(clock.now_ms()))
            .await
            .unwrap();
        assert!(due.is_empty(), "{} not re-scored", due.len());
        let due: Vec<String> = pool
            .query(redis::cmd("ZRANGEBYSCORE").arg(&s.keys()[3]).arg("-inf").arg(clock.now_ms()))
            .await
            .unwrap();
        assert!(due.is_empty(), "{} not re-scored", due.len());
    }
}

redis_test! {
    /// D: the checkpoint limit was checked only against the lease's cached count: a clone of
    /// the lease (or any holder whose count is stale) took the header past 100,000
    /// checkpoints, after which it no longer decoded.
    async fn the_checkpoint_limit_holds_for_a_stale_lease(redis) {
        let clock = ManualClock::new(1_000_000);
        let (pool, s) = store(&redis, &clock).await;
        let mut l = started(&s, "w").await;
        // The workflow as a holder leaves it after 100,000 checkpoints (steps 1 to 100,000):
        // this handle's count is stale.
        let mut h = hget(&pool, &s, "w").await.unwrap();
        h[1..5].copy_from_slice(&100_000u32.to_le_bytes());
        h[5..9].copy_from_slice(&100_000u32.to_le_bytes());
        hset(&pool, &s, "w", &h).await;
        let r = l.checkpoint(100_001, "one more").await;
        assert!(
            matches!(r, Err(WorkflowError::TooManyCheckpoints { max: 100_000 })),
            "{r:?}"
        );
        assert_eq!(hget(&pool, &s, "w").await.unwrap(), h);
        assert_eq!(hget(&pool, &s, "w c100001").await, None);
        // The workflow still decodes, and completes.
        assert_eq!(l.complete("done").await.unwrap(), Outcome::Done);
    }
}

redis_test! {
    /// E: finishing evicted whatever record the oldest entries of the finished index named,
    /// even a running one named by a stray entry: a live workflow was deleted.
    async fn a_stray_finished_entry_never_deletes_a_live_workflow(redis) {
        let clock = ManualClock::new(1_000_000);
        let (pool, s) = store(&redis, &clock).await;
        let _l0 = started(&s, "w0").await;
        let mut l1 = started(&s, "w1").await;
        let mut l2 = started(&s, "w2").await;
        s.create(NewWorkflow::new("t", "in").id("w3")).await.unwrap();
        for (i, id) in [(4, "w0"), (4, "w3"), (6, "w0")] {
            let _: () = pool.query(redis::cmd("ZADD").arg(&s.keys()[i]).arg(0).arg(id)).await.unwrap();
        }
        clock.advance(Duration::from_millis(1));
        // keep_finished(2): the third entry of completed evicts the oldest, the stray ones.
        assert_eq!(l1.complete("r").await.unwrap(), Outcome::Done);
        assert_eq!(l2.complete("r").await.unwrap(), Outcome::Done);
        assert_eq!(s.cancel("w1").await.unwrap(), Outcome::AlreadyFinished(coordkit_workflow::Status::Completed));
        s.create(NewWorkflow::new("t", "in").id("w4")).await.unwrap();
        s.create(NewWorkflow::new("t", "in").id("w5")).await.unwrap();
        assert_eq!(s.cancel("w4").await.unwrap(), Outcome::Done);
        assert_eq!(s.cancel("w5").await.unwrap(), Outcome::Done);
        for id in ["w0", "w3"] {
            assert!(s.get(id).await.unwrap().is_some(), "{id} was deleted");
        }
        let ids = common::assert_consistent(&pool, &s).await;
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), ["w0", "w1", "w2", "w3", "w4", "w5"]);
    }
}

redis_test! {
    /// F: the sweep and the eviction deleted a record whose header does not decode, silently
    /// (and probed up to 100,000 checkpoint fields of each). They skip it now, and leave it
    /// for a listing to name.
    async fn the_sweep_and_the_eviction_keep_a_corrupt_record(redis) {
        let clock = ManualClock::new(1_000_000);
        let (pool, s) = store(&redis, &clock).await;
        let mut l0 = started(&s, "w0").await;
        let mut l1 = started(&s, "w1").await;
        l0.complete("r").await.unwrap();
        l1.checkpoint(1, "one").await.unwrap();
        s.create(NewWorkflow::new("t", "in").id("w2")).await.unwrap();
        s.create(NewWorkflow::new("t", "in").id("w3")).await.unwrap();
        hset(&pool, &s, "w0", b"bad").await;
        hset(&pool, &s, "w1", b"bad").await;
        // keep_finished(2): two more completed evict w0's entry.
        for id in ["w4", "w5"] {
            started(&s, id).await.complete("r").await.unwrap();
        }
        assert_eq!(hget(&pool, &s, "w0").await.as_deref(), Some(&b"bad"[..]));
        let page = s.list(&coordkit_workflow::Listing::Status(coordkit_workflow::Status::Completed), None, 10).await.unwrap();
        assert_eq!(page.skipped, ["w0"]);
        // Past the active TTL, a create sweeps w2 and w3, and keeps w1.
        clock.advance(Duration::from_secs(101));
        s.create(NewWorkflow::new("t", "in").id("new")).await.unwrap();
        assert_eq!(hget(&pool, &s, "w1").await.as_deref(), Some(&b"bad"[..]));
        assert_eq!(hget(&pool, &s, "w1 c1").await.as_deref(), Some(&b"\x01\0\0\0one"[..]));
        assert_eq!(hget(&pool, &s, "w2").await, None);
        assert_eq!(hget(&pool, &s, "w3").await, None);
        let mut skipped = s.restore().await.unwrap().skipped;
        skipped.sort();
        assert_eq!(skipped, ["w0", "w1"]);
        // Once the bad headers are deleted, the leftovers go with the next sweep.
        let _: () = pool.query(redis::cmd("HDEL").arg(&s.keys()[0]).arg("w0").arg("w1")).await.unwrap();
        clock.advance(Duration::from_secs(101));
        s.create(NewWorkflow::new("t", "in").id("new2")).await.unwrap();
        assert_eq!(hget(&pool, &s, "w1 c1").await, None);
    }
}

redis_test! {
    /// G: a claim counted `claims + 1` into a 4-byte field without bound (it wrapped); and
    /// a lease as long as the active TTL let a live holder lose its record.
    async fn claims_saturate_and_a_lease_must_be_shorter_than_the_active_ttl(redis) {
        let clock = ManualClock::new(1_000_000);
        let (pool, s) = store(&redis, &clock).await;
        s.create(NewWorkflow::new("t", "in").id("w")).await.unwrap();
        let mut h = hget(&pool, &s, "w").await.unwrap();
        h[65..69].copy_from_slice(&u32::MAX.to_le_bytes());
        hset(&pool, &s, "w", &h).await;
        let Claim::Claimed(l) = s.claim("w").await.unwrap() else { panic!() };
        assert_eq!(l.info().claims, u32::MAX);
        for b in [
            WorkflowStore::builder(&pool, &redis.keyspace(), "x"),
            WorkflowStore::in_memory("x"),
        ] {
            let r = b.lease(Duration::from_secs(10)).active_ttl(Duration::from_secs(10)).build();
            assert!(
                matches!(r, Err(WorkflowError::Core(Error::InvalidConfig { field: "lease", .. }))),
                "{r:?}"
            );
        }
    }
}

redis_test! {
    async fn orphans_are_resumed_by_their_headers_lease_not_the_lagging_index(redis) {
        let clock = ManualClock::new(1_000_000);
        let (_, store) = store(&redis, &clock).await;
        // a, b, c claimed in that order: the index scores their leases in that order too.
        let mut a = started(&store, "a").await;
        clock.advance(Duration::from_millis(10));
        let _b = started(&store, "b").await;
        clock.advance(Duration::from_millis(10));
        let _c = started(&store, "c").await;
        // An extend moves a's lease in its header only (the index lags behind): a now runs out
        // last.
        clock.advance(Duration::from_millis(10));
        assert_eq!(a.extend().await.unwrap(), Outcome::Done);
        // Every lease runs out; one slot at a time: b first, then c, then a.
        clock.advance(Duration::from_secs(60));
        for expected in ["b", "c", "a"] {
            let claimed = store.resume_orphans(1).await.unwrap();
            let ids: Vec<&str> = claimed.leases.iter().map(|l| l.id()).collect();
            assert_eq!(ids, [expected]);
        }
    }
}
