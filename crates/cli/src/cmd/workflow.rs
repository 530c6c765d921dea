//! `coordkit workflow …`: a store's counts, its workflows (stuck ones marked), one workflow,
//! cancel.

use std::time::Duration;

use coordkit_workflow::{
    Listing, Outcome as Written, Status, Workflow, WorkflowInfo, WorkflowStore,
};
use serde_json::{Value, json};

use super::listing::names_report;
use super::{Ctx, any_exists};
use crate::app::{WorkflowCommand, WorkflowStatus};
use crate::fail::{Fail, Outcome};
use crate::out::{Report, fields, or_dash, table};
use crate::time::{age, timestamp, timestamp_or_dash};

/// How much of an input, checkpoint or outcome `show` prints.
const PREVIEW: usize = 120;

pub(crate) async fn run(ctx: &Ctx, command: &WorkflowCommand) -> Outcome {
    match command {
        WorkflowCommand::Stores => {
            ctx.read(|| async {
                let listing = WorkflowStore::stores(&ctx.pool, &ctx.keyspace).await?;
                Ok(names_report("workflow store", ctx.namespace(), &listing))
            })
            .await
        }
        WorkflowCommand::Stats { store, window } => {
            let store = open(ctx, store).await?;
            ctx.read(|| stats(&store, *window)).await
        }
        WorkflowCommand::Ls {
            store,
            status,
            kind,
            limit,
        } => {
            let store = open(ctx, store).await?;
            let listing = match (status, kind) {
                (Some(s), _) => Listing::Status(status_of(*s)),
                (None, Some(k)) => Listing::Type(k.clone()),
                (None, None) => Listing::Active,
            };
            ctx.read(|| list(ctx, &store, &listing, *limit)).await
        }
        WorkflowCommand::Show { store, id } => {
            let store = open(ctx, store).await?;
            ctx.read(|| show(ctx, &store, id)).await
        }
        WorkflowCommand::Cancel { store, id } => {
            ctx.no_watch("workflow cancel")?;
            let store = open(ctx, store).await?;
            let what = format!(
                "cancel workflow {id} of store {} (its holder's next write is refused)",
                store.name()
            );
            ctx.change(&what, cancel(&store, id)).await
        }
    }
}

/// The store `name`, which must hold something.
async fn open(ctx: &Ctx, name: &str) -> Outcome<WorkflowStore> {
    let store = WorkflowStore::builder(&ctx.pool, &ctx.keyspace, name).build()?;
    if !any_exists(&ctx.pool, store.keys()).await? {
        return Err(Fail::failed(format!(
            "unknown workflow store {name:?} in namespace {:?}: nothing stored",
            ctx.namespace()
        )));
    }
    Ok(store)
}

fn status_of(status: WorkflowStatus) -> Status {
    match status {
        WorkflowStatus::Pending => Status::Pending,
        WorkflowStatus::Running => Status::Running,
        WorkflowStatus::Completed => Status::Completed,
        WorkflowStatus::Failed => Status::Failed,
        WorkflowStatus::Cancelled => Status::Cancelled,
    }
}

async fn stats(store: &WorkflowStore, window: Duration) -> Outcome<Report> {
    let s = store.stats(window).await?;
    let count =
        |m: &std::collections::BTreeMap<Status, u64>, st: Status| m.get(&st).copied().unwrap_or(0);
    let rows = Status::ALL.iter().map(|&st| {
        vec![
            st.as_str().to_owned(),
            count(&s.by_status, st).to_string(),
            if st.is_finished() {
                count(&s.finished_in_window, st).to_string()
            } else {
                "-".to_owned()
            },
        ]
    });
    let mut human = format!("workflow store {}\n", store.name());
    human.push_str(&table(&["status", "now", "finished in window"], rows));
    human.push_str(&format!(
        "duration of those finished in the last {}: p50 {}, p95 {}\n",
        age(window),
        or_dash(s.duration_p50_ms.map(|ms| age(Duration::from_millis(ms)))),
        or_dash(s.duration_p95_ms.map(|ms| age(Duration::from_millis(ms)))),
    ));
    let by_status: serde_json::Map<String, Value> = Status::ALL
        .iter()
        .map(|&st| (st.as_str().to_owned(), count(&s.by_status, st).into()))
        .collect();
    let finished: serde_json::Map<String, Value> = Status::ALL
        .iter()
        .filter(|st| st.is_finished())
        .map(|&st| {
            (
                st.as_str().to_owned(),
                count(&s.finished_in_window, st).into(),
            )
        })
        .collect();
    Ok(Report {
        human,
        json: json!({
            "store": store.name(),
            "by_status": by_status,
            "window_ms": u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
            "finished_in_window": finished,
            "duration_p50_ms": s.duration_p50_ms,
            "duration_p95_ms": s.duration_p95_ms,
        }),
    })
}

/// Whether a running workflow's lease ran out: its owner is gone, `resume_orphans` takes it.
fn orphaned(info: &WorkflowInfo, now_ms: u64) -> bool {
    info.status == Status::Running && info.lease_until_ms.is_some_and(|until| until <= now_ms)
}

