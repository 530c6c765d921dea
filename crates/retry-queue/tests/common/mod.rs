//! Raw access to a queue's hashes, for the tests that put bad data there.

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
