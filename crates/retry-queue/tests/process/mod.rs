//! Child processes of a test binary (this binary run again with `coordkit_testkit::rerun_test`,
//! its role in the environment): the parent starts one and waits until it says it is ready;
//! the child says so, then runs until its stdin closes.

use std::io::{BufRead, BufReader, Write};
use std::process::Child;

/// A child process, killed when dropped; [`Process::stop`] lets it end by itself.
pub(crate) struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// Runs the test `test` of this binary as a child with the environment `env`, and waits
    /// until it prints `<name> ready`; the rest of its stdout is drained.
    pub(crate) fn start(test: &str, env: &[(&str, &str)], name: &str) -> Self {
        let mut command = coordkit_testkit::rerun_test(test);
        command.envs(env.iter().copied());
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let ready = format!("{name} ready");
        loop {
            let line = lines.next().expect("the child process ended").unwrap();
            if line.contains(&ready) {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Process(child)
    }

    /// Closes its stdin and waits for it to exit; panics unless it succeeded.
    #[allow(dead_code)]
    pub(crate) fn stop(mut self) {
        drop(self.0.stdin.take());
        let status = self.0.wait().unwrap();
        assert!(status.success(), "a child process failed: {status}");
    }
}

/// In the child: says `<name> ready` on stdout, then waits until stdin closes.
pub(crate) async fn ready_until_stdin_closes(name: &str) {
    let mut out = std::io::stdout();
    writeln!(out, "{name} ready").unwrap();
    out.flush().unwrap();
    tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
        .await
        .unwrap()
        .unwrap();
}
