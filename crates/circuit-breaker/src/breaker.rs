//! [`CircuitBreaker`]: the handle every process uses, [`Permit`]s, and guarded calls.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coordkit_core::{
    Clock, GroupCommit, Invocation, Key, KeyKind, Keyspace, Pool, Result, Script, redis::Value,
};

use crate::config::BreakerConfig;
use crate::model::BreakerModel;
use crate::state::{
    AcquireAnswer, Forced, Outcome, PermitKind, RecordAnswer, RecordStatus, Rejection, Snapshot,
    State,
};
use crate::wire::{
    decode_acquire, decode_record, decode_snapshot, decode_state_epoch, pack_report, pack_state,
    script_config_args,
};
use coordkit_core::time::duration_ms;

/// How long a report waits for an acquire to carry it before the flusher sends it.
const LINGER: Duration = Duration::from_millis(2);

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(flusher) = self.flusher.get() {
            flusher.abort();
        }
    }
}

static BREAKER: Script = Script::new("circuit-breaker", include_str!("../lua/breaker.lua"));

/// A distributed circuit breaker: every process that uses the same Redis, namespace and name
/// shares it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) name: String,
    pub(crate) pool: Pool,
    pub(crate) config: BreakerConfig,
    pub(crate) state_key: Key,
    pub(crate) probes_key: Key,
    pub(crate) channel_prefix: String,
    /// Unique per handle, so permit ids never collide across processes.
    pub(crate) instance: String,
    /// ARGV[3..=5] of the script, packed once.
    pub(crate) config_args: Vec<Vec<u8>>,
    pub(crate) next_permit: AtomicU64,
    /// Reports waiting to go out ahead of the next acquire (or by the flusher).
    pending: Mutex<Vec<Report>>,
    /// Wakes the flusher when it is idle.
    pub(crate) flush: Arc<tokio::sync::Notify>,
    /// Whether the flusher is awake (ticking every [`LINGER`]): while it is, deferring a report
    /// wakes nobody.
    pub(crate) flusher_awake: Arc<AtomicBool>,
    /// The flusher task, started by the first deferred report.
    pub(crate) flusher: std::sync::OnceLock<tokio::task::AbortHandle>,
    /// The [`StorePolicy::Local`](crate::StorePolicy::Local) fallback, seeded from `seen` when
    /// an outage starts.
    pub(crate) local: Mutex<BreakerModel>,
    /// The last shared state an answer from Redis showed, packed by
    /// [`pack_state`](crate::wire::pack_state) (0: none yet).
    pub(crate) seen: AtomicU64,
    /// When the shared state was last seen open: its epoch and the [`CircuitBreaker::local_now`]
    /// time its open period ends.
    pub(crate) seen_open: Mutex<(u64, u64)>,
    /// Whether the local fallback decides: set by the first acquire that cannot reach Redis
    /// (which seeds it), cleared by any answer from Redis (the store probe's included). While
    /// it is set, acquires do not ask Redis.
    pub(crate) outage: AtomicBool,
    /// Whether the store probe task runs (one per breaker).
    pub(crate) probing: AtomicBool,
    /// The origin of [`CircuitBreaker::local_now`] on the server clock.
    pub(crate) started: Instant,
    pub(crate) stats: StatsCell,
    /// Concurrent acquires share one pipeline.
    acquires: GroupCommit<AcquireCall, coordkit_core::Result<Value>>,
}

/// One acquire for the group commit: its EVALSHA, and the reports that go ahead of it.
struct AcquireCall {
    reports: Vec<Invocation<'static>>,
    call: Invocation<'static>,
}

/// How many acquire pipelines per breaker may be on the wire at once.
const ACQUIRES_IN_FLIGHT: usize = 4;
/// The most acquires one pipeline carries.
const MAX_ACQUIRE_BATCH: usize = 128;

