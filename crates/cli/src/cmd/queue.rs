//! `coordkit queue …`: stats, one task, the dead-letter queue, pause and resume.

use coordkit_retry_queue::{DeadLetter, Queue, Stats, TaskInfo, TaskState};
use serde_json::{Value, json};

use super::listing::{malformed_json, names_report};
use super::{Ctx, any_exists};
use crate::app::{DlqCommand, QueueCommand};
use crate::fail::{Fail, Outcome};
use crate::out::{Changed, Report, fields, or_dash, table};
use crate::time::{age, timestamp, timestamp_or_dash};

pub(crate) async fn run(ctx: &Ctx, command: &QueueCommand) -> Outcome {
    match command {
        QueueCommand::Ls { stats } => ctx.read(|| list(ctx, *stats)).await,
        QueueCommand::Stats { name } => {
            let queue = open(ctx, name).await?;
            ctx.read(|| stats(&queue)).await
        }
        QueueCommand::Inspect { name, id } => {
            let queue = open(ctx, name).await?;
            ctx.read(|| inspect(&queue, id)).await
        }
        QueueCommand::Dlq(DlqCommand::Ls {
            name,
            limit,
            offset,
        }) => {
            let queue = open(ctx, name).await?;
            ctx.read(|| dead_letters(&queue, *offset, *limit)).await
        }
        QueueCommand::Dlq(DlqCommand::Requeue {
            name,
            ids,
            all,
            reset_attempts,
        }) => {
            ctx.no_watch("queue dlq requeue")?;
            let queue = open(ctx, name).await?;
            let fresh = if *reset_attempts {
                " with fresh attempts"
            } else {
                ""
            };
            let what = if *all {
                let dead = queue.stats().await?.dead;
                format!(
                    "requeue every dead-lettered task of queue {name} when you answer ({dead} now){fresh}"
                )
            } else {
                format!(
                    "requeue {} dead-lettered task(s) of queue {name}{fresh}",
                    ids.len()
                )
            };
            ctx.change(&what, requeue(&queue, ids, *all, *reset_attempts))
                .await
        }
        QueueCommand::Dlq(DlqCommand::Purge { name, ids, all }) => {
            ctx.no_watch("queue dlq purge")?;
            let queue = open(ctx, name).await?;
            let what = if *all {
                let dead = queue.stats().await?.dead;
                format!(
                    "delete every dead-lettered task of queue {name} when you answer ({dead} now) for good"
                )
            } else {
                format!(
                    "delete {} dead-lettered task(s) of queue {name} for good",
                    ids.len()
                )
            };
            ctx.change(&what, purge(&queue, ids, *all)).await
        }
        QueueCommand::Pause { name } => {
            ctx.no_watch("queue pause")?;
            let queue = open(ctx, name).await?;
            let what = format!("pause queue {name} (no worker claims until resumed)");
            ctx.change(&what, pause(&queue, true)).await
        }
        QueueCommand::Resume { name } => {
            ctx.no_watch("queue resume")?;
            let queue = open(ctx, name).await?;
            ctx.change(&format!("resume queue {name}"), pause(&queue, false))
                .await
        }
    }
}

/// The queue `name`, which must have some state in the namespace.
async fn open(ctx: &Ctx, name: &str) -> Outcome<Queue> {
    let queue = Queue::builder(&ctx.pool, &ctx.keyspace, name).build()?;
    if !any_exists(&ctx.pool, queue.keys()).await? {
        return Err(Fail::failed(format!(
            "unknown queue {name:?} in namespace {:?}: it holds no task and no counters",
            ctx.namespace()
        )));
    }
    Ok(queue)
}

