//! The orchestrator of the crash test (`tests/crash.rs`): what each orchestrator process
//! runs (and the test process itself, as one more orchestrator), the freeze that stops one at
//! a known point, and the lists every write is logged to.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coordkit_core::{Keyspace, Pool, redis};
use coordkit_workflow::{Lease, Listing, Outcome, WorkflowStore};

pub(crate) const WORKFLOWS: usize = 1_000;
pub(crate) const STEPS: u32 = 3;
/// The label of a complete in the lists.
pub(crate) const COMPLETE: u32 = STEPS + 1;
pub(crate) const WORKERS: usize = 8;
pub(crate) const LEASE: Duration = Duration::from_secs(1);
pub(crate) const EXTEND_EVERY: Duration = Duration::from_millis(300);
/// A step's work, 1 to 4 times this; step 2 of every 25th workflow works longer than a lease,
/// so it lives on its extensions.
pub(crate) const WORK: Duration = Duration::from_millis(5);
pub(crate) const LONG_WORK: Duration = Duration::from_millis(1_500);
/// The victim freezes after this many writes.
pub(crate) const VICTIM_WRITES: u64 = 30;
/// The guard around each wait: only a hang reaches it.
pub(crate) const GUARD: Duration = Duration::from_secs(120);
pub(crate) const STORE: &str = "crash";

pub(crate) const ENV_ROLE: &str = "WF_CRASH_ORCHESTRATOR";
pub(crate) const ENV_URL: &str = "WF_CRASH_URL";
pub(crate) const ENV_NS: &str = "WF_CRASH_NS";

pub(crate) fn digest(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &c| {
        (h ^ u64::from(c)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What a step (or the complete) writes: who wrote it, under which token, after what.
pub(crate) fn output(id: &str, step: u32, owner: &str, token: u64, prev: &[u8]) -> String {
    format!("{id} {step} {owner} {token} {:016x}", digest(prev))
}

pub(crate) fn done_key(ns: &str) -> String {
    format!("{ns}:crash-log:done")
}

pub(crate) fn lost_key(ns: &str) -> String {
    format!("{ns}:crash-log:lost")
}

pub(crate) fn store(pool: &Pool, ns: &str, owner: &str, lease: Duration) -> WorkflowStore {
    WorkflowStore::builder(pool, &Keyspace::new(ns).unwrap(), STORE)
        .owner(owner)
        .lease(lease)
        .keep_finished(10 * WORKFLOWS as u64)
        .build()
        .unwrap()
}

/// One line for the test that started this process.
pub(crate) fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "\ncrash: {line}").unwrap();
    out.flush().unwrap();
}

/// Where an orchestrator freezes, after its [`VICTIM_WRITES`]th write: at the first write of
/// a step before the last (`o0`), or at the first complete while another worker works on a
/// step (`o1`), so that it holds both a complete and a step's write (a checkpoint or an
/// extension).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum FreezeAt {
    Never,
    Mid,
    Complete,
}

/// Lets store calls through until the orchestrator freezes; then holds each new one (saying
/// `holding <kind>` once per kind, and `holding a step` at the first checkpoint or extension)
/// until `go` comes on stdin, and says `held` once none is in flight.
pub(crate) struct Gate {
    at: FreezeAt,
    state: Mutex<GateState>,
    go: tokio::sync::watch::Receiver<bool>,
}

#[derive(Default)]
pub(crate) struct GateState {
    frozen: bool,
    in_flight: u32,
    writes: u64,
    said_held: bool,
    holding: BTreeSet<&'static str>,
    /// Workers working on a step (from its start to its checkpoint's call).
    working: u32,
}

impl GateState {
    fn say_held(&mut self) {
        if self.frozen && self.in_flight == 0 && !self.said_held {
            self.said_held = true;
            say("held");
        }
    }
}

impl Gate {
    async fn enter(&self, kind: &'static str) {
        {
            let mut s = self.state.lock().unwrap();
            if kind == "checkpoint" {
                s.working -= 1;
            }
            if self.at == FreezeAt::Complete
                && kind == "complete"
                && s.writes >= VICTIM_WRITES
                && s.working > 0
            {
                s.frozen = true;
            }
            if !s.frozen || *self.go.borrow() {
                s.in_flight += 1;
                return;
            }
            if s.holding.insert(kind) {
                say(&format!("holding {kind}"));
            }
            if matches!(kind, "checkpoint" | "extend") && s.holding.insert("a step") {
                say("holding a step");
            }
            s.say_held();
        }
        let mut go = self.go.clone();
        go.wait_for(|go| *go).await.unwrap();
        self.state.lock().unwrap().in_flight += 1;
    }

    /// A worker starts working on a step (`false`: it stopped without a checkpoint).
    fn working(&self, starts: bool) {
        let mut s = self.state.lock().unwrap();
        if starts {
            s.working += 1;
        } else {
            s.working -= 1;
        }
    }

