//! What coordkit reports through [`tracing`]: every target, span and field, in one place.
//!
//! coordkit installs no subscriber: an application that wants these spans and events installs
//! its own (`tracing-subscriber`, or `tracing-opentelemetry` to export them; see the
//! `otel_spans` example of the `coordkit` crate). With no subscriber, or with these targets
//! filtered out, a span costs one cached check per call.
//!
//! | target | level | name | fields |
//! |---|---|---|---|
//! | `coordkit::script` | DEBUG | span `coordkit.script` | `primitive`, `instance`, `operation`, `calls`, `outcome`, `duration_us` |
//! | `coordkit::store` | WARN | event | `primitive`, `instance`, `operation`, `outcome`, `error` |
//! | `coordkit::task` | INFO | span `coordkit.task` | `queue`, `task_id`, `attempt`, `outcome`, `duration_us` |
//! | `coordkit::worker` | WARN | event | `queue`, `error` (a worker's claim or settle failed; it retries) |
//!
//! - **`coordkit.script`**: one script call of any primitive, which is one operation (or one
//!   group-committed batch of operations, or one pipeline of `calls` invocations of the same
//!   script), a script sent without waiting for its answer included (`outcome` `sent`).
//!   `operation` is the script's name (`retry-queue-claim`, `context-write`, …), `instance`
//!   the hash tag of its first key (`<kind>:<name>`, e.g. `queue:emails`, `cb:payments`; `*`
//!   for a pipeline over several instances), `primitive` that tag's kind (`queue`, `cb`,
//!   `ctx`, `errors`, `metric`, `wf`, …), `outcome`
//!   `ok`, `sent`, `partial` (a pipeline some of whose calls failed) or the error's kind
//!   (below), and `duration_us` the time from the checkout of a connection to the decoded
//!   answer. A call dropped before it ends (its caller gave up) closes its span without an
//!   outcome.
//! - **`coordkit::store`** events: a call that failed on the store itself — the server
//!   unreachable or too slow, credentials refused, a key of the wrong type, stored data that
//!   cannot be decoded — with the error's text, which names the server or the key. A script's
//!   refusal of its input (`outcome` `script`) is the caller's business and is not logged.
//! - **`coordkit.task`**: one attempt of one queue task in a worker, around its handler:
//!   `queue` (the queue's name), `task_id`, `attempt` (from 1), `outcome` (what the handler
//!   made of the attempt: `completed`, `failed` — retried or dead-lettered by the queue's
//!   policy, which the queue's events tell —, `panicked`, `deferred`, `dead_lettered` when the
//!   handler asked for it) and `duration_us` (the handler's run). The handler's own spans and
//!   events are its children.
//!
//! The error kinds in `outcome`: `unavailable`, `timeout`, `auth`, `invalid_name`,
//! `invalid_config`, `script`, `decode`, `wrong_type`, `corrupt`, `server`.

use std::time::Instant;

use tracing::Span;
use tracing::field::Empty;

use crate::error::Error;
use crate::keyspace::{Key, redis_hash_tag};

/// The target of the script-call spans.
pub const SCRIPT_TARGET: &str = "coordkit::script";
/// The target of the events for calls that failed on the store.
pub const STORE_TARGET: &str = "coordkit::store";
/// The target of the worker-task spans.
pub const TASK_TARGET: &str = "coordkit::task";
/// The target of a worker's warnings about its own claims and settles.
pub const WORKER_TARGET: &str = "coordkit::worker";

/// The kind of an error, as the `outcome` field gives it.
pub fn outcome_of(error: &Error) -> &'static str {
    match error {
        Error::Unavailable { .. } => "unavailable",
        Error::Timeout { .. } => "timeout",
        Error::Auth { .. } => "auth",
        Error::InvalidName { .. } => "invalid_name",
        Error::InvalidConfig { .. } => "invalid_config",
        Error::Script { .. } => "script",
        Error::Decode { .. } => "decode",
        Error::WrongType { .. } => "wrong_type",
        Error::Corrupt { .. } => "corrupt",
        Error::Server { .. } => "server",
    }
}

