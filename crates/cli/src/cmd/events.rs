//! `coordkit events tail`: the namespace's events, live, through core's subscriber.

use coordkit_core::escape_glob;
use serde_json::json;

use super::Ctx;
use crate::app::EventsCommand;
use crate::fail::{Fail, Outcome};
use crate::out::emit;
use crate::time::timestamp;

pub(crate) async fn run(ctx: &Ctx, command: &EventsCommand) -> Outcome {
    let EventsCommand::Tail { pattern } = command;
    ctx.no_watch("events tail")?;
    if pattern.is_empty() || pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Fail::usage(format!(
            "{pattern:?} is not a pattern: write a glob on <primitive>:<kind>, like queue:* or cb:opened"
        )));
    }
    // The namespace is literal; the pattern after it is the operator's glob.
    let channels = format!("{}:events:{pattern}", escape_glob(ctx.namespace()));
    let mut events = ctx
        .pool
        .subscriber()
        .pattern(channels.clone())
        .subscribe::<serde_json::Value>()
        .await?;
    eprintln!("listening on {channels} (Ctrl-C to stop)");
    let prefix = format!("{}:events:", ctx.namespace());
    let mut reconnections = events.reconnections();
    loop {
        let received = tokio::select! {
            received = events.recv() => received,
            changed = reconnections.changed() => {
                if changed.is_ok() {
                    // Pub/sub does not replay: say so, and go on.
                    eprintln!(
                        "coordkit: the connection dropped and is back: events published \
                         meanwhile were missed"
                    );
                }
                continue;
            }
            _ = tokio::signal::ctrl_c() => {
                events.shutdown().await;
                return Ok(());
            }
        };
        let Some(received) = received else {
            return Err(Fail::failed("the event subscription ended"));
        };
        let e = &received.event;
        let channel = received
            .channel
            .strip_prefix(&prefix)
            .unwrap_or(&received.channel);
        let line = if ctx.json {
            json!({
                "channel": received.channel,
                "kind": e.kind,
                "source": e.source,
                "entity": e.entity,
                "ts_ms": e.ts_ms,
                "payload": e.payload,
            })
            .to_string()
        } else {
            format!(
                "{} {channel} {} {} {}",
                timestamp(e.ts_ms),
                e.source,
                e.entity,
                e.payload
            )
        };
        emit(&format!("{line}\n"))?;
    }
}
