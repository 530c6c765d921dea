//! A first look at coordkit-core: one pool, a namespaced instance, an atomic script that
//! changes state and emits its event in the same round trip, and a subscriber that sees it.
//!
//! ```text
//! cargo run --example quickstart            # starts a throwaway redis-server
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example quickstart
//! ```
//!
//! The full fleet demo (every primitive at work) arrives with the primitives themselves.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use coordkit::core::{Error, Keyspace, Pool, PoolConfig, Script};
use coordkit_testkit::RedisServer;
use serde::Deserialize;

/// Sets an agent's status and counts the change; emits `status_changed` from the same script.
static SET_STATUS: Script = Script::new(
    "set-status",
    "-- KEYS[1] the agent's status hash.\n\
     -- ARGV[1] channel, ARGV[2] agent, ARGV[3] status, ARGV[4] now_ms (\"\" = server time).\n\
     -- Returns the agent's number of status changes.\n\
     ck_expect_type(KEYS[1], 'hash')\n\
     local now = ck_now(ARGV[4])\n\
     local old = redis.call('HGET', KEYS[1], 'status') or 'unknown'\n\
     redis.call('HSET', KEYS[1], 'status', ARGV[3], 'updated_ms', now)\n\
     local changes = redis.call('HINCRBY', KEYS[1], 'changes', 1)\n\
     ck_emit(ARGV[1], 'status_changed', 'quickstart', ARGV[2], now, {from = old, to = ARGV[3]})\n\
     return changes",
);

#[derive(Debug, Deserialize)]
struct StatusChange {
    from: String,
    to: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // REDIS_URL when set; otherwise a throwaway server that lives as long as this program.
    let (config, _server) = match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => (PoolConfig::from_url(&url)?, None),
        _ => {
            let server = RedisServer::start()?;
            println!("started a throwaway redis-server on {}", server.addr());
            (PoolConfig::from_url(&server.url())?, Some(server))
        }
    };
    let pool = Pool::connect(config).await.map_err(|e| {
        eprintln!("cannot reach Redis: {e}");
        e
    })?;
    println!("connected: {:?} at {}", pool.topology(), pool.address());

    let keyspace = Keyspace::new("quickstart")?;
    let channel = keyspace.channel("agents", "status_changed")?;
    let mut events = pool
        .subscriber()
        .pattern(keyspace.channel_pattern(Some("agents"))?)
        .subscribe::<StatusChange>()
        .await?;

    for (agent, status) in [("planner", "busy"), ("coder", "busy"), ("planner", "idle")] {
        let keys = keyspace.instance("agent", agent)?;
        let changes: u64 = SET_STATUS
            .prepare()
            .key(&keys.key("status"))
            .arg(&channel)
            .arg(agent)
            .arg(status)
            .arg("")
            .invoke(&pool)
            .await?;
        let received = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await?
            .ok_or("the subscriber ended")?;
        let event = received.event;
        println!(
            "{agent:>8}: {} -> {} (change #{changes}, event {} at server time {} ms)",
            event.payload.from, event.payload.to, event.kind, event.ts_ms
        );
    }

    // Bad input is an error that says what is wrong, never a panic.
    match keyspace.instance("agent", "bad name{}") {
        Err(e @ Error::InvalidName { .. }) => println!("rejected as expected: {e}"),
        other => return Err(format!("expected a rejected name, got {other:?}").into()),
    }

    let stats = events.stats();
    println!(
        "subscriber: {} events received, {} undecodable",
        stats.received, stats.decode_errors
    );
    events.shutdown().await;
    Ok(())
}
