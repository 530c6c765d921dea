//! Events end to end: scripts publish, the subscriber decodes, counts and resubscribes.

use std::time::Duration;

use coordkit_core::{Event, Pool, Script, Subscriber, events};
use coordkit_testkit::redis_test;
use serde::Deserialize;

static TRANSITION: Script = Script::new(
    "transition",
    "-- KEYS[1] state hash. ARGV[1] channel, ARGV[2] entity, ARGV[3] new state, ARGV[4] now_ms.\n\
     -- Sets the state and emits `changed` from the same script. Returns the timestamp.\n\
     local now = ck_now(ARGV[4])\n\
     local old = redis.call('HGET', KEYS[1], 'state') or 'none'\n\
     redis.call('HSET', KEYS[1], 'state', ARGV[3])\n\
     ck_emit(ARGV[1], 'changed', 'test', ARGV[2], now, {from = old, to = ARGV[3]})\n\
     return now",
);

#[derive(Debug, Deserialize, PartialEq)]
struct Change {
    from: String,
    to: String,
}

const WAIT: Duration = Duration::from_secs(15);

async fn next<P>(sub: &mut Subscriber<P>) -> coordkit_core::Received<P> {
    tokio::time::timeout(WAIT, sub.recv())
        .await
        .expect("no event arrived")
        .expect("the subscriber ended")
}

async fn transition(pool: &Pool, key: &coordkit_core::Key, channel: &str, to: &str) -> u64 {
    TRANSITION
        .prepare()
        .key(key)
        .arg(channel)
        .arg("door")
        .arg(to)
        .arg("")
        .invoke(pool)
        .await
        .unwrap()
}

