//! Reporting outcomes: [`CircuitBreaker::record`], and the reports sent in the background
//! (ahead of the next acquire, or by the flusher).

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use coordkit_core::{Result, redis::Value};

use crate::breaker::CircuitBreaker;
use crate::permit::{Permit, Report};
use crate::state::{Outcome, PermitKind, RecordAnswer, RecordStatus, State};
use crate::wire::{decode_record, pack_report};

/// How long a report waits for an acquire to carry it before the flusher sends it.
pub(crate) const LINGER: Duration = Duration::from_millis(2);

impl CircuitBreaker {
    /// Reports a permit's outcome and waits for Redis to count it (one round trip); the call's
    /// duration is measured from the acquire. See [`Permit::record_in_background`] for the
    /// variant that does not wait.
    pub async fn record(&self, mut permit: Permit, outcome: Outcome) -> Result<RecordAnswer> {
        permit.reported = true;
        let report = permit.report(outcome);
        self.send_report(report).await
    }

    pub(crate) async fn send_report(&self, report: Report) -> Result<RecordAnswer> {
        if report.kind == PermitKind::Unrecorded {
            return Ok(RecordAnswer {
                status: RecordStatus::NotCounted,
                state: State::Closed,
                epoch: 0,
            });
        }
        if report.local {
            let now = self.local_now();
            let mut model = self
                .inner
                .local
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            return Ok(model.record(
                now,
                &report.id,
                report.epoch,
                report.kind,
                report.outcome,
                report.duration_ms,
            ));
        }
        let invoked = match self.registered().await {
            Ok(()) => {
                self.record_call(&report)
                    .invoke::<Value>(&self.inner.pool)
                    .await
            }
            Err(e) => {
                // The recording was this report's call to the store, and it failed.
                self.inner.stats.store_calls.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        };
        match invoked {
            Ok(value) => self.recorded(&value),
            Err(e) => {
                if e.is_retryable() {
                    self.note_store_error(&e.to_string());
                }
                Err(e)
            }
        }
    }

    /// Queues a report without waiting for Redis's answer (no round trip).
    pub(crate) async fn send_report_without_reply(&self, report: Report) {
        if report.local || report.kind == PermitKind::Unrecorded {
            let _ = self.send_report(report).await;
            return;
        }
        let sent = match self.registered().await {
            Ok(()) => {
                self.record_call(&report)
                    .send_without_reply(&self.inner.pool)
                    .await
            }
            Err(e) => {
                self.inner.stats.store_calls.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        };
        if let Err(e) = sent {
            self.note_store_error(&e.to_string());
        }
    }

    /// A record's answer, decoded and noted as the shared state.
    pub(crate) fn recorded(&self, value: &Value) -> Result<RecordAnswer> {
        let (answer, open_left) = decode_record(value)?;
        self.saw(answer.state, answer.epoch, open_left);
        Ok(answer)
    }

    /// The script call that reports `report`.
    pub(crate) fn record_call(&self, report: &Report) -> coordkit_core::Invocation<'static> {
        let mut call = self.script("record");
        call.arg(&report.id).arg(pack_report(
            report.epoch,
            report.kind,
            report.outcome,
            report.duration_ms,
        ));
        call
    }

    /// Queues a report for the next acquire; a flush task sends it if no acquire takes it
    /// first.
    pub(crate) fn defer(&self, report: Report) {
        if report.local || report.kind == PermitKind::Unrecorded {
            let breaker = self.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = breaker.send_report(report).await;
                });
            }
            return;
        }
        match self.inner.pending.lock() {
            Ok(mut pending) => pending.push(report),
            Err(_) => return self.note_store_error("the pending reports' lock"),
        }
        if self.inner.flusher.get().is_none() {
            self.start_flusher();
        }
        // One wake-up per burst of reports, not one per report: an awake flusher sees this
        // report at its next tick.
        if !self.inner.flusher_awake.swap(true, Ordering::AcqRel) {
            self.inner.flush.notify_one();
        }
    }

    /// Starts the task that sends reports no acquire has carried within [`LINGER`]. Woken by
    /// the first deferred report, it ticks every [`LINGER`] while reports keep coming, sends
    /// those still waiting at each tick, and sleeps again after a tick with nothing waiting.
    /// Between bursts it holds the breaker weakly, and it ends when the breaker is dropped.
    pub(crate) fn start_flusher(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return self.note_store_error("no Tokio runtime to send reports on");
        };
        // One flusher per breaker: `get_or_init` runs the spawn once even when the first
        // reports race (a second task, aborted, could take the wake-up with it).
        self.inner
            .flusher
            .get_or_init(|| self.spawn_flusher(&handle));
    }

    pub(crate) fn spawn_flusher(
        &self,
        handle: &tokio::runtime::Handle,
    ) -> tokio::task::AbortHandle {
        let weak = Arc::downgrade(&self.inner);
        let flush = self.inner.flush.clone();
        let awake = self.inner.flusher_awake.clone();
        let task = handle.spawn(async move {
            loop {
                flush.notified().await;
                // Held while awake, so reports go out even if the breaker is dropped meanwhile.
                let Some(inner) = weak.upgrade() else { return };
                let breaker = CircuitBreaker { inner };
                loop {
                    // Most reports leave with the next acquire; the rest go after a short linger.
                    tokio::time::sleep(LINGER).await;
                    let waiting = breaker.take_pending();
                    let idle = waiting.is_empty();
                    for report in waiting {
                        breaker.send_report_without_reply(report).await;
                    }
                    if idle {
                        awake.store(false, Ordering::Release);
                        // A report deferred just before the store saw the flusher awake and
                        // woke nobody: take it on another tick.
                        if breaker.has_pending() && !awake.swap(true, Ordering::AcqRel) {
                            continue;
                        }
                        break;
                    }
                }
            }
        });
        task.abort_handle()
    }

    pub(crate) fn has_pending(&self) -> bool {
        self.inner
            .pending
            .lock()
            .map(|pending| !pending.is_empty())
            .unwrap_or(false)
    }

    pub(crate) fn take_pending(&self) -> Vec<Report> {
        self.inner
            .pending
            .lock()
            .map(|mut pending| std::mem::take(&mut *pending))
            .unwrap_or_default()
    }
}
