//! The tracker against real Redis, standalone and cluster.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use coordkit_core::{Clock, Error, Keyspace, ManualClock, Pool, Received, Subscriber, redis};
use coordkit_errors::{
    ErrorEvent, ErrorTracker, ErrorTrackerBuilder, Repair, Resolution, Severity, TrackerEvent,
    TrackerEventKind, TrackerEvents,
};
use coordkit_testkit::redis_test;

const WAIT: Duration = Duration::from_secs(15);

/// A builder of the tracker `name` on a manual clock (starting at 1,700,000,000,000 ms), and
/// the clock.
fn on_manual_clock(pool: Pool, ks: &Keyspace, name: &str) -> (ManualClock, ErrorTrackerBuilder) {
    let clock = ManualClock::new(1_700_000_000_000);
    let builder = ErrorTracker::builder(&pool, ks, name).clock(Clock::Manual(clock.clone()));
    (clock, builder)
}

fn tracker(ks: &Keyspace, pool: Pool, name: &str) -> ErrorTracker {
    ErrorTracker::builder(&pool, ks, name).build().unwrap()
}

/// A subscriber to every errors channel of `ks`.
async fn every_event(pool: &Pool, ks: &Keyspace) -> Subscriber<serde_json::Value> {
    pool.subscriber()
        .pattern(ks.channel_pattern(Some("errors")).unwrap())
        .subscribe()
        .await
        .unwrap()
}

async fn next(sub: &mut Subscriber<serde_json::Value>) -> Received<serde_json::Value> {
    tokio::time::timeout(WAIT, sub.recv())
        .await
        .expect("no event within the wait")
        .expect("the subscriber ended")
}

redis_test! {
    async fn records_deduplicate_and_keep_details(redis) {
        let pool = redis.pool().await;
        let t = ErrorTracker::builder(&pool, &redis.keyspace(), "dedup")
            .signature_per_component(false)
            .build()
            .unwrap();
        let before = pool.server_time_ms().await.unwrap();
        let a = t.record(&ErrorEvent::new("fetcher", "Timeout", "timeout after 150ms on 10.0.0.1:80")
            .task("t-1").code("ETIMEDOUT").frame("fetch (src/fetch.rs:10)").attribute("try", "1")
            .recoverable(true)).await.unwrap();
        let b = t.record(&ErrorEvent::new("indexer", "Timeout", "timeout after 3s on 10.0.0.2:81")
            .task("t-2")).await.unwrap();
        let c = t.record(&ErrorEvent::new("indexer", "Io", "disk full")).await.unwrap();
        assert_eq!(a.signature, b.signature);
        assert_ne!(a.signature, c.signature);
        assert!(a.new_signature && !b.new_signature && c.new_signature);
        assert_eq!((a.count, b.count, c.count), (1, 2, 1));
        assert_eq!(a.severity, Severity::Warning);
        assert_eq!(b.severity, Severity::Error);
        assert!(a.ts_ms >= before && b.ts_ms >= a.ts_ms);

        let d = t.signature(&a.signature).await.unwrap().unwrap();
        assert_eq!(d.count, 2);
        assert_eq!(d.first_seen_ms, a.ts_ms);
        assert_eq!(d.last_seen_ms, b.ts_ms);
        assert_eq!(d.components, vec!["fetcher".to_string(), "indexer".to_string()]);
        assert_eq!(d.meta.template, "timeout after <dur> on <ip>");
        assert_eq!(d.meta.kind, "Timeout");
        assert_eq!(d.resolved_at_ms, None);
        let sample = d.last_sample.unwrap();
        assert_eq!(sample.occurrence.message, "timeout after 3s on 10.0.0.2:81");
        assert_eq!(sample.occurrence.component, "indexer");
        assert_eq!(sample.count, 2);

        let task = t.task("t-1").await.unwrap().unwrap();
        assert_eq!(task.occurrence.code.as_deref(), Some("ETIMEDOUT"));
        assert_eq!(task.stack, vec!["fetch (src/fetch.rs:10)".to_string()]);
        assert_eq!(task.attributes["try"], "1");
        assert!(task.occurrence.recoverable);
        assert_eq!(t.task("nope").await.unwrap(), None);

        let counts = t.counts().await.unwrap();
        assert_eq!(counts.by_kind["Timeout"], 2);
        assert_eq!(counts.by_kind["Io"], 1);
        assert_eq!(counts.by_component["indexer"], 2);
        assert_eq!(counts.by_pair[&("Timeout".to_string(), "fetcher".to_string())], 1);
        assert_eq!(counts.total(), 3);

        // Paging: newest first, the cursor is stable while new records arrive.
        let p1 = t.recent(None, 2).await.unwrap();
        assert_eq!(p1.entries.iter().map(|e| e.occurrence.kind.as_str()).collect::<Vec<_>>(), ["Io", "Timeout"]);
        t.record(&ErrorEvent::new("x", "Late", "after the first page")).await.unwrap();
        let p2 = t.recent(p1.next.as_deref(), 2).await.unwrap();
        assert_eq!(p2.entries.len(), 1);
        assert_eq!(p2.entries[0].occurrence.message, "timeout after 150ms on 10.0.0.1:80");
        assert_eq!(p2.entries[0].occurrence.task_id.as_deref(), Some("t-1"));
        assert_eq!(p2.next, None);

        let top = t.top(Duration::from_secs(600), 10).await.unwrap();
        assert!(top.complete);
        assert_eq!(top.signatures[0].signature, a.signature);
        assert_eq!((top.signatures[0].in_window, top.signatures[0].total), (2, 2));
        assert_eq!(top.signatures.len(), 3);
        let listed = t.signatures(10).await.unwrap();
        assert_eq!(listed.len(), 3);
    }
}

