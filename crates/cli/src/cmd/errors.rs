//! `coordkit errors …`: top signatures, recent errors, one signature, resolve.

use std::time::Duration;

use coordkit_errors::{ErrorRecord, ErrorTracker, Resolution};
use serde_json::{Value, json};

use super::listing::names_report;
use super::{Ctx, any_exists};
use crate::app::ErrorsCommand;
use crate::fail::{Fail, Outcome};
use crate::out::{Report, fields, or_dash, table};
use crate::time::{age, timestamp, timestamp_or_dash};

pub(crate) async fn run(ctx: &Ctx, command: &ErrorsCommand) -> Outcome {
    match command {
        ErrorsCommand::Ls => {
            ctx.read(|| async {
                let listing = ErrorTracker::list(&ctx.pool, &ctx.keyspace).await?;
                Ok(names_report("error tracker", ctx.namespace(), &listing))
            })
            .await
        }
        ErrorsCommand::Top {
            name,
            window,
            limit,
        } => {
            let tracker = open(ctx, name).await?;
            ctx.read(|| top(&tracker, *window, *limit)).await
        }
        ErrorsCommand::Recent {
            name,
            limit,
            before,
        } => {
            let tracker = open(ctx, name).await?;
            ctx.read(|| recent(&tracker, before.as_deref(), *limit))
                .await
        }
        ErrorsCommand::Show { name, signature } => {
            let tracker = open(ctx, name).await?;
            ctx.read(|| show(&tracker, signature)).await
        }
        ErrorsCommand::Resolve { name, signature } => {
            ctx.no_watch("errors resolve")?;
            let tracker = open(ctx, name).await?;
            // An unknown signature is said before asking.
            if tracker.signature(signature).await?.is_none() {
                return Err(unknown_signature(&tracker, signature));
            }
            let what = format!("resolve signature {signature} of error tracker {name}");
            ctx.change(&what, resolve(&tracker, signature)).await
        }
    }
}

async fn open(ctx: &Ctx, name: &str) -> Outcome<ErrorTracker> {
    let tracker = ErrorTracker::builder(&ctx.pool, &ctx.keyspace, name).build()?;
    if !any_exists(&ctx.pool, &tracker.keys()).await? {
        return Err(Fail::failed(format!(
            "unknown error tracker {name:?} in namespace {:?}: it has recorded nothing",
            ctx.namespace()
        )));
    }
    Ok(tracker)
}

fn unknown_signature(tracker: &ErrorTracker, signature: &str) -> Fail {
    Fail::failed(format!(
        "unknown signature {signature:?} in error tracker {:?} (never seen, or evicted)",
        tracker.name()
    ))
}

/// The first line of `text`, cut to `max` characters, for a table cell.
fn short(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() <= max {
        line.to_owned()
    } else {
        let mut cut: String = line.chars().take(max).collect();
        cut.push('…');
        cut
    }
}

async fn top(tracker: &ErrorTracker, window: Duration, limit: u32) -> Outcome<Report> {
    let top = tracker.top(window, limit).await?;
    let mut human = table(
        &[
            "signature",
            "in window",
            "total",
            "last seen",
            "kind",
            "component",
            "template",
        ],
        top.signatures.iter().map(|s| {
            vec![
                s.signature.clone(),
                s.in_window.to_string(),
                s.total.to_string(),
                timestamp_or_dash(Some(s.last_seen_ms)),
                s.meta.kind.clone(),
                s.meta.component.clone(),
                short(&s.meta.template, 60),
            ]
        }),
    );
    human.push_str(&format!(
        "{} signature(s) of error tracker {} in the last {}{}\n",
        top.signatures.len(),
        tracker.name(),
        age(window),
        if top.complete {
            ""
        } else {
            " (the log's cap cut into the window: counts are lower bounds)"
        }
    ));
    Ok(Report {
        human,
        json: json!({
            "tracker": tracker.name(),
            "window_ms": window.as_millis() as u64,
            "complete": top.complete,
            "undecodable": top.undecodable,
            "signatures": top.signatures.iter().map(|s| json!({
                "signature": s.signature,
                "in_window": s.in_window,
                "total": s.total,
                "last_seen_ms": s.last_seen_ms,
                "kind": s.meta.kind,
                "component": s.meta.component,
                "template": s.meta.template,
            })).collect::<Vec<_>>(),
        }),
    })
}

