//! `coordkit context …`: an entity's fields, history, and changes live.

use std::collections::BTreeMap;

use coordkit_context::{Change, ContextError, ContextStore, Entity, EntitySnapshot, WatchEvent};
use serde_json::{Value, json};

use super::Ctx;
use crate::app::ContextCommand;
use crate::fail::{Fail, Outcome};
use crate::out::{Report, emit, fields, or_dash, table};
use crate::time::{timestamp, timestamp_or_dash};

pub(crate) async fn run(ctx: &Ctx, command: &ContextCommand) -> Outcome {
    let store = ContextStore::builder(&ctx.pool, &ctx.keyspace).build()?;
    match command {
        ContextCommand::Get { kind, id } => {
            let entity = store.entity(kind, id)?;
            ctx.read(|| get(ctx, &entity)).await
        }
        ContextCommand::History { kind, id, limit } => {
            let entity = store.entity(kind, id)?;
            ctx.read(|| history(ctx, &entity, *limit)).await
        }
        ContextCommand::Watch { kind, id, from } => {
            ctx.no_watch("context watch")?;
            let entity = store.entity(kind, id)?;
            watch(ctx, &entity, *from).await
        }
    }
}

fn unknown(ctx: &Ctx, entity: &Entity) -> Fail {
    Fail::failed(format!(
        "no entity {:?} of kind {:?} in namespace {:?} (never written, deleted, or expired)",
        entity.id(),
        entity.kind(),
        ctx.namespace()
    ))
}

/// A field's JSON text as a JSON value (the text itself, as a string, when it is not JSON).
fn field_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn fields_json(fields: &BTreeMap<String, String>) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|(k, v)| (k.clone(), field_value(v)))
            .collect(),
    )
}

fn snapshot_json(entity: &Entity, s: &EntitySnapshot) -> Value {
    json!({
        "kind": entity.kind(),
        "id": entity.id(),
        "version": s.version,
        "updated_ms": s.updated_ms,
        "updated_by": s.updated_by,
        "expires_ms": s.expires_ms,
        "fields": fields_json(&s.fields),
    })
}

async fn get(ctx: &Ctx, entity: &Entity) -> Outcome<Report> {
    let Some(s) = entity.get_all().await? else {
        return Err(unknown(ctx, entity));
    };
    let mut human = fields([
        ("entity", format!("{}:{}", entity.kind(), entity.id())),
        ("version", s.version.to_string()),
        ("updated", timestamp(s.updated_ms)),
        ("updated by", s.updated_by.clone()),
        ("expires", timestamp_or_dash(s.expires_ms)),
    ]);
    human.push_str(&table(
        &["field", "value (JSON)"],
        s.fields.iter().map(|(k, v)| vec![k.clone(), v.clone()]),
    ));
    Ok(Report {
        json: snapshot_json(entity, &s),
        human,
    })
}

fn change_json(c: &Change) -> Value {
    json!({
        "version": c.version,
        "ts_ms": c.ts_ms,
        "actor": c.actor,
        "set": fields_json(&c.set),
        "deleted": c.deleted,
        "entity_deleted": c.entity_deleted,
    })
}

fn change_summary(c: &Change) -> String {
    if c.entity_deleted {
        return "deleted the entity".to_owned();
    }
    let mut parts: Vec<String> = c.set.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.extend(c.deleted.iter().map(|k| format!("-{k}")));
    parts.join(" ")
}

async fn history(ctx: &Ctx, entity: &Entity, limit: u32) -> Outcome<Report> {
    let current = entity.current_version().await?;
    if current == 0 {
        return Err(unknown(ctx, entity));
    }
    let mut since = current.saturating_sub(u64::from(limit));
    let changes = loop {
        match entity.changes_since(since, limit).await {
            Ok(changes) => break changes,
            // The history keeps fewer versions: start from the oldest kept.
            Err(ContextError::Compacted { oldest, .. }) if oldest > 0 && oldest - 1 > since => {
                since = oldest - 1;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut human = table(
        &["version", "at", "by", "change"],
        changes.iter().map(|c| {
            vec![
                c.version.to_string(),
                timestamp(c.ts_ms),
                c.actor.clone(),
                change_summary(c),
            ]
        }),
    );
    human.push_str(&format!(
        "{} change(s) of {}:{} (current version {current})\n",
        changes.len(),
        entity.kind(),
        entity.id()
    ));
    Ok(Report {
        human,
        json: json!({
            "kind": entity.kind(),
            "id": entity.id(),
            "current_version": current,
            "changes": changes.iter().map(change_json).collect::<Vec<_>>(),
        }),
    })
}

/// Prints every change from `from` (default: the current version) until Ctrl-C.
async fn watch(ctx: &Ctx, entity: &Entity, from: Option<u64>) -> Outcome {
    let from = match from {
        Some(v) => v,
        None => entity.current_version().await?,
    };
    let mut watcher = entity.watch(from).await?;
    eprintln!(
        "watching {}:{} after version {from} (Ctrl-C to stop)",
        entity.kind(),
        entity.id()
    );
    loop {
        let event = tokio::select! {
            event = watcher.next() => event?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let line = match (&event, ctx.json) {
            (WatchEvent::Change(c), true) => change_json(c).to_string(),
            (WatchEvent::Resync(s), true) => json!({
                "resync": s.as_ref().map(|s| snapshot_json(entity, s)),
            })
            .to_string(),
            (WatchEvent::Change(c), false) => format!(
                "v{} {} {} {}",
                c.version,
                timestamp(c.ts_ms),
                c.actor,
                change_summary(c)
            ),
            (WatchEvent::Resync(s), false) => format!(
                "resync: the history no longer reaches back; now at version {}",
                or_dash(s.as_ref().map(|s| s.version))
            ),
        };
        emit(&format!("{line}\n"))?;
    }
}