redis_test! {
    async fn bad_input_is_cleaned_and_recorded(redis) {
        let t = ErrorTracker::builder(&redis.pool().await, &redis.keyspace(), "bad")
            .max_message_bytes(100)
            .build()
            .unwrap();
        // Invalid UTF-8.
        let r = t.record(&ErrorEvent::new("c", "K", b"bad \xff\xfe bytes 42".as_slice())).await.unwrap();
        let d = t.signature(&r.signature).await.unwrap().unwrap();
        assert_eq!(d.last_sample.unwrap().occurrence.message, "bad \u{fffd}\u{fffd} bytes 42");
        assert_eq!(d.meta.template, "bad \u{fffd}\u{fffd} bytes <num>");
        // Over-long message: truncated with a marker.
        let long = "x".repeat(10_000);
        let r = t.record(&ErrorEvent::new("c", "K", &long)).await.unwrap();
        assert!(r.truncated);
        let sample = t.signature(&r.signature).await.unwrap().unwrap().last_sample.unwrap();
        assert!(sample.truncated);
        assert!(sample.occurrence.message.len() <= 100);
        assert!(sample.occurrence.message.ends_with("…[truncated 10000 bytes]"), "{}", sample.occurrence.message);
        // Missing and malformed names: defaults, cleaned.
        let r = t.record(&ErrorEvent::default()).await.unwrap();
        let d = t.signature(&r.signature).await.unwrap().unwrap();
        assert_eq!((d.meta.kind.as_str(), d.meta.component.as_str()), ("unknown", "unknown"));
        let r = t.record(&ErrorEvent::new("my {comp}\n", "a kind", "m").task("task {1}\t")).await.unwrap();
        let d = t.signature(&r.signature).await.unwrap().unwrap();
        assert_eq!(d.meta.component, "my__comp__");
        assert_eq!(d.meta.kind, "a_kind");
        assert!(t.task("task {1}\t").await.unwrap().is_some());
        // Huge stacks and attributes are capped; a weird custom fingerprint is cleaned.
        let mut e = ErrorEvent::new("c", "K", "m").fingerprint("my fp {x}\"");
        for i in 0..1000 {
            e = e.frame("f".repeat(5000)).attribute(format!("k{i}"), "v".repeat(5000));
        }
        let r = t.record(&e).await.unwrap();
        assert!(r.truncated, "frames and attributes were cut");
        assert!(r.signature.starts_with("c-my_fp__x__~"), "{}", r.signature);
        // A fingerprint that cleans to the same text is still another signature.
        let other = t.record(&ErrorEvent::new("c", "K", "m").fingerprint("my_fp__x__")).await.unwrap();
        assert_eq!(other.signature, "c-my_fp__x__");
        let alike = t.record(&ErrorEvent::new("c", "K", "m").fingerprint("my fp {x}'")).await.unwrap();
        assert_ne!(alike.signature, r.signature);
        let s = t.signature(&r.signature).await.unwrap().unwrap().last_sample.unwrap();
        assert!(s.truncated);
        assert_eq!(s.stack.len(), coordkit_errors::MAX_FRAMES);
        assert_eq!(s.stack.last().unwrap(), &format!("…[{} more frames]", 1000 - 63));
        assert_eq!(s.attributes.len(), coordkit_errors::MAX_ATTRIBUTES);
        assert_eq!(s.attributes["…"], format!("{} more attributes", 1000 - 63));
        assert!(s.stack[0].len() <= coordkit_errors::MAX_FIELD_BYTES);
        assert!(s.stack[0].ends_with("…[truncated 5000 bytes]"), "{}", s.stack[0]);
        // Two long attribute names alike in their first 200 bytes stay two attributes.
        let long = "n".repeat(300);
        let e = ErrorEvent::new("c", "K", "m")
            .attribute(format!("{long}a"), "1")
            .attribute(format!("{long}b"), "2");
        let r = t.record(&e).await.unwrap();
        assert!(r.truncated);
        let s = t.signature(&r.signature).await.unwrap().unwrap().last_sample.unwrap();
        assert_eq!(s.attributes.len(), 2);
        assert!(s.attributes.keys().all(|k| k.len() <= coordkit_errors::MAX_ATTRIBUTE_NAME_BYTES));
        // A record with nothing cut says so.
        let r = t.record(&ErrorEvent::new("c", "K", "short").frame("f").attribute("a", "b")).await.unwrap();
        assert!(!r.truncated);
        assert_eq!(t.counts().await.unwrap().total(), 9);
    }
}

