//! `errors-record`: one error occurrence per call (signature, counters, log, task record,
//! correlation, event), spread over 1,000 signatures, 5 kinds and 4 components, each task
//! failing twice. The report adds the tracker's Redis memory and what its caps hold, so a run
//! with `--ops 1000000` shows the memory stays bounded.

use std::sync::Arc;

use coordkit_core::{Key, Keyspace, Pool, Script};
use coordkit_errors::{ErrorEvent, ErrorTracker};
use serde::Serialize;

use super::{BoxFuture, Result, Workload, memory_usage};

/// Distinct signatures the records spread over.
const SIGNATURES: u64 = 1_000;
const KINDS: [&str; 5] = ["Timeout", "Io", "Parse", "Auth", "Conflict"];
const COMPONENTS: [&str; 4] = ["fetcher", "indexer", "planner", "writer"];

struct Record {
    tracker: ErrorTracker,
}

/// A word of letters only (so the normalizer keeps it): the signature's fixed part.
fn word(mut n: u64) -> String {
    let mut w = String::from("h");
    loop {
        w.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
        if n == 0 {
            return w;
        }
    }
}

/// The event `errors-record` records at step `i`.
fn event(i: u64) -> ErrorEvent {
    let sig = i % SIGNATURES;
    ErrorEvent::new(
        COMPONENTS[(sig % 4) as usize],
        KINDS[(sig % 5) as usize],
        format!(
            "request {i} to 10.0.{}.{}:6379 failed in handler {} after {}ms",
            i % 7,
            i % 251,
            word(sig),
            i % 997
        ),
    )
    .task(format!("task-{}", i / 2))
    .code("E42")
    .attribute("attempt", (i % 3).to_string())
}

impl Workload for Record {
    fn op<'a>(&'a self, _pool: &'a Pool, i: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.tracker.record(&event(i)).await?;
            Ok(())
        })
    }

    fn report<'a>(
        &'a self,
        pool: &'a Pool,
    ) -> BoxFuture<'a, Result<serde_json::Map<String, serde_json::Value>>> {
        Box::pin(async move {
            let mut extra = serde_json::Map::new();
            let bytes = memory_usage(pool, &self.tracker.keys()).await?;
            let counts = self.tracker.counts().await?;
            let signatures = self.tracker.signatures(u32::MAX).await?.len();
            let log = self.tracker.recent(None, 10_000).await?.entries.len();
            extra.insert("tracker_memory_bytes".into(), bytes.into());
            extra.insert("records_total".into(), counts.total().into());
            extra.insert("signatures_tracked".into(), signatures.into());
            extra.insert("log_entries".into(), log.into());
            Ok(extra)
        })
    }
}

pub(crate) async fn prepare_record(pool: &Pool, keyspace: &Keyspace) -> Result<Arc<dyn Workload>> {
    let tracker = ErrorTracker::builder(pool, keyspace, "bench").build()?;
    Ok(Arc::new(Record { tracker }))
}

static FLOOR: Script = Script::bare(
    "errors-record-floor",
    include_str!("../../lua/errors_record_floor.lua"),
);

/// `errors-record-floor`: what any recording of `errors-record`'s events must cost at least. The
/// client computes the signature (normalizer and fingerprint) and the record's JSON as the
/// tracker does; the script makes the three calls a record needs with arguments of the same
/// size and computes nothing.
struct Floor {
    tracker: ErrorTracker,
    data: Key,
    log: Key,
}

/// The record's JSON, with the fields the tracker's has.
#[derive(Serialize)]
struct FloorRecord<'a> {
    signature: &'a str,
    component: &'a str,
    kind: &'a str,
    severity: &'a str,
    message: &'a str,
    task_id: Option<&'a str>,
    code: Option<&'a str>,
    recoverable: bool,
    truncated: bool,
    stack: &'a [String],
    attributes: &'a std::collections::BTreeMap<String, String>,
}

impl Workload for Floor {
    fn op<'a>(&'a self, pool: &'a Pool, i: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let event = event(i);
            let sig = self.tracker.signature_of(&event);
            let message = event.message_text();
            let task = event.task_id.as_deref().unwrap_or_default();
            let record = serde_json::to_string(&FloorRecord {
                signature: &sig,
                component: &event.component,
                kind: &event.kind,
                severity: "error",
                message: &message,
                task_id: Some(task),
                code: event.code.as_deref(),
                recoverable: event.recoverable,
                truncated: false,
                stack: &event.stack,
                attributes: &event.attributes,
            })?;
            let slot = i % 10_000;
            let _: String = FLOOR
                .prepare()
                .key(&self.data)
                .key(&self.log)
                .arg(&sig)
                .arg(format!("~c {} {}", event.kind, event.component))
                .arg(format!("~to {slot}"))
                .arg(format!("~to {}", 9_999 - slot))
                .arg(format!("{sig} s"))
                .arg(format!("~k {}", event.kind))
                // The state: six doubles and the components seen.
                .arg([7u8; 57].as_slice())
                .arg(2f64.to_be_bytes().as_slice())
                .arg(format!("~t {slot}"))
                .arg(format!("{task}\t1764547200000"))
                .arg(record)
                .invoke(pool)
                .await?;
            Ok(())
        })
    }
}

pub(crate) async fn prepare_floor(pool: &Pool, keyspace: &Keyspace) -> Result<Arc<dyn Workload>> {
    let tracker = ErrorTracker::builder(pool, keyspace, "floor").build()?;
    let instance = keyspace.instance("errors", "floor")?;
    Ok(Arc::new(Floor {
        tracker,
        data: instance.key("data"),
        log: instance.key("log"),
    }))
}
