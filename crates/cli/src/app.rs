//! The command line: every option and subcommand, as clap parses them.

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// The heading of the options every command takes.
const GLOBAL: &str = "Global options";

/// Inspect and operate coordkit's primitives in Redis: queues, circuit breakers, error
/// trackers, metrics, agents, shared context, agent messaging, workflows and events.
#[derive(Debug, Parser)]
#[command(
    name = "coordkit",
    version,
    propagate_version = true,
    after_help = "Connection: --url, else REDIS_URL, else REDIS_HOST / REDIS_PORT / REDIS_PASSWORD / \
                  REDIS_DB, else redis://127.0.0.1:6379.\n\
                  Exit codes: 0 ok, 1 the operation failed (server down, unknown instance, …), \
                  2 bad usage."
)]
pub(crate) struct Cli {
    /// The Redis URL (standalone, TLS or cluster).
    #[arg(
        long,
        global = true,
        value_name = "URL",
        help_heading = GLOBAL,
        help = "Redis URL: redis://[user:password@]host:port[/db], rediss://… (TLS), \
                redis+cluster://host1:port1,host2:port2 (cluster). Prefer REDIS_URL for URLs \
                with a password (command lines are visible to other users)"
    )]
    pub(crate) url: Option<String>,

    /// The namespace the instances live in (required).
    #[arg(
        short = 'n',
        long,
        global = true,
        env = "COORDKIT_NAMESPACE",
        value_name = "NS",
        help_heading = GLOBAL
    )]
    pub(crate) namespace: Option<String>,

    /// Print JSON instead of tables (one document; one per line for live and --watch output).
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub(crate) json: bool,

    /// Run a reading command again every SECS seconds, until Ctrl-C.
    #[arg(
        long,
        global = true,
        value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        help_heading = GLOBAL
    )]
    pub(crate) watch: Option<u64>,

    /// Do not ask before changing anything (required when stdin is not a terminal).
    #[arg(short = 'y', long, global = true, help_heading = GLOBAL)]
    pub(crate) yes: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// One group per primitive.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Retry queues: stats, one task, the dead-letter queue, pause and resume.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Circuit breakers: state and figures, operator states.
    #[command(subcommand)]
    Breaker(BreakerCommand),
    /// Error trackers: top signatures, recent errors, one signature, resolve.
    #[command(subcommand)]
    Errors(ErrorsCommand),
    /// Metrics: a series' latest samples, aggregates and percentiles.
    #[command(subcommand)]
    Metrics(MetricsCommand),
    /// The agent registry: every live agent, the idle ones, who can do what.
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Shared context: an entity's fields, its history, its changes live.
    #[command(subcommand)]
    Context(ContextCommand),
    /// Agent messaging: live agents, an agent's inbox, a capability's members and inbox.
    #[command(subcommand)]
    Mesh(MeshCommand),
    /// Workflow stores: counts, workflows (stuck ones marked), one workflow, cancel.
    #[command(subcommand)]
    Workflow(WorkflowCommand),
    /// The namespace's events, live.
    #[command(subcommand)]
    Events(EventsCommand),
    /// A Prometheus endpoint: GET /metrics with the figures of the named (or every indexed) instance, until Ctrl-C.
    ServeMetrics(ServeMetricsArgs),
}

/// `coordkit queue …`
#[derive(Debug, Subcommand)]
pub(crate) enum QueueCommand {
    /// Every queue of the namespace, from its index (one call); with --stats, each one's
    /// counts too (one call per queue).
    Ls {
        /// Also each queue's counts per state, oldest ready task and pause.
        #[arg(long)]
        stats: bool,
    },
    /// Counts per state, totals, the oldest ready task's age, pause and limits.
    Stats {
        /// The queue's name.
        name: String,
    },
    /// Everything about one task: state, attempts, errors, payload.
    Inspect {
        /// The queue's name.
        name: String,
        /// The task's id.
        id: String,
    },
    /// The dead-letter queue: list, requeue, purge.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Stop every worker's claims (tasks already leased run to their end).
    Pause {
        /// The queue's name.
        name: String,
    },
    /// Let claims go on again after a pause.
    Resume {
        /// The queue's name.
        name: String,
    },
}

/// `coordkit queue dlq …`
#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// Dead-lettered tasks, oldest first.
    Ls {
        /// The queue's name.
        name: String,
        /// How many to show.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        limit: u64,
        /// How many of the oldest to skip.
        #[arg(long, default_value_t = 0)]
        offset: u64,
    },
    /// Put dead-lettered tasks back in the ready queue.
    Requeue {
        /// The queue's name.
        name: String,
        /// The tasks' ids.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Every dead-lettered task.
        #[arg(long)]
        all: bool,
        /// With a fresh attempt budget and no error history (otherwise an exhausted task gets
        /// one more attempt).
        #[arg(long)]
        reset_attempts: bool,
    },
    /// Delete dead-lettered tasks for good.
    Purge {
        /// The queue's name.
        name: String,
        /// The tasks' ids.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Every dead-lettered task.
        #[arg(long)]
        all: bool,
    },
}

