//! Helpers of the queue's tests: raw access to a queue's hashes (for the tests that put bad
//! data there), a claim's payloads. Each test binary uses some of them.
#![allow(dead_code)]

use coordkit_core::{Key, Pool, redis};

pub(crate) async fn hget(pool: &Pool, key: &Key, field: &str) -> Option<Vec<u8>> {
    pool.query(redis::cmd("HGET").arg(key).arg(field))
        .await
        .unwrap()
}

pub(crate) async fn hset(pool: &Pool, key: &Key, field: &str, value: &[u8]) {
    let _: () = pool
        .query(redis::cmd("HSET").arg(key).arg(field).arg(value))
        .await
        .unwrap();
}

/// The payloads of a claim's tasks, as text, in the claim's order.
pub(crate) fn names(claim: &coordkit_retry_queue::Claim) -> Vec<String> {
    claim
        .tasks
        .iter()
        .map(|t| String::from_utf8_lossy(&t.payload).into_owned())
        .collect()
}