redis_test! {
    async fn wrong_type_keys_are_named(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let t = tracker(&ks, pool.clone(), "wrong");
        t.record(&ErrorEvent::new("c", "K", "m")).await.unwrap();
        let inst = ks.instance("errors", "wrong").unwrap();
        for suffix in ["data", "seen", "log"] {
            let key = inst.key(suffix);
            let _: () = pool.query(redis::cmd("DEL").arg(&key)).await.unwrap();
            let _: () = pool.query(redis::cmd("SET").arg(&key).arg("x")).await.unwrap();
            // A new signature, so every key is touched.
            match t.record(&ErrorEvent::new("c", "K", format!("m {suffix}"))).await {
                Err(Error::WrongType { key: k, found }) => {
                    assert_eq!(k, key.as_str(), "{suffix}");
                    assert_eq!(found, "string");
                }
                other => panic!("{suffix}: expected WrongType, got {other:?}"),
            }
            let _: () = pool.query(redis::cmd("DEL").arg(&key)).await.unwrap();
        }
        assert!(t.counts().await.is_ok());
    }
}

/// The lengths of a tracker's three keys (0 for one of another type).
async fn sizes(pool: &Pool, ks: &Keyspace, name: &str) -> [u64; 3] {
    let inst = ks.instance("errors", name).unwrap();
    let mut out = [0; 3];
    for (i, (suffix, len)) in [("data", "HLEN"), ("seen", "ZCARD"), ("log", "XLEN")]
        .into_iter()
        .enumerate()
    {
        out[i] = pool
            .query(redis::cmd(len).arg(inst.key(suffix)))
            .await
            .unwrap_or(0);
    }
    out
}

fn is_wrong_type(r: Result<coordkit_errors::Recorded, Error>, key: &str) -> bool {
    matches!(r, Err(Error::WrongType { key: k, .. }) if k == key)
}

redis_test! {
    async fn a_wrong_type_fails_the_record_with_nothing_written(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let (clock, builder) = on_manual_clock(pool.clone(), &ks, "untouched");
        let t = builder
            .max_signatures(2)
            .max_in_flight(1)
            .build()
            .unwrap();
        let inst = ks.instance("errors", "untouched").unwrap();
        for m in ["a", "b"] {
            t.record(&ErrorEvent::new("c", "K", m)).await.unwrap();
        }
        let before = sizes(&pool, &ks, "untouched").await;
        assert_eq!(before[1], 2, "two signatures indexed");

        // The index of another type: a known signature whose index refresh is due (a lone
        // record, whose log entry is taken back), and a new one.
        let seen = inst.key("seen");
        let _: () = pool.query(redis::cmd("RENAME").arg(&seen).arg(inst.key("parked"))).await.unwrap();
        let _: () = pool.query(redis::cmd("SET").arg(&seen).arg("x")).await.unwrap();
        clock.advance(Duration::from_secs(2));
        for m in ["a", "new one"] {
            assert!(is_wrong_type(t.record(&ErrorEvent::new("c", "K", m)).await, seen.as_str()), "{m}");
        }
        // A batch: with one call in flight, records made meanwhile go together.
        let calls: Vec<_> = (0..6)
            .map(|k| {
                let t = t.clone();
                tokio::spawn(async move { t.record(&ErrorEvent::new("c", "K", format!("m{k} x"))).await })
            })
            .collect();
        for call in calls {
            assert!(is_wrong_type(call.await.unwrap(), seen.as_str()));
        }
        let after = sizes(&pool, &ks, "untouched").await;
        assert_eq!((after[0], after[2]), (before[0], before[2]), "data and log untouched");
        let _: () = pool.query(redis::cmd("DEL").arg(&seen)).await.unwrap();
        let _: () = pool.query(redis::cmd("RENAME").arg(inst.key("parked")).arg(&seen)).await.unwrap();

        // The log of another type while a new signature would evict one: nothing evicted.
        let log = inst.key("log");
        let _: () = pool.query(redis::cmd("RENAME").arg(&log).arg(inst.key("parked"))).await.unwrap();
        let _: () = pool.query(redis::cmd("SET").arg(&log).arg("x")).await.unwrap();
        assert!(is_wrong_type(t.record(&ErrorEvent::new("c", "K", "third")).await, log.as_str()));
        let now = sizes(&pool, &ks, "untouched").await;
        assert_eq!((now[0], now[1]), (before[0], before[1]), "no signature evicted");
        let _: () = pool.query(redis::cmd("DEL").arg(&log)).await.unwrap();
        let _: () = pool.query(redis::cmd("RENAME").arg(inst.key("parked")).arg(&log)).await.unwrap();

        // And the tracker goes on as before.
        let r = t.record(&ErrorEvent::new("c", "K", "a")).await.unwrap();
        assert_eq!(r.count, 2);
        assert_eq!(sizes(&pool, &ks, "untouched").await[2], before[2] + 1);
    }
}

