//! The fleet proof of issue #17, with the responders as OS processes: 50 askers in this process
//! ask a capability served by 4 responder processes, one request after another. Every request
//! carries a random nonce and every answer echoes the request and a digest of it, so a crossed
//! reply cannot pass.
//!
//! - The full run, 1,000 requests per asker (50,000 in all): every one gets exactly its own
//!   reply, once, and every responder takes part.
//!
//! The fault runs ask 20 per asker (1,000 in all), so that each takes seconds on 2 cores,
//! standalone and cluster alike:
//!
//! - `kill -9` of one responder process while it holds requests loses none: they go to another
//!   member after the visibility timeout, within the ask's timeout.
//! - `CLIENT KILL TYPE normal` and `TYPE pubsub` of every client (the askers', and every
//!   responder process's) mid-run loses no reply.
//!
//! "Loses nothing" is strict: every ask ends in [`Reply::Answer`], with its own answer. The ask
//! timeout (60 s) and the guard around each run (180 s) only catch a hang; nothing is timed.
//!
//! The responder processes are this test binary run again with `FLEET_RESPONDER` set (the
//! test `responder_process` then serves instead of returning at once). A responder exits when
//! its stdin closes, so none outlives a failed test.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coordkit_core::{Keyspace, Pool, PoolConfig};
use coordkit_mesh::{MeshAgent, Reply};
use coordkit_testkit::{TestRedis, redis_test};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

const CAPABILITY: &str = "solve";
const ASKERS: u32 = 50;
const RESPONDERS: usize = 4;
/// Requests per asker of the fault runs, and of the full run.
const ASKS_PER_ASKER: u32 = 20;
const FULL_ASKS_PER_ASKER: u32 = 1_000;
const TOTAL: usize = (ASKERS * ASKS_PER_ASKER) as usize;
/// The ask's timeout: a guard against a hang, far beyond a redelivery (1 s).
const ASK_TIMEOUT: Duration = Duration::from_secs(60);
/// The guard around a whole run.
const GUARD: Duration = Duration::from_secs(180);
/// The responders' visibility timeout: a request a dead member held comes back after it.
const VISIBILITY: Duration = Duration::from_secs(1);

const ENV_ROLE: &str = "FLEET_RESPONDER";
const ENV_URL: &str = "FLEET_URL";
const ENV_NS: &str = "FLEET_NS";
const ENV_HANG_AFTER: &str = "FLEET_HANG_AFTER";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Question {
    asker: u32,
    seq: u32,
    nonce: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Answer {
    asker: u32,
    seq: u32,
    digest: u64,
    by: String,
}

/// What a responder derives from a question: its answer must carry this, for its own question.
fn digest(q: &Question) -> u64 {
    let mut x = q.nonce ^ ((u64::from(q.asker) << 32) | u64::from(q.seq));
    x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^ (x >> 29)
}

/// A responder process's body: joins the capability, answers each question, says `ready` on
/// stdout, and serves until its stdin closes. With `FLEET_HANG_AFTER=n` it answers `n`
/// questions and then holds every further one forever (saying `held <asker> <seq>`): a process
/// that hangs, to be killed while it holds requests.
#[test]
fn responder_process() {
    let Ok(name) = std::env::var(ENV_ROLE) else {
        return; // Run as a test of its own: nothing to do.
    };
    let url = std::env::var(ENV_URL).expect("FLEET_URL");
    let ns = std::env::var(ENV_NS).expect("FLEET_NS");
    let hang_after: u64 = std::env::var(ENV_HANG_AFTER)
        .ok()
        .map_or(u64::MAX, |n| n.parse().expect("FLEET_HANG_AFTER"));
    let runtime = coordkit_testkit::blocking_runtime();
    runtime.block_on(async move {
        let pool = Pool::connect(PoolConfig::from_url(&url).unwrap())
            .await
            .unwrap();
        let keyspace = Keyspace::new(&ns).unwrap();
        let agent = MeshAgent::builder(&pool, &keyspace, &name)
            .visibility_timeout(VISIBILITY)
            .build()
            .unwrap();
        let answered = Arc::new(AtomicU64::new(0));
        let server = agent
            .serve_capability(CAPABILITY, move |q: Question| {
                let (name, answered) = (name.clone(), answered.clone());
                async move {
                    if answered.fetch_add(1, Ordering::Relaxed) >= hang_after {
                        say(&format!("held {} {}", q.asker, q.seq));
                        std::future::pending::<()>().await;
                    }
                    Ok::<_, String>(Answer {
                        asker: q.asker,
                        seq: q.seq,
                        digest: digest(&q),
                        by: name,
                    })
                }
            })
            .await
            .unwrap();
        say("ready");
        tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
            .await
            .unwrap()
            .unwrap();
        server.shutdown().await;
    });
}

/// One line for the test that started this process.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nfleet: {line}").unwrap();
    out.flush().unwrap();
}