    /// After the call and its log entry. `mid`: a step before the last was written.
    fn leave(&self, wrote: bool, mid: bool) {
        let mut s = self.state.lock().unwrap();
        s.in_flight -= 1;
        s.writes += u64::from(wrote);
        if self.at == FreezeAt::Mid && mid && s.writes >= VICTIM_WRITES {
            s.frozen = true;
        }
        s.say_held();
    }
}

pub(crate) struct Orchestrator {
    owner: String,
    ns: String,
    pool: Pool,
    pub(crate) store: WorkflowStore,
    gate: Gate,
    pub(crate) counts: Mutex<BTreeMap<&'static str, u64>>,
}

impl Orchestrator {
    pub(crate) fn new(
        pool: Pool,
        ns: &str,
        owner: &str,
        lease: Duration,
        at: FreezeAt,
        go: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self {
            store: store(&pool, ns, owner, lease),
            owner: owner.to_owned(),
            ns: ns.to_owned(),
            pool,
            gate: Gate {
                at,
                state: Mutex::default(),
                go,
            },
            counts: Mutex::default(),
        }
    }

    fn count(&self, what: &'static str) {
        *self.counts.lock().unwrap().entry(what).or_default() += 1;
    }

    /// Logs a write's outcome, with the token it was made with (a lease takes the header
    /// the store answers, so the write's token is read before it).
    async fn log(&self, id: &str, token: u64, step: u32, outcome: Outcome) {
        let key = match outcome {
            Outcome::Done => done_key(&self.ns),
            Outcome::LeaseLost => lost_key(&self.ns),
            other => panic!("{}: {id} step {step}: {other:?}", self.owner),
        };
        let entry = format!("{id} {step} {token} {}", self.owner);
        let _: u64 = self
            .pool
            .query(redis::cmd("RPUSH").arg(key).arg(entry))
            .await
            .unwrap();
    }

    /// An orphan, else the oldest pending workflow.
    async fn claim(&self) -> Option<Lease> {
        self.gate.enter("claim").await;
        let mut got = self.store.resume_orphans(1).await.unwrap().leases;
        if got.is_empty() {
            got = self.store.claim_next(1).await.unwrap().leases;
        }
        self.gate.leave(false, false);
        got.pop()
    }

    /// A step's work, extending the lease while it runs; false when the lease was lost.
    async fn work(&self, lease: &mut Lease, step: u32, how_long: Duration) -> bool {
        let work = tokio::time::sleep(how_long);
        tokio::pin!(work);
        let start = tokio::time::Instant::now() + EXTEND_EVERY;
        let mut tick = tokio::time::interval_at(start, EXTEND_EVERY);
        loop {
            tokio::select! {
                _ = &mut work => return true,
                _ = tick.tick() => {
                    self.gate.enter("extend").await;
                    let token = lease.token();
                    let outcome = lease.extend().await.unwrap();
                    if outcome != Outcome::Done {
                        // Logged with the step it worked toward.
                        self.log(lease.id(), token, step, outcome).await;
                    }
                    self.gate.leave(false, false);
                    self.count(if outcome == Outcome::Done { "extended" } else { "lost" });
                    if outcome != Outcome::Done {
                        return false;
                    }
                }
            }
        }
    }

    pub(crate) async fn run(&self, mut lease: Lease) {
        let id = lease.id().to_owned();
        let n: usize = id[1..].parse().unwrap();
        let first = lease.next_step();
        let mut prev = match lease.last_checkpoint() {
            Some(c) => {
                assert_eq!(c.step + 1, first, "{id}: resumed after its last checkpoint");
                c.output.clone()
            }
            None => lease.input().to_vec(),
        };
        if lease.resumed() {
            self.count("resumed");
        }
        for step in first..=COMPLETE {
            if step <= STEPS {
                // Steps of unequal length, so that the workers do not move in step.
                let work = if step == 2 && n.is_multiple_of(25) {
                    LONG_WORK
                } else {
                    WORK * (1 + (n as u32 + step) % 4)
                };
                self.gate.working(true);
                if !self.work(&mut lease, step, work).await {
                    self.gate.working(false);
                    return;
                }
            }
            let out = output(&id, step, &self.owner, lease.token(), &prev);
            self.gate
                .enter(if step <= STEPS {
                    "checkpoint"
                } else {
                    "complete"
                })
                .await;
            let token = lease.token();
            let outcome = if step <= STEPS {
                lease.checkpoint(step, &out).await.unwrap()
            } else {
                lease.complete(&out).await.unwrap()
            };
            self.log(&id, token, step, outcome).await;
            let done = outcome == Outcome::Done;
            self.gate.leave(done, done && step < STEPS);
            if !done {
                self.count("lost");
                return;
            }
            self.count("written");
            prev = out.into_bytes();
        }
    }

    async fn all_done(&self) -> bool {
        let page = self.store.list(&Listing::Active, None, 1).await.unwrap();
        page.items.is_empty() && page.skipped.is_empty()
    }

    pub(crate) async fn worker(self: Arc<Self>) {
        loop {
            match self.claim().await {
                Some(lease) => self.run(lease).await,
                None if self.all_done().await => return,
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}
