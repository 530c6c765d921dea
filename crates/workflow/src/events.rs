//! [`WorkflowStore::events`]: one store's changes, typed.

use coordkit_core::time::millis;
use coordkit_core::{Error, EventStream};
use serde::Deserialize;

use crate::code::SOURCE;
use crate::error::Result;
use crate::store::WorkflowStore;
use crate::types::Status;

/// What happened to a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkflowEventKind {
    /// It was created.
    Created,
    /// A pending workflow was claimed.
    Started,
    /// A workflow whose lease ran out was claimed by another owner.
    Resumed,
    /// A step was checkpointed.
    Checkpointed,
    /// It completed.
    Completed,
    /// It failed.
    Failed,
    /// It was cancelled.
    Cancelled,
}

impl WorkflowEventKind {
    /// Every kind.
    pub const ALL: [WorkflowEventKind; 7] = [
        WorkflowEventKind::Created,
        WorkflowEventKind::Started,
        WorkflowEventKind::Resumed,
        WorkflowEventKind::Checkpointed,
        WorkflowEventKind::Completed,
        WorkflowEventKind::Failed,
        WorkflowEventKind::Cancelled,
    ];

    /// The name the scripts publish it under (the last part of its channel).
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowEventKind::Created => "created",
            WorkflowEventKind::Started => "started",
            WorkflowEventKind::Resumed => "resumed",
            WorkflowEventKind::Checkpointed => "checkpointed",
            WorkflowEventKind::Completed => "completed",
            WorkflowEventKind::Failed => "failed",
            WorkflowEventKind::Cancelled => "cancelled",
        }
    }
}

/// One change of one workflow, from the script that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowEvent {
    /// What happened.
    pub kind: WorkflowEventKind,
    /// The workflow's id.
    pub id: String,
    /// Its type.
    pub workflow_type: String,
    /// Its status after the change.
    pub status: Status,
    /// Its last checkpointed step.
    pub step: u32,
    /// Its lease's fencing token.
    pub token: u64,
    /// Its owner (empty before the first claim).
    pub owner: String,
    /// When (ms, the server's clock or the store's manual clock).
    pub ts_ms: u64,
}

#[derive(Debug, Deserialize)]
struct Payload {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    status: String,
    #[serde(with = "millis")]
    step: u64,
    #[serde(with = "millis")]
    token: u64,
    owner: String,
}

/// A subscription to one store's events, from [`WorkflowStore::events`]. Pub/sub delivers to
/// connected subscribers only: after [`EventStream::reconnections`] fires, re-read with
/// [`WorkflowStore::restore`].
pub type WorkflowEvents = EventStream<WorkflowEvent>;

fn typed(name: &str, event: coordkit_core::Event<Payload>) -> Option<WorkflowEvent> {
    if !event.is_from(SOURCE, name) {
        return None;
    }
    let kind = WorkflowEventKind::ALL
        .into_iter()
        .find(|k| k.as_str() == event.kind)?;
    let p = event.payload;
    Some(WorkflowEvent {
        kind,
        id: p.id,
        workflow_type: p.kind,
        status: Status::parse(&p.status)?,
        step: u32::try_from(p.step).ok()?,
        token: p.token,
        owner: p.owner,
        ts_ms: event.ts_ms,
    })
}

impl WorkflowStore {
    /// Subscribes to this store's events on a connection of its own: every event published
    /// after this returns is delivered (while connected), those of other stores are not. An
    /// in-memory store publishes none: [`Error::InvalidConfig`] (`backend`).
    pub async fn events(&self) -> Result<WorkflowEvents> {
        let crate::store::Backend::Redis(r) = &*self.inner.backend else {
            return Err(
                Error::invalid_config("backend", "an in-memory store publishes no events").into(),
            );
        };
        let mut builder = r.pool.subscriber();
        for kind in WorkflowEventKind::ALL {
            builder = builder.channel(format!("{}{}", r.channel_prefix, kind.as_str()));
        }
        let name = self.name().to_owned();
        let subscriber = builder.subscribe::<Payload>().await?;
        Ok(EventStream::new(subscriber, move |received| {
            typed(&name, received.event).into()
        }))
    }
}
