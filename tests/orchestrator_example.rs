//! The orchestrator example survives its own `kill -9`: `examples/orchestrator.rs` runs as a
//! child process (this test binary run again with `ORCHESTRATOR_EXAMPLE_ARGS` set), is killed
//! with `kill -9` while it holds workflows mid-step, and runs again: the second run resumes
//! each workflow the first one held from the step after its last checkpoint, and every
//! workflow completes with each step checkpointed once. On standalone and cluster; nothing is
//! timed (the guard only catches a hang).

#[allow(unreachable_pub, dead_code)] // `main_with` and `Args` are the example's own.
#[path = "../examples/orchestrator.rs"]
mod orchestrator;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;
use coordkit::Coordkit;
use coordkit::workflow::{Listing, Status};
use coordkit_testkit::{TestRedis, redis_test};

const ENV_ARGS: &str = "ORCHESTRATOR_EXAMPLE_ARGS";
const WORKFLOWS: u32 = 24;
/// The first run is killed after this many checkpoints (of 72). Its four workflows run in
/// step, checkpointing together every `step_ms`: the 6th checkpoint is in the second wave, a
/// whole step before any of them completes. (After the 10th, in the third wave, the kill could
/// land between the four completions and the next claims, with no workflow held.)
const KILL_AFTER: usize = 6;
const GUARD: Duration = Duration::from_secs(120);

/// In a child: the example, with the arguments of `ORCHESTRATOR_EXAMPLE_ARGS` (and
/// `REDIS_URL`). Exits when its stdin closes. Outside a child it does nothing.
#[test]
fn orchestrator_process() {
    let Ok(args) = std::env::var(ENV_ARGS) else {
        return;
    };
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(3);
    });
    let args = orchestrator::Args::parse_from(["orchestrator"].into_iter().chain(args.split(' ')));
    coordkit_testkit::blocking_runtime()
        .block_on(orchestrator::main_with(args))
        .unwrap();
}

/// A run of the example as `owner`, each step taking `step_ms`; its stdout lines come on the
/// channel (`None`: it closed).
fn start(
    redis: &TestRedis,
    ns: &str,
    owner: &str,
    step_ms: u64,
) -> (Child, mpsc::Receiver<Option<String>>) {
    let args = format!(
        "--workflows {WORKFLOWS} --concurrency 4 --step-ms {step_ms} --owner {owner} --namespace {ns}"
    );
    let mut child = coordkit_testkit::rerun_test("orchestrator_process")
        .env(ENV_ARGS, args)
        .env("REDIS_URL", redis.url())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(Some(line));
        }
        let _ = tx.send(None);
    });
    (child, rx)
}

/// The next line (`None`: the run's stdout closed), before `deadline`.
fn next(rx: &mpsc::Receiver<Option<String>>, deadline: Instant) -> Option<String> {
    let left = deadline.saturating_duration_since(Instant::now());
    rx.recv_timeout(left).expect("the example hung")
}

/// What a run printed: the steps it checkpointed (each once) and where it resumed.
#[derive(Default, Debug)]
struct Printed {
    checkpointed: BTreeSet<(String, u32)>,
    resumed: BTreeMap<String, u32>,
}

impl Printed {
    /// Takes one line (libtest may have begun it); answers whether it was a checkpoint.
    fn take(&mut self, line: &str) -> bool {
        if let Some((_, rest)) = line.split_once("checkpointed ") {
            let (id, step) = rest.split_once(" step ").unwrap();
            let new = self
                .checkpointed
                .insert((id.to_owned(), step.parse().unwrap()));
            assert!(new, "{line} printed twice");
            return true;
        }
        if let Some((_, rest)) = line.split_once("resumed ") {
            let (id, step) = rest.split_once(" at step ").unwrap();
            self.resumed.insert(id.to_owned(), step.parse().unwrap());
        }
        false
    }
}