/// The primitive of an instance's hash tag (`queue` of `queue:emails`, `cb` of `cb:llm`).
fn primitive_of(instance: &str) -> &str {
    instance.split_once(':').map_or(instance, |(kind, _)| kind)
}

/// Whether an error is the store's (logged at WARN) rather than a refusal of the input.
fn is_store_failure(error: &Error) -> bool {
    matches!(
        error,
        Error::Unavailable { .. }
            | Error::Timeout { .. }
            | Error::Auth { .. }
            | Error::WrongType { .. }
            | Error::Corrupt { .. }
            | Error::Decode { .. }
            | Error::Server { .. }
    )
}

/// The span of one script call, and when it started (`None` when nobody listens). It is open
/// from the call's start to its end (its parent is the caller's current span) without being
/// entered, so it adds no layer to the call's future.
pub(crate) struct ScriptSpan {
    span: Span,
    started: Option<Instant>,
    script: &'static str,
}

impl ScriptSpan {
    /// Opens the span of one invocation of `script` on `keys` (the first names the instance).
    pub(crate) fn new(script: &'static str, keys: &[Key], calls: usize) -> Self {
        let instance = keys.first().map_or("", |k| redis_hash_tag(k.as_str()));
        Self::named(script, instance, calls)
    }

    /// Opens the span of a pipeline of invocations of `script`, each on its own keys: the
    /// instance they share, or `*` when they touch several (a standalone server's batches mix
    /// instances).
    pub(crate) fn pipeline<'k>(
        script: &'static str,
        keys: impl IntoIterator<Item = &'k [Key]>,
        calls: usize,
    ) -> Self {
        let mut tags = keys
            .into_iter()
            .filter_map(|k| k.first().map(|k| redis_hash_tag(k.as_str())));
        let first = tags.next().unwrap_or("");
        let instance = if tags.all(|t| t == first) { first } else { "*" };
        Self::named(script, instance, calls)
    }

    fn named(script: &'static str, instance: &str, calls: usize) -> Self {
        let span = tracing::debug_span!(
            target: SCRIPT_TARGET,
            "coordkit.script",
            primitive = primitive_of(instance),
            instance,
            operation = script,
            calls,
            outcome = Empty,
            duration_us = Empty,
        );
        let started = (!span.is_disabled()).then(Instant::now);
        ScriptSpan {
            span,
            started,
            script,
        }
    }

    /// Records the call's outcome and hands `result` back; a store failure is also a WARN event
    /// naming the instance.
    pub(crate) fn finish<T>(&self, keys: &[Key], result: Result<T, Error>) -> Result<T, Error> {
        if let Some(started) = self.started {
            let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.span.record("duration_us", us);
            self.span
                .record("outcome", result.as_ref().map_or_else(outcome_of, |_| "ok"));
        }
        if let Err(error) = &result {
            self.note(keys, error);
        }
        result
    }

    /// Records the outcome of a pipeline whose round trip succeeded but `failed` of whose
    /// calls did not (`partial`; each failure of the store is also a WARN event, by
    /// [`ScriptSpan::note`]).
    pub(crate) fn partial(&self, failed: usize) {
        if failed > 0 && self.started.is_some() {
            self.span.record("outcome", "partial");
        }
    }

    /// Records the outcome of a call sent without waiting for its answer (`sent`).
    pub(crate) fn sent(&self) {
        if self.started.is_some() {
            self.span.record("outcome", "sent");
        }
    }

    /// A WARN event for `error` when it is the store's, naming the instance of `keys`.
    pub(crate) fn note(&self, keys: &[Key], error: &Error) {
        if is_store_failure(error) {
            let instance = keys.first().map_or("", |k| redis_hash_tag(k.as_str()));
            tracing::warn!(
                target: STORE_TARGET,
                primitive = primitive_of(instance),
                instance,
                operation = self.script,
                outcome = outcome_of(error),
                error = %error,
                "coordkit store call failed"
            );
        }
    }
}