/// A responder process; killed (-9) when dropped.
struct Responder {
    name: String,
    child: Child,
}

impl Responder {
    fn kill_nine(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the responders (`hang_after` for the first one only) and waits until each says it
/// serves. Their lines come on the channel as (member, line).
async fn start_responders(
    redis: &TestRedis,
    ns: &str,
    hang_after: Option<u64>,
) -> (Vec<Responder>, mpsc::UnboundedReceiver<(String, String)>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut responders = Vec::new();
    for i in 0..RESPONDERS {
        let name = format!("r{i}");
        let mut cmd = coordkit_testkit::rerun_test("responder_process");
        cmd.env(ENV_ROLE, &name)
            .env(ENV_URL, redis.url())
            .env(ENV_NS, ns)
            .env_remove(ENV_HANG_AFTER);
        if let (0, Some(n)) = (i, hang_after) {
            cmd.env(ENV_HANG_AFTER, n.to_string());
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let tx = tx.clone();
        let member = name.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest may have begun the line ("test responder_process ... ").
                if let Some((_, said)) = line.split_once("fleet: ") {
                    let _ = tx.send((member.clone(), said.to_owned()));
                }
            }
        });
        responders.push(Responder { name, child });
    }
    let mut ready = BTreeSet::new();
    while ready.len() < RESPONDERS {
        let (member, line) = tokio::time::timeout(GUARD, rx.recv())
            .await
            .expect("the responders did not start")
            .expect("a responder exited before it served");
        if line == "ready" {
            ready.insert(member);
        }
    }
    (responders, rx)
}

/// Every question of the run, asked by 50 askers (`per_asker` each, one after another);
/// answers each question with its reply, as they come.
fn ask_all(
    pool: &Pool,
    ks: &Keyspace,
    per_asker: u32,
) -> mpsc::UnboundedReceiver<(Question, Result<Reply<Answer>, String>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    for a in 0..ASKERS {
        let asker = MeshAgent::builder(pool, ks, &format!("asker{a}"))
            .build()
            .unwrap();
        let tx = tx.clone();
        tokio::spawn(async move {
            for seq in 0..per_asker {
                let q = Question {
                    asker: a,
                    seq,
                    nonce: rand::random(),
                };
                let reply = asker
                    .ask_capability(CAPABILITY, &q, ASK_TIMEOUT)
                    .await
                    .map_err(|e| e.to_string());
                let _ = tx.send((q, reply));
            }
        });
    }
    rx
}

/// Checks one reply: an answer, to its own question. Answers who answered it.
fn check(q: &Question, reply: Result<Reply<Answer>, String>) -> String {
    let answer = match reply {
        Ok(Reply::Answer(answer)) => answer,
        other => panic!("{q:?} was not answered: {other:?}"),
    };
    assert_eq!(
        (answer.asker, answer.seq, answer.digest),
        (q.asker, q.seq, digest(q)),
        "{q:?} got another's reply: {answer:?}"
    );
    answer.by
}

/// Closes the responders' stdin (they shut down) and waits for them to exit.
fn stop(responders: Vec<Responder>) {
    for mut r in responders {
        drop(r.child.stdin.take());
        let status = r.child.wait().unwrap();
        assert!(status.success(), "{} exited with {status}", r.name);
    }
}

redis_test! {
    async fn the_full_run_answers_every_request_with_its_own_reply(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let (responders, _lines) = start_responders(&redis, ks.namespace(), None).await;
        let mut replies = ask_all(&pool, &ks, FULL_ASKS_PER_ASKER);
        let total = (ASKERS * FULL_ASKS_PER_ASKER) as usize;
        let mut answered = BTreeSet::new();
        let mut by: BTreeMap<String, usize> = BTreeMap::new();
        tokio::time::timeout(GUARD, async {
            while answered.len() < total {
                let (q, reply) = replies.recv().await.expect("the askers stopped");
                *by.entry(check(&q, reply)).or_default() += 1;
                assert!(answered.insert((q.asker, q.seq)), "{q:?} twice");
            }
        })
        .await
        .expect("the run hung");
        assert_eq!(by.len(), RESPONDERS, "every responder takes part: {by:?}");
        stop(responders);
    }
}

