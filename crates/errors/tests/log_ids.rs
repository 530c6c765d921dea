//! A record's first write is its log entry, whose id gives the record's time. Regressions
//! (issue #15): a lone record's index refresh used to find the index of another type after its
//! entry had trimmed the log; a log whose ids are far in the future gave records times beyond
//! what the next record accepts; a log at the last possible id failed the record after a new
//! signature's eviction.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coordkit_core::{Clock, Error, Key, Keyspace, ManualClock, Pool, redis};
use coordkit_errors::{ErrorEvent, ErrorTracker, ErrorTrackerBuilder};
use coordkit_testkit::garbage::overwrite_with_type;
use coordkit_testkit::redis_test;

/// The last ms of year 9999: a record's time is never later.
const TIME_MAX: u64 = 253_402_300_799_999;
const LAST_ID: &str = "18446744073709551615";

static CASE: AtomicU64 = AtomicU64::new(0);

fn event(which: char) -> ErrorEvent {
    ErrorEvent::new("k", "C", format!("failure {which}"))
}

/// A tracker (one call in flight, so concurrent records batch) that recorded A, B and C; its
/// data, index and log keys.
async fn tracker(
    pool: &Pool,
    ks: &Keyspace,
    settings: impl FnOnce(ErrorTrackerBuilder) -> ErrorTrackerBuilder,
) -> (ErrorTracker, [Key; 3]) {
    let name = format!("ids-{}", CASE.fetch_add(1, Ordering::Relaxed));
    let t = settings(ErrorTracker::builder(pool, ks, &name).max_in_flight(1))
        .build()
        .unwrap();
    for w in ['A', 'B', 'C'] {
        t.record(&event(w)).await.unwrap();
    }
    let keys = t.keys();
    (t, [keys[0].clone(), keys[1].clone(), keys[2].clone()])
}

async fn entries(pool: &Pool, log: &Key) -> redis::Value {
    pool.query(redis::cmd("XRANGE").arg(log).arg("-").arg("+"))
        .await
        .unwrap()
}

async fn dump(pool: &Pool, key: &Key) -> Option<Vec<u8>> {
    pool.query(redis::cmd("DUMP").arg(key)).await.unwrap()
}

async fn xadd(pool: &Pool, log: &Key, id: &str) {
    let _: String = pool
        .query(redis::cmd("XADD").arg(log).arg(id).arg("f").arg("x"))
        .await
        .unwrap();
}

fn corrupt_naming(r: &Result<impl std::fmt::Debug, Error>, key: &Key) {
    match r {
        Err(Error::Corrupt { key: k, detail }) if k == key.as_str() && !detail.is_empty() => {}
        other => panic!("want Corrupt naming {key}, got {other:?}"),
    }
}

redis_test! {
    async fn a_lone_refresh_on_an_index_of_another_type_trims_nothing(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let clock = ManualClock::new(1_700_000_000_000);
        // A full log: the next entry would trim A's.
        let (t, [data, seen, log]) =
            tracker(&pool, &ks, |b| b.log_max_len(3).clock(Clock::Manual(clock.clone()))).await;
        // A's index entry is due for its refresh.
        clock.advance(Duration::from_secs(2));
        overwrite_with_type(&pool, &seen, "string").await;
        let (log_before, data_before) = (entries(&pool, &log).await, dump(&pool, &data).await);
        match t.record(&event('A')).await {
            Err(Error::WrongType { key, .. }) if key == seen.as_str() => {}
            other => panic!("want WrongType naming {seen}, got {other:?}"),
        }
        assert_eq!(entries(&pool, &log).await, log_before, "the log was trimmed");
        assert_eq!(dump(&pool, &data).await, data_before);
        let _: () = pool.query(redis::cmd("DEL").arg(&seen)).await.unwrap();
        assert_eq!(t.record(&event('A')).await.unwrap().count, 2);
    }
}

