//! Bad input: oversized inputs, checkpoints and results, invalid names and ids, bad settings:
//! clear errors naming what is wrong, nothing written.

mod common;

use coordkit_core::Error;
use coordkit_testkit::{TestRedis, redis_test};
use coordkit_workflow::{Claim, NewWorkflow, Outcome, WorkflowError, WorkflowStore};

async fn store(redis: &TestRedis) -> WorkflowStore {
    WorkflowStore::builder(&redis.pool().await, &redis.keyspace(), "input")
        .max_input_bytes(10)
        .max_checkpoint_bytes(20)
        .max_result_bytes(30)
        .build()
        .unwrap()
}

fn too_large(r: Result<impl std::fmt::Debug, WorkflowError>, what: &str) {
    match r {
        Err(WorkflowError::TooLarge { what: w, max, .. }) => {
            assert_eq!(w, what);
            assert!(max > 0);
        }
        other => panic!("expected TooLarge {what}, got {other:?}"),
    }
}

fn invalid_name(r: Result<impl std::fmt::Debug, WorkflowError>, what: &str) {
    match r {
        Err(WorkflowError::Core(Error::InvalidName { what: w, .. })) => assert_eq!(w, what),
        other => panic!("expected InvalidName {what}, got {other:?}"),
    }
}

redis_test! {
    async fn bad_input_is_refused_and_nothing_is_written(redis) {
        let pool = redis.pool().await;
        let s = store(&redis).await;
        too_large(s.create(NewWorkflow::new("t", vec![0u8; 11]).id("big")).await, "input");
        invalid_name(s.create(NewWorkflow::new("t", "").id("a b")).await, "workflow id");
        invalid_name(s.create(NewWorkflow::new("t", "").id("a\"b")).await, "workflow id");
        invalid_name(s.create(NewWorkflow::new("t", "").id("")).await, "workflow id");
        invalid_name(s.create(NewWorkflow::new("{t}", "").id("x")).await, "workflow type");
        invalid_name(s.claim("a}b").await, "workflow id");
        invalid_name(s.get("a\\b").await, "workflow id");
        assert!(common::record_fields(&pool, &s).await.is_empty());

        s.create(NewWorkflow::new("t", vec![1u8; 10]).id("w")).await.unwrap();
        let Claim::Claimed(mut l) = s.claim("w").await.unwrap() else { panic!() };
        too_large(l.checkpoint(1, vec![0u8; 21]).await, "checkpoint");
        assert!(matches!(l.checkpoint(0, "x").await, Err(WorkflowError::StepZero)));
        too_large(l.complete(vec![0u8; 31]).await, "result");
        too_large(l.fail(vec![0u8; 31]).await, "error");
        let wf = s.get("w").await.unwrap().unwrap();
        assert!(wf.checkpoints.is_empty() && wf.outcome.is_none());
        assert_eq!(l.checkpoint(1, vec![0u8; 20]).await.unwrap(), Outcome::Done);
        assert_eq!(l.complete(vec![0u8; 30]).await.unwrap(), Outcome::Done);
        // Unknown ids are values, not errors.
        assert!(s.get("unknown").await.unwrap().is_none());
        assert!(matches!(s.claim("unknown").await.unwrap(), Claim::NotFound));
        assert_eq!(s.cancel("unknown").await.unwrap(), Outcome::NotFound);
        common::assert_consistent(&pool, &s).await;
    }
}

redis_test! {
    async fn bad_settings_name_their_setter(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let field = |r: Result<WorkflowStore, WorkflowError>| match r {
            Err(WorkflowError::Core(Error::InvalidConfig { field, .. })) => field,
            other => panic!("expected InvalidConfig, got {other:?}"),
        };
        let b = || WorkflowStore::builder(&pool, &ks, "s");
        assert_eq!(field(b().keep_finished(0).build()), "keep_finished");
        assert_eq!(field(b().lease(std::time::Duration::ZERO).build()), "lease");
        assert_eq!(field(b().active_ttl(std::time::Duration::ZERO).build()), "active_ttl");
        assert_eq!(field(b().finished_ttl(std::time::Duration::from_secs(u64::MAX)).build()), "finished_ttl");
        assert_eq!(field(b().sweep_limit(0).build()), "sweep_limit");
        assert_eq!(field(b().max_input_bytes(0).build()), "max_input_bytes");
        assert!(matches!(b().owner("a b").build(), Err(WorkflowError::Core(Error::InvalidName { what: "owner", .. }))));
        assert!(matches!(WorkflowStore::builder(&pool, &ks, "a{b").build(), Err(WorkflowError::Core(Error::InvalidName { .. }))));
        assert!(matches!(WorkflowStore::in_memory("").build(), Err(WorkflowError::Core(Error::InvalidName { .. }))));
        let s = b().build().unwrap();
        assert!(format!("{s:?}").contains("wf:s"));
        assert!(matches!(s.claim_next(0).await, Err(WorkflowError::Core(Error::InvalidConfig { field: "max", .. }))));
        assert!(WorkflowStore::in_memory("m").build().unwrap().events().await.is_err());
    }
}