redis_test! {
    async fn a_script_emits_the_event_of_its_own_change(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let key = ks.instance("test", "door").unwrap().key("state");
        let channel = ks.channel("test", "changed").unwrap();
        let mut by_channel = pool.subscriber().channel(&channel).subscribe::<Change>().await.unwrap();
        let mut by_pattern = pool
            .subscriber()
            .pattern(ks.channel_pattern(None).unwrap())
            .subscribe::<serde_json::Value>()
            .await
            .unwrap();

        let ts = transition(&pool, &key, &channel, "open").await;
        let got = next(&mut by_channel).await;
        assert_eq!(got.channel, channel);
        assert_eq!(got.pattern, None);
        assert_eq!(got.event, Event {
            kind: "changed".into(),
            source: "test".into(),
            entity: "door".into(),
            ts_ms: ts,
            payload: Change { from: "none".into(), to: "open".into() },
        });
        let got = next(&mut by_pattern).await;
        assert_eq!(got.pattern.as_deref(), Some(ks.channel_pattern(None).unwrap().as_str()));
        assert_eq!(got.event.payload["to"], "open");

        // Exactly one event per change, in order.
        for to in ["closed", "open", "closed"] {
            transition(&pool, &key, &channel, to).await;
        }
        for to in ["closed", "open", "closed"] {
            assert_eq!(next(&mut by_channel).await.event.payload.to, to);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(by_channel.try_recv().is_none(), "an extra event arrived");
        assert_eq!(by_channel.stats().received, 4);
        assert_eq!(by_channel.stats().decode_errors, 0);

        // The Rust-side publisher uses the same envelope and the server's clock.
        events::publish(&pool, &channel, "noted", "app", "door", &serde_json::json!({"from": "a", "to": "b"}))
            .await
            .unwrap();
        let got = next(&mut by_channel).await;
        assert_eq!(got.event.kind, "noted");
        assert_eq!(got.event.source, "app");
        assert!(got.event.ts_ms >= ts);
    }
}

redis_test! {
    async fn an_undecodable_message_is_counted_not_fatal(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let key = ks.instance("test", "door").unwrap().key("state");
        let channel = ks.channel("test", "changed").unwrap();
        let mut sub = pool.subscriber().channel(&channel).subscribe::<Change>().await.unwrap();
        let _: i64 = pool.query(redis::cmd("PUBLISH").arg(&channel).arg("{not json")).await.unwrap();
        let _: i64 = pool
            .query(redis::cmd("PUBLISH").arg(&channel).arg(r#"{"kind":"x","source":"s","entity":"e","ts_ms":1,"payload":{"wrong":1}}"#))
            .await
            .unwrap();
        transition(&pool, &key, &channel, "open").await;
        let got = next(&mut sub).await;
        assert_eq!(got.event.payload.to, "open");
        let stats = sub.stats();
        assert_eq!(stats.decode_errors, 2);
        assert_eq!(stats.received, 1);
        assert!(stats.last_error.unwrap().contains(&channel));
    }
}

redis_test! {
    async fn the_subscriber_resubscribes_after_client_kill(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let key = ks.instance("test", "door").unwrap().key("state");
        let channel = ks.channel("test", "changed").unwrap();
        let mut sub = pool
            .subscriber()
            .channel(&channel)
            .pattern(ks.channel_pattern(Some("other")).unwrap())
            .subscribe::<Change>()
            .await
            .unwrap();
        transition(&pool, &key, &channel, "open").await;
        next(&mut sub).await;
        let mut reconnections = sub.reconnections();

        let killed: Vec<i64> = redis.on_every_server(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        assert!(killed.iter().sum::<i64>() >= 1, "no subscriber connection was killed");

        // Publish until the subscriber is back: events sent while it reconnects are not
        // replayed (that is pub/sub), but once it is back it must receive again.
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut n = 0;
        let received = loop {
            assert!(tokio::time::Instant::now() < deadline, "never resubscribed: {:?}", sub.stats());
            n += 1;
            let state = format!("s{n}");
            transition(&pool, &key, &channel, &state).await;
            if let Ok(Some(got)) = tokio::time::timeout(Duration::from_millis(200), sub.recv()).await {
                break got;
            }
        };
        assert!(received.event.payload.to.starts_with('s'));
        tokio::time::timeout(WAIT, reconnections.changed())
            .await
            .expect("the reconnection signal never fired")
            .unwrap();
        assert!(*reconnections.borrow() >= 1);
        let stats = sub.stats();
        assert!(stats.disconnects >= 1, "{stats:?}");
        assert!(stats.reconnects >= 1, "{stats:?}");
    }
}

redis_test! {
    async fn shutdown_unsubscribes_and_closes(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let channel = ks.channel("test", "changed").unwrap();
        let pattern = ks.channel_pattern(None).unwrap();
        let sub = pool.subscriber().channel(&channel).pattern(&pattern).subscribe::<Change>().await.unwrap();
        let numpat: Vec<i64> = redis.on_every_server(&["PUBSUB", "NUMPAT"]);
        assert_eq!(numpat.iter().sum::<i64>(), 1);
        tokio::time::timeout(WAIT, sub.shutdown()).await.expect("shutdown hung");
        let numpat: Vec<i64> = redis.on_every_server(&["PUBSUB", "NUMPAT"]);
        assert_eq!(numpat.iter().sum::<i64>(), 0);
        let numsub: Vec<(String, i64)> = redis.on_every_server(&["PUBSUB", "NUMSUB", &channel]);
        assert!(numsub.iter().all(|(_, n)| *n == 0), "{numsub:?}");
    }
}

#[tokio::test]
async fn a_subscriber_needs_a_channel() {
    let redis = coordkit_testkit::TestRedis::start(coordkit_testkit::Topology::Standalone);
    let pool = redis.pool().await;
    let err = pool.subscriber().subscribe::<Change>().await.unwrap_err();
    assert!(matches!(
        err,
        coordkit_core::Error::InvalidConfig {
            field: "channel",
            ..
        }
    ));
}

redis_test! {
    async fn the_envelope_is_valid_json_for_any_kind_source_and_entity(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let channel = ks.channel("test", "odd").unwrap();
        let mut sub = pool.subscriber().channel(&channel).subscribe::<serde_json::Value>().await.unwrap();
        let odd = "quote \" backslash \\ newline \n unicode é";
        events::publish(&pool, &channel, odd, odd, odd, &serde_json::json!([1, "x"])).await.unwrap();
        let got = next(&mut sub).await.event;
        assert_eq!((got.kind.as_str(), got.source.as_str(), got.entity.as_str()), (odd, odd, odd));
        assert_eq!(got.payload, serde_json::json!([1, "x"]));
        assert_eq!(sub.stats().decode_errors, 0);
    }
}

async fn next_raw(sub: &mut coordkit_core::RawSubscriber) -> coordkit_core::RawMessage {
    tokio::time::timeout(WAIT, sub.recv())
        .await
        .expect("no message arrived")
        .expect("the subscriber ended")
}

static SHARD_PUBLISH: Script = Script::new(
    "shard_publish",
    "-- KEYS[1] a shard channel. ARGV[1] payload. ARGV[2] SPUBLISH (cluster) or PUBLISH.\n\
     -- Returns how many subscribers got it.\n\
     return redis.call(ARGV[2], KEYS[1], ARGV[1])",
);

redis_test! {
    async fn subscriptions_change_while_it_runs_and_raw_mode_keeps_bytes(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let first = ks.channel("test", "first").unwrap();
        let second = ks.channel("test", "second").unwrap();
        let shard = ks.instance("test", "shard").unwrap().key("chan");
        let mut sub = pool.subscriber().channel(&first).subscribe_raw().await.unwrap();
        assert!(sub.is_connected());
        let publish = |channel: String, payload: &'static [u8]| {
            let pool = pool.clone();
            async move {
                let n: i64 =
                    pool.query(redis::cmd("PUBLISH").arg(channel).arg(payload)).await.unwrap();
                n
            }
        };

        // Raw mode: any bytes are delivered as published, counted as received.
        assert!(publish(first.clone(), b"not json \xff").await >= 1);
        let got = next_raw(&mut sub).await;
        assert_eq!((got.channel.as_str(), got.payload.as_slice()), (first.as_str(), &b"not json \xff"[..]));

        // Channels and patterns added to the running subscriber.
        let control = sub.control();
        control.add_channel(&second).await.unwrap();
        publish(second.clone(), b"2").await;
        assert_eq!(next_raw(&mut sub).await.channel, second);
        let pattern = ks.channel_pattern(Some("pat")).unwrap();
        sub.add_pattern(&pattern).await.unwrap();
        let matching = ks.channel("pat", "x").unwrap();
        publish(matching.clone(), b"p").await;
        let got = next_raw(&mut sub).await;
        assert_eq!((got.channel, got.pattern), (matching.clone(), Some(pattern.clone())));

        // A shard channel: SSUBSCRIBE on a cluster, where only SPUBLISH reaches it (the count is
        // the shard's, exact); SUBSCRIBE on a standalone server.
        let spublish = match redis.topology() {
            coordkit_testkit::Topology::Standalone => "PUBLISH",
            coordkit_testkit::Topology::Cluster => "SPUBLISH",
        };
        control.add_shard_channel(shard.as_str()).await.unwrap();
        let n: u64 = SHARD_PUBLISH.prepare().key(&shard).arg("s").arg(spublish).invoke(&pool).await.unwrap();
        assert_eq!(n, 1);
        assert_eq!(next_raw(&mut sub).await.payload, b"s");

        // Removed ones no longer deliver; the next message is the one still subscribed.
        sub.remove_channel(&first).await.unwrap();
        sub.remove_pattern(&pattern).await.unwrap();
        control.remove_shard_channel(shard.as_str()).await.unwrap();
        let n: u64 = SHARD_PUBLISH.prepare().key(&shard).arg("s").arg(spublish).invoke(&pool).await.unwrap();
        assert_eq!(n, 0);
        publish(first.clone(), b"gone").await;
        publish(matching, b"gone").await;
        publish(second.clone(), b"kept").await;
        assert_eq!(next_raw(&mut sub).await.payload, b"kept");
        assert!(sub.try_recv().is_none());
        let stats = control.stats();
        assert_eq!((stats.received, stats.decode_errors), (5, 0), "{stats:?}");
        assert!(format!("{control:?}").contains(&second));

        // After shutdown nothing of it is left subscribed.
        sub.shutdown().await;
        let numpat: Vec<i64> = redis.on_every_server(&["PUBSUB", "NUMPAT"]);
        assert_eq!(numpat.iter().sum::<i64>(), 0);
        let numsub: Vec<Vec<redis::Value>> =
            redis.on_every_server(&["PUBSUB", "NUMSUB", second.as_str()]);
        assert!(numsub.iter().all(|r| r.get(1) == Some(&redis::Value::Int(0))), "{numsub:?}");
    }
}
