//! [`CircuitBreaker::acquire`]: asking for a permit, with concurrent acquires pipelined.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use coordkit_core::{GroupCommit, Invocation, Pool, Result, redis::Value};

use crate::breaker::CircuitBreaker;
use crate::permit::{Admission, Permit};
use crate::state::{AcquireAnswer, Rejection, State};
use crate::wire::decode_acquire;

/// One acquire for the group commit: its EVALSHA, and the reports that go ahead of it.
pub(crate) struct AcquireCall {
    pub(crate) reports: Vec<Invocation<'static>>,
    pub(crate) call: Invocation<'static>,
}

/// How many acquire pipelines per breaker may be on the wire at once.
pub(crate) const ACQUIRES_IN_FLIGHT: usize = 4;
/// The most acquires one pipeline carries.
pub(crate) const MAX_ACQUIRE_BATCH: usize = 128;

/// Concurrent acquires of one breaker (and the reports riding ahead of them) go in one
/// pipeline: still one EVALSHA each, each with its own answer, one round trip per caller. A
/// lone acquire is sent on its own (after its reports, in one round trip).
pub(crate) fn acquire_batcher(
    pool: &Pool,
) -> GroupCommit<AcquireCall, coordkit_core::Result<Value>> {
    GroupCommit::new(
        pool,
        ACQUIRES_IN_FLIGHT,
        MAX_ACQUIRE_BATCH,
        |pool, acquires: Vec<AcquireCall>| {
            Box::pin(async move {
                if let [only] = acquires.as_slice() {
                    let answer = if only.reports.is_empty() {
                        only.call.invoke::<Value>(&pool).await
                    } else {
                        only.call.invoke_after::<Value>(&pool, &only.reports).await
                    };
                    return Ok(vec![answer]);
                }
                let mut shape = Vec::with_capacity(acquires.len());
                let mut calls = Vec::with_capacity(acquires.len());
                for acquire in acquires {
                    shape.push(acquire.reports.len());
                    calls.extend(acquire.reports);
                    calls.push(acquire.call);
                }
                let mut answers = Invocation::invoke_each::<Value>(&pool, &calls)
                    .await?
                    .into_iter();
                let mut out = Vec::with_capacity(shape.len());
                for reports in shape {
                    // As with invoke_after: an error of a report fails the acquire behind it.
                    let failed = answers
                        .by_ref()
                        .take(reports)
                        .fold(None, |first, a| first.or(a.err()));
                    let answer = answers.next().unwrap_or(Ok(Value::Nil));
                    out.push(match failed {
                        Some(e) => Err(e),
                        None => answer,
                    });
                }
                Ok(out)
            })
        },
    )
}

impl CircuitBreaker {
    /// Asks for permission to make one call: one round trip.
    ///
    /// Redis being unreachable is not an error: the [`StorePolicy`](crate::StorePolicy) decides
    /// (and [`BreakerStats::store_errors`](crate::BreakerStats::store_errors) counts it). Under
    /// [`StorePolicy::Local`](crate::StorePolicy::Local), once one acquire found Redis
    /// unreachable the next ones are decided locally with no round trip until Redis answers
    /// again. An error means the breaker's keys hold something else or garbage.
    pub async fn acquire(&self) -> Result<Admission> {
        let n = self.inner.next_permit.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n}", self.inner.instance);
        // An outage under way: decide at once rather than wait for Redis to fail again (its
        // connection timeout, on every call); the store probe ends the outage.
        if self.inner.outage.load(Ordering::Relaxed) {
            return Ok(self.decide_locally(id));
        }
        if let Err(e) = self.registered().await {
            // The recording was this acquire's call to the store, and it failed.
            self.inner.stats.store_calls.fetch_add(1, Ordering::Relaxed);
            if e.is_retryable() {
                return Ok(self.acquire_without_store(id, &e));
            }
            return Err(e);
        }
        let mut call = self.script("acquire");
        call.arg(&id);
        let reports: Vec<_> = self
            .take_pending()
            .iter()
            .map(|r| self.record_call(r))
            .collect();
        let invoked = self
            .inner
            .acquires
            .submit(&self.inner.state_key, AcquireCall { reports, call })
            .await
            .and_then(|answer| answer);
        let answer = match invoked {
            Ok(value) => decode_acquire(&value)?,
            Err(e) if e.is_retryable() => return Ok(self.acquire_without_store(id, &e)),
            Err(e) => return Err(e),
        };
        self.saw_acquire(&answer);
        Ok(self.admission(id, answer, false))
    }

    pub(crate) fn saw_acquire(&self, answer: &AcquireAnswer) {
        let open_left = (answer.state == State::Open).then_some(answer.retry_after_ms);
        self.saw(answer.state, answer.epoch, open_left);
    }

    pub(crate) fn admission(&self, id: String, answer: AcquireAnswer, local: bool) -> Admission {
        match (answer.admitted, answer.kind) {
            (true, Some(kind)) => {
                self.inner.stats.admitted.fetch_add(1, Ordering::Relaxed);
                Admission::Admitted(Permit {
                    breaker: self.clone(),
                    id,
                    epoch: answer.epoch,
                    kind,
                    local,
                    started: Instant::now(),
                    reported: false,
                })
            }
            _ => {
                self.inner.stats.rejected.fetch_add(1, Ordering::Relaxed);
                Admission::Rejected(Rejection {
                    state: answer.state,
                    retry_after: Duration::from_millis(answer.retry_after_ms),
                })
            }
        }
    }
}
