//! Pipelines over capabilities: parse → enrich → store, each stage a consumer of its
//! capability's dispatched messages forwarding its results to the next; the last stage gets
//! exactly what the first produced, each once; an input the first stage cannot handle is
//! dead-lettered there and goes no further; a served request's answer is forwarded before the
//! asker has it.

use std::collections::BTreeSet;
use std::time::Duration;

use coordkit_core::Error;
use coordkit_mesh::{AgentError, MeshAgent, Reply, SendOptions};
use coordkit_testkit::redis_test;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// A guard against hangs only.
const GUARD: Duration = Duration::from_secs(60);
const LONG: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Record {
    id: u32,
    word: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Enriched {
    record: Record,
    letters: usize,
}

/// "<id> <word>" as a record.
async fn parse(line: String) -> Result<Record, String> {
    let (id, word) = line.split_once(' ').ok_or("no space")?;
    let id = id.parse().map_err(|e| format!("bad id {id:?}: {e}"))?;
    Ok(Record {
        id,
        word: word.to_owned(),
    })
}

redis_test! {
    async fn the_last_stage_gets_exactly_what_the_first_produced(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let agent = |name: &str| MeshAgent::builder(&pool, &ks, name).build().unwrap();
        let (parser, enricher, storer, feeder) =
            (agent("parser"), agent("enricher"), agent("storer"), agent("feeder"));
        let parse_stage = parser
            .serve_dispatched("parse", parser.forward(&["enrich"], parse).unwrap())
            .await
            .unwrap();
        let enrich = |record: Record| async move {
            Ok::<_, String>(Enriched { letters: record.word.len(), record })
        };
        let enrich_stage = enricher
            .serve_dispatched("enrich", enricher.forward(&["store"], enrich).unwrap())
            .await
            .unwrap();
        let (stored_tx, mut stored) = mpsc::unbounded_channel();
        let store_stage = storer
            .serve_dispatched("store", move |e: Enriched| {
                let stored_tx = stored_tx.clone();
                async move { stored_tx.send(e).map_err(|_| "the test is gone") }
            })
            .await
            .unwrap();
        let words = ["alpha", "beta", "gamma", "delta", "epsilon"];
        // Not a record: dead-lettered by the first stage, never forwarded.
        feeder.dispatch("parse", &"garbage", SendOptions::default()).await.unwrap();
        let mut expected = BTreeSet::new();
        for n in 0..20u32 {
            let word = words[n as usize % words.len()];
            feeder.dispatch("parse", &format!("{n} {word}"), SendOptions::default()).await.unwrap();
            let record = Record { id: n, word: word.to_owned() };
            expected.insert(Enriched { letters: word.len(), record });
        }
        let mut got = BTreeSet::new();
        while got.len() < expected.len() {
            let e = tokio::time::timeout(GUARD, stored.recv()).await.unwrap().unwrap();
            assert!(got.insert(e.clone()), "{e:?} stored twice");
        }
        assert_eq!(got, expected);
        // Shutting down waits for what each stage holds to be settled.
        parse_stage.shutdown().await;
        enrich_stage.shutdown().await;
        store_stage.shutdown().await;
        assert!(stored.try_recv().is_err(), "nothing stored twice");
        let stats = |c: &'static str| {
            let feeder = feeder.clone();
            async move { feeder.capability_stats(c).await.unwrap().inbox }
        };
        let parse_inbox = stats("parse").await;
        assert_eq!((parse_inbox.acked, parse_inbox.dead, parse_inbox.pending), (20, 1, 0));
        for c in ["enrich", "store"] {
            let s = stats(c).await;
            assert_eq!((s.sent, s.acked, s.dead, s.pending), (20, 20, 0, 0), "{c}");
        }
        assert_eq!(feeder.capability_stats("store").await.unwrap().live_members, 0, "left");
    }
}

redis_test! {
    async fn a_served_answer_is_forwarded_before_the_asker_has_it(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let parser = MeshAgent::builder(&pool, &ks, "parser").build().unwrap();
        let auditor = MeshAgent::builder(&pool, &ks, "auditor").build().unwrap();
        let asker = MeshAgent::builder(&pool, &ks, "asker").build().unwrap();
        let server = parser
            .serve_capability("parse", parser.forward(&["audit", "archive"], parse).unwrap())
            .await
            .unwrap();
        let reply: Reply<Record> = asker.ask_capability("parse", &"7 seven", LONG).await.unwrap();
        let record = Record { id: 7, word: "seven".into() };
        assert_eq!(reply, Reply::Answer(record.clone()));
        // Forwarded to both, before the reply left: already there.
        for capability in ["audit", "archive"] {
            let got = auditor.receive_dispatched::<Record>(capability, 10).await.unwrap();
            assert_eq!(got.len(), 1, "{capability}");
            assert_eq!((&got[0].payload, got[0].from.as_str()), (&record, "parser"));
        }
        // A failing handler forwards nothing and answers its error.
        let reply: Reply<Record> = asker.ask_capability("parse", &"x seven", LONG).await.unwrap();
        assert!(matches!(&reply, Reply::Failed(e) if e.starts_with("bad id")), "{reply:?}");
        assert!(auditor.receive_dispatched::<Record>("audit", 10).await.unwrap().is_empty());
        server.shutdown().await;
        // The next capabilities' names are checked when the handler is wrapped.
        match parser.forward(&["audit", "a{b}"], parse) {
            Err(AgentError::Core(Error::InvalidName { .. })) => {}
            other => panic!("expected InvalidName, got {other:?}"),
        }
    }
}
