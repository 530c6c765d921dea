//! `coordkit errors …` against the tracker's own queries.

use std::time::Duration;

use coordkit_errors::{ErrorEvent, ErrorTracker};

use crate::cli_test;
use crate::common::Harness;

/// A tracker with 3 timeouts and 1 parse error; answers (timeout, parse) signatures.
fn tracked(t: &Harness, name: &str) -> (ErrorTracker, String, String) {
    let tracker = ErrorTracker::builder(&t.pool, &t.keyspace, name)
        .build()
        .unwrap();
    t.block_on(async {
        let mut timeout = String::new();
        for i in 0..3 {
            let event = ErrorEvent::new(
                "fetcher",
                "Timeout",
                format!("GET https://h{i}.example/x timed out after {i}s"),
            )
            .task(format!("t-{i}"));
            timeout = tracker.record(&event).await.unwrap().signature;
        }
        let parse = tracker
            .record(&ErrorEvent::new("parser", "ParseError", "unexpected token"))
            .await
            .unwrap()
            .signature;
        (tracker, timeout, parse)
    })
}

cli_test! {
    fn top_and_recent_match_the_tracker(t) {
        let (tracker, timeout, parse) = tracked(&t, "agents");
        let top = t.block_on(tracker.top(Duration::from_secs(3600), 20)).unwrap();
        let json = t.json(&["errors", "top", "agents", "--window", "1h"]);
        assert_eq!(json["window_ms"], 3_600_000);
        let listed: Vec<(String, u64)> = json["signatures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["signature"].as_str().unwrap().to_owned(), s["in_window"].as_u64().unwrap()))
            .collect();
        let expected: Vec<(String, u64)> = top.signatures.iter().map(|s| (s.signature.clone(), s.in_window)).collect();
        assert_eq!(listed, expected);
        assert_eq!(listed, vec![(timeout.clone(), 3), (parse, 1)]);
        assert_eq!(json["signatures"][0]["template"], "GET <url> timed out after <dur>");

        let human = t.ok(&["errors", "top", "agents"]);
        assert!(human.contains(&timeout) && human.contains("ParseError"), "{human}");

        let recent = t.json(&["errors", "recent", "agents", "--limit", "2"]);
        let page = t.block_on(tracker.recent(None, 2)).unwrap();
        let ids: Vec<&str> = recent["entries"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(ids, page.entries.iter().map(|e| e.id.as_str()).collect::<Vec<_>>());
        assert_eq!(recent["entries"][0]["message"], "unexpected token");
        assert_eq!(recent["next"].as_str(), page.next.as_deref());
        let older = t.json(&["errors", "recent", "agents", "--limit", "10", "--before", page.next.as_deref().unwrap()]);
        assert_eq!(older["entries"].as_array().unwrap().len(), 2);

        let err = t.fails(1, &["errors", "top", "nobody"]);
        assert!(err.contains("unknown error tracker"), "{err}");
        let err = t.usage(&["errors", "top", "agents", "--window", "soon"]);
        assert!(err.contains("is not a duration"), "{err}");
    }
}

cli_test! {
    fn show_and_resolve_one_signature(t) {
        let (tracker, timeout, _) = tracked(&t, "fleet");
        let json = t.json(&["errors", "show", "fleet", &timeout]);
        let detail = t.block_on(tracker.signature(&timeout)).unwrap().unwrap();
        assert_eq!(json["count"], detail.count);
        assert_eq!(json["count"], 3);
        assert_eq!(json["first_seen_ms"], detail.first_seen_ms);
        assert_eq!(json["kind"], "Timeout");
        assert_eq!(json["resolved_at_ms"], serde_json::Value::Null);
        assert_eq!(json["last_sample"]["task_id"], "t-2");

        t.fails(2, &["errors", "resolve", "fleet", &timeout]);
        assert!(t.block_on(tracker.signature(&timeout)).unwrap().unwrap().resolved_at_ms.is_none());
        let out = t.ok(&["-y", "errors", "resolve", "fleet", &timeout]);
        assert!(out.starts_with(&format!("resolved signature {timeout} of error tracker fleet at ")), "{out}");
        let resolved = t.block_on(tracker.signature(&timeout)).unwrap().unwrap().resolved_at_ms;
        assert!(resolved.is_some());
        let again = t.json(&["-y", "errors", "resolve", "fleet", &timeout]);
        assert_eq!(again["changed"], false);
        assert_eq!(again["resolved_at_ms"], resolved.unwrap());

        let err = t.fails(1, &["-y", "errors", "resolve", "fleet", "0123abcd"]);
        assert!(err.contains("unknown signature"), "{err}");
        t.fails(1, &["errors", "show", "fleet", "0123abcd"]);
    }
}
