//! Typed channels on a standalone server and a 3-master cluster.

use std::time::Duration;

use coordkit_core::{Error, NameRule, Pool};
use coordkit_mesh::{Channel, ChannelDelivery, ChannelSubscriber, Message};
use coordkit_testkit::{TestRedis, Topology, redis_test};
use serde::{Deserialize, Serialize};

/// Only catches hangs: every wait below ends as soon as the message arrives.
const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Reading {
    instrument: String,
    celsius: f64,
}

fn reading(instrument: &str, celsius: f64) -> Reading {
    Reading {
        instrument: instrument.into(),
        celsius,
    }
}

fn channel(pool: &Pool, ks: &coordkit_core::Keyspace, name: &str) -> Channel<Reading> {
    Channel::<Reading>::builder(pool, ks, name).build().unwrap()
}

async fn next<T, I>(sub: &mut ChannelSubscriber<T, I>) -> I
where
    T: Serialize + serde::de::DeserializeOwned + Send + 'static,
    I: coordkit_mesh::Receive<T>,
{
    tokio::time::timeout(WAIT, sub.recv())
        .await
        .expect("no message arrived (guard against a hang)")
        .expect("the subscriber shut down")
}

/// Publishes bytes onto a mesh channel the way another program would: `PUBLISH` on a
/// standalone server, `SPUBLISH` on a cluster (where channel subscribers are sharded).
async fn publish_foreign(redis: &TestRedis, pool: &Pool, redis_channel: &str, bytes: &[u8]) -> i64 {
    let command = match redis.topology() {
        Topology::Standalone => "PUBLISH",
        Topology::Cluster => "SPUBLISH",
    };
    pool.query(redis::cmd(command).arg(redis_channel).arg(bytes))
        .await
        .unwrap()
}

redis_test! {
    async fn publish_counts_its_subscribers(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let ch = channel(&pool, &ks, "telemetry.bench-1");
        assert_eq!(ch.publish(&reading("t1", 20.0)).await.unwrap(), 0);

        let mut subs = Vec::new();
        for n in 1..=3u64 {
            subs.push(ch.subscribe().await.unwrap());
            assert_eq!(ch.publish(&reading("t1", 21.0)).await.unwrap(), n);
        }
        // Another channel's subscribers are not counted.
        let other = channel(&pool, &ks, "telemetry.bench-2");
        let _other_sub = other.subscribe().await.unwrap();
        assert_eq!(ch.publish(&reading("t1", 22.0)).await.unwrap(), 3);
        // A pattern subscription that matches counts too, exactly, on both topologies.
        let pattern = Channel::<Reading>::pattern(&pool, &ks, "telemetry.*").unwrap();
        let _pattern_sub = pattern.subscribe().await.unwrap();
        assert_eq!(ch.publish(&reading("t1", 23.0)).await.unwrap(), 4);
        assert_eq!(other.publish(&reading("t2", 23.0)).await.unwrap(), 2);

        let stats = ch.clone().stats();
        assert_eq!(stats.published, 6);
        assert_eq!(stats.delivered, 1 + 2 + 3 + 3 + 4);

        // One round trip: one EVALSHA (the script is loaded by now).
        redis.reset_stats();
        ch.publish(&reading("t1", 23.5)).await.unwrap();
        assert_eq!(redis.command_calls("evalsha"), 1);
        assert_eq!(redis.command_calls("eval") + redis.command_calls("script|load"), 0);

        for sub in subs.drain(..) {
            sub.shutdown().await;
        }
        let shut: u64 = ch.publish(&reading("t1", 24.0)).await.unwrap();
        assert_eq!(shut, 1, "only the pattern subscription is left");
    }
}

