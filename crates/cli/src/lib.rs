//! # coordkit-cli
//!
//! `coordkit`, the command line of [coordkit](https://docs.rs/coordkit): what an operator needs
//! at 3 a.m. to see what is stuck and act on it without writing Rust — a backed-up queue, a
//! poisoned dead-letter queue, a stuck-open breaker, a new error signature, a silent agent.
//!
//! ```text
//! cargo install coordkit-cli
//! export REDIS_URL=redis://127.0.0.1:6379 COORDKIT_NAMESPACE=prod
//! coordkit queue stats emails
//! coordkit queue dlq ls emails
//! coordkit queue dlq requeue emails 17 18 --reset-attempts
//! coordkit breaker show llm-api --watch 2
//! coordkit errors top agents --window 15m --json
//! coordkit events tail 'queue:*'
//! ```
//!
//! - **Connection**: `--url`, else the environment as `coordkit_core::PoolConfig::from_env`
//!   reads it (`REDIS_URL`, else `REDIS_HOST` / `REDIS_PORT` / `REDIS_PASSWORD` /
//!   `REDIS_DB`), standalone or cluster (`redis+cluster://…`). `--namespace` (or
//!   `COORDKIT_NAMESPACE`) names the namespace.
//! - **Output**: tables for people; `--json` for scripts, with the field names documented in
//!   the crate's README (they are stable: new fields may be added, none renamed or removed
//!   within a major version). `--watch SECS` runs a reading command again every SECS seconds.
//! - **Changes** (requeue, purge, pause, resume, force, clear, resolve, cancel) ask for confirmation on
//!   a terminal unless `--yes`, are refused when stdin is not a terminal and `--yes` is not
//!   given, and print what they changed.
//! - **Exit codes**: 0 success; 1 the operation failed (server down, unknown instance, nothing
//!   confirmed), with one line on stderr; 2 bad usage (unknown option, bad name, bad URL, a
//!   change refused without `--yes`).
//!
//! The crate's README (on crates.io) lists every command, the `--json` field names and the
//! help of each group. The library's one item, [`main`], is the whole program, for a binary
//! of another name.
//!
//! Every command goes through the primitives' public APIs (`coordkit-retry-queue`,
//! `coordkit-circuit-breaker`, `coordkit-errors`, `coordkit-metrics`, `coordkit-context`,
//! `coordkit-core`'s subscriber), so it sees and does exactly what a program would.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// `serde_json::json!` of the reports nests deeply.
#![recursion_limit = "256"]

use std::process::ExitCode;

use clap::Parser;

mod app;
mod cmd;
mod fail;
mod out;
mod time;

/// The `coordkit` program: parses the process's arguments, runs the command, prints, and
/// answers the exit code (the `coordkit` binary is `fn main() -> ExitCode { coordkit_cli::main() }`).
/// Bad usage prints clap's message and exits with 2 from here; `--help` and `--version` exit 0.
pub fn main() -> ExitCode {
    // A bug must still end in one line and exit 1, not a trace.
    std::panic::set_hook(Box::new(|info| {
        let message = info.to_string().replace(['\n', '\r'], " ");
        eprintln!("coordkit: internal error (please report it): {message}");
        std::process::exit(1);
    }));
    // Bad usage: clap prints the error and the usage, and exits with 2 (0 for --help).
    let cli = app::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("coordkit: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(cmd::run(cli));
    // Do not wait for background tasks (a subscriber's) once the command is done.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(fail) => {
            if !fail.message.is_empty() {
                eprintln!("coordkit: {}", fail.message);
            }
            ExitCode::from(fail.code)
        }
    }
}