/// Concurrent acquires of one breaker (and the reports riding ahead of them) go in one
/// pipeline: still one EVALSHA each, each with its own answer, one round trip per caller. A
/// lone acquire is sent on its own (after its reports, in one round trip).
fn acquire_batcher(pool: &Pool) -> GroupCommit<AcquireCall, coordkit_core::Result<Value>> {
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

#[derive(Debug, Default)]
pub(crate) struct StatsCell {
    pub(crate) admitted: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) store_calls: AtomicU64,
    pub(crate) store_errors: AtomicU64,
    pub(crate) store_probes: AtomicU64,
    pub(crate) local_decisions: AtomicU64,
    pub(crate) last_store_error: Mutex<Option<String>>,
}

/// What this handle has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BreakerStats {
    /// Permits given.
    pub admitted: u64,
    /// Calls rejected.
    pub rejected: u64,
    /// Script calls sent to Redis: acquires, reports (each carried report counts), snapshots,
    /// forces and clears. Not the store probes.
    pub store_calls: u64,
    /// Operations that could not reach Redis (handled by the store policy).
    pub store_errors: u64,
    /// Store probes sent while the local fallback decided
    /// ([`StorePolicy::Local`](crate::StorePolicy::Local)): one at a time, 100 ms after the
    /// outage began, then backing off to one every 2 s.
    pub store_probes: u64,
    /// Decisions made by the in-process fallback.
    pub local_decisions: u64,
    /// Whether acquires are decided by the local fallback now, without asking Redis: from the
    /// first acquire that cannot reach it until Redis answers again
    /// ([`StorePolicy::Local`](crate::StorePolicy::Local)).
    pub deciding_locally: bool,
    /// The last store error.
    pub last_store_error: Option<String>,
}

/// The answer to [`CircuitBreaker::acquire`].
#[derive(Debug)]
pub enum Admission {
    /// Go ahead; report the outcome with [`CircuitBreaker::record`] (or drop the permit).
    Admitted(Permit),
    /// Do not call now.
    Rejected(Rejection),
}

/// Permission for one call. Report its outcome with [`CircuitBreaker::record`] or
/// [`Permit::record_in_background`]; a permit dropped without a report releases itself.
#[derive(Debug)]
pub struct Permit {
    breaker: CircuitBreaker,
    id: String,
    epoch: u64,
    kind: PermitKind,
    local: bool,
    started: Instant,
    reported: bool,
}

impl Permit {
    /// The breaker's epoch when the permit was given.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// What kind of permit it is.
    pub fn kind(&self) -> PermitKind {
        self.kind
    }

    /// Time since it was given.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Reports the outcome without waiting for Redis: the caller pays no round trip. The
    /// report goes out ahead of this handle's next acquire, on the same connection in the same
    /// round trip, so the server counts it before that acquire; if no acquire comes within
    /// about 2 ms, a background task sends it (then an acquire on another connection may reach
    /// the server just before it). Failures to send show in [`CircuitBreaker::stats`]; the
    /// server's answer is not read. Background reports are sent at most once: one that rides
    /// with an acquire that fails, or whose caller stops waiting before it is sent, is lost
    /// rather than risk being counted twice. Use [`CircuitBreaker::record`] to know it counted.
    pub fn record_in_background(mut self, outcome: Outcome) {
        self.reported = true;
        let report = self.report(outcome);
        self.breaker.defer(report);
    }

    /// The report of this permit's outcome (it takes the permit's id: one report per permit).
    fn report(&mut self, outcome: Outcome) -> Report {
        Report {
            id: std::mem::take(&mut self.id),
            epoch: self.epoch,
            kind: self.kind,
            local: self.local,
            outcome,
            duration_ms: duration_ms(self.started.elapsed()),
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.reported || self.kind != PermitKind::Probe {
            return;
        }
        // Release the probe slot now rather than when its lease runs out.
        let breaker = self.breaker.clone();
        let report = self.report(Outcome::Ignored);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = breaker.send_report(report).await;
            });
        }
    }
}

#[derive(Debug, Clone)]
struct Report {
    id: String,
    epoch: u64,
    kind: PermitKind,
    local: bool,
    outcome: Outcome,
    duration_ms: u64,
}