redis_test! {
    async fn events_on_severity_channels(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let (clock, builder) = on_manual_clock(pool.clone(), &ks, "events");
        let t = builder
            .publish_every_record(true)
            .build()
            .unwrap();
        let mut sub = every_event(&pool, &ks).await;
        let r = t.record(&ErrorEvent::new("a", "K1", "boom 1").severity(Severity::Warning)).await.unwrap();
        let got = next(&mut sub).await;
        assert_eq!(got.channel, t.channel(Severity::Warning));
        assert_eq!(got.event.kind, "new_signature");
        assert_eq!(got.event.source, coordkit_errors::EVENT_SOURCE);
        assert_eq!(got.event.entity, "events");
        assert_eq!(got.event.ts_ms, clock.now_ms());
        assert_eq!(got.event.payload["record"]["signature"], r.signature.as_str());
        assert_eq!(got.event.payload["count"], 1);
        t.record(&ErrorEvent::new("a", "K1", "boom 2")).await.unwrap();
        let got = next(&mut sub).await;
        assert_eq!((got.channel.as_str(), got.event.kind.as_str()), (t.channel(Severity::Error), "recorded"));

        assert!(matches!(t.resolve(&r.signature).await.unwrap(), Resolution::Resolved { .. }));
        let got = next(&mut sub).await;
        assert_eq!((got.channel.as_str(), got.event.kind.as_str()), (t.channel(Severity::Info), "resolved"));
        assert_eq!((got.event.source.as_str(), got.event.entity.as_str()), ("errors", "events"));
        clock.advance(Duration::from_millis(1));
        let again = t.record(&ErrorEvent::new("a", "K1", "boom 3")).await.unwrap();
        assert!(again.regression);
        let got = next(&mut sub).await;
        assert_eq!(got.event.kind, "regression");

        // Two more kinds in the window: one cascade event on the critical channel.
        t.record(&ErrorEvent::new("b", "K2", "x")).await.unwrap();
        let _ = next(&mut sub).await;
        let third = t.record(&ErrorEvent::new("c", "K3", "y")).await.unwrap();
        assert!(third.cascade);
        let _ = next(&mut sub).await; // the record's own event
        let got = next(&mut sub).await;
        assert_eq!((got.channel.as_str(), got.event.kind.as_str()), (t.channel(Severity::Critical), "cascade"));
        assert_eq!((got.event.source.as_str(), got.event.entity.as_str()), ("errors", "events"));
        assert_eq!(got.event.ts_ms, clock.now_ms());
        let kinds: BTreeSet<String> = serde_json::from_value(got.event.payload["kinds"].clone()).unwrap();
        assert_eq!(kinds, ["K1", "K2", "K3"].map(String::from).into());
        assert_eq!(got.event.payload["counts"]["K1"], 3);
        assert_eq!(got.event.payload["components"]["a"], 3);
        assert_eq!(got.event.payload["complete"], true);
    }
}

async fn next_typed(events: &mut TrackerEvents) -> TrackerEvent {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("no event within the wait")
        .expect("the subscription ended")
}

redis_test! {
    async fn typed_events_of_one_tracker(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let (clock, builder) = on_manual_clock(pool.clone(), &ks, "typed");
        let t = builder.publish_every_record(true).build().unwrap();
        let other = ErrorTracker::builder(&pool, &ks, "other").publish_every_record(true).build().unwrap();
        let mut events = t.events().await.unwrap();
        // Another tracker's event, on the same channel and first: not this subscription's.
        other.record(&ErrorEvent::new("a", "K1", "elsewhere").severity(Severity::Warning)).await.unwrap();
        let r = t.record(&ErrorEvent::new("a", "K1", "boom 1").severity(Severity::Warning).task("t-1")).await.unwrap();
        let e = next_typed(&mut events).await;
        assert_eq!((e.tracker.as_str(), e.severity, e.ts_ms), ("typed", Severity::Warning, clock.now_ms()));
        let TrackerEventKind::NewSignature(first) = e.kind else { panic!("expected new_signature, got {e:?}") };
        assert_eq!((first.record.signature.as_str(), first.count, first.first_seen_ms), (r.signature.as_str(), 1, r.ts_ms));
        assert_eq!(first.record.occurrence.task_id.as_deref(), Some("t-1"));
        assert_eq!((first.record.ts_ms, first.record.count), (r.ts_ms, 1));
        assert!(first.repaired.is_empty());

        // Counts 2..=9 are plain records (published with publish_every_record); 10 recurs.
        for i in 2..=10 {
            t.record(&ErrorEvent::new("a", "K1", format!("boom {i}"))).await.unwrap();
        }
        for i in 2..=9 {
            let e = next_typed(&mut events).await;
            match e.kind {
                TrackerEventKind::Recorded(rec) => assert_eq!((rec.count, e.severity), (i, Severity::Error)),
                other => panic!("expected recorded {i}, got {other:?}"),
            }
        }
        let e = next_typed(&mut events).await;
        assert!(matches!(&e.kind, TrackerEventKind::Recurring(rec) if rec.count == 10), "{e:?}");

        t.resolve(&r.signature).await.unwrap();
        let e = next_typed(&mut events).await;
        assert_eq!(e.severity, Severity::Info);
        assert_eq!(e.kind, TrackerEventKind::Resolved { signature: r.signature.clone(), count: 10 });

        clock.advance(Duration::from_millis(1));
        t.record(&ErrorEvent::new("a", "K1", "boom 11")).await.unwrap();
        let e = next_typed(&mut events).await;
        assert!(matches!(&e.kind, TrackerEventKind::Regression(rec) if rec.count == 11 && rec.record.signature == r.signature), "{e:?}");
        assert_eq!(e.ts_ms, clock.now_ms());

        // Two more kinds: the third completes a cascade (on the critical channel, so on a
        // cluster it may come before or after the record's own event).
        t.record(&ErrorEvent::new("b", "K2", "x")).await.unwrap();
        assert!(matches!(next_typed(&mut events).await.kind, TrackerEventKind::NewSignature(_)));
        let third = t.record(&ErrorEvent::new("c", "K3", "y")).await.unwrap();
        assert!(third.cascade);
        let pair = [next_typed(&mut events).await, next_typed(&mut events).await];
        let cascade = pair.iter().find_map(|e| match &e.kind {
            TrackerEventKind::Cascade(c) => Some((e.severity, c.clone())),
            _ => None,
        });
        let (severity, cascade) = cascade.expect("a cascade event");
        assert_eq!(severity, Severity::Critical);
        assert_eq!(cascade.kinds, ["K1", "K2", "K3"].map(String::from).into());
        assert_eq!((cascade.counts["K1"], cascade.components["a"]), (11, 11));
        assert_eq!((cascade.threshold, cascade.trigger.as_str(), cascade.complete), (3, third.signature.as_str(), true));
        assert!(pair.iter().any(|e| matches!(&e.kind, TrackerEventKind::NewSignature(rec) if rec.record.signature == third.signature)));
        assert_eq!(events.undecodable(), 0);
        assert_eq!(events.stats().decode_errors, 0);
        events.shutdown().await;
    }
}

