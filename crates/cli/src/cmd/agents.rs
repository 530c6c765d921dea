//! `coordkit agents …`: the agent registry of coordkit-context.

use coordkit_context::{AgentRecord, AgentRegistry, ContextStore, Status};
use serde_json::json;

use super::Ctx;
use crate::app::{AgentsCommand, RegistryArg};
use crate::fail::Outcome;
use crate::out::{Report, or_dash, table};
use crate::time::timestamp;

pub(crate) async fn run(ctx: &Ctx, command: &AgentsCommand) -> Outcome {
    match command {
        AgentsCommand::Ls { registry } => {
            let registry = open(ctx, registry)?;
            ctx.read(|| list(&registry)).await
        }
        AgentsCommand::Idle { registry } => {
            let registry = open(ctx, registry)?;
            ctx.read(|| names(&registry, None)).await
        }
        AgentsCommand::Capable {
            capability,
            registry,
        } => {
            let registry = open(ctx, registry)?;
            ctx.read(|| names(&registry, Some(capability))).await
        }
    }
}

fn open(ctx: &Ctx, registry: &RegistryArg) -> Outcome<AgentRegistry> {
    let store = ContextStore::builder(&ctx.pool, &ctx.keyspace).build()?;
    Ok(store.agents(&registry.registry)?)
}

fn record_json(r: &AgentRecord) -> serde_json::Value {
    json!({
        "agent": r.agent,
        "status": r.status.status.as_str(),
        "task": r.status.current_task,
        "capabilities": r.status.capabilities,
        "updated_ms": r.updated_ms,
        "expires_ms": r.expires_ms,
    })
}

async fn list(registry: &AgentRegistry) -> Outcome<Report> {
    let agents = registry.all().await?;
    let mut human = table(
        &[
            "agent",
            "status",
            "task",
            "capabilities",
            "updated",
            "expires",
        ],
        agents.iter().map(|r| {
            vec![
                r.agent.clone(),
                r.status.status.as_str().to_owned(),
                or_dash(r.status.current_task.as_deref()),
                r.status
                    .capabilities
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                timestamp(r.updated_ms),
                timestamp(r.expires_ms),
            ]
        }),
    );
    human.push_str(&format!(
        "{} live agent(s) in registry {}\n",
        agents.len(),
        registry.name()
    ));
    Ok(Report {
        human,
        json: json!({
            "registry": registry.name(),
            "agents": agents.iter().map(record_json).collect::<Vec<_>>(),
        }),
    })
}

/// The idle agents (`capability` `None`), or those with `capability`.
async fn names(registry: &AgentRegistry, capability: Option<&str>) -> Outcome<Report> {
    let (agents, what) = match capability {
        None => (
            registry.with_status(&Status::Idle).await?,
            "idle".to_owned(),
        ),
        Some(cap) => (
            registry.with_capability(cap).await?,
            format!("with capability {cap}"),
        ),
    };
    let mut human = table(&["agent"], agents.iter().map(|a| vec![a.clone()]));
    human.push_str(&format!(
        "{} live agent(s) {what} in registry {}\n",
        agents.len(),
        registry.name()
    ));
    let mut json = json!({
        "registry": registry.name(),
        "agents": agents,
    });
    if let (Some(cap), serde_json::Value::Object(map)) = (capability, &mut json) {
        map.insert("capability".to_owned(), json!(cap));
    } else if let serde_json::Value::Object(map) = &mut json {
        map.insert("status".to_owned(), json!("idle"));
    }
    Ok(Report { human, json })
}