/// The error of a guarded call: rejected by the breaker, or the call's own error.
#[derive(Debug, thiserror::Error)]
pub enum CallError<E> {
    /// The breaker did not admit the call; it was not made.
    #[error("rejected by the circuit breaker ({:?}, retry after {:?})", .0.state, .0.retry_after)]
    Rejected(Rejection),
    /// The call was made and failed.
    #[error("the call failed: {0}")]
    Failed(E),
    /// The breaker's store failed in a way no policy covers: a breaker key of the wrong type
    /// or with corrupt data ([`Error::WrongType`](coordkit_core::Error::WrongType),
    /// [`Error::Corrupt`](coordkit_core::Error::Corrupt)), an answer that does not decode.
    #[error(transparent)]
    Core(#[from] coordkit_core::Error),
}

impl CircuitBreaker {
    /// The breaker `name` under `keyspace`, with `config` (validated): see
    /// [`CircuitBreaker::builder`].
    pub(crate) fn with_config(
        pool: Pool,
        keyspace: &Keyspace,
        name: &str,
        config: BreakerConfig,
    ) -> Result<Self> {
        let keys = keyspace.instance("cb", name)?;
        let channel_prefix = keyspace.channel("cb", "x")?;
        let channel_prefix = channel_prefix[..channel_prefix.len() - 1].to_owned();
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let instance = format!(
            "{}-{}-{nanos:x}",
            std::process::id(),
            INSTANCES.fetch_add(1, Ordering::Relaxed)
        );
        let config_args = script_config_args(&config, &channel_prefix, name);
        Ok(Self {
            inner: Arc::new(Inner {
                config_args,
                name: name.to_owned(),
                local: Mutex::new(BreakerModel::new(config.clone())),
                seen: AtomicU64::new(0),
                seen_open: Mutex::new((0, 0)),
                outage: AtomicBool::new(false),
                probing: AtomicBool::new(false),
                started: Instant::now(),
                state_key: keys.typed_key("state", KeyKind::Hash),
                probes_key: keys.typed_key("probes", KeyKind::ZSet),
                channel_prefix,
                instance,
                next_permit: AtomicU64::new(0),
                pending: Mutex::new(Vec::new()),
                flush: Arc::new(tokio::sync::Notify::new()),
                flusher_awake: Arc::new(AtomicBool::new(false)),
                flusher: std::sync::OnceLock::new(),
                stats: StatsCell::default(),
                acquires: acquire_batcher(&pool),
                pool,
                config,
            }),
        })
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Its rules.
    pub fn config(&self) -> &BreakerConfig {
        &self.inner.config
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The channel of one kind of its events (`opened`, `half_opened`, `closed`, `forced`,
    /// `cleared`); every breaker of the namespace publishes there, the envelope's `entity` is
    /// the breaker's name. [`CircuitBreaker::events`] subscribes to this breaker's alone.
    pub fn channel(&self, kind: &str) -> String {
        format!("{}{kind}", self.inner.channel_prefix)
    }

    /// The key of its state hash (for operators and tests).
    pub fn state_key(&self) -> &Key {
        &self.inner.state_key
    }

    /// The key of its probe leases, a sorted set: permit id -> lease deadline (for operators
    /// and tests).
    pub fn probes_key(&self) -> &Key {
        &self.inner.probes_key
    }

    /// What this handle has seen.
    pub fn stats(&self) -> BreakerStats {
        let s = &self.inner.stats;
        BreakerStats {
            admitted: s.admitted.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
            store_calls: s.store_calls.load(Ordering::Relaxed),
            store_errors: s.store_errors.load(Ordering::Relaxed),
            store_probes: s.store_probes.load(Ordering::Relaxed),
            local_decisions: s.local_decisions.load(Ordering::Relaxed),
            deciding_locally: self.inner.outage.load(Ordering::Relaxed),
            last_store_error: s.last_store_error.lock().ok().and_then(|e| e.clone()),
        }
    }

    pub(crate) fn note_store_error(&self, error: &str) {
        self.inner
            .stats
            .store_errors
            .fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.inner.stats.last_store_error.lock() {
            *last = Some(error.to_owned());
        }
    }

    /// A call of the script (counted in [`BreakerStats::store_calls`]: every one built is sent).
    fn script(&self, op: &str) -> coordkit_core::Invocation<'static> {
        self.inner.stats.store_calls.fetch_add(1, Ordering::Relaxed);
        let mut call = BREAKER.prepare();
        call.key(&self.inner.state_key)
            .key(&self.inner.probes_key)
            .arg(op)
            .arg(self.inner.config.clock.arg())
            .arg(&self.inner.config_args);
        call
    }

    /// The local fallback's clock (ms): the manual clock, else a monotonic one (a wall clock
    /// that jumps does not shorten or stretch a local open period).
    pub(crate) fn local_now(&self) -> u64 {
        match &self.inner.config.clock {
            Clock::Manual(manual) => manual.now_ms(),
            _ => duration_ms(self.inner.started.elapsed()),
        }
    }

    /// Notes the shared state an answer from Redis showed (`open_left_ms`: how long it stays
    /// open, when it is): the local fallback's start at the next outage, which this answer
    /// ends. Two relaxed loads when nothing changed, as on the hot path.
    pub(crate) fn saw(&self, state: State, epoch: u64, open_left_ms: Option<u64>) {
        let inner = &self.inner;
        if let Some(packed) = pack_state(state, epoch)
            && inner.seen.load(Ordering::Relaxed) != packed
        {
            inner.seen.store(packed, Ordering::Relaxed);
        }
        if let (State::Open, Some(left)) = (state, open_left_ms) {
            let until = self.local_now().saturating_add(left);
            *inner
                .seen_open
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = (epoch, until);
        }
        if inner.outage.load(Ordering::Relaxed) {
            inner.outage.store(false, Ordering::Relaxed);
        }
    }

    /// Asks for permission to make one call: one round trip.
    ///
    /// Redis being unreachable is not an error: the [`StorePolicy`](crate::StorePolicy) decides
    /// (and [`BreakerStats::store_errors`] counts it). Under
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

    fn saw_acquire(&self, answer: &AcquireAnswer) {
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

    /// Reports a permit's outcome and waits for Redis to count it (one round trip); the call's
    /// duration is measured from the acquire. See [`Permit::record_in_background`] for the
    /// variant that does not wait.
    pub async fn record(&self, mut permit: Permit, outcome: Outcome) -> Result<RecordAnswer> {
        permit.reported = true;
        let report = permit.report(outcome);
        self.send_report(report).await
    }

    async fn send_report(&self, report: Report) -> Result<RecordAnswer> {
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
        let mut call = self.script("record");
        call.arg(&report.id).arg(pack_report(
            report.epoch,
            report.kind,
            report.outcome,
            report.duration_ms,
        ));
        match call.invoke::<Value>(&self.inner.pool).await {
            Ok(value) => {
                let (answer, open_left) = decode_record(&value)?;
                self.saw(answer.state, answer.epoch, open_left);
                Ok(answer)
            }
            Err(e) => {
                if e.is_retryable() {
                    self.note_store_error(&e.to_string());
                }
                Err(e)
            }
        }
    }

    /// Queues a report without waiting for Redis's answer (no round trip).
    async fn send_report_without_reply(&self, report: Report) {
        if report.local || report.kind == PermitKind::Unrecorded {
            let _ = self.send_report(report).await;
            return;
        }
        if let Err(e) = self
            .record_call(&report)
            .send_without_reply(&self.inner.pool)
            .await
        {
            self.note_store_error(&e.to_string());
        }
    }

    fn record_call(&self, report: &Report) -> coordkit_core::Invocation<'static> {
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
    fn defer(&self, report: Report) {
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
    fn start_flusher(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return self.note_store_error("no Tokio runtime to send reports on");
        };
        // One flusher per breaker: `get_or_init` runs the spawn once even when the first
        // reports race (a second task, aborted, could take the wake-up with it).
        self.inner
            .flusher
            .get_or_init(|| self.spawn_flusher(&handle));
    }

    fn spawn_flusher(&self, handle: &tokio::runtime::Handle) -> tokio::task::AbortHandle {
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

    fn has_pending(&self) -> bool {
        self.inner
            .pending
            .lock()
            .map(|pending| !pending.is_empty())
            .unwrap_or(false)
    }

    fn take_pending(&self) -> Vec<Report> {
        self.inner
            .pending
            .lock()
            .map(|mut pending| std::mem::take(&mut *pending))
            .unwrap_or_default()
    }

    /// Runs `call` if the breaker admits it, and records its outcome in the background:
    /// `Ok` is a success, `Err` a failure. One blocking round trip.
    pub async fn call<F, T, E>(&self, call: F) -> std::result::Result<T, CallError<E>>
    where
        F: Future<Output = std::result::Result<T, E>>,
    {
        self.call_classified(call, |result: &std::result::Result<T, E>| {
            if result.is_ok() {
                Outcome::Success
            } else {
                Outcome::Failure
            }
        })
        .await
    }

    /// Like [`CircuitBreaker::call`], with a classifier that decides what counts as a failure
    /// (a 404 may be a success for the breaker, a cancellation [`Outcome::Ignored`]).
    pub async fn call_classified<F, T, E, C>(
        &self,
        call: F,
        classify: C,
    ) -> std::result::Result<T, CallError<E>>
    where
        F: Future<Output = std::result::Result<T, E>>,
        C: FnOnce(&std::result::Result<T, E>) -> Outcome,
    {
        let permit = match self.acquire().await {
            Ok(Admission::Admitted(permit)) => permit,
            Ok(Admission::Rejected(rejection)) => return Err(CallError::Rejected(rejection)),
            Err(e) => return Err(CallError::Core(e)),
        };
        let result = call.await;
        permit.record_in_background(classify(&result));
        result.map_err(CallError::Failed)
    }

    /// The state and the window's figures (applying lazy transitions): one round trip.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let values: Vec<Value> = self.script("snapshot").invoke(&self.inner.pool).await?;
        let (snapshot, now) = decode_snapshot(&values)?;
        let open_left = snapshot.open_until_ms.saturating_sub(now);
        self.saw(snapshot.state, snapshot.epoch, Some(open_left));
        Ok(snapshot)
    }

    /// Puts the breaker in an operator state, cluster-wide, until [`clear`](Self::clear).
    pub async fn force(&self, to: Forced) -> Result<(State, u64)> {
        let mut call = self.script("force");
        call.arg(to.as_str());
        let values: Vec<Value> = call.invoke(&self.inner.pool).await?;
        self.state_epoch(&values)
    }

    /// Back to closed with an empty window, from any state.
    pub async fn clear(&self) -> Result<(State, u64)> {
        let values: Vec<Value> = self.script("clear").invoke(&self.inner.pool).await?;
        self.state_epoch(&values)
    }

    fn state_epoch(&self, values: &[Value]) -> Result<(State, u64)> {
        let (state, epoch) = decode_state_epoch(values)?;
        self.saw(state, epoch, None);
        Ok((state, epoch))
    }
}

/// Test support: drive the script's operations with explicit permit ids, to compare with
/// [`BreakerModel`] step by step.
#[doc(hidden)]
impl CircuitBreaker {
    pub async fn raw_acquire(&self, permit: &str) -> Result<AcquireAnswer> {
        let mut call = self.script("acquire");
        call.arg(permit);
        let value: Value = call.invoke(&self.inner.pool).await?;
        let answer = decode_acquire(&value)?;
        self.saw_acquire(&answer);
        Ok(answer)
    }

    pub async fn raw_record(
        &self,
        permit: &str,
        epoch: u64,
        kind: PermitKind,
        outcome: Outcome,
        duration_ms: u64,
    ) -> Result<RecordAnswer> {
        let mut call = self.script("record");
        call.arg(permit)
            .arg(pack_report(epoch, kind, outcome, duration_ms));
        let value: Value = call.invoke(&self.inner.pool).await?;
        let (answer, open_left) = decode_record(&value)?;
        self.saw(answer.state, answer.epoch, open_left);
        Ok(answer)
    }
}