/// `coordkit breaker …`
#[derive(Debug, Subcommand)]
pub(crate) enum BreakerCommand {
    /// Every breaker of the namespace, from its index (one call); with --state, each one's
    /// state and window too (two calls per breaker).
    Ls {
        /// Also each breaker's state and window figures.
        #[arg(long)]
        state: bool,
    },
    /// The state and the window's figures.
    Show {
        /// The breaker's name.
        name: String,
    },
    /// Reject every call until cleared (operator state `forced_open`).
    ForceOpen {
        /// The breaker's name.
        name: String,
    },
    /// Admit every call until cleared, still counting outcomes (operator state
    /// `metrics_only`); with --no-count, count nothing (`disabled`).
    ForceClosed {
        /// The breaker's name.
        name: String,
        /// Count nothing while forced (`disabled` instead of `metrics_only`).
        #[arg(long)]
        no_count: bool,
    },
    /// Back to closed with an empty window, from any state.
    Clear {
        /// The breaker's name.
        name: String,
    },
}

/// `coordkit errors …`
#[derive(Debug, Subcommand)]
pub(crate) enum ErrorsCommand {
    /// Every error tracker of the namespace, from its index (one call).
    Ls,
    /// Signatures by occurrences within a window, most first.
    Top {
        /// The tracker's name.
        name: String,
        /// The window: 90s, 15m, 1h, 7d, …
        #[arg(long, default_value = "1h", value_parser = crate::time::parse_duration)]
        window: std::time::Duration,
        /// How many signatures.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1_000))]
        limit: u32,
    },
    /// The latest occurrences, newest first.
    Recent {
        /// The tracker's name.
        name: String,
        /// How many.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1_000))]
        limit: u32,
        /// Start after this log id (the `next` of a previous page).
        #[arg(long, value_name = "ID")]
        before: Option<String>,
    },
    /// Everything about one signature, with its latest sample.
    Show {
        /// The tracker's name.
        name: String,
        /// The signature.
        signature: String,
    },
    /// Mark a signature resolved (a later occurrence re-opens it as a regression).
    Resolve {
        /// The tracker's name.
        name: String,
        /// The signature.
        signature: String,
    },
}

/// The kind of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SeriesKind {
    /// Samples.
    Gauge,
    /// Increments, with a total.
    Counter,
    /// Observations in fixed buckets (`agg` only: all observations, estimated percentiles).
    Histogram,
}

/// A series on the command line.
#[derive(Debug, Args)]
pub(crate) struct SeriesArg {
    /// The series: a metric name, with labels as `name{label=value,…}`.
    #[arg(value_name = "SERIES")]
    pub(crate) series: String,
    /// Its kind.
    #[arg(long, value_enum, default_value_t = SeriesKind::Gauge)]
    pub(crate) kind: SeriesKind,
}

/// `coordkit metrics …`
#[derive(Debug, Subcommand)]
pub(crate) enum MetricsCommand {
    /// Every series of the namespace, from its index (one call).
    Ls,
    /// The latest samples, oldest first (a counter's also show its total).
    Tail {
        #[command(flatten)]
        series: SeriesArg,
        /// How many samples.
        #[arg(short = 'l', long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        limit: u64,
    },
    /// Count, sum, min, max, mean and nearest-rank percentiles over a window.
    Agg {
        #[command(flatten)]
        series: SeriesArg,
        /// The window, back from now: 90s, 15m, 1h, … (default 5m; a histogram has none: it
        /// aggregates every observation)
        #[arg(long, value_parser = crate::time::parse_duration)]
        window: Option<std::time::Duration>,
        /// The percentiles, as fractions.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "0.5,0.95,0.99",
            value_parser = crate::time::parse_fraction
        )]
        percentiles: Vec<f64>,
    },
}

/// The agent registry on the command line.
#[derive(Debug, Args)]
pub(crate) struct RegistryArg {
    /// The registry's name.
    #[arg(
        short = 'r',
        long,
        env = "COORDKIT_AGENT_REGISTRY",
        default_value = "agents"
    )]
    pub(crate) registry: String,
}

/// `coordkit agents …`
#[derive(Debug, Subcommand)]
pub(crate) enum AgentsCommand {
    /// Every live agent: status, task, capabilities, heartbeat deadline.
    Ls {
        #[command(flatten)]
        registry: RegistryArg,
    },
    /// The live agents whose status is idle.
    Idle {
        #[command(flatten)]
        registry: RegistryArg,
    },
    /// The live agents with a capability.
    Capable {
        /// The capability.
        capability: String,
        #[command(flatten)]
        registry: RegistryArg,
    },
}