redis_test! {
    async fn a_record_that_repaired_state_says_so_in_its_event(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let t = tracker(&ks, pool.clone(), "repair");
        let r = t.record(&ErrorEvent::new("a", "K1", "boom")).await.unwrap();
        let mut events = t.events().await.unwrap();
        // The signature's state, overwritten by something else: the next record starts it
        // afresh and publishes (a repair always does).
        let data = t.keys()[0].clone();
        let _: u64 = pool.query(redis::cmd("HSET").arg(&data).arg(&r.signature).arg("garbage")).await.unwrap();
        let again = t.record(&ErrorEvent::new("a", "K1", "boom")).await.unwrap();
        assert_eq!(again.repaired, vec![Repair::SignatureState]);
        let e = next_typed(&mut events).await;
        match e.kind {
            TrackerEventKind::NewSignature(rec) | TrackerEventKind::Recorded(rec) => {
                assert_eq!(rec.repaired, vec![Repair::SignatureState]);
                assert_eq!(rec.record.signature, r.signature);
            }
            other => panic!("expected a record event, got {other:?}"),
        }
    }
}

redis_test! {
    async fn a_cascade_from_a_log_shorter_than_its_window_says_its_counts_are_partial(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let (clock, builder) = on_manual_clock(pool.clone(), &ks, "partial");
        let t = builder
            .log_max_len(4)
            .build()
            .unwrap();
        let mut sub = every_event(&pool, &ks).await;
        for k in 0..6 {
            t.record(&ErrorEvent::new("a", "K1", format!("x{k}"))).await.unwrap();
            clock.advance(Duration::from_millis(1));
        }
        t.record(&ErrorEvent::new("b", "K2", "y")).await.unwrap();
        let r = t.record(&ErrorEvent::new("c", "K3", "z")).await.unwrap();
        assert!(r.cascade);
        let got = loop {
            let got = next(&mut sub).await;
            if got.event.kind == "cascade" {
                break got;
            }
        };
        // Eight occurrences in the window, four kept by the log.
        assert_eq!(got.event.payload["complete"], false);
        assert_eq!(got.event.payload["counts"]["K1"], 2);
    }
}

redis_test! {
    async fn cascade_fires_once_per_window(redis) {
        let (clock, builder) = on_manual_clock(redis.pool().await, &redis.keyspace(), "cascade");
        let t = builder
            .correlation_window(Duration::from_secs(60))
            .cascade_threshold(3)
            .build()
            .unwrap();
        let rec = |kind: &'static str| {
            let t = t.clone();
            async move { t.record(&ErrorEvent::new(format!("comp-{kind}"), kind, "x")).await.unwrap().cascade }
        };
        assert!(!rec("A").await);
        assert!(!rec("B").await);
        assert!(!rec("A").await, "two kinds are not a cascade");
        assert!(rec("C").await);
        assert!(!rec("D").await, "a second cascade within the window");
        clock.advance(Duration::from_secs(30));
        assert!(!rec("E").await, "a second cascade within the window");
        clock.advance(Duration::from_secs(29));
        assert!(!rec("F").await, "a second cascade within the window");
        clock.advance(Duration::from_secs(1));
        // A window after the first cascade, and E, F and G are within the window.
        assert!(rec("G").await);
        // After a quiet window, one kind is no cascade.
        clock.advance(Duration::from_secs(600));
        assert!(!rec("A").await);
        assert!(!rec("B").await);
        assert!(rec("C").await);
    }
}

