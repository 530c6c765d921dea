//! Bad usage (exit 2), a server that is down (exit 1), help and --watch.

use coordkit_retry_queue::{Queue, TaskOptions};

use crate::common::{Harness, bare, fails_with};

#[test]
fn bad_usage_exits_2_with_clap_s_message() {
    let out = bare()
        .args(["-n", "x", "queue", "frobnicate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand"));
    let out = bare().args(["-n", "x", "queue", "stats"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bare()
        .args(["-n", "x", "--watch", "0", "queue", "stats", "q"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn our_own_usage_errors_are_one_line_and_exit_2() {
    let err = fails_with(bare().args(["queue", "stats", "q"]), 2, &["no namespace"]);
    assert!(err.contains("--namespace"), "{err}");
    let err = fails_with(
        bare().args(["-n", "a b", "queue", "stats", "q"]),
        2,
        &["bad namespace"],
    );
    assert!(err.contains("invalid namespace"), "{err}");
    let err = fails_with(
        bare().args(["-n", "x", "--url", "http://h:1", "queue", "stats", "q"]),
        2,
        &["bad url"],
    );
    assert!(err.contains("url"), "{err}");
    let err = fails_with(
        bare()
            .env("REDIS_PORT", "70000")
            .args(["-n", "x", "queue", "stats", "q"]),
        2,
        &["bad REDIS_PORT"],
    );
    assert!(err.contains("REDIS_PORT"), "{err}");
}

#[test]
fn a_server_that_is_down_exits_1_with_one_line() {
    // A port nothing listens on (a server started, then stopped).
    let mut server = coordkit_testkit::RedisServer::start().unwrap();
    let url = server.url();
    server.stop();
    for args in [
        vec!["queue", "stats", "q"],
        vec!["-y", "queue", "dlq", "purge", "q", "--all"],
        vec!["events", "tail"],
    ] {
        let mut cmd = bare();
        cmd.args(["--url", &url, "-n", "x"]).args(&args);
        let err = fails_with(&mut cmd, 1, &args);
        assert!(err.contains("unavailable"), "{err}");
    }
    // The environment's fallbacks are read when there is no --url.
    let port = url.rsplit(':').next().unwrap().to_owned();
    let mut cmd = bare();
    cmd.env("REDIS_HOST", "127.0.0.1")
        .env("REDIS_PORT", &port)
        .args(["-n", "x", "queue", "stats", "q"]);
    let err = fails_with(&mut cmd, 1, &["env"]);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[test]
fn help_names_every_group() {
    let out = bare().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for group in [
        "queue",
        "breaker",
        "errors",
        "metrics",
        "agents",
        "context",
        "events",
        "serve-metrics",
    ] {
        assert!(help.contains(&format!("  {group} ")), "{group}: {help}");
    }
}

#[test]
fn watch_prints_again_until_interrupted() {
    let t = Harness::new(coordkit_testkit::Topology::Standalone);
    let q = Queue::builder(&t.pool, &t.keyspace, "w").build().unwrap();
    t.block_on(q.enqueue_json("x", TaskOptions::default()))
        .unwrap();
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("coordkit"));
    cmd.args([
        "--url",
        &t.redis.url(),
        "-n",
        t.ns(),
        "--json",
        "--watch",
        "1",
        "queue",
        "stats",
        "w",
    ])
    .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["ready"], 1);
    t.block_on(q.enqueue_json("y", TaskOptions::default()))
        .unwrap();
    let second: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(second["ready"], 2);
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// The help text of `coordkit ARGS --help`, as printed.
fn help_of(args: &[String]) -> String {
    let out = bare()
        .env_remove("COLUMNS")
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "coordkit {args:?} --help");
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a help text lists under `Commands:` (all but `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_readme_shows_every_command_s_help_as_printed() {
    let readme = include_str!("../../README.md");
    let mut todo = vec![Vec::<String>::new()];
    let mut seen = 0;
    while let Some(args) = todo.pop() {
        let help = help_of(&args);
        assert!(
            readme.contains(&help),
            "README.md lacks the help of `coordkit {}` (run crates/cli/gen-readme.sh):\n{help}",
            args.join(" ")
        );
        seen += 1;
        for sub in subcommands(&help) {
            let mut next = args.clone();
            next.push(sub);
            todo.push(next);
        }
    }
    // The program, its groups and their subcommands: dozens, not a handful.
    assert!(seen > 40, "{seen} helps");
    // The project's README shows the program's.
    let root = include_str!("../../../../README.md");
    assert!(
        root.contains(&help_of(&[])),
        "the root README lacks `coordkit --help`"
    );
}

#[test]
fn the_environment_names_the_server_and_the_namespace() {
    let t = Harness::new(coordkit_testkit::Topology::Standalone);
    let q = Queue::builder(&t.pool, &t.keyspace, "env").build().unwrap();
    t.block_on(q.enqueue_json("x", TaskOptions::default()))
        .unwrap();
    let out = bare()
        .env("REDIS_URL", t.redis.url())
        .env("COORDKIT_NAMESPACE", t.ns())
        .args(["--json", "queue", "stats", "env"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ready"], 1);
    // --url wins over REDIS_URL; --namespace over COORDKIT_NAMESPACE.
    let out = bare()
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("COORDKIT_NAMESPACE", "elsewhere")
        .args([
            "--url",
            &t.redis.url(),
            "-n",
            t.ns(),
            "queue",
            "stats",
            "env",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn watch_for_people_prints_a_header_per_refresh() {
    let t = Harness::new(coordkit_testkit::Topology::Standalone);
    let q = Queue::builder(&t.pool, &t.keyspace, "h").build().unwrap();
    t.block_on(q.enqueue_json("x", TaskOptions::default()))
        .unwrap();
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("coordkit"));
    cmd.args([
        "--url",
        &t.redis.url(),
        "-n",
        t.ns(),
        "--watch",
        "1",
        "queue",
        "stats",
        "h",
    ])
    .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut headers = 0;
    for line in lines {
        let line = line.unwrap();
        assert!(
            !line.contains('\u{1b}'),
            "no screen clearing when stdout is not a terminal"
        );
        if line.starts_with("every 1s, at ") {
            headers += 1;
            if headers == 2 {
                break;
            }
        }
    }
    assert_eq!(headers, 2);
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
