//! The crash proof of issue #18, with the orchestrators as OS processes: orchestrator
//! processes (8 workers each) run 1,000 three-step workflows created up front. Each worker
//! resumes orphans first, else claims the oldest pending workflow, runs its steps from
//! [`Lease::next_step`] with a checkpoint each (the lease, 1 s, extended while a step works),
//! and completes it. Mid-run:
//!
//! - `o0` is killed with `kill -9` while it holds leases, after it checkpointed some steps;
//!   the others resume its workflows from their last checkpoints.
//! - `o1` (started next) stalls while it holds leases, with a complete and a step's write
//!   (a checkpoint or an extension) waiting; another orchestrator (this test process, `p`)
//!   claims those workflows once the leases ran out, `o2` and `o3` start, and `o1` goes on:
//!   every write it held must come back [`Outcome::LeaseLost`] and write nothing.
//!
//! Every orchestrator appends each write the store answered `Done` to a Redis list (and each
//! `LeaseLost` to another) as `id step token owner` (step 4 is the complete; the token the
//! write was made with), before its next store call. Afterwards the store and the lists must
//! agree: every workflow completed, with checkpoints 1, 2, 3 written once each (no
//! `(id, step)` written twice, none missing), each by the holder of a lease whose token never
//! decreases along the steps and ends with the final owner's; each step continued from the
//! previous checkpoint's output (whose digest is in its own); a lost write's step was written
//! by a newer lease. Nothing is timed: the guards only catch a hang.
//!
//! Stalling and killing happen at a known point: after 30 writes, at the first write of a step
//! before the last (`o0`) or at the first complete while another worker is on a step (`o1`),
//! the process makes no further store call and says `held` once none is in flight, so every
//! write it made is in the list (a write cut off by the kill could not be told from one never
//! made). The orchestrator processes are this test binary run again with
//! `WF_CRASH_ORCHESTRATOR` set; each exits when its stdin closes.

mod common;
#[path = "common/crash_orchestrator.rs"]
mod orchestrator;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin};
use std::sync::Arc;
use std::time::Duration;

use coordkit_core::{Pool, PoolConfig, redis};
use coordkit_testkit::{TestRedis, redis_test};
use coordkit_workflow::{Claim, Lease, Listing, NewWorkflow, Status, WorkflowStore};
use orchestrator::{
    COMPLETE, ENV_NS, ENV_ROLE, ENV_URL, FreezeAt, GUARD, LEASE, Orchestrator, VICTIM_WRITES,
    WORKERS, WORKFLOWS, done_key, lost_key, output, say, store,
};
use tokio::sync::mpsc;

/// An orchestrator process's body: runs workflows until none is active, then says `done`
/// with its counts. `o0` and `o1` freeze on the way ([`FreezeAt`]); `go` on stdin lets a
/// frozen one continue. Exits when its stdin closes (the test ended).
#[test]
fn orchestrator_process() {
    let Ok(owner) = std::env::var(ENV_ROLE) else {
        return; // Run as a test of its own: nothing to do.
    };
    let (go_tx, go) = tokio::sync::watch::channel(false);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            match line {
                Ok(line) if line == "go" => go_tx.send_replace(true),
                Ok(_) => continue,
                Err(_) => break,
            };
        }
        std::process::exit(3);
    });
    let url = std::env::var(ENV_URL).unwrap();
    let ns = std::env::var(ENV_NS).unwrap();
    let at = match owner.as_str() {
        "o0" => FreezeAt::Mid,
        "o1" => FreezeAt::Complete,
        _ => FreezeAt::Never,
    };
    coordkit_testkit::blocking_runtime().block_on(async move {
        // A frozen process's calls answer when it continues: no timeout but the guard's.
        let config = PoolConfig::from_url(&url).unwrap().command_timeout(GUARD);
        let pool = Pool::connect(config).await.unwrap();
        let o = Arc::new(Orchestrator::new(pool, &ns, &owner, LEASE, at, go));
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| tokio::spawn(o.clone().worker()))
            .collect();
        for w in workers {
            w.await.unwrap();
        }
        say(&format!("done {:?}", o.counts.lock().unwrap()));
    });
}

