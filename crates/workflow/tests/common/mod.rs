//! What the tests share: reading a store's keys raw, and the check that its indexes and
//! records agree.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use coordkit_core::{Pool, redis};
use coordkit_workflow::WorkflowStore;

pub(crate) async fn zmembers(pool: &Pool, store: &WorkflowStore, i: usize) -> Vec<String> {
    pool.query(redis::cmd("ZRANGE").arg(&store.keys()[i]).arg(0).arg(-1))
        .await
        .unwrap()
}

pub(crate) async fn record_fields(pool: &Pool, store: &WorkflowStore) -> Vec<String> {
    pool.query(redis::cmd("HKEYS").arg(&store.keys()[0]))
        .await
        .unwrap()
}

/// Every index entry has its record, every record's fields belong to a record with a header,
/// and each record sits in exactly the indexes of its status. Returns the ids with a header.
pub(crate) async fn assert_consistent(pool: &Pool, store: &WorkflowStore) -> BTreeSet<String> {
    let fields = record_fields(pool, store).await;
    let headers: BTreeSet<String> = fields
        .iter()
        .filter(|f| !f.contains(' '))
        .cloned()
        .collect();
    for f in &fields {
        let id = f.split(' ').next().unwrap();
        assert!(
            headers.contains(id),
            "field {f:?} of a record without header"
        );
    }
    let mut seen: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for i in 1..=8 {
        for m in zmembers(pool, store, i).await {
            let id = if i == 7 {
                m.split_once(' ').unwrap().1.to_owned()
            } else {
                m
            };
            seen.entry(id).or_default().push(i);
        }
    }
    for (id, indexes) in &seen {
        assert!(
            headers.contains(id),
            "{id} is in indexes {indexes:?} without a record"
        );
    }
    for id in &headers {
        let wf = store.get(id).await.unwrap();
        let Some(wf) = wf else { continue }; // its TTL ran out: not swept yet
        let mut want = match wf.info.status {
            coordkit_workflow::Status::Pending => vec![1, 2],
            coordkit_workflow::Status::Running => vec![1, 3],
            coordkit_workflow::Status::Completed => vec![4],
            coordkit_workflow::Status::Failed => vec![5],
            coordkit_workflow::Status::Cancelled => vec![6],
        };
        want.extend([7, 8]);
        assert_eq!(seen.get(id), Some(&want), "{id}: {:?}", wf.info);
    }
    headers
}