redis_test! {
    async fn a_subscriber_receives_typed_messages(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let ch = channel(&pool, &ks, "telemetry.bench-1");
        let mut sub = ch.subscribe().await.unwrap();
        assert!(sub.try_recv().is_none());
        assert!(sub.is_connected());
        let before = pool.server_time_ms().await.unwrap();
        ch.publish(&reading("t1", 20.5)).await.unwrap();
        ch.publish(&reading("t1", 21.5)).await.unwrap();
        let after = pool.server_time_ms().await.unwrap();

        let first: Message<Reading> = next(&mut sub).await;
        assert_eq!(first.payload, reading("t1", 20.5));
        assert_eq!(first.channel, "telemetry.bench-1");
        assert_eq!(first.pattern, None);
        assert_eq!(first.kind, "message");
        assert_eq!(first.source, "mesh");
        assert!((before..=after).contains(&first.ts_ms), "{before} {} {after}", first.ts_ms);
        let second = next(&mut sub).await;
        assert_eq!(second.payload, reading("t1", 21.5));
        assert!(sub.try_recv().is_none());
        let stats = sub.stats();
        assert_eq!((stats.received, stats.undecodable, stats.raw), (2, 0, 0));

        // The envelope on the wire is coordkit's, as core's subscriber reads it.
        let mut events = pool
            .subscriber()
            .shard_channel(ch.redis_channel())
            .subscribe::<Reading>()
            .await
            .unwrap();
        let kinded = Channel::<Reading>::builder(&pool, &ks, "telemetry.bench-1")
            .kind("sample")
            .build()
            .unwrap();
        assert_eq!(kinded.publish(&reading("t1", 1.0)).await.unwrap(), 2);
        let event = tokio::time::timeout(WAIT, events.recv()).await.unwrap().unwrap();
        assert_eq!(event.event.source, "mesh");
        assert_eq!(event.event.entity, "telemetry.bench-1");
        assert_eq!(event.event.kind, "sample");
        assert_eq!(event.event.payload, reading("t1", 1.0));
        assert_eq!(next(&mut sub).await.kind, "sample");
    }
}

