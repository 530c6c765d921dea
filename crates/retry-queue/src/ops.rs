//! The operations of a queue's tasks: enqueue, claim, settle (ack, fail, defer,
//! dead-letter) and lease extension.

use std::time::Duration;

use coordkit_core::Key;
use coordkit_core::redis::Value;
use coordkit_core::time::duration_ms;
use coordkit_core::wire::{Packed, Reply};
use serde::Serialize;

use crate::code;
use crate::error::{QueueError, Result, bad_answer};
use crate::options::TaskOptions;
use crate::queue::{EXACT, Queue, id_number, lossy, some};
use crate::record::{Record, task_tail};
use crate::scripts;
use crate::types::{Claim, Enqueued, MAX_BATCH, MAX_ERROR_BYTES, NewTask, Settle, Settled, Task};

/// One settle operation with its jitter draw, as the script takes it (features `testing` and
/// `model`: what `model::QueueModel::settle` and
/// `Queue::settle_raw` take, so both can be given the same draws).
#[cfg_attr(
    not(any(feature = "testing", feature = "model")),
    allow(unreachable_pub)
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSettle {
    /// The task's id.
    pub id: String,
    /// The token of its lease.
    pub token: u64,
    /// What to do.
    pub settle: Settle,
    /// The jitter draw of a failure's backoff, `0..65536`.
    pub draw: u32,
    /// The attempt its holder ran ([`Task::attempt`]): a [`Settle::FailInPlace`] of an attempt
    /// already recorded (the same settle sent again after an error, its first try applied)
    /// answers as the first time did and records nothing.
    pub attempt: u32,
}

impl Queue {
    /// Enqueues one task.
    pub async fn enqueue(&self, task: NewTask) -> Result<Enqueued> {
        let mut out = self.enqueue_batch(std::slice::from_ref(&task)).await?;
        out.pop().ok_or_else(|| bad_answer("enqueue", "no answer"))
    }

    /// Enqueues `value` as JSON with `options`.
    pub async fn enqueue_json<T: Serialize + ?Sized>(
        &self,
        value: &T,
        options: TaskOptions,
    ) -> Result<Enqueued> {
        self.enqueue(NewTask::json(value)?.options(options)).await
    }

    /// Enqueues a batch: one script per [`MAX_BATCH`] tasks, each batch all or nothing. The
    /// answers are in the tasks' order. Every task is checked first (its options, its payload
    /// against the queue's limit): one that fails the check fails the call with nothing
    /// enqueued.
    pub async fn enqueue_batch(&self, tasks: &[NewTask]) -> Result<Vec<Enqueued>> {
        let max = self.inner_config().max_payload_bytes;
        for (index, task) in tasks.iter().enumerate() {
            task.options.validate()?;
            if task.payload.len() > max {
                return Err(QueueError::PayloadTooLarge {
                    index,
                    len: task.payload.len(),
                    max,
                });
            }
        }
        self.registered().await?;
        let mut out = Vec::with_capacity(tasks.len());
        for chunk in tasks.chunks(MAX_BATCH) {
            let mut call = self.call(&scripts::ENQUEUE);
            let mut nums = Packed::new();
            let mut keys = Vec::new();
            for task in chunk {
                let o = &task.options;
                let ttl = match &o.idempotency {
                    Some((key, ttl)) => {
                        keys.push(key.as_str());
                        duration_ms(*ttl).max(1)
                    }
                    None => 0,
                };
                nums = nums.u64_le(duration_ms(o.delay)).u64_le(ttl);
            }
            call.arg(chunk.len()).arg(nums.into_bytes());
            for task in chunk {
                call.arg(task_tail(&task.options, &task.payload));
            }
            for key in keys {
                call.arg(key);
            }
            let answer: Value = call.invoke(self.inner_pool()).await?;
            out.extend(decode_enqueue(&answer, chunk.len())?);
        }
        Ok(out)
    }

    /// Leases up to `max` ready tasks (at most [`MAX_BATCH`]), after reclaiming expired leases
    /// and promoting due delayed tasks (each bounded per call).
    pub async fn claim(&self, max: usize) -> Result<Claim> {
        self.claim_from(max, None).await
    }

