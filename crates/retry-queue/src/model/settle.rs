//! `settle` in the model: acks, fails (through the delayed set or in place), defers and
//! dead-letters, as `lua/settle.lua` applies them.

use coordkit_core::time::duration_ms;

use super::QueueModel;
use crate::ops::RawSettle;
use crate::options::backoff_delay_ms;
use crate::types::{Settle, Settled};

impl QueueModel {
    /// `settle` at `now`.
    pub fn settle(&mut self, now: u64, ops: &[RawSettle]) -> Vec<Settled> {
        let mut done = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        let mut settled = Vec::new();
        // What `leases` held for each op before the batch: the script reads it first.
        let held: Vec<Option<(u64, u64)>> = ops
            .iter()
            .map(|op| self.tasks.get(&op.id).map(|t| (t.token, t.mark)))
            .collect();
        // Retries in place: not while paused or rate-limited (see `lua/settle.lua`).
        let in_place = duration_ms(self.config.retry_in_place_below);
        let in_place = if self.paused || self.rate_max > 0 {
            0
        } else {
            in_place
        };
        for (op, held) in ops.iter().zip(held) {
            let valid = match held {
                Some((token, _)) => !done.contains(&op.id) && op.token != 0 && token == op.token,
                None => false,
            };
            if !valid {
                // Settled already: by this token (a duplicate in the batch, or its mark), or the
                // task is gone (acknowledged or purged). Else the lease went to someone else.
                let already = match held {
                    None => true,
                    Some((token, mark)) => op.token != 0 && (token == op.token || mark == op.token),
                };
                out.push(if already {
                    Settled::AlreadySettled
                } else {
                    Settled::LeaseLost
                });
                continue;
            }
            done.insert(op.id.clone());
            // A retry in place already recorded: answered as the first time, nothing changed.
            if let (Settle::FailInPlace(_), Some(t)) = (&op.settle, self.tasks.get(&op.id))
                && t.attempts >= op.attempt
            {
                out.push(Settled::RetryingInPlace {
                    attempts: t.attempts,
                    delay_ms: t.prev,
                });
                continue;
            }
            let kept_mark = self.tasks.get(&op.id).map_or(0, |t| t.mark);
            if let Some(t) = self.tasks.get_mut(&op.id) {
                t.mark = op.token;
            }
            self.leased.remove(&op.id);
            settled.push(op.id.clone());
            let id = op.id.as_str();
            let delay = match &op.settle {
                Settle::Ack | Settle::AckWith(_) => {
                    if let Settle::AckWith(result) = &op.settle {
                        self.store_result(now, id, result);
                    }
                    self.tasks.remove(id);
                    self.payloads.remove(id);
                    self.errors.remove(id);
                    self.completed += 1;
                    out.push(Settled::Acked);
                    None
                }
                Settle::DeadLetter { reason, error } => {
                    let a = self.tasks[id].attempts;
                    self.push_error(now, id, a + 1, cut(error));
                    self.bury(now, id, reason);
                    out.push(Settled::DeadLettered { attempts: a });
                    None
                }
                Settle::Fail(error) | Settle::FailInPlace(error) => {
                    let may_stay = matches!(op.settle, Settle::FailInPlace(_));
                    let t = self.tasks.get_mut(id).expect("checked");
                    t.attempts += 1;
                    let a = t.attempts;
                    self.push_error(now, id, a, cut(error));
                    let t = self.tasks.get_mut(id).expect("checked");
                    if a >= t.options.max_attempts {
                        self.bury(now, id, "exhausted");
                        out.push(Settled::DeadLettered { attempts: a });
                        None
                    } else {
                        let d = backoff_delay_ms(
                            &t.options.backoff,
                            t.options.jitter,
                            a,
                            t.prev,
                            op.draw.min(65_535),
                        );
                        t.prev = d;
                        // Nor for a group with a rate limit: each start goes through a claim.
                        let rated =
                            t.options.group.as_ref().is_some_and(|g| {
                                self.groups.state.get(g).is_some_and(|s| s[2] > 0)
                            });
                        if may_stay && d < in_place && !rated {
                            // Still leased to the same token (its mark as it was).
                            t.since = now + d;
                            t.mark = kept_mark;
                            let lease = duration_ms(t.options.lease);
                            let deadline = now + (d + lease).min(crate::options::MAX_DURATION_MS);
                            self.leased.insert(id.to_owned(), deadline);
                            out.push(Settled::RetryingInPlace {
                                attempts: a,
                                delay_ms: d,
                            });
                            None
                        } else {
                            Some((d, true))
                        }
                    }
                }
                Settle::Defer(d) => {
                    Some((duration_ms(*d).min(crate::options::MAX_DURATION_MS), false))
                }
            };
            if let Some((delay, failed)) = delay {
                let due = now + delay;
                let t = self.tasks.get_mut(id).expect("checked");
                t.token = 0;
                t.since = due;
                self.delayed.insert(id.to_owned(), due);
                out.push(if failed {
                    Settled::RetryScheduled {
                        attempts: t.attempts,
                        due_ms: due,
                    }
                } else {
                    Settled::Deferred { due_ms: due }
                });
            }
        }
        // The leases that went (a retry in place keeps its own): their groups count them no more.
        settled.retain(|id| !self.leased.contains_key(id));
        let reopen = self.groups.release(&settled);
        self.groups.reopen(now, reopen);
        self.trim_dlq(now, false);
        out
    }
}

fn cut(error: &str) -> &str {
    let max = crate::types::MAX_ERROR_BYTES;
    if error.len() <= max {
        return error;
    }
    let mut end = max;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    &error[..end]
}