redis_test! {
    async fn undecodable_messages_are_counted_and_skipped(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let ch = channel(&pool, &ks, "telemetry.bench-1");
        let mut sub = ch.subscribe().await.unwrap();
        assert_eq!(publish_foreign(&redis, &pool, ch.redis_channel(), b"{not json").await, 1);
        assert_eq!(publish_foreign(&redis, &pool, ch.redis_channel(), br#"{"celsius":1}"#).await, 1);
        // In the envelope, with a payload of another type.
        let wrong = Channel::<String>::builder(&pool, &ks, "telemetry.bench-1").build().unwrap();
        assert_eq!(wrong.publish(&"hot".to_owned()).await.unwrap(), 1);
        ch.publish(&reading("t1", 3.0)).await.unwrap();

        let got = next(&mut sub).await;
        assert_eq!(got.payload, reading("t1", 3.0));
        let stats = sub.stats();
        assert_eq!(stats.undecodable, 3, "{stats:?}");
        assert_eq!(stats.received, 1);
        assert_eq!(stats.raw, 0);
        let last = stats.last_error.unwrap();
        assert!(last.contains("telemetry.bench-1") && last.contains("not the channel's type"), "{last}");
    }
}

redis_test! {
    async fn raw_mode_receives_foreign_messages(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let ch = channel(&pool, &ks, "telemetry.bench-1");
        let mut sub = ch.subscriber().raw().subscribe().await.unwrap();
        publish_foreign(&redis, &pool, ch.redis_channel(), b"plain bytes \xff").await;
        publish_foreign(&redis, &pool, ch.redis_channel(), br#"{"celsius":1}"#).await;
        let wrong = Channel::<String>::builder(&pool, &ks, "telemetry.bench-1").build().unwrap();
        wrong.publish(&"hot".to_owned()).await.unwrap();
        ch.publish(&reading("t1", 4.0)).await.unwrap();

        match next(&mut sub).await {
            ChannelDelivery::Raw(raw) => {
                assert_eq!(raw.payload, b"plain bytes \xff");
                assert_eq!(raw.channel, "telemetry.bench-1");
            }
            other => panic!("expected raw bytes, got {other:?}"),
        }
        match next(&mut sub).await {
            ChannelDelivery::Raw(raw) => assert_eq!(raw.payload, br#"{"celsius":1}"#),
            other => panic!("expected raw JSON, got {other:?}"),
        }
        // The envelope with a payload of another type is skipped even in raw mode.
        let typed = next(&mut sub).await.into_message().expect("a typed message");
        assert_eq!(typed.payload, reading("t1", 4.0));
        let stats = sub.stats();
        assert_eq!((stats.raw, stats.received, stats.undecodable), (2, 1, 1), "{stats:?}");
    }
}

redis_test! {
    async fn a_pattern_receives_every_matching_channel(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let pattern = Channel::<Reading>::pattern(&pool, &ks, "telemetry.*").unwrap();
        let mut sub = pattern.subscribe().await.unwrap();
        let a = channel(&pool, &ks, "telemetry.a");
        let b = channel(&pool, &ks, "telemetry.b");
        let status = channel(&pool, &ks, "status.a");
        assert_eq!(status.publish(&reading("x", 0.0)).await.unwrap(), 0);
        assert_eq!(a.publish(&reading("a", 1.0)).await.unwrap(), 1);
        assert_eq!(b.publish(&reading("b", 2.0)).await.unwrap(), 1);
        let first = next(&mut sub).await;
        assert_eq!((first.channel.as_str(), first.pattern.as_deref()), ("telemetry.a", Some("telemetry.*")));
        assert_eq!(first.payload, reading("a", 1.0));
        let second = next(&mut sub).await;
        assert_eq!(second.channel, "telemetry.b");
        assert!(sub.try_recv().is_none());

        // Another namespace's channels do not match.
        let other_ks = redis.keyspace();
        let foreign = channel(&pool, &other_ks, "telemetry.a");
        assert_eq!(foreign.publish(&reading("z", 9.0)).await.unwrap(), 0);
    }
}

redis_test! {
    async fn channels_are_added_and_removed_while_it_runs(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let a = channel(&pool, &ks, "agent.a");
        let b = channel(&pool, &ks, "agent.b");
        let c = channel(&pool, &ks, "other.c");
        let mut sub = a.subscribe().await.unwrap();
        assert_eq!(b.publish(&reading("b", 0.0)).await.unwrap(), 0);

        sub.add_channel(&b).await.unwrap();
        assert_eq!(b.publish(&reading("b", 1.0)).await.unwrap(), 1);
        assert_eq!(next(&mut sub).await.channel, "agent.b");

        let pattern = Channel::<Reading>::pattern(&pool, &ks, "other.*").unwrap();
        let control = sub.control();
        control.add_pattern(&pattern).await.unwrap();
        assert_eq!(c.publish(&reading("c", 2.0)).await.unwrap(), 1);
        let got = next(&mut sub).await;
        assert_eq!((got.channel.as_str(), got.pattern.as_deref()), ("other.c", Some("other.*")));

        control.remove_channel(&a).await.unwrap();
        assert_eq!(a.publish(&reading("a", 3.0)).await.unwrap(), 0);
        sub.remove_pattern(&pattern).await.unwrap();
        assert_eq!(c.publish(&reading("c", 4.0)).await.unwrap(), 0);
        assert_eq!(b.publish(&reading("b", 5.0)).await.unwrap(), 1);
        // The removed channel's message never arrives: the next one is b's.
        let got = next(&mut sub).await;
        assert_eq!((got.channel.as_str(), got.payload.celsius), ("agent.b", 5.0));
        assert!(sub.try_recv().is_none());

        // Removing what it does not hold is harmless; adding back works.
        sub.remove_channel(&a).await.unwrap();
        sub.add_channel(&a).await.unwrap();
        assert_eq!(a.publish(&reading("a", 6.0)).await.unwrap(), 1);
        assert_eq!(next(&mut sub).await.payload.celsius, 6.0);
    }
}

redis_test! {
    async fn a_handler_receives_until_stopped(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let ch = channel(&pool, &ks, "experiment.run-7");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = ch
            .subscriber()
            .subscribe_with(move |message: Message<Reading>| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(message.payload);
                }
            })
            .await
            .unwrap();
        assert!(task.is_connected());
        for n in 0..3 {
            assert_eq!(ch.publish(&reading("h", f64::from(n))).await.unwrap(), 1);
        }
        for n in 0..3 {
            let got = tokio::time::timeout(WAIT, rx.recv()).await.unwrap().unwrap();
            assert_eq!(got.celsius, f64::from(n));
        }
        // Its control adds channels to the running handler.
        let more = channel(&pool, &ks, "experiment.run-8");
        task.control().add_channel(&more).await.unwrap();
        assert_eq!(more.publish(&reading("m", 8.0)).await.unwrap(), 1);
        assert_eq!(tokio::time::timeout(WAIT, rx.recv()).await.unwrap().unwrap().celsius, 8.0);
        assert_eq!(task.stats().received, 4);

        task.stop().await;
        assert_eq!(ch.publish(&reading("h", 9.0)).await.unwrap(), 0);
        assert_eq!(more.publish(&reading("h", 9.0)).await.unwrap(), 0);
        // The handler (and the sender it held) is gone.
        assert!(tokio::time::timeout(WAIT, rx.recv()).await.unwrap().is_none());
    }
}

redis_test! {
    async fn it_resubscribes_after_client_kill(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let ch = channel(&pool, &ks, "status.agent-1");
        let added = channel(&pool, &ks, "status.agent-2");
        let pattern = Channel::<Reading>::pattern(&pool, &ks, "telemetry.*").unwrap();
        let mut sub = ch.subscriber().pattern(&pattern).subscribe().await.unwrap();
        sub.add_channel(&added).await.unwrap();
        ch.publish(&reading("k", 0.0)).await.unwrap();
        next(&mut sub).await;

        let killed: Vec<i64> = redis.on_every_server(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        assert!(killed.iter().sum::<i64>() >= 1, "no subscriber connection was killed");

        // Publish until it is back: messages sent while it reconnects are not replayed (that is
        // pub/sub), but once it is back they flow again, on the channel added while running too.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            assert!(tokio::time::Instant::now() < deadline, "never resubscribed: {:?}", sub.stats());
            added.publish(&reading("k", 1.0)).await.unwrap();
            if let Ok(Some(got)) = tokio::time::timeout(Duration::from_millis(200), sub.recv()).await {
                assert_eq!(got.channel, "status.agent-2");
                break;
            }
        }
        let stats = sub.stats();
        assert!(stats.disconnects >= 1, "{stats:?}");
        assert!(stats.reconnects >= 1, "{stats:?}");
        assert!(sub.is_connected());
        // Every subscription is back: the count is exact again.
        while sub.try_recv().is_some() {}
        assert_eq!(ch.publish(&reading("k", 2.0)).await.unwrap(), 1);
        let t = channel(&pool, &ks, "telemetry.x");
        assert_eq!(t.publish(&reading("k", 3.0)).await.unwrap(), 1);
        assert_eq!(next(&mut sub).await.channel, "status.agent-1");
        assert_eq!(next(&mut sub).await.channel, "telemetry.x");
    }
}

redis_test! {
    async fn invalid_names_are_clear_errors(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        for bad in ["", "two words", "a{tag}", "line\nbreak"] {
            match Channel::<Reading>::builder(&pool, &ks, bad).build() {
                Err(Error::InvalidName { what, .. }) => assert_eq!(what, "channel name"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let long = "x".repeat(201);
        match Channel::<Reading>::builder(&pool, &ks, &long).build() {
            Err(Error::InvalidName { rule: NameRule::TooLong { .. }, .. }) => {}
            other => panic!("{other:?}"),
        }
        match Channel::<Reading>::pattern(&pool, &ks, "a {b}*") {
            Err(e @ Error::InvalidName { what: "channel pattern", .. }) => {
                assert!(e.to_string().contains("channel pattern"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        match Channel::<Reading>::builder(&pool, &ks, "ok").kind("bad kind").build() {
            Err(Error::InvalidConfig { field: "kind", .. }) => {}
            other => panic!("{other:?}"),
        }
        match channel(&pool, &ks, "ok").subscriber().buffer(0).subscribe().await {
            Err(Error::InvalidConfig { field: "buffer", .. }) => {}
            other => panic!("{other:?}"),
        }
        let ok = channel(&pool, &ks, "telemetry.bench-1");
        assert_eq!(ok.name(), "telemetry.bench-1");
        assert!(ok.redis_channel().ends_with(":{mesh:channels}:telemetry.bench-1"));
        let debug = format!("{ok:?}");
        assert!(debug.contains("telemetry.bench-1") && debug.contains("Reading"), "{debug}");
    }
}