redis_test! {
    async fn concurrent_records_are_exact(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let t = ErrorTracker::builder(&pool, &ks, "busy")
            .log_max_len(100_000)
            .build()
            .unwrap();
        const TASKS: u64 = 24;
        const EACH: u64 = 40;
        let kinds = ["A", "B", "C", "D"];
        let handles: Vec<_> = (0..TASKS)
            .map(|task| {
                let t = t.clone();
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    for i in 0..EACH {
                        let kind = kinds[((task + i) % 4) as usize];
                        let e = ErrorEvent::new(format!("comp-{}", task % 3), kind, format!("failure {i} in task {task}"))
                            .task(format!("task-{task}"));
                        out.push(t.record(&e).await.unwrap());
                    }
                    out
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.unwrap());
        }
        assert_eq!(all.len() as u64, TASKS * EACH);
        // Exactly one cascade: the server clock stays within one 5-minute window.
        assert_eq!(all.iter().filter(|r| r.cascade).count(), 1);
        // Per signature: counts 1..=n each exactly once, and the stored count is n.
        let mut by_sig: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
        for r in &all {
            by_sig.entry(r.signature.clone()).or_default().push(r.count);
        }
        assert_eq!(by_sig.len(), 4 * 3);
        for (sig, mut counts) in by_sig {
            counts.sort();
            let n = counts.len() as u64;
            assert_eq!(counts, (1..=n).collect::<Vec<_>>(), "{sig}");
            assert_eq!(t.signature(&sig).await.unwrap().unwrap().count, n);
            assert_eq!(all.iter().filter(|r| r.signature == sig && r.new_signature).count(), 1);
        }
        let counts = t.counts().await.unwrap();
        assert_eq!(counts.total(), TASKS * EACH);
        for kind in kinds {
            assert_eq!(counts.by_kind[kind], TASKS * EACH / 4);
        }
        let len: u64 = pool.query(redis::cmd("XLEN").arg(ks.instance("errors", "busy").unwrap().key("log"))).await.unwrap();
        assert_eq!(len, TASKS * EACH);
        for task in 0..TASKS {
            assert!(t.task(&format!("task-{task}")).await.unwrap().is_some());
        }
    }
}

redis_test! {
    async fn regression_only_for_later_occurrences(redis) {
        let t = tracker(&redis.keyspace(), redis.pool().await, "regress");
        let first = t.record(&ErrorEvent::new("c", "K", "flaky 1")).await.unwrap();
        let sig = first.signature.clone();
        // Many writers race a resolution.
        let writers: Vec<_> = (0..16u64)
            .map(|w| {
                let t = t.clone();
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    for i in 0..25u64 {
                        out.push(t.record(&ErrorEvent::new("c", "K", format!("flaky {w}{i}"))).await.unwrap());
                    }
                    out
                })
            })
            .collect();
        tokio::task::yield_now().await;
        let resolved_at = match t.resolve(&sig).await.unwrap() {
            Resolution::Resolved { at_ms } => at_ms,
            other => panic!("{other:?}"),
        };
        let mut all = Vec::new();
        for w in writers {
            all.extend(w.await.unwrap());
        }
        // A late report of an occurrence from before the resolution does not re-open it...
        let late = t.record(&ErrorEvent::new("c", "K", "flaky 0").occurred_ms(resolved_at - 1)).await.unwrap();
        all.push(late.clone());
        // ... a new one does (unless one of the writers already did).
        let fresh = t.record(&ErrorEvent::new("c", "K", "flaky 9")).await.unwrap();
        all.push(fresh);
        let regressions: Vec<_> = all.iter().filter(|r| r.regression).collect();
        assert_eq!(regressions.len(), 1, "exactly one occurrence re-opens it");
        assert!(regressions[0].ts_ms >= resolved_at);
        assert!(!late.regression || regressions[0].count < late.count);
        // Every occurrence counted after the resolution was made by a record at or after it.
        let d = t.signature(&sig).await.unwrap().unwrap();
        assert_eq!(d.regressions, 1);
        assert_eq!(d.resolved_at_ms, None);
        assert_eq!(d.count, 1 + 16 * 25 + 2);
        assert!(matches!(t.resolve("v1-unknown").await.unwrap(), Resolution::Unknown));
        assert!(matches!(t.resolve(&sig).await.unwrap(), Resolution::Resolved { .. }));
        assert!(matches!(t.resolve(&sig).await.unwrap(), Resolution::AlreadyResolved { .. }));
    }
}

redis_test! {
    async fn caps_bound_signatures_tasks_counters_and_log(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let t = ErrorTracker::builder(&pool, &ks, "capped")
            .max_signatures(50)
            .max_tasks(20)
            .max_counters(10)
            .log_max_len(100)
            .build()
            .unwrap();
        let t = Arc::new(t);
        let mut first = None;
        for i in 0..300u32 {
            let e = ErrorEvent::new(format!("comp{}", i % 7), format!("Kind{}", i % 30), "m")
                .fingerprint(format!("sig-{i}"))
                .task(format!("task-{i}"));
            let r = t.record(&e).await.unwrap();
            first.get_or_insert(r.signature);
        }
        assert_eq!(t.signatures(1000).await.unwrap().len(), 50);
        assert_eq!(t.signature(first.as_deref().unwrap()).await.unwrap(), None, "the least recent went");
        assert!(t.signature("c-sig-299").await.unwrap().is_some());
        assert!(t.task("task-0").await.unwrap().is_none());
        assert!(t.task("task-299").await.unwrap().is_some());
        let inst = ks.instance("errors", "capped").unwrap();
        let fields: u64 = pool.query(redis::cmd("HLEN").arg(inst.key("data"))).await.unwrap();
        // States, samples and metas of 50 signatures; at most 20 task slots (record + owner);
        // 10 counters, their count and the overflow; the window's list and last cascade, and
        // the last occurrence of each of its 30 kinds.
        assert!(fields >= 50 * 3 + 12 + 1 + 30, "{fields}");
        assert!(fields <= 50 * 3 + 20 * 2 + 12 + 1 + 30, "{fields}");
        let counts = t.counts().await.unwrap();
        assert_eq!(counts.by_pair.len(), 10);
        assert!(counts.other > 0);
        assert_eq!(counts.total(), 300);
        let len: u64 = pool.query(redis::cmd("XLEN").arg(inst.key("log"))).await.unwrap();
        assert_eq!(len, 100);
    }
}