fn stats_json(name: &str, s: &Stats) -> Value {
    json!({
        "queue": name,
        "ready": s.ready,
        "delayed": s.delayed,
        "leased": s.leased,
        "dead": s.dead,
        "completed": s.completed,
        "dead_lettered_total": s.dead_lettered_total,
        "oldest_ready_age_ms": s.oldest_ready_age.map(|d| d.as_millis() as u64),
        "next_due_ms": s.next_due_ms,
        "now_ms": s.now_ms,
        "paused": s.paused,
        "max_leased": s.limits.max_leased,
        "rate": s.limits.rate.map(|r| json!({
            "starts": r.starts,
            "per_ms": r.per.as_millis() as u64,
        })),
    })
}

/// Every queue of the namespace (one call), and with `with_stats` each one's counts.
async fn list(ctx: &Ctx, with_stats: bool) -> Outcome<Report> {
    let listing = Queue::list(&ctx.pool, &ctx.keyspace).await?;
    if !with_stats {
        return Ok(names_report("queue", ctx.namespace(), &listing));
    }
    let mut rows = Vec::with_capacity(listing.names.len());
    let mut queues = Vec::with_capacity(listing.names.len());
    for name in &listing.names {
        let queue = Queue::builder(&ctx.pool, &ctx.keyspace, name).build()?;
        let s = queue.stats().await?;
        rows.push(vec![
            name.clone(),
            s.ready.to_string(),
            s.delayed.to_string(),
            s.leased.to_string(),
            s.dead.to_string(),
            or_dash(s.oldest_ready_age.map(age)),
            if s.paused { "yes" } else { "no" }.to_owned(),
        ]);
        queues.push(stats_json(name, &s));
    }
    let mut human = table(
        &[
            "queue",
            "ready",
            "delayed",
            "leased",
            "dead",
            "oldest ready",
            "paused",
        ],
        rows,
    );
    human.push_str(&format!(
        "{} queue(s) in namespace {}\n",
        listing.names.len(),
        ctx.namespace()
    ));
    Ok(Report {
        human,
        json: json!({
            "kind": "queue",
            "names": listing.names,
            "queues": queues,
            "malformed": malformed_json(&listing),
        }),
    })
}

async fn stats(queue: &Queue) -> Outcome<Report> {
    let s = queue.stats().await?;
    let rate = s
        .limits
        .rate
        .map(|r| format!("{} starts per {}", r.starts, age(r.per)));
    let human = fields([
        ("queue", queue.name().to_owned()),
        ("ready", s.ready.to_string()),
        ("delayed", s.delayed.to_string()),
        ("leased", s.leased.to_string()),
        ("dead", s.dead.to_string()),
        ("completed", s.completed.to_string()),
        ("dead-lettered total", s.dead_lettered_total.to_string()),
        ("oldest ready", or_dash(s.oldest_ready_age.map(age))),
        ("next due", timestamp_or_dash(s.next_due_ms)),
        ("paused", if s.paused { "yes" } else { "no" }.to_owned()),
        ("max leased", or_dash(s.limits.max_leased)),
        ("rate", or_dash(rate)),
    ]);
    Ok(Report {
        human,
        json: stats_json(queue.name(), &s),
    })
}

fn state_name(state: TaskState) -> &'static str {
    match state {
        TaskState::Ready => "ready",
        TaskState::Delayed => "delayed",
        TaskState::Leased => "leased",
        TaskState::Dead => "dead",
    }
}

fn payload_text(payload: &[u8]) -> String {
    String::from_utf8_lossy(payload).into_owned()
}

fn task_json(queue: &str, t: &TaskInfo) -> Value {
    json!({
        "queue": queue,
        "id": t.id,
        "state": state_name(t.state),
        "at_ms": t.at_ms,
        "attempts": t.attempts,
        "stalls": t.stalls,
        "max_attempts": t.max_attempts,
        "enqueued_ms": t.enqueued_ms,
        "component": t.component,
        "priority": t.priority,
        "group": t.group,
        "payload": payload_text(&t.payload),
        "payload_bytes": t.payload.len(),
        "errors": t.errors.iter().map(|f| json!({
            "attempt": f.attempt,
            "at_ms": f.at_ms,
            "error": f.error,
        })).collect::<Vec<_>>(),
        "reason": t.reason,
        "malformed": t.raw_record.is_some(),
    })
}