/// An orchestrator process; killed (-9) when dropped.
struct Proc {
    name: String,
    child: Child,
    stdin: ChildStdin,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the orchestrators said, as (name, line); a closed stdout is `exit`.
struct Lines {
    tx: mpsc::UnboundedSender<(String, String)>,
    rx: mpsc::UnboundedReceiver<(String, String)>,
    seen: Vec<(String, String)>,
}

impl Lines {
    /// The first line of `who` starting with `what`, once said. Its exit before that is a
    /// failure.
    async fn wait(&mut self, who: &str, what: &str) -> String {
        loop {
            let mut found = None;
            for (member, line) in &self.seen {
                if member == who && line.starts_with(what) {
                    found = Some(line.clone());
                    break;
                }
                assert!(
                    member != who || line != "exit",
                    "{who} exited early (its stderr says why)"
                );
            }
            if let Some(line) = found {
                return line;
            }
            let next = tokio::time::timeout(GUARD, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("waiting for {who} to say {what}: the run hung"))
                .expect("the line readers ended");
            self.seen.push(next);
        }
    }
}

impl Lines {
    fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx,
            seen: Vec::new(),
        }
    }

    /// Starts the orchestrator process `name`; what it says comes here.
    fn start(&self, redis: &TestRedis, ns: &str, name: &str) -> Proc {
        let mut child = coordkit_testkit::rerun_test("orchestrator_process")
            .env(ENV_ROLE, name)
            .env(ENV_URL, redis.url())
            .env(ENV_NS, ns)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take().unwrap();
        let (tx, member) = (self.tx.clone(), name.to_owned());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest may have begun the line ("test orchestrator_process ... ").
                if let Some((_, said)) = line.split_once("crash: ") {
                    let _ = tx.send((member.clone(), said.to_owned()));
                }
            }
            let _ = tx.send((member, "exit".to_owned()));
        });
        Proc {
            name: name.to_owned(),
            child,
            stdin,
        }
    }
}

/// The running workflows `owner` holds, with their tokens.
async fn held_by(store: &WorkflowStore, owner: &str) -> Vec<(String, u64)> {
    let (mut held, mut after) = (Vec::new(), None);
    loop {
        let page = store
            .list(&Listing::Status(Status::Running), after.as_ref(), 1_000)
            .await
            .unwrap();
        held.extend(
            page.items
                .into_iter()
                .filter(|i| i.owner.as_deref() == Some(owner))
                .map(|i| (i.id, i.token)),
        );
        match page.next {
            Some(next) => after = Some(next),
            None => return held,
        }
    }
}

