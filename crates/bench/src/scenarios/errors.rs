//! `errors-record`: one error occurrence per call (signature, counters, log, task record,
//! correlation, event), spread over 1,000 signatures, 5 kinds and 4 components, each task
//! failing twice. The report adds the tracker's Redis memory and what its caps hold, so a run
//! with `--ops 1000000` shows the memory stays bounded.

use std::sync::Arc;

use coordkit_core::{Keyspace, Pool};
use coordkit_errors::{ErrorEvent, ErrorTracker};

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

impl Workload for Record {
    fn op<'a>(&'a self, _pool: &'a Pool, i: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let sig = i % SIGNATURES;
            let event = ErrorEvent::new(
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
            .attribute("attempt", (i % 3).to_string());
            self.tracker.record(&event).await?;
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
    let tracker = ErrorTracker::builder(pool.clone(), keyspace.clone(), "bench").build()?;
    Ok(Arc::new(Record { tracker }))
}