async fn inspect(queue: &Queue, id: &str) -> Outcome<Report> {
    let Some(t) = queue.inspect(id).await? else {
        return Err(Fail::failed(format!(
            "no task {id:?} in queue {:?} (acknowledged, purged, or never enqueued)",
            queue.name()
        )));
    };
    let at_label = match t.state {
        TaskState::Delayed => "due",
        TaskState::Leased => "lease deadline",
        TaskState::Dead => "dead-lettered",
        TaskState::Ready => "at",
    };
    let mut human = fields([
        ("id", t.id.clone()),
        ("state", state_name(t.state).to_owned()),
        (at_label, timestamp_or_dash(t.at_ms)),
        ("attempts", format!("{} of {}", t.attempts, t.max_attempts)),
        ("stalls", t.stalls.to_string()),
        ("enqueued", timestamp(t.enqueued_ms)),
        ("component", or_dash(t.component.as_deref())),
        ("priority", t.priority.to_string()),
        ("group", or_dash(t.group.as_deref())),
        ("reason", or_dash(t.reason.as_deref())),
        (
            "payload",
            format!("{} ({} bytes)", payload_text(&t.payload), t.payload.len()),
        ),
    ]);
    if t.raw_record.is_some() {
        human.push_str(
            "its stored record does not decode (it is dead-lettered as malformed when claimed)\n",
        );
    }
    if !t.errors.is_empty() {
        human.push_str(&table(
            &["attempt", "at", "error"],
            t.errors
                .iter()
                .map(|f| vec![f.attempt.to_string(), timestamp(f.at_ms), f.error.clone()]),
        ));
    }
    Ok(Report {
        json: task_json(queue.name(), &t),
        human,
    })
}

fn dead_letter_json(d: &DeadLetter) -> Value {
    json!({
        "id": d.id,
        "dead_at_ms": d.dead_at_ms,
        "reason": d.reason,
        "attempts": d.attempts,
        "stalls": d.stalls,
        "enqueued_ms": d.enqueued_ms,
        "component": d.component,
        "malformed": d.raw_record.is_some(),
    })
}

async fn dead_letters(queue: &Queue, offset: u64, limit: u64) -> Outcome<Report> {
    let total = queue.stats().await?.dead;
    let page = queue.dead_letters(offset as usize, limit as usize).await?;
    let mut human = table(
        &[
            "id",
            "dead-lettered",
            "reason",
            "attempts",
            "stalls",
            "component",
        ],
        page.iter().map(|d| {
            vec![
                d.id.clone(),
                timestamp(d.dead_at_ms),
                d.reason.clone(),
                d.attempts.to_string(),
                d.stalls.to_string(),
                or_dash(d.component.as_deref()),
            ]
        }),
    );
    human.push_str(&format!(
        "{} of {total} dead-lettered task(s) of queue {}\n",
        page.len(),
        queue.name()
    ));
    Ok(Report {
        human,
        json: json!({
            "queue": queue.name(),
            "total": total,
            "offset": offset,
            "dead_letters": page.iter().map(dead_letter_json).collect::<Vec<_>>(),
        }),
    })
}

/// Where each of `ids` is, for the ids that are not dead-lettered: `(id, "ready")`, or
/// `(id, "missing")` when there is no such task.
async fn not_dead(queue: &Queue, ids: &[String]) -> Outcome<Vec<(String, &'static str)>> {
    let mut out = Vec::new();
    for id in ids {
        match queue.inspect(id).await? {
            Some(t) if t.state == TaskState::Dead => {}
            Some(t) => out.push((id.clone(), state_name(t.state))),
            None => out.push((id.clone(), "missing")),
        }
    }
    Ok(out)
}

