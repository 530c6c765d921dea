//! Reading a store whole: [`WorkflowStore::restore`] and [`WorkflowStore::stats`].

use std::time::Duration;

use coordkit_core::time::duration_ms;

use crate::error::Result;
use crate::store::{Backend, WorkflowStore};
use crate::types::{Listing, Restored, Stats, Status, WorkflowInfo};

/// The page size of [`WorkflowStore::restore`].
const RESTORE_PAGE: usize = 1_000;

/// Every workflow of a store: the active ones, then the finished ones of each status.
const LISTINGS: [Listing; 4] = [
    Listing::Active,
    Listing::Status(Status::Completed),
    Listing::Status(Status::Failed),
    Listing::Status(Status::Cancelled),
];

impl WorkflowStore {
    /// Everything an orchestrator needs after a restart: every active (pending or running)
    /// workflow and the finished ones the store keeps, paged (1,000 a call): 10,000 active
    /// workflows take about a dozen calls. Claim the orphans among them with
    /// [`WorkflowStore::resume_orphans`].
    pub async fn restore(&self) -> Result<Restored> {
        let mut restored = Restored {
            active: Vec::new(),
            finished: Vec::new(),
            skipped: Vec::new(),
            calls: 0,
        };
        for listing in LISTINGS {
            let mut after = None;
            loop {
                let page = self.list(&listing, after.as_ref(), RESTORE_PAGE).await?;
                restored.calls += 1;
                let into = if listing == Listing::Active {
                    &mut restored.active
                } else {
                    &mut restored.finished
                };
                into.extend(page.items);
                restored.skipped.extend(page.skipped);
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        Ok(restored)
    }

    /// Counts by status and by type and status, the workflows finished in the last `window`,
    /// and the p50 / p95 of their durations (creation to finish). The counts page through
    /// the store like [`WorkflowStore::restore`] (a call per 1,000 active workflows, one per
    /// finished status), so they are exact and leave no counter to keep on the hot path.
    pub async fn stats(&self, window: Duration) -> Result<Stats> {
        let window_ms = duration_ms(window);
        let Backend::Redis(r) = &*self.inner.backend else {
            return self.with_model(|m, now| m.stats(now, window_ms));
        };
        let finished = r.finished_since(window_ms).await?;
        let mut counts = Vec::new();
        for listing in LISTINGS {
            let mut after = None;
            loop {
                let page = self.list(&listing, after.as_ref(), RESTORE_PAGE).await?;
                counts.extend(page.items.into_iter().map(|i| (i.kind, i.status, 1)));
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        Ok(stats_of(counts, &finished))
    }
}

/// Stats from counts (type, status, n) and the headers finished in the window.
pub(crate) fn stats_of(counts: Vec<(String, Status, u64)>, finished: &[WorkflowInfo]) -> Stats {
    let mut stats = Stats::default();
    for s in Status::ALL {
        stats.by_status.insert(s, 0);
    }
    for (kind, status, n) in counts {
        if n == 0 {
            continue;
        }
        let total = stats.by_status.entry(status).or_default();
        *total = total.saturating_add(n);
        let by_type = stats.by_type.entry((kind, status)).or_default();
        *by_type = by_type.saturating_add(n);
    }
    let mut durations: Vec<u64> = Vec::with_capacity(finished.len());
    for info in finished {
        *stats.finished_in_window.entry(info.status).or_default() += 1;
        if let Some(f) = info.finished_ms {
            durations.push(f.saturating_sub(info.created_ms));
        }
    }
    durations.sort_unstable();
    stats.duration_p50_ms = percentile(&durations, 50);
    stats.duration_p95_ms = percentile(&durations, 95);
    stats
}

/// The nearest-rank percentile `p` of sorted values.
fn percentile(sorted: &[u64], p: usize) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 95), Some(95));
        assert_eq!(percentile(&[7], 95), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }
}