redis_test! {
    async fn invalid_settings_name_the_field(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let b = || ErrorTracker::builder(&pool, &ks, "x");
        let cases: Vec<(&str, ErrorTrackerBuilder)> = vec![
            ("max_message_bytes", b().max_message_bytes(1)),
            ("max_message_bytes", b().max_message_bytes((1 << 20) + 1)),
            ("log_max_len", b().log_max_len(0)),
            ("log_max_age", b().log_max_age(Duration::ZERO)),
            ("task_ttl", b().task_ttl(Duration::from_micros(999))),
            ("max_signatures", b().max_signatures(0)),
            ("max_tasks", b().max_tasks(0)),
            ("max_counters", b().max_counters(0)),
            ("correlation_window", b().correlation_window(Duration::ZERO)),
            ("cascade_threshold", b().cascade_threshold(0)),
            ("max_in_flight", b().max_in_flight(0)),
            ("max_in_flight", b().max_in_flight(65)),
        ];
        for (setter, builder) in cases {
            match builder.build() {
                Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, setter),
                other => panic!("{setter}: expected InvalidConfig, got {other:?}"),
            }
        }
        let err = ErrorTracker::builder(&pool, &ks, "bad name").build().unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }));
    }
}

redis_test! {
    async fn by_default_only_notable_records_publish(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let t = ErrorTracker::builder(&pool, &ks, "quiet").build().unwrap();
        let mut sub = every_event(&pool, &ks).await;
        for i in 1..=10u64 {
            t.record(&ErrorEvent::new("c", "K", format!("again {i}"))).await.unwrap();
        }
        let first = next(&mut sub).await;
        assert_eq!((first.event.kind.as_str(), first.event.payload["count"].as_u64()), ("new_signature", Some(1)));
        // Counts 2..=9 publish nothing; 10 is a milestone.
        let tenth = next(&mut sub).await;
        assert_eq!((tenth.event.kind.as_str(), tenth.event.payload["count"].as_u64()), ("recurring", Some(10)));
        assert_eq!(sub.try_recv().map(|r| r.event.kind), None);
    }
}

redis_test! {
    async fn memory_stays_bounded_by_the_caps(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let t = ErrorTracker::builder(&pool, &ks, "mem")
            .log_max_len(1_000)
            .max_tasks(1_000)
            .max_signatures(1_000)
            .build()
            .unwrap();
        let keys = t.keys();
        let memory = || {
            let pool = pool.clone();
            let keys = keys.clone();
            async move {
                let mut total = 0u64;
                for key in &keys {
                    let used: Option<u64> = pool
                        .query(redis::cmd("MEMORY").arg("USAGE").arg(key).arg("SAMPLES").arg(0))
                        .await
                        .unwrap();
                    total += used.unwrap_or(0);
                }
                total
            }
        };
        let round = |from: u64, to: u64| {
            let t = t.clone();
            async move {
                let writers: Vec<_> = (0..8u64)
                    .map(|w| {
                        let t = t.clone();
                        tokio::spawn(async move {
                            let mut i = from + w;
                            while i < to {
                                let sig = i % 1_000;
                                t.record(&ErrorEvent::new("c", format!("K{}", sig % 7), format!("case {sig} code {i}"))
                                    .fingerprint(format!("s{sig}"))
                                    .task(format!("task-{i}")))
                                    .await
                                    .unwrap();
                                i += 8;
                            }
                        })
                    })
                    .collect();
                for w in writers {
                    w.await.unwrap();
                }
            }
        };
        round(0, 10_000).await;
        let after_10k = memory().await;
        round(10_000, 30_000).await;
        let after_30k = memory().await;
        assert!(
            after_30k <= after_10k + after_10k / 10,
            "memory grew from {after_10k} to {after_30k} bytes with every cap already reached"
        );
        let fields: u64 = pool.query(redis::cmd("HLEN").arg(&keys[0])).await.unwrap();
        // Signature state, sample and meta; task slots (record + owner); counters; the
        // window's list and its kinds' last occurrences.
        assert!(fields <= 3 * 1_000 + 2 * 1_000 + 7 + 3 + 7, "{fields}");
        assert_eq!(t.signatures(10_000).await.unwrap().len(), 1_000);
        assert_eq!(t.counts().await.unwrap().total(), 30_000);
    }
}

redis_test! {
    async fn the_window_keeps_at_most_64_kinds(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let t = ErrorTracker::builder(&pool, &ks, "many-kinds")
            .cascade_threshold(64)
            .build()
            .unwrap();
        let mut cascades = Vec::new();
        for i in 0..100u32 {
            let r = t.record(&ErrorEvent::new("c", format!("Kind{i}"), "m")).await.unwrap();
            if r.cascade {
                cascades.push(i);
            }
        }
        // The 64th distinct kind completes the cascade; one per window.
        assert_eq!(cascades, vec![63]);
        let inst = ks.instance("errors", "many-kinds").unwrap();
        let fields: Vec<String> = pool.query(redis::cmd("HKEYS").arg(inst.key("data"))).await.unwrap();
        let kinds = fields.iter().filter(|f| f.starts_with("~k ")).count();
        assert_eq!(kinds, 64, "{fields:?}");
        assert_eq!(t.counts().await.unwrap().total(), 100);
    }
}

