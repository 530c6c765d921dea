//! The Lua against the reference model: random create / claim / claim-next / resume-orphans /
//! checkpoint / extend / complete / fail / cancel / time-advance sequences, on a manual clock,
//! drive a Redis store and an in-memory store (which runs `model::StoreModel`) side by side:
//! every answer, every workflow and every listing must be the same, and the Redis store's
//! indexes must agree with its records after every step. Leases run out, TTLs run out, the
//! finished indexes overflow.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coordkit_core::{Clock, ManualClock};
use coordkit_testkit::{TestRedis, Topology};
use coordkit_workflow::{
    Claim, Claimed, Cursor, Lease, Listing, NewWorkflow, Page, Status, WorkflowStore,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Create(u8, u8),
    Claim(u8, bool),
    ClaimNext(usize, bool),
    ResumeOrphans(usize, bool),
    Checkpoint(usize, u32),
    Extend(usize),
    ExtendBy(usize, u64),
    Complete(usize),
    Fail(usize),
    Cancel(u8),
    Advance(u64),
    Stats,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..7, 0u8..2).prop_map(|(i, t)| Op::Create(i, t)),
        3 => (0u8..7, any::<bool>()).prop_map(|(i, o)| Op::Claim(i, o)),
        3 => (1usize..4, any::<bool>()).prop_map(|(m, o)| Op::ClaimNext(m, o)),
        // Fewer slots than orphans, often.
        2 => (1usize..4, any::<bool>()).prop_map(|(m, o)| Op::ResumeOrphans(m, o)),
        5 => (0usize..4, 0u32..5).prop_map(|(l, s)| Op::Checkpoint(l, s)),
        1 => (0usize..4).prop_map(Op::Extend),
        1 => (0usize..4, 0u64..3_000).prop_map(|(l, ms)| Op::ExtendBy(l, ms)),
        3 => (0usize..4).prop_map(Op::Complete),
        1 => (0usize..4).prop_map(Op::Fail),
        2 => (0u8..7).prop_map(Op::Cancel),
        4 => prop_oneof![3 => 1u64..300, 1 => 300u64..3_000].prop_map(Op::Advance),
        1 => Just(Op::Stats),
    ]
}

fn configure(b: coordkit_workflow::WorkflowStoreBuilder, clock: &ManualClock) -> WorkflowStore {
    b.clock(Clock::Manual(clock.clone()))
        .owner("o")
        .lease(Duration::from_millis(1_000))
        .active_ttl(Duration::from_millis(4_000))
        .finished_ttl(Duration::from_millis(6_000))
        .keep_finished(2)
        .sweep_limit(2)
        .build()
        .unwrap()
}

