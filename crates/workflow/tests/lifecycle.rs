//! A workflow's life on both topologies and in memory: create (idempotent), claim, checkpoint,
//! complete / fail / cancel, lease loss and resume, the answers of every refused write, and
//! the indexes and events that go with them.

use std::time::Duration;

use coordkit_core::{Clock, ManualClock};
use coordkit_testkit::{TestRedis, redis_test};
use coordkit_workflow::{
    Claim, Created, Listing, NewWorkflow, Outcome, Status, WorkflowStore, WorkflowStoreBuilder,
};

async fn store(redis: &TestRedis, name: &str, owner: &str, clock: &ManualClock) -> WorkflowStore {
    configure(
        WorkflowStore::builder(&redis.pool().await, &redis.keyspace(), name),
        owner,
        clock,
    )
}

fn configure(b: WorkflowStoreBuilder, owner: &str, clock: &ManualClock) -> WorkflowStore {
    b.owner(owner)
        .clock(Clock::Manual(clock.clone()))
        .lease(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn claimed(c: Claim) -> coordkit_workflow::Lease {
    match c {
        Claim::Claimed(l) => l,
        other => panic!("expected a lease, got {other:?}"),
    }
}

/// The whole life, for any backend: `a` and `b` are two orchestrators of one store.
async fn life(a: WorkflowStore, b: WorkflowStore, clock: ManualClock) {
    let t0 = clock.now_ms();
    let created = a
        .create(NewWorkflow::new("report", "in").id("w1"))
        .await
        .unwrap();
    let Created::Created(info) = &created else {
        panic!("{created:?}")
    };
    assert_eq!(
        (info.status, info.created_ms, info.token),
        (Status::Pending, t0, 0)
    );
    // Idempotent: the same id creates nothing, whatever the input.
    let again = b
        .create(NewWorkflow::new("other", "x").id("w1"))
        .await
        .unwrap();
    assert!(
        matches!(&again, Created::Exists(i) if i.kind == "report"),
        "{again:?}"
    );

    let mut l1 = claimed(a.claim("w1").await.unwrap());
    assert_eq!((l1.token(), l1.next_step(), l1.input()), (1, 1, &b"in"[..]));
    assert!(l1.last_checkpoint().is_none() && !l1.resumed());
    assert_eq!(l1.info().owner.as_deref(), Some("a"));
    // A live lease is not taken.
    assert!(
        matches!(b.claim("w1").await.unwrap(), Claim::Busy(i) if i.owner.as_deref() == Some("a"))
    );

    assert_eq!(l1.checkpoint(1, "one").await.unwrap(), Outcome::Done);
    assert_eq!(
        l1.checkpoint(1, "again").await.unwrap(),
        Outcome::StepDone { step: 1 }
    );
    assert_eq!(l1.checkpoint(3, "three").await.unwrap(), Outcome::Done);
    assert_eq!(
        l1.checkpoint(2, "late").await.unwrap(),
        Outcome::StepDone { step: 3 }
    );
    assert_eq!(l1.next_step(), 4);

    // a stalls: its lease runs out, b resumes from the last checkpoint.
    clock.advance(Duration::from_secs(11));
    assert_eq!(l1.extend().await.unwrap(), Outcome::LeaseLost);
    assert_eq!(l1.checkpoint(4, "x").await.unwrap(), Outcome::LeaseLost);
    let mut orphans = b.resume_orphans(10).await.unwrap();
    assert_eq!(orphans.leases.len(), 1);
    let mut l2 = orphans.leases.remove(0);
    assert!(l2.resumed());
    assert_eq!((l2.token(), l2.next_step()), (2, 4));
    assert_eq!(
        l2.last_checkpoint().map(|c| (c.step, c.output.clone())),
        Some((3, b"three".to_vec()))
    );
    assert_eq!(l2.info().started_ms, Some(t0));
    // The stale holder writes nothing, whatever it tries.
    assert_eq!(l1.checkpoint(4, "stale").await.unwrap(), Outcome::LeaseLost);
    assert_eq!(l1.complete("stale").await.unwrap(), Outcome::LeaseLost);
    assert_eq!(l1.fail("stale").await.unwrap(), Outcome::LeaseLost);
    let wf = a.get("w1").await.unwrap().unwrap();
    assert_eq!(wf.checkpoints.len(), 2);
    assert_eq!(
        (wf.info.status, wf.info.token, wf.info.claims),
        (Status::Running, 2, 2)
    );

    assert_eq!(l2.checkpoint(4, "four").await.unwrap(), Outcome::Done);
    assert_eq!(l2.complete("result").await.unwrap(), Outcome::Done);
    assert_eq!(
        l2.complete("result").await.unwrap(),
        Outcome::AlreadyFinished(Status::Completed)
    );
    assert_eq!(
        l2.checkpoint(5, "after").await.unwrap(),
        Outcome::AlreadyFinished(Status::Completed)
    );
    assert_eq!(l1.complete("stale").await.unwrap(), Outcome::LeaseLost);
    let wf = b.get("w1").await.unwrap().unwrap();
    assert_eq!(wf.info.status, Status::Completed);
    assert_eq!(wf.outcome.as_deref(), Some(&b"result"[..]));
    let steps: Vec<u32> = wf.checkpoints.iter().map(|c| c.step).collect();
    assert_eq!(steps, [1, 3, 4]);
    assert_eq!(wf.info.finished_ms, Some(clock.now_ms()));
    assert!(matches!(a.claim("w1").await.unwrap(), Claim::Finished(_)));

    // Fail and cancel.
    a.create(NewWorkflow::new("report", "").id("w2"))
        .await
        .unwrap();
    a.create(NewWorkflow::new("chat", "").id("w3"))
        .await
        .unwrap();
    a.create(NewWorkflow::new("chat", "").id("w4"))
        .await
        .unwrap();
    let mut next = a.claim_next(1).await.unwrap();
    assert_eq!(next.leases.len(), 1);
    let mut l3 = next.leases.remove(0);
    assert_eq!(l3.id(), "w2");
    assert_eq!(l3.fail("boom").await.unwrap(), Outcome::Done);
    assert_eq!(b.cancel("w3").await.unwrap(), Outcome::Done);
    assert_eq!(
        b.cancel("w3").await.unwrap(),
        Outcome::AlreadyFinished(Status::Cancelled)
    );
    assert_eq!(b.cancel("nope").await.unwrap(), Outcome::NotFound);
    let mut l4 = claimed(a.claim("w4").await.unwrap());
    assert_eq!(b.cancel("w4").await.unwrap(), Outcome::Done);
    assert_eq!(l4.checkpoint(1, "x").await.unwrap(), Outcome::LeaseLost);
    assert!(matches!(a.claim("nope").await.unwrap(), Claim::NotFound));

    // Indexes.
    let ids = |p: coordkit_workflow::Page| p.items.into_iter().map(|i| i.id).collect::<Vec<_>>();
    assert_eq!(
        ids(a
            .list(&Listing::Status(Status::Completed), None, 10)
            .await
            .unwrap()),
        ["w1"]
    );
    assert_eq!(
        ids(a
            .list(&Listing::Status(Status::Failed), None, 10)
            .await
            .unwrap()),
        ["w2"]
    );
    assert_eq!(
        ids(a
            .list(&Listing::Status(Status::Cancelled), None, 10)
            .await
            .unwrap()),
        ["w3", "w4"]
    );
    assert_eq!(
        ids(a
            .list(&Listing::Type("chat".into()), None, 10)
            .await
            .unwrap()),
        ["w3", "w4"]
    );
    assert!(
        a.list(&Listing::Active, None, 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let stats = a.stats(Duration::from_secs(60)).await.unwrap();
    assert_eq!(stats.by_status[&Status::Completed], 1);
    assert_eq!(stats.by_status[&Status::Cancelled], 2);
    assert_eq!(stats.by_type[&("chat".to_owned(), Status::Cancelled)], 2);
    assert_eq!(stats.finished_in_window.values().sum::<u64>(), 4);
    assert_eq!(stats.duration_p95_ms, Some(11_000));
}

redis_test! {
    async fn a_workflow_lives_and_its_stale_holder_writes_nothing(redis) {
        let clock = ManualClock::new(1_000_000);
        let a = store(&redis, "life", "a", &clock).await;
        let b = a.with_owner("b").unwrap();
        let mut events = a.events().await.unwrap();
        life(a, b, clock).await;
        // Each kind has its channel: a cluster may deliver two channels' messages in
        // another order, so the count of each kind is what is checked.
        let mut kinds = Vec::new();
        while kinds.len() < 15 {
            let e = tokio::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .expect("the events arrive")
                .expect("the stream is open");
            assert_eq!(e.id.len(), 2, "{e:?}");
            kinds.push(e.kind.as_str());
        }
        kinds.sort_unstable();
        let mut want = [
            "created", "started", "checkpointed", "checkpointed", "resumed", "checkpointed",
            "completed", "created", "created", "created", "started", "failed", "cancelled",
            "started", "cancelled",
        ];
        want.sort_unstable();
        assert_eq!(kinds, want);
        assert!(events.try_recv().is_none());
    }
}

#[tokio::test]
async fn an_in_memory_store_lives_the_same_life() {
    let clock = ManualClock::new(1_000_000);
    let a = configure(WorkflowStore::in_memory("life"), "a", &clock);
    // A second build would be another store: `with_owner` is a handle on the same one.
    let b = a.with_owner("b").unwrap();
    life(a, b, clock).await;
}
