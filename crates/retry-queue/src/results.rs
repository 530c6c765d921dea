//! Results and progress: a task's stored result, [`TaskHandle::wait`] for it (or for the
//! task's final failure), woken by the completion event, and a handler's progress reports.
//!
//! A result lives in its own key, `<ns>:{queue:<name>}:result:<id>` (the queue's hash tag),
//! written by the settle script with the ack and expiring by itself after the queue's
//! [`result_ttl`](crate::QueueBuilder::result_ttl): memory stays bounded with no cleanup
//! work, and the key goes only to the scripts that store or read it.

use std::time::Duration;

use coordkit_core::redis::Value;
use coordkit_core::wire::Reply;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::code;
use crate::error::{QueueError, Result, bad_answer};
use crate::queue::{EXACT, Queue, id_number, lossy};
use crate::record::{Record, decode_errors};
use crate::scripts;
use crate::types::{Failure, Settle, Settled, Task};

/// The largest progress report, as JSON (larger ones fail with
/// [`QueueError::ProgressTooLarge`]): every subscriber of the queue's events receives it.
pub const MAX_PROGRESS_BYTES: usize = 16 * 1024;

/// How a task ended, as [`TaskHandle::wait`] finds it: `T` is the result's bytes (JSON, as the
/// worker stores a handler's value) or, from [`TaskHandle::wait_json`], the decoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskOutcome<T = Vec<u8>> {
    /// Acknowledged with this result.
    Succeeded(T),
    /// Dead-lettered: it exhausted its attempts, stalled too often, or a handler or operator
    /// dead-lettered it. It stays in the dead-letter queue ([`crate::Queue::requeue`]).
    Failed(TaskFailure),
    /// Neither the task nor a result is there: it was acknowledged without a result (its
    /// handler returned `()`), its result expired, or it was purged from the dead-letter
    /// queue (or the id is none of this queue's).
    Gone,
    /// Still to run (ready, delayed for a retry, leased) when the timeout passed.
    TimedOut,
}

/// A dead-lettered task's end, in [`TaskOutcome::Failed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    /// Why: `exhausted`, `stalled`, `malformed`, or the reason a handler gave.
    pub reason: String,
    /// Failures counted.
    pub attempts: u32,
    /// Its last recorded error, if any.
    pub last_error: Option<Failure>,
}

/// A handle on one task of a queue: from [`Enqueued::handle`](crate::Enqueued::handle) or
/// [`Queue::task`]. Cheap to clone.
#[derive(Clone)]
pub struct TaskHandle {
    queue: Queue,
    id: String,
}

impl std::fmt::Debug for TaskHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle")
            .field("queue", &self.queue.name())
            .field("id", &self.id)
            .finish()
    }
}

impl TaskHandle {
    /// The task's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How the task ended, read now without waiting: `None` while it is still to run
    /// (ready, delayed, leased). One script reads the result and the task's state at once.
    pub async fn outcome(&self) -> Result<Option<TaskOutcome>> {
        match id_number(&self.id) {
            Some(n) => self.queue.outcome(n).await,
            None => Ok(Some(TaskOutcome::Gone)),
        }
    }

    /// Waits up to `timeout` for the task to end: its result ([`TaskOutcome::Succeeded`]),
    /// or its dead letter ([`TaskOutcome::Failed`]); a task that fails and is retried keeps
    /// the wait going. Woken by the queue's `succeeded` and `dead_lettered` events, never by
    /// polling; race-free: it subscribes first, then reads the stored state (so a task that
    /// ended before the call is found at once), and reads it again after each event for this
    /// task, after the subscription reconnects (events may have been missed meanwhile) and
    /// when the timeout passes ([`TaskOutcome::TimedOut`] if it is still to run). Holds a
    /// pub/sub connection of its own while it waits.
    pub async fn wait(&self, timeout: Duration) -> Result<TaskOutcome> {
        let deadline = Instant::now() + timeout;
        let Some(n) = id_number(&self.id) else {
            return Ok(TaskOutcome::Gone);
        };
        let mut events = self
            .queue
            .pool()
            .subscriber()
            .channel(self.queue.channel("succeeded"))
            .channel(self.queue.channel("dead_lettered"))
            .subscribe::<serde_json::Value>()
            .await?;
        let mut reconnected = events.reconnections();
        let mut open = true;
        loop {
            if let Some(outcome) = self.queue.outcome(n).await? {
                return Ok(outcome);
            }
            // Until an event of this task, a reconnection, or the deadline.
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {
                        let now = self.queue.outcome(n).await?;
                        return Ok(now.unwrap_or(TaskOutcome::TimedOut));
                    }
                    Ok(()) = reconnected.changed() => break,
                    received = events.recv(), if open => match received {
                        Some(r) if self.is_mine(&r.event) => break,
                        Some(_) => {}
                        // The subscription ended (it does not on its own): the deadline's
                        // reading is the last one.
                        None => open = false,
                    },
                }
            }
        }
    }

    /// [`TaskHandle::wait`], the result decoded from JSON as `T`. A result that does not
    /// decode is [`Error::Corrupt`](coordkit_core::Error::Corrupt) naming its key and `T`.
    pub async fn wait_json<T: DeserializeOwned>(
        &self,
        timeout: Duration,
    ) -> Result<TaskOutcome<T>> {
        Ok(match self.wait(timeout).await? {
            TaskOutcome::Succeeded(bytes) => {
                let value = serde_json::from_slice(&bytes).map_err(|e| {
                    let key = id_number(&self.id).map(|n| self.queue.result_key(n));
                    coordkit_core::Error::corrupt(
                        key.map(|k| k.to_string()).unwrap_or_default(),
                        format!(
                            "the result does not decode as JSON of {}: {e}",
                            std::any::type_name::<T>()
                        ),
                    )
                })?;
                TaskOutcome::Succeeded(value)
            }
            TaskOutcome::Failed(f) => TaskOutcome::Failed(f),
            TaskOutcome::Gone => TaskOutcome::Gone,
            TaskOutcome::TimedOut => TaskOutcome::TimedOut,
        })
    }

    fn is_mine(&self, event: &coordkit_core::Event<serde_json::Value>) -> bool {
        event.is_from(code::SOURCE, self.queue.name())
            && event.payload.get("task").and_then(|t| t.as_str()) == Some(self.id.as_str())
    }
}

