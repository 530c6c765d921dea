//! Counts at the largest value the script accepts from storage (2^48 - 1, issue #15): the
//! script adds to them without writing a value its next call refuses. Regressions: the epoch,
//! the consecutive failures, the re-openings and a time bucket's calls used to be written as
//! 2^48, and every later call on the breaker failed with CORRUPT.

use std::time::Duration;

use coordkit_circuit_breaker::{
    BreakerConfig, CircuitBreaker, Forced, OpenDuration, Outcome, PermitKind, State, Window,
};
use coordkit_core::{Clock, Key, Keyspace, ManualClock, Pool, redis};
use coordkit_testkit::redis_test;

const MAXI: u64 = (1 << 48) - 1;

fn breaker(
    pool: &Pool,
    ks: &Keyspace,
    name: &str,
    time: bool,
    clock: &ManualClock,
) -> CircuitBreaker {
    let config = BreakerConfig::builder()
        .window(if time {
            Window::Time {
                length: Duration::from_secs(4),
                buckets: 4,
            }
        } else {
            Window::Count(4)
        })
        .minimum_calls(4)
        .failure_rate(1.0)
        .consecutive_failures(None)
        .open_duration(OpenDuration::Fixed(Duration::from_secs(10)))
        .half_open_permits(1)
        .half_open_successes(1)
        .half_open_max_wait(None)
        .clock(Clock::Manual(clock.clone()))
        .build()
        .unwrap();
    CircuitBreaker::builder(pool, ks, name)
        .config(config)
        .build()
        .unwrap()
}

async fn record(b: &CircuitBreaker, outcome: Outcome) {
    let a = b.raw_acquire("p").await.unwrap();
    assert!(a.admitted, "{a:?}");
    let kind = a.kind.unwrap();
    b.raw_record("p", a.epoch, kind, outcome, 1).await.unwrap();
}

/// Sets number `index` of the packed doubles in `field` of the state hash.
async fn set_number(pool: &Pool, key: &Key, field: &str, index: usize, value: u64) {
    let mut bytes: Vec<u8> = pool
        .query(redis::cmd("HGET").arg(key).arg(field))
        .await
        .unwrap();
    bytes[index * 8..index * 8 + 8].copy_from_slice(&(value as f64).to_be_bytes());
    let _: () = pool
        .query(redis::cmd("HSET").arg(key).arg(field).arg(bytes))
        .await
        .unwrap();
}

redis_test! {
    async fn an_epoch_at_its_cap_stays_there(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let clock = ManualClock::new(1_700_000_000_000);
        let b = breaker(&pool, &ks, "epoch", false, &clock);
        b.clear().await.unwrap();
        set_number(&pool, b.state_key(), "s", 1, MAXI).await;
        assert_eq!(b.force(Forced::Open).await.unwrap(), (State::ForcedOpen, MAXI));
        assert_eq!(b.snapshot().await.unwrap().epoch, MAXI);
        assert_eq!(b.clear().await.unwrap(), (State::Closed, MAXI));
        record(&b, Outcome::Success).await;
        assert_eq!(b.snapshot().await.unwrap().calls, 1);
    }
}

redis_test! {
    async fn consecutive_failures_at_their_cap_stay_there(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let clock = ManualClock::new(1_700_000_000_000);
        for time in [false, true] {
            let b = breaker(&pool, &ks, &format!("cf-{time}"), time, &clock);
            record(&b, Outcome::Failure).await;
            set_number(&pool, b.state_key(), "s", 2, MAXI).await;
            record(&b, Outcome::Failure).await;
            let snapshot = b.snapshot().await.unwrap();
            assert_eq!((snapshot.state, snapshot.consecutive_failures), (State::Closed, MAXI));
            record(&b, Outcome::Success).await;
            assert_eq!(b.snapshot().await.unwrap().consecutive_failures, 0);
        }
    }
}

redis_test! {
    async fn reopenings_at_their_cap_stay_there(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let clock = ManualClock::new(1_700_000_000_000);
        let b = breaker(&pool, &ks, "rc", false, &clock);
        for _ in 0..4 {
            record(&b, Outcome::Failure).await;
        }
        assert_eq!(b.snapshot().await.unwrap().state, State::Open);
        clock.advance(Duration::from_secs(10));
        let probe = b.raw_acquire("probe").await.unwrap();
        assert_eq!(probe.kind, Some(PermitKind::Probe));
        set_number(&pool, b.state_key(), "c", 2, MAXI).await;
        b.raw_record("probe", probe.epoch, PermitKind::Probe, Outcome::Failure, 1)
            .await
            .unwrap();
        let snapshot = b.snapshot().await.unwrap();
        assert_eq!((snapshot.state, snapshot.reopenings), (State::Open, MAXI));
        // Open for its fixed duration, then it heals as ever.
        clock.advance(Duration::from_secs(10));
        record(&b, Outcome::Success).await;
        assert_eq!(b.snapshot().await.unwrap().state, State::Closed);
    }
}

redis_test! {
    async fn a_bucket_at_its_cap_stays_there(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let clock = ManualClock::new(1_700_000_000_000);
        let b = breaker(&pool, &ks, "bucket", true, &clock);
        record(&b, Outcome::Success).await;
        let fields: Vec<String> = pool.query(redis::cmd("HKEYS").arg(b.state_key())).await.unwrap();
        let field = fields.into_iter().find(|f| f.starts_with('b')).unwrap();
        let value: String = pool.query(redis::cmd("HGET").arg(b.state_key()).arg(&field)).await.unwrap();
        let id = value.split(':').next().unwrap().to_owned();
        let full = format!("{id}:{MAXI}:0:0");
        let _: () = pool.query(redis::cmd("HSET").arg(b.state_key()).arg(&field).arg(&full)).await.unwrap();
        record(&b, Outcome::Success).await;
        let stored: String = pool.query(redis::cmd("HGET").arg(b.state_key()).arg(&field)).await.unwrap();
        assert_eq!(stored, full);
        let snapshot = b.snapshot().await.unwrap();
        assert_eq!((snapshot.state, snapshot.calls, snapshot.failures), (State::Closed, MAXI, 0));
    }
}