/// Every page of a listing, two at a time.
async fn all(store: &WorkflowStore, listing: &Listing) -> Vec<coordkit_workflow::WorkflowInfo> {
    let mut out = Vec::new();
    let mut after: Option<Cursor> = None;
    loop {
        let Page {
            items,
            skipped,
            next,
        } = store.list(listing, after.as_ref(), 2).await.unwrap();
        assert!(skipped.is_empty());
        out.extend(items);
        match next {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

fn by_id(c: Claimed) -> Vec<Lease> {
    assert!(c.skipped.is_empty());
    let mut l = c.leases;
    l.sort_by(|a, b| a.id().cmp(b.id()));
    l
}

fn run(topology: Topology) {
    let rt = coordkit_testkit::blocking_runtime();
    let redis = TestRedis::start(topology);
    let pool = rt.block_on(redis.pool());
    let keyspace = redis.keyspace();
    let clock = ManualClock::new(1_700_000_000_000);
    static CASE: AtomicU64 = AtomicU64::new(0);
    let cases = if topology == Topology::Cluster {
        48
    } else {
        96
    };

    proptest!(ProptestConfig::with_cases(cases), |(ops in proptest::collection::vec(op(), 1..45))| {
        let name = format!("case-{}", CASE.fetch_add(1, Ordering::Relaxed));
        let lua = configure(WorkflowStore::builder(&pool, &keyspace, &name), &clock);
        let model = configure(WorkflowStore::in_memory(&name), &clock);
        // A second orchestrator on each.
        let (lua2, model2) = (lua.with_owner("p").unwrap(), model.with_owner("p").unwrap());
        // Leases held, as (Redis's, the model's) pairs; a lease lost stays (a stale holder).
        let mut held: Vec<(Lease, Lease)> = Vec::new();
        let ids: Vec<String> = (0..7).map(|i| format!("w{i}")).collect();
        for op in ops {
            match op {
                Op::Create(i, t) => {
                    let new = NewWorkflow::new(["alpha", "beta"][t as usize], format!("in-{i}")).id(&ids[i as usize]);
                    let a = rt.block_on(lua.create(new.clone())).unwrap();
                    let b = rt.block_on(model.create(new)).unwrap();
                    prop_assert_eq!(a, b);
                }
                Op::Claim(i, second) => {
                    let (lua, model) = if second { (&lua2, &model2) } else { (&lua, &model) };
                    let a = rt.block_on(lua.claim(&ids[i as usize])).unwrap();
                    let b = rt.block_on(model.claim(&ids[i as usize])).unwrap();
                    match (a, b) {
                        (Claim::Claimed(a), Claim::Claimed(b)) => {
                            prop_assert_eq!(a.info(), b.info());
                            prop_assert_eq!(a.input(), b.input());
                            prop_assert_eq!(a.last_checkpoint(), b.last_checkpoint());
                            held.push((a, b));
                        }
                        (Claim::Busy(a), Claim::Busy(b)) | (Claim::Finished(a), Claim::Finished(b)) => prop_assert_eq!(a, b),
                        (Claim::NotFound, Claim::NotFound) => {}
                        (a, b) => prop_assert!(false, "claim: {:?} vs {:?}", a, b),
                    }
                }
                Op::ClaimNext(max, second) | Op::ResumeOrphans(max, second) => {
                    let (lua, model) = if second { (&lua2, &model2) } else { (&lua, &model) };
                    let (a, b) = if let Op::ClaimNext(..) = op {
                        (rt.block_on(lua.claim_next(max)).unwrap(), rt.block_on(model.claim_next(max)).unwrap())
                    } else {
                        (rt.block_on(lua.resume_orphans(max)).unwrap(), rt.block_on(model.resume_orphans(max)).unwrap())
                    };
                    let (a, b) = (by_id(a), by_id(b));
                    prop_assert_eq!(a.len(), b.len());
                    for (a, b) in a.into_iter().zip(b) {
                        prop_assert_eq!(a.info(), b.info());
                        prop_assert_eq!(a.last_checkpoint(), b.last_checkpoint());
                        held.push((a, b));
                    }
                }
                // `l` counts from the newest lease.
                Op::Checkpoint(l, _) | Op::Extend(l) | Op::ExtendBy(l, _) | Op::Complete(l) | Op::Fail(l) if l < held.len() => {
                    let step = if let Op::Checkpoint(_, s) = op { s } else { 1 };
                    let newest = held.len() - 1 - l;
                    let (a, b) = &mut held[newest];
                    let output = format!("out-{step}");
                    let (x, y) = rt.block_on(async {
                        match op {
                            Op::Checkpoint(..) => (a.checkpoint(step, &output).await, b.checkpoint(step, &output).await),
                            Op::Extend(_) => (a.extend().await, b.extend().await),
                            Op::ExtendBy(_, ms) => {
                                let by = Duration::from_millis(ms);
                                (a.extend_by(by).await, b.extend_by(by).await)
                            }
                            Op::Complete(_) => (a.complete("result").await, b.complete("result").await),
                            _ => (a.fail("error").await, b.fail("error").await),
                        }
                    });
                    match (x, y) {
                        (Ok(x), Ok(y)) => prop_assert_eq!(x, y),
                        // Step 0 is refused before any call, by both.
                        (Err(_), Err(_)) => prop_assert_eq!(step, 0),
                        (x, y) => prop_assert!(false, "{:?} vs {:?}", x, y),
                    }
                    prop_assert_eq!(a.info(), b.info());
                }
                Op::Checkpoint(..) | Op::Extend(_) | Op::ExtendBy(..) | Op::Complete(_) | Op::Fail(_) => {}
                Op::Cancel(i) => {
                    let a = rt.block_on(lua.cancel(&ids[i as usize])).unwrap();
                    prop_assert_eq!(a, rt.block_on(model.cancel(&ids[i as usize])).unwrap());
                }
                Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
                Op::Stats => {
                    let a = rt.block_on(lua.stats(Duration::from_millis(2_000))).unwrap();
                    let b = rt.block_on(model.stats(Duration::from_millis(2_000))).unwrap();
                    prop_assert_eq!(a, b);
                }
            }
            for id in &ids {
                let a = rt.block_on(lua.get(id)).unwrap();
                prop_assert_eq!(a, rt.block_on(model.get(id)).unwrap(), "get {}", id);
            }
            let mut listings = vec![Listing::Active, Listing::Type("alpha".into()), Listing::Type("beta".into())];
            listings.extend(Status::ALL.map(Listing::Status));
            for listing in &listings {
                let a = rt.block_on(all(&lua, listing));
                prop_assert_eq!(a, rt.block_on(all(&model, listing)), "{:?}", listing);
            }
            rt.block_on(common::assert_consistent(&pool, &lua));
        }
    });
}

#[test]
fn lua_matches_the_model_standalone() {
    run(Topology::Standalone);
}

#[test]
fn lua_matches_the_model_cluster() {
    run(Topology::Cluster);
}