async fn recent(tracker: &ErrorTracker, before: Option<&str>, limit: u32) -> Outcome<Report> {
    let page = tracker.recent(before, limit).await?;
    let mut human = table(
        &[
            "id",
            "at",
            "severity",
            "kind",
            "component",
            "task",
            "message",
        ],
        page.entries.iter().map(|e| {
            let o = &e.occurrence;
            vec![
                e.id.clone(),
                timestamp(e.ts_ms),
                o.severity.as_str().to_owned(),
                o.kind.clone(),
                o.component.clone(),
                or_dash(o.task_id.as_deref()),
                short(&o.message, 80),
            ]
        }),
    );
    if let Some(next) = &page.next {
        human.push_str(&format!("older entries: --before {next}\n"));
    }
    Ok(Report {
        human,
        json: json!({
            "tracker": tracker.name(),
            "entries": page.entries.iter().map(|e| {
                let o = &e.occurrence;
                json!({
                    "id": e.id,
                    "signature": e.signature,
                    "ts_ms": e.ts_ms,
                    "severity": o.severity.as_str(),
                    "kind": o.kind,
                    "component": o.component,
                    "task_id": o.task_id,
                    "code": o.code,
                    "recoverable": o.recoverable,
                    "message": o.message,
                })
            }).collect::<Vec<_>>(),
            "next": page.next,
            "undecodable": page.undecodable,
        }),
    })
}

fn record_json(r: &ErrorRecord) -> Value {
    let o = &r.occurrence;
    json!({
        "ts_ms": r.ts_ms,
        "severity": o.severity.as_str(),
        "kind": o.kind,
        "component": o.component,
        "task_id": o.task_id,
        "code": o.code,
        "recoverable": o.recoverable,
        "message": o.message,
        "truncated": r.truncated,
        "occurred_ms": r.occurred_ms,
        "stack": r.stack,
        "attributes": r.attributes,
    })
}

async fn show(tracker: &ErrorTracker, signature: &str) -> Outcome<Report> {
    let Some(d) = tracker.signature(signature).await? else {
        return Err(unknown_signature(tracker, signature));
    };
    let mut rows = vec![
        ("signature", d.signature.clone()),
        ("count", d.count.to_string()),
        ("first seen", timestamp(d.first_seen_ms)),
        ("last seen", timestamp(d.last_seen_ms)),
        ("resolved", timestamp_or_dash(d.resolved_at_ms)),
        ("regressions", d.regressions.to_string()),
        ("kind", d.meta.kind.clone()),
        ("component", d.meta.component.clone()),
        ("components", d.components.join(", ")),
        ("template", d.meta.template.clone()),
    ];
    if let Some(sample) = &d.last_sample {
        let o = &sample.occurrence;
        rows.push(("last message", o.message.clone()));
        rows.push(("last severity", o.severity.as_str().to_owned()));
        rows.push(("last task", or_dash(o.task_id.as_deref())));
        if !sample.stack.is_empty() {
            rows.push(("last stack", sample.stack.join("\n")));
        }
    }
    Ok(Report {
        human: fields(rows),
        json: json!({
            "tracker": tracker.name(),
            "signature": d.signature,
            "count": d.count,
            "first_seen_ms": d.first_seen_ms,
            "last_seen_ms": d.last_seen_ms,
            "resolved_at_ms": d.resolved_at_ms,
            "regressions": d.regressions,
            "components": d.components,
            "kind": d.meta.kind,
            "component": d.meta.component,
            "template": d.meta.template,
            "normalizer": d.meta.normalizer,
            "last_sample": d.last_sample.as_ref().map(record_json),
        }),
    })
}

async fn resolve(tracker: &ErrorTracker, signature: &str) -> Outcome<Report> {
    let (already, at_ms) = match tracker.resolve(signature).await? {
        Resolution::Resolved { at_ms } => (false, at_ms),
        Resolution::AlreadyResolved { at_ms } => (true, at_ms),
        Resolution::Unknown => return Err(unknown_signature(tracker, signature)),
    };
    let human = if already {
        format!(
            "signature {signature} of error tracker {} was resolved already, at {}: nothing changed\n",
            tracker.name(),
            timestamp(at_ms)
        )
    } else {
        format!(
            "resolved signature {signature} of error tracker {} at {}\n",
            tracker.name(),
            timestamp(at_ms)
        )
    };
    Ok(Report {
        human,
        json: json!({
            "tracker": tracker.name(),
            "signature": signature,
            "action": "resolve",
            "changed": !already,
            "resolved_at_ms": at_ms,
        }),
    })
}