redis_test! {
    async fn the_orchestrator_example_survives_its_own_kill_9(redis) {
        let ns = redis.keyspace().namespace().to_owned();
        let kit = Coordkit::from_pool(redis.pool().await, &ns).unwrap();
        let store = kit.workflows("reports").build().unwrap();

        // The first run, killed (-9) once it checkpointed some steps.
        // Slow steps (the whole run would take 5.4 s): a loaded machine that reads its lines late
        // still kills it while it holds workflows (at 100 ms it could finish first, 1.8 s).
        let (mut first, lines) = start(&redis, &ns, "first", 300);
        let mut one = Printed::default();
        tokio::task::block_in_place(|| {
            let deadline = Instant::now() + GUARD;
            let mut checkpoints = 0;
            while checkpoints < KILL_AFTER {
                let line = next(&lines, deadline).expect("the first run ended before it was killed");
                checkpoints += usize::from(one.take(&line));
            }
            first.kill().unwrap();
            first.wait().unwrap();
            while let Some(line) = next(&lines, deadline) {
                one.take(&line);
            }
        });
        // What it held: running, each at its last checkpoint.
        let mut orphans = BTreeMap::new();
        let page = store.list(&Listing::Status(Status::Running), None, 1_000).await.unwrap();
        for info in page.items {
            assert_eq!(info.owner.as_deref(), Some("first"));
            orphans.insert(info.id, info.step);
        }
        assert!(!orphans.is_empty(), "the first run held no workflow when it was killed");

        // The second run finishes everything.
        let (mut second, lines) = start(&redis, &ns, "second", 100);
        let mut two = Printed::default();
        tokio::task::block_in_place(|| {
            let deadline = Instant::now() + GUARD;
            while let Some(line) = next(&lines, deadline) {
                two.take(&line);
            }
            let status = second.wait().unwrap();
            assert!(status.success(), "the second run exited with {status}");
        });

        // It resumed exactly the orphans, each after its last checkpoint.
        let resumed: BTreeMap<String, u32> = orphans.iter().map(|(id, step)| (id.clone(), step + 1)).collect();
        assert_eq!(two.resumed, resumed);
        // Every workflow completed, each step checkpointed once: by one run or the other.
        let both: BTreeSet<_> = one.checkpointed.intersection(&two.checkpointed).collect();
        assert!(both.is_empty(), "checkpointed by both runs: {both:?}");
        let mut unprinted = Vec::new();
        for i in 0..WORKFLOWS {
            let id = format!("report-{i}");
            let wf = store.get(&id).await.unwrap().expect("kept");
            assert_eq!(wf.info.status, Status::Completed, "{id}");
            let steps: Vec<u32> = wf.checkpoints.iter().map(|c| c.step).collect();
            assert_eq!(steps, [1, 2, 3], "{id}");
            let mut prev = format!("topic {i}");
            for (c, name) in wf.checkpoints.iter().zip(["research", "outline", "write"]) {
                prev = format!("{name}({prev})");
                assert_eq!(String::from_utf8_lossy(&c.output), prev, "{id} step {}", c.step);
                let key = (id.clone(), c.step);
                if let Some(&last) = orphans.get(&id) {
                    assert_eq!(two.checkpointed.contains(&key), c.step > last, "{id} step {}", c.step);
                }
                if !one.checkpointed.contains(&key) && !two.checkpointed.contains(&key) {
                    unprinted.push(key);
                }
            }
            assert_eq!(wf.outcome.as_deref(), Some(prev.as_bytes()), "{id}");
            if orphans.contains_key(&id) {
                assert_eq!((wf.info.owner.as_deref(), wf.info.claims), (Some("second"), 2), "{id}");
            }
        }
        // Only the kill may cut a checkpoint from its line: at most one per workflow in hand.
        assert!(unprinted.len() <= orphans.len(), "written, never printed: {unprinted:?}");
        let printed = one.checkpointed.len() + two.checkpointed.len() + unprinted.len();
        assert_eq!(printed, 3 * WORKFLOWS as usize);
    }
}

#[test]
fn the_readme_shows_the_orchestrator_example_as_it_is() {
    let example = include_str!("../examples/orchestrator.rs");
    let body = example
        .split("// orchestrator: begin\n")
        .nth(1)
        .and_then(|rest| rest.split("// orchestrator: end").next())
        .expect("examples/orchestrator.rs marks the README's part");
    let readme = include_str!("../README.md");
    assert!(
        readme.contains(&format!("```rust\n{body}```")),
        "the README's orchestrator example differs from examples/orchestrator.rs; copy it over"
    );
    assert!(
        body.lines().count() <= 40,
        "the orchestrator example grew past 40 lines"
    );
}