/// Fails (exit 1) after the change when some ids were not dead-lettered, naming them.
fn skipped_fail(action: &str, skipped: &[(String, &'static str)]) -> Fail {
    let list: Vec<String> = skipped
        .iter()
        .map(|(id, state)| format!("{id} ({state})"))
        .collect();
    Fail::failed(format!(
        "not {action}, not in the dead-letter queue: {}",
        list.join(", ")
    ))
}

async fn requeue(queue: &Queue, ids: &[String], all: bool, reset: bool) -> Outcome<Changed> {
    let (requeued, skipped) = if all {
        let n = queue.requeue_all(reset).await?;
        let human = format!(
            "requeued {n} dead-lettered task(s) of queue {}{}\n",
            queue.name(),
            if reset { " with fresh attempts" } else { "" }
        );
        return Ok(Changed::from(Report {
            human,
            json: json!({
                "queue": queue.name(),
                "action": "requeue",
                "reset_attempts": reset,
                "count": n,
                "ids": Value::Null,
                "skipped": [],
            }),
        }));
    } else {
        let skipped = not_dead(queue, ids).await?;
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        (queue.requeue(&refs, reset).await?, skipped)
    };
    let report = Report {
        human: format!(
            "requeued {} task(s) of queue {}{}: {}\n",
            requeued.len(),
            queue.name(),
            if reset { " with fresh attempts" } else { "" },
            if requeued.is_empty() {
                "none".to_owned()
            } else {
                requeued.join(", ")
            }
        ),
        json: json!({
            "queue": queue.name(),
            "action": "requeue",
            "reset_attempts": reset,
            "count": requeued.len(),
            "ids": requeued,
            "skipped": skipped.iter().map(|(id, state)| json!({"id": id, "state": state})).collect::<Vec<_>>(),
        }),
    };
    finish_partial(report, "requeued", &skipped)
}

async fn purge(queue: &Queue, ids: &[String], all: bool) -> Outcome<Changed> {
    if all {
        let n = queue.purge_all().await?;
        return Ok(Changed::from(Report {
            human: format!(
                "deleted {n} dead-lettered task(s) of queue {}\n",
                queue.name()
            ),
            json: json!({
                "queue": queue.name(),
                "action": "purge",
                "count": n,
                "ids": Value::Null,
                "skipped": [],
            }),
        }));
    }
    let skipped = not_dead(queue, ids).await?;
    let dead: Vec<&str> = ids
        .iter()
        .filter(|id| !skipped.iter().any(|(s, _)| s == *id))
        .map(String::as_str)
        .collect();
    let n = queue.purge(&dead).await?;
    let report = Report {
        human: format!(
            "deleted {n} dead-lettered task(s) of queue {}: {}\n",
            queue.name(),
            if dead.is_empty() {
                "none".to_owned()
            } else {
                dead.join(", ")
            }
        ),
        json: json!({
            "queue": queue.name(),
            "action": "purge",
            "count": n,
            "ids": dead,
            "skipped": skipped.iter().map(|(id, state)| json!({"id": id, "state": state})).collect::<Vec<_>>(),
        }),
    };
    finish_partial(report, "deleted", &skipped)
}

/// The change's report, failing after it (naming them) when some ids were skipped.
fn finish_partial(
    report: Report,
    action: &str,
    skipped: &[(String, &'static str)],
) -> Outcome<Changed> {
    Ok(Changed {
        report,
        partial: (!skipped.is_empty()).then(|| skipped_fail(action, skipped)),
    })
}

async fn pause(queue: &Queue, paused: bool) -> Outcome<Report> {
    let changed = if paused {
        queue.pause().await?
    } else {
        queue.resume().await?
    };
    let (verb, state) = if paused {
        ("paused", "paused")
    } else {
        ("resumed", "running")
    };
    let human = if changed {
        format!("{verb} queue {}\n", queue.name())
    } else {
        format!(
            "queue {} was {state} already: nothing changed\n",
            queue.name()
        )
    };
    Ok(Report {
        human,
        json: json!({
            "queue": queue.name(),
            "action": if paused { "pause" } else { "resume" },
            "changed": changed,
            "paused": paused,
        }),
    })
}
