//! The model's results: stored by an ack with a result, expiring on the model's clock, and
//! what a waiter reads (`lua/outcome.lua`).

use coordkit_core::time::duration_ms;

use super::QueueModel;
use crate::results::{TaskFailure, TaskOutcome};

impl QueueModel {
    /// An ack's result, kept for the queue's result TTL from `now`.
    pub(super) fn store_result(&mut self, now: u64, id: &str, result: &[u8]) {
        let ttl = duration_ms(self.config.result_ttl).max(1);
        self.results
            .insert(id.to_owned(), (now + ttl, result.to_vec()));
    }

    /// What [`TaskHandle::wait`](crate::TaskHandle::wait) reads at `now`: the task's end, or
    /// `None` while it is still to run.
    pub fn outcome(&self, now: u64, id: &str) -> Option<TaskOutcome> {
        if let Some((expires, result)) = self.results.get(id)
            && *expires > now
        {
            return Some(TaskOutcome::Succeeded(result.clone()));
        }
        let Some(task) = self.tasks.get(id) else {
            return Some(TaskOutcome::Gone);
        };
        if !self.dlq.contains_key(id) {
            return None;
        }
        Some(TaskOutcome::Failed(TaskFailure {
            reason: self.dead.get(id).cloned().unwrap_or_default(),
            attempts: task.attempts,
            last_error: self.errors.get(id).and_then(|e| e.last().cloned()),
        }))
    }
}