    /// Like [`Queue::claim`], for a worker that can run the tasks of these groups only (its
    /// capabilities: see [`TaskOptions::group`](crate::TaskOptions::group)), in this order of
    /// preference, each within its limits; and the tasks of no group, which need none. The
    /// tasks of other groups are left to the workers that can run them. A list that is empty
    /// or names a bad group is an error naming `capabilities`.
    pub async fn claim_capable(&self, max: usize, capabilities: &[&str]) -> Result<Claim> {
        check_capabilities(capabilities)?;
        self.claim_from(max, Some(capabilities)).await
    }

    /// One claim, by capabilities or not (the checks are the caller's).
    pub(crate) async fn claim_from(
        &self,
        max: usize,
        capabilities: Option<&[&str]>,
    ) -> Result<Claim> {
        self.registered().await?;
        let c = &self.inner_config();
        let mut call = self.call(&scripts::CLAIM);
        call.arg(max.min(MAX_BATCH))
            .arg(c.promote_limit)
            .arg(c.reclaim_limit);
        // Each group once (the script would serve a repeated one twice).
        let mut seen = std::collections::HashSet::new();
        for group in capabilities.unwrap_or_default() {
            if seen.insert(*group) {
                call.arg(*group);
            }
        }
        let answer: Value = call.invoke(self.inner_pool()).await?;
        decode_claim(&answer, &self.keys()[0])
    }

    /// Settles leased tasks in one script; the answers are in the same order.
    pub async fn settle(&self, items: &[(&Task, Settle)]) -> Result<Vec<Settled>> {
        let ops: Vec<RawSettle> = items
            .iter()
            .map(|(task, settle)| RawSettle {
                id: task.id.clone(),
                token: task.token,
                settle: settle.clone(),
                draw: rand::random::<u32>() >> 16,
                attempt: task.attempt,
            })
            .collect();
        self.settle_ops(&ops).await
    }

    /// [`Queue::settle`] with given jitter draws (feature `testing`: for tests that compare the
    /// script with the reference model).
    #[cfg(feature = "testing")]
    pub async fn settle_raw(&self, ops: &[RawSettle]) -> Result<Vec<Settled>> {
        self.settle_ops(ops).await
    }

    async fn settle_ops(&self, ops: &[RawSettle]) -> Result<Vec<Settled>> {
        let max = self.inner_config().max_payload_bytes;
        for op in ops {
            if let Settle::AckWith(result) = &op.settle
                && result.len() > max
            {
                return Err(QueueError::ResultTooLarge {
                    id: op.id.clone(),
                    len: result.len(),
                    max,
                });
            }
        }
        let mut out = Vec::with_capacity(ops.len());
        for chunk in ops.chunks(MAX_BATCH) {
            // Ops on ids or tokens this queue never hands out hold no lease: not sent.
            let sent: Vec<(&RawSettle, u64)> = chunk
                .iter()
                .filter_map(|op| Some((op, id_number(&op.id)?)))
                .filter(|(op, _)| op.token < EXACT)
                .collect();
            let mut answers = Vec::new();
            if !sent.is_empty() {
                let mut call = self.call(&scripts::SETTLE);
                let mut packed = Packed::new();
                let mut texts: Vec<&[u8]> = Vec::new();
                for (op, id) in &sent {
                    let (op_code, x) = match &op.settle {
                        Settle::Ack => (code::OP_ACK, 0),
                        Settle::AckWith(result) => {
                            // The result's key goes after the shared ones (settle.lua's header).
                            call.key(&self.result_key(*id));
                            texts.push(result);
                            (
                                code::OP_ACK,
                                duration_ms(self.inner_config().result_ttl).max(1),
                            )
                        }
                        Settle::Fail(error) | Settle::FailInPlace(error) => {
                            texts.push(cut(error).as_bytes());
                            let draw = u64::from(op.draw.min(65_535));
                            match op.settle {
                                Settle::FailInPlace(_) => {
                                    (code::OP_FAIL_IN_PLACE, draw + (u64::from(op.attempt) << 16))
                                }
                                _ => (code::OP_FAIL, draw),
                            }
                        }
                        Settle::Defer(d) => (
                            code::OP_DEFER,
                            duration_ms(*d).min(crate::options::MAX_DURATION_MS),
                        ),
                        Settle::DeadLetter { reason, error } => {
                            texts.push(reason.as_bytes());
                            texts.push(cut(error).as_bytes());
                            (code::OP_DEAD_LETTER, 0)
                        }
                    };
                    packed = packed
                        .bytes(&[op_code])
                        .u64_le(*id)
                        .u64_le(op.token)
                        .u64_le(x);
                }
                call.arg(sent.len()).arg(packed.into_bytes());
                for text in texts {
                    call.arg(text);
                }
                let answer: Value = call.invoke(self.inner_pool()).await?;
                let reply = Reply::array(scripts::SETTLE.name(), &answer)?;
                if reply.len() != sent.len() * 3 {
                    return Err(bad_answer(
                        "settle",
                        format!("{} numbers for {} ops", reply.len(), sent.len()),
                    ));
                }
                answers = (0..reply.len())
                    .map(|i| reply.u64(i, "status, attempts or due time"))
                    .collect::<coordkit_core::Result<_>>()?;
            }
            let mut answers = answers.chunks(3);
            let mut sent = sent.iter().peekable();
            for op in chunk {
                let mine = sent.peek().is_some_and(|(s, _)| std::ptr::eq(*s, op));
                if !mine {
                    out.push(Settled::LeaseLost);
                    continue;
                }
                sent.next();
                let a = answers.next().unwrap_or(&[code::SETTLED_LOST, 0, 0]);
                let (attempts, due_ms) = (u32::try_from(a[1]).unwrap_or(u32::MAX), a[2]);
                out.push(match a[0] {
                    code::SETTLED_ACKED => Settled::Acked,
                    code::SETTLED_RETRYING => Settled::RetryScheduled { attempts, due_ms },
                    code::SETTLED_DEAD_LETTERED => Settled::DeadLettered { attempts },
                    code::SETTLED_DEFERRED => Settled::Deferred { due_ms },
                    code::SETTLED_ALREADY => Settled::AlreadySettled,
                    code::SETTLED_RETRYING_IN_PLACE => Settled::RetryingInPlace {
                        attempts,
                        delay_ms: due_ms,
                    },
                    _ => Settled::LeaseLost,
                });
            }
        }
        Ok(out)
    }