fn info_json(info: &WorkflowInfo, now_ms: u64) -> Value {
    json!({
        "id": info.id,
        "type": info.kind,
        "status": info.status.as_str(),
        "orphaned": orphaned(info, now_ms),
        "step": info.step,
        "checkpoints": info.checkpoints,
        "token": info.token,
        "owner": info.owner,
        "lease_until_ms": info.lease_until_ms,
        "claims": info.claims,
        "created_ms": info.created_ms,
        "started_ms": info.started_ms,
        "updated_ms": info.updated_ms,
        "finished_ms": info.finished_ms,
        "expires_ms": info.expires_ms,
    })
}

/// A running workflow's lease, as an operator reads it.
fn lease_text(info: &WorkflowInfo, now_ms: u64) -> String {
    match info.lease_until_ms {
        Some(until) if info.status == Status::Running && until <= now_ms => format!(
            "expired {} ago (orphaned)",
            age(Duration::from_millis(now_ms - until))
        ),
        Some(until) if info.status == Status::Running => {
            format!("{} left", age(Duration::from_millis(until - now_ms)))
        }
        _ => "-".to_owned(),
    }
}

async fn list(
    ctx: &Ctx,
    store: &WorkflowStore,
    listing: &Listing,
    limit: usize,
) -> Outcome<Report> {
    let page = store.list(listing, None, limit).await?;
    let now = ctx.pool.server_time_ms().await?;
    let rows = page.items.iter().map(|w| {
        vec![
            w.id.clone(),
            w.kind.clone(),
            w.status.as_str().to_owned(),
            w.step.to_string(),
            or_dash(w.owner.clone()),
            lease_text(w, now),
            timestamp(w.updated_ms),
        ]
    });
    let mut human = table(
        &["id", "type", "status", "step", "owner", "lease", "updated"],
        rows,
    );
    if page.next.is_some() {
        human.push_str(&format!("(first {limit}; more with a higher --limit)\n"));
    }
    if !page.skipped.is_empty() {
        human.push_str(&format!(
            "skipped, their records do not decode: {}\n",
            page.skipped.join(", ")
        ));
    }
    Ok(Report {
        human,
        json: json!({
            "store": store.name(),
            "workflows": page.items.iter().map(|w| info_json(w, now)).collect::<Vec<_>>(),
            "more": page.next.is_some(),
            "skipped": page.skipped,
        }),
    })
}

/// Up to [`PREVIEW`] bytes, as text when they are UTF-8.
fn preview(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(PREVIEW)];
    let text = String::from_utf8_lossy(cut).replace(['\n', '\r'], " ");
    if bytes.len() > PREVIEW {
        format!("{text}… ({} bytes)", bytes.len())
    } else {
        text
    }
}

async fn show(ctx: &Ctx, store: &WorkflowStore, id: &str) -> Outcome<Report> {
    let Some(Workflow {
        info,
        input,
        checkpoints,
        outcome,
    }) = store.get(id).await?
    else {
        return Err(Fail::failed(format!(
            "unknown workflow {id:?} in store {:?} (never created, or expired)",
            store.name()
        )));
    };
    let now = ctx.pool.server_time_ms().await?;
    let mut human = fields([
        ("id", info.id.clone()),
        ("type", info.kind.clone()),
        ("status", info.status.as_str().to_owned()),
        ("step", info.step.to_string()),
        ("owner", or_dash(info.owner.clone())),
        ("lease", lease_text(&info, now)),
        ("claims", info.claims.to_string()),
        ("created", timestamp(info.created_ms)),
        ("started", timestamp_or_dash(info.started_ms)),
        ("finished", timestamp_or_dash(info.finished_ms)),
        ("expires", timestamp(info.expires_ms)),
        ("input", preview(&input)),
        ("outcome", or_dash(outcome.as_deref().map(preview))),
    ]);
    if !checkpoints.is_empty() {
        human.push_str(&table(
            &["step", "output"],
            checkpoints
                .iter()
                .map(|c| vec![c.step.to_string(), preview(&c.output)]),
        ));
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok(Report {
        human,
        json: json!({
            "workflow": info_json(&info, now),
            "input": text(&input),
            "checkpoints": checkpoints
                .iter()
                .map(|c| json!({"step": c.step, "output": text(&c.output)}))
                .collect::<Vec<_>>(),
            "outcome": outcome.as_deref().map(text),
        }),
    })
}

async fn cancel(store: &WorkflowStore, id: &str) -> Outcome<Report> {
    let (line, result) = match store.cancel(id).await? {
        Written::Done => (
            format!("workflow {id}: cancelled\n"),
            "cancelled".to_owned(),
        ),
        Written::AlreadyFinished(status) => (
            format!(
                "workflow {id}: already {}, nothing changed\n",
                status.as_str()
            ),
            format!("already_{}", status.as_str()),
        ),
        Written::NotFound => {
            return Err(Fail::failed(format!(
                "unknown workflow {id:?} in store {:?}: nothing changed",
                store.name()
            )));
        }
        // (A cancel answers none of a lease's outcomes.)
        other => (
            format!("workflow {id}: unexpected answer {other:?}, nothing assumed\n"),
            "unexpected".to_owned(),
        ),
    };
    Ok(Report {
        human: line,
        json: json!({ "store": store.name(), "id": id, "result": result }),
    })
}