redis_test! {
    async fn a_log_in_the_future_gives_no_record_its_time(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        // 10^17 is beyond what a stored time may be (2^53); 10^15 within it, but no clock's.
        for (n, far) in ["100000000000000000-0", "1000000000000000-0"].into_iter().enumerate() {
            let (t, [_, _, log]) = tracker(&pool, &ks, |b| b).await;
            xadd(&pool, &log, far).await;
            let mut last = 0;
            for count in 2..5 {
                // Lone records, then a batch (behind the first in flight).
                let recorded = if count < 4 {
                    vec![t.record(&event('A')).await.unwrap()]
                } else {
                    let calls: Vec<_> = (0..3)
                        .map(|_| {
                            let t = t.clone();
                            tokio::spawn(async move { t.record(&event('A')).await })
                        })
                        .collect();
                    let mut out = Vec::new();
                    for c in calls {
                        out.push(c.await.unwrap().unwrap());
                    }
                    out
                };
                for r in recorded {
                    assert!(r.ts_ms <= TIME_MAX, "case {n}: {r:?}");
                    assert!(r.repaired.is_empty(), "case {n}: {r:?}");
                    last = last.max(r.count);
                }
            }
            assert_eq!(last, 6, "case {n}: every occurrence counted");
            let detail = t.signature(&t.signature_of(&event('A'))).await.unwrap().unwrap();
            assert_eq!(detail.count, 6);
            assert!(detail.last_seen_ms <= TIME_MAX, "case {n}: {detail:?}");
        }
    }
}

redis_test! {
    async fn a_log_at_its_last_id_fails_naming_it_with_nothing_written(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        // At the signature cap: a new signature evicts one before it is written.
        let (t, [data, seen, log]) = tracker(&pool, &ks, |b| b.max_signatures(3)).await;
        xadd(&pool, &log, &format!("{LAST_ID}-{LAST_ID}")).await;
        let before = (dump(&pool, &data).await, dump(&pool, &seen).await, entries(&pool, &log).await);
        corrupt_naming(&t.record(&event('n')).await, &log);
        corrupt_naming(&t.record(&event('A')).await, &log);
        let after = (dump(&pool, &data).await, dump(&pool, &seen).await, entries(&pool, &log).await);
        assert!(before == after, "a failed record wrote");
        let _: () = pool.query(redis::cmd("DEL").arg(&log)).await.unwrap();
        assert!(t.record(&event('n')).await.unwrap().new_signature);
        assert_eq!(t.signatures(10).await.unwrap().len(), 3);
    }
}

redis_test! {
    async fn a_batch_never_runs_out_of_log_ids_half_way(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        for clock in [Clock::Server, Clock::Manual(ManualClock::new(1_700_000_000_000))] {
            let (t, [_, _, log]) = tracker(&pool, &ks, |b| b.clock(clock.clone())).await;
            // Two ids left: a lone record takes one, a batch of three needs three.
            let last = u64::MAX;
            xadd(&pool, &log, &format!("{LAST_ID}-{}", last - 2)).await;
            let len = |pool: Pool, log: Key| async move {
                let n: u64 = pool.query(redis::cmd("XLEN").arg(&log)).await.unwrap();
                n
            };
            let before = len(pool.clone(), log.clone()).await;
            let calls: Vec<_> = ['A', 'B', 'C', 'A']
                .into_iter()
                .map(|w| {
                    let t = t.clone();
                    tokio::spawn(async move { t.record(&event(w)).await })
                })
                .collect();
            let mut ok = 0;
            for c in calls {
                let r = c.await.unwrap();
                if r.is_ok() {
                    ok += 1;
                } else {
                    corrupt_naming(&r, &log);
                }
            }
            assert!(ok < 4, "{clock:?}: four records took ids from a log with two left");
            // Each record that failed wrote no entry; each that worked, one.
            assert_eq!(len(pool.clone(), log.clone()).await, before + ok, "{clock:?}");
            // Each that worked counted once.
            let mut counted = 0;
            for w in ['A', 'B', 'C'] {
                let sig = t.signature_of(&event(w));
                counted += t.signature(&sig).await.unwrap().unwrap().count;
            }
            assert_eq!(counted, 3 + ok, "{clock:?}");
        }
    }
}
