//! Running a parsed command: connect, dispatch to the primitive's group, print.

use std::future::Future;
use std::time::Duration;

use coordkit_core::{Key, Keyspace, Pool, PoolConfig, redis};

use crate::app::{Cli, Command};
use crate::fail::{Fail, Outcome};
use crate::out::{Changed, Report, emit, stdout_is_terminal};

mod agents;
mod breaker;
mod context;
mod errors;
mod events;
mod listing;
mod mesh;
mod metrics;
mod queue;
mod serve_metrics;
mod workflow;

/// What every command needs: the pool, the namespace and the global options.
pub(crate) struct Ctx {
    pub(crate) pool: Pool,
    pub(crate) keyspace: Keyspace,
    pub(crate) json: bool,
    pub(crate) yes: bool,
    watch: Option<Duration>,
}

/// Parses nothing more: connects and runs `cli`'s command.
pub(crate) async fn run(cli: Cli) -> Outcome {
    let namespace = cli.namespace.as_deref().ok_or_else(|| {
        Fail::usage("no namespace: give --namespace NS (or set COORDKIT_NAMESPACE)")
    })?;
    let keyspace = Keyspace::new(namespace)?;
    let config = match &cli.url {
        Some(url) => PoolConfig::from_url(url)?,
        None => PoolConfig::from_env()?,
    };
    let config = config.pool_size(2);
    let pool = match Pool::connect(config.clone()).await {
        Ok(pool) => pool,
        // An exporter starts anyway and answers 503 until the server does.
        Err(e) if e.is_retryable() && matches!(cli.command, Command::ServeMetrics(_)) => {
            eprintln!("coordkit: {e} (serving 503 until it answers)");
            Pool::connect_lazy(config)?
        }
        Err(e) => return Err(e.into()),
    };
    let ctx = Ctx {
        pool,
        keyspace,
        json: cli.json,
        yes: cli.yes,
        watch: cli.watch.map(Duration::from_secs),
    };
    match &cli.command {
        Command::Queue(command) => queue::run(&ctx, command).await,
        Command::Breaker(command) => breaker::run(&ctx, command).await,
        Command::Errors(command) => errors::run(&ctx, command).await,
        Command::Metrics(command) => metrics::run(&ctx, command).await,
        Command::Agents(command) => agents::run(&ctx, command).await,
        Command::Context(command) => context::run(&ctx, command).await,
        Command::Mesh(command) => mesh::run(&ctx, command).await,
        Command::Workflow(command) => workflow::run(&ctx, command).await,
        Command::Events(command) => events::run(&ctx, command).await,
        Command::ServeMetrics(args) => serve_metrics::run(&ctx, args).await,
    }
}

impl Ctx {
    /// Runs a reading command once, or every `--watch` seconds until Ctrl-C.
    pub(crate) async fn read<F, Fut>(&self, report: F) -> Outcome
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Outcome<Report>>,
    {
        let Some(every) = self.watch else {
            return emit(&report().await?.render(self.json, false));
        };
        let clear = !self.json && stdout_is_terminal();
        loop {
            let answer = tokio::select! {
                answer = report() => answer?,
                _ = tokio::signal::ctrl_c() => return Ok(()),
            };
            let text = answer.render(self.json, true);
            if self.json {
                emit(&text)?;
            } else {
                let now = crate::time::timestamp(self.pool.server_time_ms().await?);
                let header = format!("every {}s, at {now} (Ctrl-C to stop)\n", every.as_secs());
                emit(&format!(
                    "{}{header}{text}",
                    if clear { "\x1b[2J\x1b[H" } else { "\n" }
                ))?;
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    }

    /// Runs a command that changes something: refused with `--watch`, confirmed first
    /// (`what` names the change), then its report printed.
    pub(crate) async fn change<Fut, C>(&self, what: &str, change: Fut) -> Outcome
    where
        Fut: Future<Output = Outcome<C>>,
        C: Into<Changed>,
    {
        crate::out::confirm(self.yes, what)?;
        let changed: Changed = change.await?.into();
        emit(&changed.report.render(self.json, false))?;
        changed.partial.map_or(Ok(()), Err)
    }

    /// Refuses `--watch` for a command that changes something or runs live anyway.
    pub(crate) fn no_watch(&self, command: &str) -> Outcome {
        match self.watch {
            Some(_) => Err(Fail::usage(format!(
                "--watch does not apply to `{command}`"
            ))),
            None => Ok(()),
        }
    }

    /// The namespace.
    pub(crate) fn namespace(&self) -> &str {
        self.keyspace.namespace()
    }
}

/// Whether any of an instance's keys exists (one `EXISTS`: they share one hash tag).
pub(crate) async fn any_exists(pool: &Pool, keys: &[Key]) -> Outcome<bool> {
    if keys.is_empty() {
        return Ok(false);
    }
    let mut cmd = redis::cmd("EXISTS");
    for key in keys {
        cmd.arg(key);
    }
    let n: u64 = pool.query(&cmd).await?;
    Ok(n > 0)
}
