//! The operator's side of a queue: stats, pause and resume, the dead-letter queue (list,
//! requeue, purge) and the full state of one task.

use std::time::Duration;

use coordkit_core::redis::Value;
use coordkit_core::wire::Reply;

use crate::error::{Result, bad_answer};
use crate::queue::{Queue, lossy, some};
use crate::record::{Record, decode_errors};
use crate::scripts;
use crate::types::{DeadLetter, MAX_BATCH, Stats, TaskInfo, TaskState};

impl Queue {
    /// Counts per state, totals, and the age of the oldest ready task.
    pub async fn stats(&self) -> Result<Stats> {
        let answer: Value = self.call(&scripts::STATS).invoke(self.inner_pool()).await?;
        let r = Reply::array(scripts::STATS.name(), &answer)?;
        let now = r.u64(7, "now")?;
        let oldest_ready = some(r.i64(6, "oldest ready since")?);
        Ok(Stats {
            ready: r.u64(0, "ready")?,
            delayed: r.u64(1, "delayed")?,
            leased: r.u64(2, "leased")?,
            dead: r.u64(3, "dead")?,
            completed: r.u64(4, "completed")?,
            dead_lettered_total: r.u64(5, "dead-lettered total")?,
            oldest_ready_age: oldest_ready
                .map(|since| Duration::from_millis(now.saturating_sub(since))),
            next_due_ms: some(r.i64(8, "next due")?),
            now_ms: now,
            paused: r.u64(9, "paused")? == 1,
            limits: crate::Limits::from_wire(
                r.u64(10, "max leased")?,
                r.u64(11, "rate max")?,
                r.u64(12, "rate ms")?,
            ),
        })
    }

    /// Pauses the queue: from now on no worker claims a task of it (claims still hand expired
    /// leases back and promote due tasks); tasks already leased run to their settle. Answers
    /// whether this call paused it (`false`: it was paused already). Publishes `paused`.
    pub async fn pause(&self) -> Result<bool> {
        self.set_paused(true).await
    }

    /// Lets claims go on again after [`Queue::pause`], and wakes idle workers. Answers whether
    /// this call resumed it (`false`: it was not paused). Publishes `resumed`.
    pub async fn resume(&self) -> Result<bool> {
        self.set_paused(false).await
    }

    async fn set_paused(&self, paused: bool) -> Result<bool> {
        self.registered().await?;
        let mut call = self.call(&scripts::PAUSE);
        call.arg(if paused { "1" } else { "0" });
        let changed: u64 = call.invoke(self.inner_pool()).await?;
        Ok(changed == 1)
    }

