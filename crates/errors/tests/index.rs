//! The namespace's index of error trackers: every tracker an error was recorded in is listed
//! by `ErrorTracker::list` in one call, exactly, under concurrent handles.

use std::collections::BTreeSet;

use coordkit_errors::{ErrorEvent, ErrorTracker};
use coordkit_testkit::redis_test;

redis_test! {
    async fn trackers_are_listed_from_their_first_record(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let api = ErrorTracker::builder(&pool, &ks, "api").build().unwrap();
        assert!(ErrorTracker::list(&pool, &ks).await.unwrap().names.is_empty());
        api.record(&ErrorEvent::new("db", "Timeout", "took 5s")).await.unwrap();
        api.record(&ErrorEvent::new("db", "Timeout", "took 6s")).await.unwrap();

        // 8 tasks with their own handles record in 3 shared trackers and 2 of their own.
        let mut tasks = Vec::new();
        for t in 0..8 {
            let (pool, ks) = (pool.clone(), ks.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..5 {
                    let name = if i < 3 { format!("shared-{i}") } else { format!("own-{t}-{i}") };
                    let tracker = ErrorTracker::builder(&pool, &ks, &name).build().unwrap();
                    tracker.record(&ErrorEvent::new("c", "K", "boom")).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let mut expected: BTreeSet<String> = ["api".to_owned()].into();
        for t in 0..8 {
            for i in 0..5 {
                expected.insert(if i < 3 { format!("shared-{i}") } else { format!("own-{t}-{i}") });
            }
        }
        let listing = ErrorTracker::list(&pool, &ks).await.unwrap();
        assert!(listing.malformed.is_empty());
        assert_eq!(listing.names.into_iter().collect::<BTreeSet<_>>(), expected);
        let page = ErrorTracker::list_page(&pool, &ks, None, 1).await.unwrap();
        assert_eq!(page.names, ["api"]);
        assert_eq!(page.next.as_deref(), Some("api"));
    }
}