redis_test! {
    async fn killing_a_responder_process_mid_run_loses_no_request(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        // r0 answers 40 questions, then holds every one it takes until it is killed.
        let (mut responders, mut lines) = start_responders(&redis, ks.namespace(), Some(40)).await;
        let victim = responders[0].name.clone();
        let mut replies = ask_all(&pool, &ks, ASKS_PER_ASKER);
        tokio::time::timeout(GUARD, async {
            let mut held = BTreeSet::new();
            let mut answered = BTreeMap::new();
            let mut killed = false;
            while answered.len() < TOTAL {
                tokio::select! {
                    Some((member, line)) = lines.recv() => {
                        if let Some(q) = line.strip_prefix("held ") {
                            assert_eq!(member, victim);
                            let (a, s) = q.split_once(' ').unwrap();
                            held.insert((a.parse::<u32>().unwrap(), s.parse::<u32>().unwrap()));
                            if !killed {
                                // Mid-run, while it holds at least this request.
                                responders[0].kill_nine();
                                killed = true;
                            }
                        }
                    }
                    Some((q, reply)) = replies.recv() => {
                        let who = check(&q, reply);
                        assert!(answered.insert((q.asker, q.seq), who).is_none(), "{q:?} twice");
                    }
                }
            }
            assert!(killed, "the victim never held a request");
            // What the dead member held was answered, by another member.
            assert!(!held.is_empty());
            for q in &held {
                assert_ne!(answered[q], victim, "{q:?} answered by the dead member");
            }
        })
        .await
        .expect("the run hung");
        let rest: Vec<Responder> = responders.drain(1..).collect();
        stop(rest);
    }
}

redis_test! {
    async fn killing_every_client_mid_run_loses_no_reply(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let (responders, _lines) = start_responders(&redis, ks.namespace(), None).await;
        let mut replies = ask_all(&pool, &ks, ASKS_PER_ASKER);
        tokio::time::timeout(GUARD, async {
            let mut answered = BTreeSet::new();
            // Kill every client twice, a third and two thirds of the way through.
            let mut kills = vec![2 * TOTAL / 3, TOTAL / 3];
            let mut killed = BTreeMap::<&str, u64>::new();
            while answered.len() < TOTAL {
                let (q, reply) = replies.recv().await.expect("an asker ended early");
                check(&q, reply);
                assert!(answered.insert((q.asker, q.seq)), "{q:?} twice");
                if kills.last() == Some(&answered.len()) {
                    kills.pop();
                    tokio::task::block_in_place(|| {
                        for kind in ["normal", "pubsub"] {
                            let n: Vec<u64> =
                                redis.on_every_server(&["CLIENT", "KILL", "TYPE", kind]);
                            *killed.entry(kind).or_default() += n.iter().sum::<u64>();
                        }
                    });
                }
            }
            assert!(kills.is_empty());
            // Both times, this process's connections and every responder's went down.
            let each = 2 * (1 + RESPONDERS as u64);
            assert!(killed.values().all(|&n| n >= each), "killed {killed:?}");
        })
        .await
        .expect("the run hung");
        stop(responders);
    }
}

/// Regression: an ask whose request send failed (the connection timed out or dropped, as a
/// `CLIENT KILL` does) sent it again until its deadline, instead of failing with the error
/// and leaving a request that may be stored and answered into an inbox nobody reads. The
/// server is paused for writes longer than the asker's command timeout, so its first sends
/// time out (and may still run later: the request stored twice, answered twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ask_whose_send_failed_sends_it_again() {
    let server = coordkit_testkit::RedisServer::start().unwrap();
    let ks = Keyspace::new("regress").unwrap();
    let pool = server.fault_pool(Duration::from_millis(200)).await;
    let asker = MeshAgent::builder(&pool, &ks, "asker").build().unwrap();
    let member = MeshAgent::builder(&server.fault_pool(Duration::from_secs(10)).await, &ks, "m")
        .build()
        .unwrap();
    let serving = member
        .serve_capability(CAPABILITY, |q: Question| async move {
            Ok::<_, String>(Answer {
                asker: q.asker,
                seq: q.seq,
                digest: digest(&q),
                by: "m".to_owned(),
            })
        })
        .await
        .unwrap();
    // Once subscribed (its first ask), the asker's next send meets the pause.
    let q = Question {
        asker: 0,
        seq: 0,
        nonce: 1,
    };
    let first: Reply<Answer> = asker
        .ask_capability(CAPABILITY, &q, ASK_TIMEOUT)
        .await
        .unwrap();
    check(&q, Ok(first));
    let _: String = server
        .command(&["CLIENT", "PAUSE", "1000", "WRITE"])
        .unwrap();
    let q = Question {
        asker: 0,
        seq: 1,
        nonce: 2,
    };
    let reply = tokio::time::timeout(GUARD, asker.ask_capability(CAPABILITY, &q, ASK_TIMEOUT))
        .await
        .expect("the ask hung")
        .map_err(|e| e.to_string());
    assert_eq!(check(&q, reply), "m");
    serving.shutdown().await;
}