    /// A page of the dead-letter queue, oldest first.
    pub async fn dead_letters(&self, offset: usize, limit: usize) -> Result<Vec<DeadLetter>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut call = self.call(&scripts::DLQ_LIST);
        call.arg(offset).arg(limit.min(10_000));
        let answer: Value = call.invoke(self.inner_pool()).await?;
        let r = Reply::array(scripts::DLQ_LIST.name(), &answer)?;
        if !r.len().is_multiple_of(4) {
            return Err(bad_answer("dlq_list", format!("{} items", r.len())));
        }
        (0..r.len() / 4)
            .map(|row| {
                let i = row * 4;
                let raw = r.bytes(i + 3, "record")?;
                let (m, raw_record) = match Record::decode(raw) {
                    Some(m) => (m, None),
                    None => (Record::default(), Some(raw.to_vec())),
                };
                Ok(DeadLetter {
                    id: lossy(r.bytes(i, "id")?),
                    dead_at_ms: r.u64(i + 1, "dead-letter time")?,
                    reason: lossy(r.bytes(i + 2, "reason")?),
                    attempts: m.attempts,
                    stalls: m.stalls,
                    enqueued_ms: m.enqueued,
                    component: m.component,
                    raw_record,
                })
            })
            .collect()
    }

    /// Everything about one task (in any state), or `None` when there is no such task (it was
    /// acknowledged or purged).
    pub async fn inspect(&self, id: &str) -> Result<Option<TaskInfo>> {
        let mut call = self.call(&scripts::INSPECT);
        call.arg(id);
        let answer: Value = call.invoke(self.inner_pool()).await?;
        let r = Reply::array(scripts::INSPECT.name(), &answer)?;
        if r.is_empty() {
            return Ok(None);
        }
        let state = match r.text(0, "state")? {
            "ready" => TaskState::Ready,
            "delayed" => TaskState::Delayed,
            "leased" => TaskState::Leased,
            "dead" => TaskState::Dead,
            other => return Err(bad_answer("inspect", format!("no state {other:?}"))),
        };
        let at = r.i64(1, "score")?;
        let raw = r.bytes(2, "record")?;
        let (record, raw_record) = match Record::decode(raw) {
            Some(record) => (record, None),
            None => (Record::default(), Some(raw.to_vec())),
        };
        // A history that does not decode is no reason to hide the task.
        let errors = decode_errors(r.bytes(3, "errors")?).unwrap_or_default();
        let reason = lossy(r.bytes(4, "reason")?);
        Ok(Some(TaskInfo {
            id: id.to_owned(),
            state,
            at_ms: some(at),
            attempts: record.attempts,
            stalls: record.stalls,
            max_attempts: record.max,
            enqueued_ms: record.enqueued,
            component: record.component,
            priority: record.priority,
            group: record.group,
            payload: record.payload,
            errors,
            reason: (!reason.is_empty()).then_some(reason),
            raw_record,
        }))
    }

    /// Puts these dead-lettered tasks back in the ready queue (`reset_attempts`: with a fresh
    /// attempt budget and no error history; otherwise an exhausted task gets one more attempt,
    /// and its stall count starts again). Answers the ids requeued (ids not in the DLQ are
    /// skipped).
    pub async fn requeue(&self, ids: &[&str], reset_attempts: bool) -> Result<Vec<String>> {
        let mut out = Vec::new();
        // (An empty id list would mean "the oldest" to the script.)
        for chunk in ids.chunks(MAX_BATCH) {
            let mut call = self.call(&scripts::REQUEUE);
            call.arg(if reset_attempts { "1" } else { "0" }).arg(0);
            for id in chunk {
                call.arg(*id);
            }
            let done: Vec<String> = call.invoke(self.inner_pool()).await?;
            out.extend(done);
        }
        Ok(out)
    }

    /// Requeues every dead-lettered task, oldest first, [`MAX_BATCH`] per script. Answers how
    /// many.
    pub async fn requeue_all(&self, reset_attempts: bool) -> Result<u64> {
        let mut total = 0;
        loop {
            let mut call = self.call(&scripts::REQUEUE);
            call.arg(if reset_attempts { "1" } else { "0" })
                .arg(MAX_BATCH);
            let done: Vec<String> = call.invoke(self.inner_pool()).await?;
            if done.is_empty() {
                return Ok(total);
            }
            total += done.len() as u64;
        }
    }

    /// Deletes these dead-lettered tasks for good. Answers how many were deleted.
    pub async fn purge(&self, ids: &[&str]) -> Result<u64> {
        let mut total = 0;
        // `chunks` yields nothing for an empty list (which would mean "the oldest" to the script).
        for chunk in ids.chunks(MAX_BATCH) {
            let mut call = self.call(&scripts::PURGE);
            call.arg(0);
            for id in chunk {
                call.arg(*id);
            }
            let n: u64 = call.invoke(self.inner_pool()).await?;
            total += n;
        }
        Ok(total)
    }

    /// Deletes every dead-lettered task, [`MAX_BATCH`] per script. Answers how many.
    pub async fn purge_all(&self) -> Result<u64> {
        let mut total = 0;
        loop {
            let mut call = self.call(&scripts::PURGE);
            call.arg(MAX_BATCH);
            let n: u64 = call.invoke(self.inner_pool()).await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }
}