/// A server that goes down: records fail with an error naming it (no panic, nothing half
/// applied on the client), and once it is back (AOF on) the tracker goes on from where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_fail_cleanly_while_the_server_is_down_and_resume_after() {
    use coordkit_testkit::{RedisServer, ServerOptions};

    let mut server = RedisServer::start_with(ServerOptions {
        aof: true,
        ..Default::default()
    })
    .unwrap();
    let pool = server.fault_pool(Duration::from_secs(1)).await;
    let ks = Keyspace::new("down").unwrap();
    let t = tracker(&ks, pool, "down");
    let event = ErrorEvent::new("c", "K", "the same failure");
    for _ in 0..3 {
        t.record(&event).await.unwrap();
    }
    tokio::task::block_in_place(|| server.kill());
    for _ in 0..3 {
        match t.record(&event).await {
            Err(e) => assert!(e.is_retryable(), "not retryable: {e}"),
            other => panic!("expected an unavailable server, got {other:?}"),
        }
    }
    tokio::task::block_in_place(|| server.restart()).unwrap();
    // The pool replaces its dead connections; a call that met one may fail once more.
    let mut again = None;
    for _ in 0..20 {
        match t.record(&event).await {
            Ok(r) => {
                again = Some(r);
                break;
            }
            Err(e) => {
                assert!(e.is_retryable(), "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let again = again.expect("no record succeeded after the restart");
    // The three records before the kill survived it (AOF), and the failed ones never counted.
    assert_eq!(again.count, 4);
    assert_eq!(t.counts().await.unwrap().total(), 4);
}

redis_test! {
    async fn a_configured_classifier_sets_the_severity_unless_one_is_given(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let t = ErrorTracker::builder(&pool, &ks, "classified")
            .classifier(|e| if e.kind == "Oom" { Severity::Critical } else { Severity::Debug })
            .publish_every_record(true)
            .build()
            .unwrap();
        let mut sub = every_event(&pool, &ks).await;
        let r = t.record(&ErrorEvent::new("c", "Oom", "out of memory")).await.unwrap();
        assert_eq!(r.severity, Severity::Critical);
        assert_eq!(next(&mut sub).await.channel, t.channel(Severity::Critical));
        let r = t.record(&ErrorEvent::new("c", "Io", "read failed")).await.unwrap();
        assert_eq!(r.severity, Severity::Debug);
        assert_eq!(next(&mut sub).await.channel, t.channel(Severity::Debug));
        let r = t.record(&ErrorEvent::new("c", "Oom", "again").severity(Severity::Warning)).await.unwrap();
        assert_eq!(r.severity, Severity::Warning, "a given severity wins");
        let got = next(&mut sub).await;
        assert_eq!(got.channel, t.channel(Severity::Warning));
        assert_eq!(got.event.payload["record"]["severity"], "warning");
    }
}

redis_test! {
    async fn a_foreign_log_entry_is_named_and_the_rest_of_the_page_reads(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let t = tracker(&ks, pool.clone(), "foreign");
        t.record(&ErrorEvent::new("c", "K", "before")).await.unwrap();
        let log = ks.instance("errors", "foreign").unwrap().key("log");
        let id: String = pool
            .query(redis::cmd("XADD").arg(&log).arg("*").arg("f").arg("x").arg("e").arg("not json"))
            .await
            .unwrap();
        t.record(&ErrorEvent::new("c", "K", "after")).await.unwrap();
        let page = t.recent(None, 2).await.unwrap();
        assert_eq!(page.entries.len(), 1);
        assert_eq!(page.undecodable, vec![id.clone()]);
        // The page was full (two entries read), so the older one is on the next.
        let older = t.recent(page.next.as_deref(), 2).await.unwrap();
        assert_eq!(older.entries.len(), 1);
        assert!(older.undecodable.is_empty());
        assert_eq!(older.next, None);
        assert_eq!(page.entries[0].occurrence.message, "after");
        assert_eq!(older.entries[0].occurrence.message, "before");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_shows_the_name_and_keys_never_the_password() {
    let server = coordkit_testkit::RedisServer::start_with(coordkit_testkit::ServerOptions {
        password: Some("tracker-secret-42".into()),
        ..Default::default()
    })
    .unwrap();
    let pool = Pool::connect(coordkit_core::PoolConfig::from_url(&server.url()).unwrap())
        .await
        .unwrap();
    let t = ErrorTracker::builder(&pool, &Keyspace::new("dbg").unwrap(), "shown")
        .build()
        .unwrap();
    let shown = format!("{t:?} {:?}", t.clone());
    assert!(
        shown.contains("ErrorTracker") && shown.contains("\"shown\""),
        "{shown}"
    );
    for key in t.keys() {
        assert!(shown.contains(key.as_str()), "{key:?} not in {shown}");
    }
    assert!(!shown.contains("tracker-secret-42"), "{shown}");
}