/// `coordkit context …`
#[derive(Debug, Subcommand)]
pub(crate) enum ContextCommand {
    /// An entity's fields, version and stamps.
    Get {
        /// The entity's kind.
        kind: String,
        /// The entity's id.
        id: String,
    },
    /// An entity's latest changes, oldest first.
    History {
        /// The entity's kind.
        kind: String,
        /// The entity's id.
        id: String,
        /// How many changes.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
    },
    /// Every change of an entity from now on, in order, until Ctrl-C.
    Watch {
        /// The entity's kind.
        kind: String,
        /// The entity's id.
        id: String,
        /// Start after this version instead of the current one (0: from the beginning).
        #[arg(long, value_name = "VERSION")]
        from: Option<u64>,
    },
}

/// `coordkit mesh …`
#[derive(Debug, Subcommand)]
pub(crate) enum MeshCommand {
    /// The namespace's live agents (their heartbeat has not run out).
    Agents,
    /// An agent's own inbox: waiting messages and requests, pending, counters, presence.
    Inbox {
        /// The agent's name.
        agent: String,
    },
    /// A capability: its live members and its shared inbox.
    Capability {
        /// The capability.
        capability: String,
    },
}

/// A workflow's status on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum WorkflowStatus {
    /// Created, not claimed yet.
    Pending,
    /// Claimed by an owner.
    Running,
    /// Completed with a result.
    Completed,
    /// Failed with an error.
    Failed,
    /// Cancelled.
    Cancelled,
}

/// `coordkit workflow …`
#[derive(Debug, Subcommand)]
pub(crate) enum WorkflowCommand {
    /// Every workflow store of the namespace, from its index (one call).
    Stores,
    /// Counts by status, those finished within a window, and their durations.
    Stats {
        /// The store's name.
        store: String,
        /// The window: 90s, 15m, 1h, 7d, …
        #[arg(long, default_value = "1h", value_parser = crate::time::parse_duration)]
        window: std::time::Duration,
    },
    /// Workflows, oldest first: the active ones (running ones whose lease ran out are marked
    /// orphaned), or those of one status or type.
    Ls {
        /// The store's name.
        store: String,
        /// Only this status.
        #[arg(long, value_enum, conflicts_with = "kind")]
        status: Option<WorkflowStatus>,
        /// Only this type.
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=10_000).map(usize::from))]
        limit: usize,
    },
    /// Everything about one workflow: header, input, checkpoints, outcome.
    Show {
        /// The store's name.
        store: String,
        /// The workflow's id.
        id: String,
    },
    /// Cancel a pending or running workflow (its holder's next write is refused).
    Cancel {
        /// The store's name.
        store: String,
        /// The workflow's id.
        id: String,
    },
}

/// `coordkit events …`
#[derive(Debug, Subcommand)]
pub(crate) enum EventsCommand {
    /// Print the namespace's events as they come, until Ctrl-C.
    Tail {
        /// Which channels, as a glob on `<primitive>:<kind>`: `queue:*`, `cb:opened`,
        /// `errors:*`, `ctx:*`, `metrics:threshold` (default: every event of the namespace).
        #[arg(default_value = "*")]
        pattern: String,
    },
}

/// `coordkit serve-metrics …`
#[derive(Debug, Args)]
#[command(
    after_help = "Each scrape reads the named instances (one round trip per queue and registry, \
                  two per breaker and error tracker) and, with --discover or when no queue, \
                  breaker or tracker is named, every one the namespace's index lists (three \
                  calls more); a breaker is read under the rules it stored. An instance whose read fails is left out, with \
                  coordkit_exporter_instance_up 0; when no read succeeds (the server is down) \
                  the answer is 503 with one line. Metric names and labels: the README of \
                  coordkit-prometheus."
)]
pub(crate) struct ServeMetricsArgs {
    /// The address to listen on (port 0: any free port; the address is said on stderr).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    pub(crate) listen: std::net::SocketAddr,
    /// Retry queues to export: depth per state, totals, oldest ready age, pause.
    #[arg(long = "queue", value_name = "NAME", num_args = 1.., value_delimiter = ',')]
    pub(crate) queues: Vec<String>,
    /// Circuit breakers to export: state, transitions, window.
    #[arg(long = "breaker", value_name = "NAME", num_args = 1.., value_delimiter = ',')]
    pub(crate) breakers: Vec<String>,
    /// Error trackers to export: occurrences, top signatures.
    #[arg(long = "errors", value_name = "NAME", num_args = 1.., value_delimiter = ',')]
    pub(crate) trackers: Vec<String>,
    /// Agent registries to export: live agents by status.
    #[arg(long = "registry", value_name = "NAME", num_args = 1.., value_delimiter = ',')]
    pub(crate) registries: Vec<String>,
    /// Also every queue, breaker and error tracker of the namespace's index, read again at
    /// each scrape (the default when no queue, breaker or tracker is named).
    #[arg(long)]
    pub(crate) discover: bool,
    /// How many error signatures each tracker exports (the most frequent in the window).
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub(crate) top_signatures: u32,
    /// The window the top signatures are counted over: 90s, 15m, 1h, 7d, …
    #[arg(long, value_name = "WINDOW", default_value = "1h", value_parser = crate::time::parse_duration)]
    pub(crate) signature_window: std::time::Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