impl Queue {
    /// A handle on task `id` of this queue, to wait for its end.
    pub fn task(&self, id: &str) -> TaskHandle {
        TaskHandle {
            queue: self.clone(),
            id: id.to_owned(),
        }
    }

    /// Acknowledges a task with a result: `value` as JSON, kept for the queue's
    /// [`result_ttl`](crate::QueueBuilder::result_ttl) ([`Settle::AckWith`]).
    pub async fn ack_with<R: Serialize + ?Sized>(&self, task: &Task, value: &R) -> Result<Settled> {
        let bytes = serde_json::to_vec(value).map_err(QueueError::Encode)?;
        let mut out = self.settle(&[(task, Settle::AckWith(bytes))]).await?;
        out.pop().ok_or_else(|| bad_answer("settle", "no answer"))
    }

    /// Reports a leased task's progress: publishes a `progress` event (`value` as JSON, at
    /// most [`MAX_PROGRESS_BYTES`]) when `task`'s token still holds the lease, and answers
    /// whether it did (`false`: the lease was lost or the task settled; nothing published).
    /// Nothing is stored: [`Queue::events`] hears it.
    pub async fn progress<P: Serialize + ?Sized>(&self, task: &Task, value: &P) -> Result<bool> {
        let json = serde_json::to_vec(value).map_err(QueueError::Encode)?;
        if json.len() > MAX_PROGRESS_BYTES {
            return Err(QueueError::ProgressTooLarge {
                len: json.len(),
                max: MAX_PROGRESS_BYTES,
            });
        }
        if id_number(&task.id).is_none() || task.token >= EXACT {
            return Ok(false);
        }
        let mut call = self.call(&scripts::PROGRESS);
        call.arg(&task.id).arg(task.token).arg(json);
        let published: u64 = call.invoke(self.inner_pool()).await?;
        Ok(published == 1)
    }

    /// Where task `n` stands: its live result, its dead letter, gone, or still to run.
    async fn outcome(&self, n: u64) -> Result<Option<TaskOutcome>> {
        let key = self.result_key(n);
        let mut call = self.call(&scripts::OUTCOME);
        call.key(&key).arg(n);
        let answer: Value = call.invoke(self.inner_pool()).await?;
        let r = Reply::array(scripts::OUTCOME.name(), &answer)?;
        Ok(match r.u64(0, "outcome")? {
            code::OUTCOME_PENDING => None,
            code::OUTCOME_GONE => Some(TaskOutcome::Gone),
            code::OUTCOME_DONE => Some(TaskOutcome::Succeeded(r.bytes(1, "result")?.to_vec())),
            code::OUTCOME_DEAD => {
                // A record or history that does not decode is no reason to hide the failure.
                let attempts = Record::decode(r.bytes(2, "record")?).map_or(0, |m| m.attempts);
                let errors = decode_errors(r.bytes(3, "errors")?).unwrap_or_default();
                Some(TaskOutcome::Failed(TaskFailure {
                    reason: lossy(r.bytes(1, "reason")?),
                    attempts,
                    last_error: errors.into_iter().last(),
                }))
            }
            other => return Err(bad_answer("outcome", format!("outcome {other}"))),
        })
    }
}
