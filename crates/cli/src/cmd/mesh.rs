//! `coordkit mesh …`: the namespace's live agents, an agent's inbox, a capability's members
//! and inbox.

use coordkit_mesh::{InboxStats, MeshAgent};
use serde_json::{Value, json};

use super::Ctx;
use crate::app::MeshCommand;
use crate::fail::{Fail, Outcome};
use crate::out::{Report, fields, or_dash, table};
use crate::time::age;

/// The name of the handle the CLI reads with: it never beats, joins or receives, so it is
/// never a live agent or a member.
const READER: &str = "coordkit-cli";

pub(crate) async fn run(ctx: &Ctx, command: &MeshCommand) -> Outcome {
    match command {
        MeshCommand::Agents => {
            let reader = agent(ctx, READER)?;
            ctx.read(|| agents(&reader)).await
        }
        MeshCommand::Inbox { agent: name } => {
            let inbox = agent(ctx, name)?;
            ctx.read(|| inbox_of(ctx, &inbox)).await
        }
        MeshCommand::Capability { capability } => {
            let reader = agent(ctx, READER)?;
            ctx.read(|| capability_of(&reader, capability)).await
        }
    }
}

fn agent(ctx: &Ctx, name: &str) -> Outcome<MeshAgent> {
    Ok(MeshAgent::builder(&ctx.pool, &ctx.keyspace, name).build()?)
}

async fn agents(reader: &MeshAgent) -> Outcome<Report> {
    let live = reader.live_agents().await?;
    let mut human = table(&["live agent"], live.iter().map(|a| vec![a.clone()]));
    human.push_str(&format!("{} live (soonest to run out first)\n", live.len()));
    Ok(Report {
        human,
        json: json!({ "agents": live }),
    })
}

fn stats_rows(s: &InboxStats) -> Vec<(&'static str, String)> {
    vec![
        ("waiting messages", s.waiting_messages.to_string()),
        ("waiting requests", s.waiting_requests.to_string()),
        ("pending (delivered, not acked)", s.pending.to_string()),
        ("replies held", s.replies.to_string()),
        ("oldest waiting", or_dash(s.oldest_age.map(age))),
        ("sent", s.sent.to_string()),
        ("delivered", s.delivered.to_string()),
        ("acked", s.acked.to_string()),
        ("expired", s.expired.to_string()),
        ("trimmed", s.trimmed.to_string()),
        ("late", s.late.to_string()),
        ("dead", s.dead.to_string()),
        ("dead letters held", s.dead_letters.to_string()),
    ]
}

fn stats_json(s: &InboxStats) -> Value {
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    json!({
        "waiting_messages": s.waiting_messages,
        "waiting_requests": s.waiting_requests,
        "pending": s.pending,
        "replies": s.replies,
        "oldest_age_ms": s.oldest_age.map(ms),
        "alive_for_ms": s.alive_for.map(ms),
        "sent": s.sent,
        "delivered": s.delivered,
        "acked": s.acked,
        "expired": s.expired,
        "trimmed": s.trimmed,
        "late": s.late,
        "dead": s.dead,
        "dead_letters": s.dead_letters,
    })
}

async fn inbox_of(ctx: &Ctx, inbox: &MeshAgent) -> Outcome<Report> {
    let s = inbox.inbox_stats().await?;
    if s.sent == 0 && s.alive_for.is_none() && s.waiting_messages == 0 && s.pending == 0 {
        return Err(Fail::failed(format!(
            "unknown agent {:?} in namespace {:?}: not alive now, and nothing in its inbox",
            inbox.name(),
            ctx.namespace()
        )));
    }
    let alive = match s.alive_for {
        Some(d) => format!("alive, {} left", age(d)),
        None => "not alive".to_owned(),
    };
    let mut rows = vec![("agent", inbox.name().to_owned()), ("presence", alive)];
    rows.extend(stats_rows(&s));
    let mut json = stats_json(&s);
    json["agent"] = inbox.name().into();
    json["alive"] = s.alive_for.is_some().into();
    Ok(Report {
        human: fields(rows),
        json,
    })
}

async fn capability_of(reader: &MeshAgent, capability: &str) -> Outcome<Report> {
    let stats = reader.capability_stats(capability).await?;
    let members = reader.members(capability).await?;
    let s = &stats.inbox;
    if members.is_empty() && s.sent == 0 && s.waiting_messages == 0 && s.pending == 0 {
        return Err(Fail::failed(format!(
            "unknown capability {capability:?}: no live member, and nothing in its inbox"
        )));
    }
    let mut rows = vec![
        ("capability", capability.to_owned()),
        ("live members", members.join(", ")),
    ];
    rows.extend(stats_rows(&stats.inbox));
    let mut json = stats_json(&stats.inbox);
    if let Some(fields) = json.as_object_mut() {
        // A capability's inbox has members, not a presence of its own.
        fields.remove("alive_for_ms");
    }
    json["capability"] = capability.into();
    json["members"] = members.into();
    Ok(Report {
        human: fields(rows),
        json,
    })
}
