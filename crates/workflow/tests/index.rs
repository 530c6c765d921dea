//! The namespace's index of workflow stores: every store a workflow was created or claimed in
//! is listed by `WorkflowStore::stores` in one call, exactly under concurrent handles.

use std::collections::BTreeSet;

use coordkit_testkit::redis_test;
use coordkit_workflow::{NewWorkflow, WorkflowStore};

redis_test! {
    async fn stores_are_listed_from_their_first_write(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let orders = WorkflowStore::builder(&pool, &ks, "orders").build().unwrap();
        assert!(WorkflowStore::stores(&pool, &ks).await.unwrap().names.is_empty());
        orders.create(NewWorkflow::new("checkout", "{}")).await.unwrap();
        let idle = WorkflowStore::builder(&pool, &ks, "idle").build().unwrap();
        idle.claim_next(1).await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..6 {
            let (pool, ks) = (pool.clone(), ks.clone());
            tasks.push(tokio::spawn(async move {
                for name in ["shared".to_owned(), format!("own-{t}")] {
                    let store = WorkflowStore::builder(&pool, &ks, &name).build().unwrap();
                    store.create(NewWorkflow::new("k", "{}")).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let mut expected: BTreeSet<String> =
            ["orders", "idle", "shared"].map(str::to_owned).into();
        expected.extend((0..6).map(|t| format!("own-{t}")));
        let listing = WorkflowStore::stores(&pool, &ks).await.unwrap();
        assert!(listing.malformed.is_empty());
        assert_eq!(listing.names.into_iter().collect::<BTreeSet<_>>(), expected);
        let page = WorkflowStore::stores_page(&pool, &ks, None, 2).await.unwrap();
        assert_eq!(page.names, ["idle", "orders"]);
    }
}