    async fn settle_one(&self, task: &Task, settle: Settle) -> Result<Settled> {
        let mut out = self.settle(&[(task, settle)]).await?;
        out.pop().ok_or_else(|| bad_answer("settle", "no answer"))
    }

    /// Acknowledges a task: it succeeded and is removed.
    pub async fn ack(&self, task: &Task) -> Result<Settled> {
        self.settle_one(task, Settle::Ack).await
    }

    /// Reports a failure: the task is retried after its backoff, or dead-lettered (reason
    /// `exhausted`) after its last attempt, with its error history.
    pub async fn fail(&self, task: &Task, error: impl Into<String>) -> Result<Settled> {
        self.settle_one(task, Settle::Fail(error.into())).await
    }

    /// Puts a task back for `delay` without spending an attempt.
    pub async fn defer(&self, task: &Task, delay: Duration) -> Result<Settled> {
        self.settle_one(task, Settle::Defer(delay)).await
    }

    /// Dead-letters a task now (for instance `malformed`, for a payload that cannot be decoded).
    pub async fn dead_letter(
        &self,
        task: &Task,
        reason: impl Into<String>,
        error: impl Into<String>,
    ) -> Result<Settled> {
        let settle = Settle::DeadLetter {
            reason: reason.into(),
            error: error.into(),
        };
        self.settle_one(task, settle).await
    }

    /// Makes these delayed tasks (waiting for a retry's backoff or a deferral) ready now, at
    /// the back of the ready list; answers the ids moved (ids not delayed are skipped). A
    /// worker guarding tasks with circuit breakers calls it with the tasks a breaker deferred,
    /// once that breaker closes.
    pub async fn make_due(&self, ids: &[&str]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(MAX_BATCH) {
            let mut call = self.call(&scripts::MAKE_DUE);
            for id in chunk {
                call.arg(*id);
            }
            let moved: Vec<String> = call.invoke(self.inner_pool()).await?;
            out.extend(moved);
        }
        Ok(out)
    }