/// Claims each of `held` once its lease ran out (nobody else runs: o0 is dead, o1 frozen).
async fn claim_all(store: &WorkflowStore, held: &[(String, u64)]) -> Vec<Lease> {
    let mut leases = Vec::new();
    for (id, token) in held {
        let lease = tokio::time::timeout(GUARD, async {
            loop {
                match store.claim(id).await.unwrap() {
                    Claim::Claimed(lease) => return lease,
                    Claim::Busy(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    other => panic!("{id}: {other:?}"),
                }
            }
        })
        .await
        .expect("a lease never ran out");
        assert_eq!(lease.token(), token + 1, "{id}");
        leases.push(lease);
    }
    leases
}

/// One list's entries, `id step token owner`, from the `from`th on.
async fn entries_from(pool: &Pool, key: &str, from: usize) -> Vec<(String, u32, u64, String)> {
    let raw: Vec<String> = pool
        .query(redis::cmd("LRANGE").arg(key).arg(from).arg(-1))
        .await
        .unwrap();
    raw.iter()
        .map(|e| {
            let f: Vec<&str> = e.split(' ').collect();
            (
                f[0].to_owned(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].to_owned(),
            )
        })
        .collect()
}

redis_test! {
    async fn killed_and_stalled_orchestrators_lose_no_step_and_write_none_twice(redis) {
        // Nothing is timed: no timeout but the guard's, on a busy machine too.
        let pool = Pool::connect(redis.config().command_timeout(GUARD)).await.unwrap();
        let ns = redis.keyspace().namespace().to_owned();
        let store = store(&pool, &ns, "test", LEASE);
        let ids: Vec<String> = (0..WORKFLOWS).map(|n| format!("w{n:04}")).collect();
        let creates = ids.chunks(100).map(|chunk| {
            let (store, chunk) = (store.clone(), chunk.to_vec());
            tokio::spawn(async move {
                for id in chunk {
                    store.create(NewWorkflow::new("job", format!("input of {id}")).id(&id)).await.unwrap();
                }
            })
        });
        for c in creates.collect::<Vec<_>>() {
            c.await.unwrap();
        }

        let mut lines = Lines::new();
        // o0 froze while it holds leases, after a checkpoint: kill -9.
        let victim = lines.start(&redis, &ns, "o0");
        lines.wait("o0", "held").await;
        drop(victim);
        // One at a time, so that nobody else resumes what the frozen one holds.
        let mut o1 = lines.start(&redis, &ns, "o1");
        // o1 froze at a complete and at a step's write, holding leases. Another orchestrator
        // (this process, with a long lease) claims them once they ran out, before o1
        // continues: every write o1 held must come back lost.
        for what in ["holding complete", "holding a step", "held"] {
            lines.wait("o1", what).await;
        }
        let held = held_by(&store, "o1").await;
        assert!(!held.is_empty(), "o1 holds no lease: {:?}", lines.seen);
        let (_go, go) = tokio::sync::watch::channel(false);
        let p = Orchestrator::new(pool.clone(), &ns, "p", GUARD, FreezeAt::Never, go);
        let taken = claim_all(&p.store, &held).await;
        let mut survivors = vec![lines.start(&redis, &ns, "o2"), lines.start(&redis, &ns, "o3")];
        // o1 has no call in flight: what it wrote before is logged.
        let before = (
            entries_from(&pool, &done_key(&ns), 0).await.len(),
            entries_from(&pool, &lost_key(&ns), 0).await.len(),
        );
        writeln!(o1.stdin, "go").unwrap();
        // Every lease o1 held meets its next write (a checkpoint, complete or extension).
        let mut o1_tried = Vec::new();
        let mut missing = held.clone();
        let deadline = tokio::time::Instant::now() + GUARD;
        while tokio::time::Instant::now() < deadline {
            o1_tried = entries_from(&pool, &done_key(&ns), before.0).await;
            o1_tried.extend(entries_from(&pool, &lost_key(&ns), before.1).await);
            o1_tried.retain(|(id, _, token, _)| held.contains(&(id.clone(), *token)));
            missing.retain(|(id, _)| !o1_tried.iter().any(|e| &e.0 == id));
            if missing.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(missing.is_empty(), "o1 never wrote on {missing:?} after it continued: {o1_tried:?}");
        let p = Arc::new(p);
        let runs: Vec<_> = taken
            .into_iter()
            .map(|lease| tokio::spawn({
                let p = p.clone();
                async move { p.run(lease).await }
            }))
            .collect();
        for r in runs {
            r.await.unwrap();
        }
        let mut said = BTreeMap::new();
        for mut p in [o1].into_iter().chain(survivors.drain(..)) {
            said.insert(p.name.clone(), lines.wait(&p.name, "done").await);
            let status = p.child.wait().unwrap();
            assert!(status.success(), "{} exited with {status}", p.name);
        }

        // The store: every workflow completed, with checkpoints 1, 2, 3.
        let done = entries_from(&pool, &done_key(&ns), 0).await;
        let lost = entries_from(&pool, &lost_key(&ns), 0).await;
        let mut by_step = BTreeMap::new();
        let mut holder = BTreeMap::new();
        for (id, _, token, owner) in done.iter().chain(&lost) {
            let o = holder.entry((id.clone(), *token)).or_insert(owner.clone());
            assert_eq!(o.as_str(), owner.as_str(), "{id}: token {token} held by two owners");
        }
        for (id, step, token, owner) in &done {
            let again = by_step.insert((id.clone(), *step), (*token, owner.clone()));
            assert!(again.is_none(), "{id} step {step} written twice: {again:?}, {token} {owner}");
        }
        assert_eq!(by_step.len(), WORKFLOWS * COMPLETE as usize, "a write is missing");
        let mut resumed_from_o0 = 0;
        for id in &ids {
            let wf = store.get(id).await.unwrap().expect("kept");
            assert_eq!(wf.info.status, Status::Completed, "{id}: {:?}", wf.info);
            let steps: Vec<u32> = wf.checkpoints.iter().map(|c| c.step).collect();
            assert_eq!(steps, [1, 2, 3], "{id}");
            let mut prev = wf.input.clone();
            let mut last_token = 0;
            let stored = wf.checkpoints.iter().map(|c| c.output.clone()).chain(wf.outcome.clone());
            for (step, out) in (1..=COMPLETE).zip(stored) {
                // The stored write is the logged one, and continued from the one before.
                let (token, owner) = &by_step[&(id.clone(), step)];
                assert_eq!(out, output(id, step, owner, *token, &prev).into_bytes(), "{id} {step}");
                assert!(*token >= last_token, "{id}: step {step} on an older lease");
                last_token = *token;
                prev = out;
            }
            let (token, owner) = &by_step[&(id.clone(), COMPLETE)];
            assert_eq!((wf.info.token, wf.info.owner.as_ref()), (*token, Some(owner)), "{id}");
            let victim = (1..COMPLETE).any(|s| by_step[&(id.clone(), s)].1 == "o0");
            resumed_from_o0 += usize::from(victim && owner != "o0");
        }
        // A lost write wrote nothing: its step was written by a newer lease, its earlier
        // steps only before.
        for (id, step, token, owner) in &lost {
            let (by, _) = &by_step[&(id.clone(), *step)];
            assert!(by > token, "{id} {step} lost by {owner}@{token}, written by {by}");
            for s in *step..=COMPLETE {
                assert_ne!(by_step[&(id.clone(), s)].0, *token, "{id} {s} after a lost write");
            }
        }
        let o0_writes = done.iter().filter(|e| e.3 == "o0").count() as u64;
        assert!(o0_writes >= VICTIM_WRITES, "o0 wrote {o0_writes}");
        assert!(resumed_from_o0 > 0, "nothing o0 held was resumed");
        // Every write o1 made on the leases it held when frozen came back lost: a complete
        // and a checkpoint's or an extension's among them.
        let o1_lost: BTreeSet<u32> = o1_tried.iter().map(|e| e.1).collect();
        for e in &o1_tried {
            assert!(lost.contains(e), "o1's stale write {e:?} was written");
        }
        assert!(o1_lost.contains(&COMPLETE), "o1 lost {o1_lost:?}");
        assert!(o1_lost.iter().any(|&s| s < COMPLETE), "o1 lost {o1_lost:?}");
        assert!(holder.keys().all(|(id, _)| ids.binary_search(id).is_ok()));
        let restored = store.restore().await.unwrap();
        assert!(restored.active.is_empty(), "{:?}", restored.active);
        let mut checked: BTreeSet<String> = common::assert_consistent(&pool, &store).await;
        checked.retain(|id| !ids.contains(id));
        assert!(checked.is_empty(), "records of other ids: {checked:?}");
        eprintln!(
            "crash ({:?}): o0 wrote {o0_writes}, {resumed_from_o0} of its workflows resumed; \
             o1 held {} workflows, lost writes of steps {o1_lost:?}; {said:?}",
            redis.topology(),
            held.len()
        );
    }
}