    /// Extends a lease to `by` from now (`None`: the task's own lease length; at most
    /// [`MAX_DURATION_MS`](crate::MAX_DURATION_MS)). Answers the new deadline, or `None` when the
    /// lease is lost.
    pub async fn extend(&self, task: &Task, by: Option<Duration>) -> Result<Option<u64>> {
        let mut call = self.call(&scripts::EXTEND);
        let by = by.map(|d| {
            duration_ms(d)
                .clamp(1, crate::options::MAX_DURATION_MS)
                .to_string()
        });
        call.arg(&task.id)
            .arg(task.token)
            .arg(by.unwrap_or_default());
        let deadline: i64 = call.invoke(self.inner_pool()).await?;
        Ok(some(deadline))
    }
}

fn cut(error: &str) -> &str {
    if error.len() <= MAX_ERROR_BYTES {
        return error;
    }
    let mut end = MAX_ERROR_BYTES;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    &error[..end]
}

/// The enqueue answer: the first id, then (index, id of the original) per duplicate.
fn decode_enqueue(answer: &Value, n: usize) -> Result<Vec<Enqueued>> {
    let r = Reply::array(scripts::ENQUEUE.name(), answer)?;
    let first = r.u64(0, "first id")?;
    let mut ids = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let id = first
            .checked_add(i)
            .ok_or_else(|| bad_answer("enqueue", format!("first id {first}")))?;
        ids.push(Enqueued::New(id.to_string()));
    }
    if r.len().is_multiple_of(2) {
        return Err(bad_answer("enqueue", format!("{} items", r.len())));
    }
    for pair in (1..r.len()).step_by(2) {
        let i = r.u64(pair, "duplicate index")?;
        let original = r.u64(pair + 1, "duplicate's original")?;
        let slot = usize::try_from(i)
            .ok()
            .and_then(|i| ids.get_mut(i.wrapping_sub(1)))
            .ok_or_else(|| bad_answer("enqueue", format!("duplicate index {i}")))?;
        *slot = Enqueued::Duplicate(original.to_string());
    }
    Ok(ids)
}

/// The items of a claim's answer before its tasks' (id, record) pairs.
const HEAD: usize = 5;

fn decode_claim(answer: &Value, tasks_key: &Key) -> Result<Claim> {
    let r = Reply::array(scripts::CLAIM.name(), answer)?;
    if r.len() < HEAD || !(r.len() - HEAD).is_multiple_of(2) {
        return Err(bad_answer("claim", format!("{} items", r.len())));
    }
    let now = r.u64(0, "now")?;
    let due = r.i64(1, "next due")?;
    let deadline = r.i64(2, "next deadline")?;
    let first = r.u64(3, "first token")?;
    let next_start = r.i64(4, "next start")?;
    let mut tasks = Vec::with_capacity((r.len() - HEAD) / 2);
    for k in 0..(r.len() - HEAD) / 2 {
        let i = HEAD + 2 * k;
        let id = lossy(r.bytes(i, "id")?);
        let rec = r.bytes(i + 1, "record")?;
        let token = first
            .checked_add(k as u64)
            .ok_or_else(|| bad_answer("claim", format!("first token {first}")))?;
        // The script leases only records that decode with a lease in bounds; should the two
        // ever disagree, the task is left to its lease (then reclaimed, and dead-lettered as
        // `stalled` if it keeps coming back), not the whole claim failed.
        let Some(rec) = Record::decode(rec)
            .filter(|r| (1..=crate::options::MAX_DURATION_MS).contains(&r.lease))
        else {
            tracing::warn!(key = %tasks_key, task = %id, "a leased record does not decode; left to its lease");
            continue;
        };
        tasks.push(Task {
            token,
            deadline_ms: now.saturating_add(rec.lease),
            id,
            attempt: rec.attempts.saturating_add(1),
            stalls: rec.stalls,
            component: rec.component,
            priority: rec.priority,
            group: rec.group,
            payload: rec.payload,
            enqueued_ms: rec.enqueued,
        });
    }
    Ok(Claim {
        tasks,
        now_ms: now,
        next_due_ms: some(due),
        next_deadline_ms: some(deadline),
        next_start_ms: some(next_start),
    })
}

/// A worker's capabilities: 1 to 100 groups, each a good name.
pub(crate) fn check_capabilities(capabilities: &[&str]) -> Result<()> {
    if capabilities.is_empty() || capabilities.len() > 100 {
        return Err(
            coordkit_core::Error::invalid_config("capabilities", "needs 1 to 100 groups").into(),
        );
    }
    for group in capabilities {
        coordkit_core::validate_name("capabilities", group)?;
    }
    Ok(())
}
