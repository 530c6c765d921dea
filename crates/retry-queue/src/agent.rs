//! [`AgentBinding`]: a worker that keeps an agent record of coordkit-context's registry
//! (feature `agents`): registered when it starts, kept alive by heartbeats, busy while it runs
//! tasks and idle when it runs none, registered again when its record expired (an outage
//! longer than the registry's TTL), removed when it shuts down.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use coordkit_context::{AgentRegistry, AgentStatus, Status};
use tokio::sync::watch;

use crate::worker::Health;

/// The agent a [`Worker`](crate::Worker) keeps a record of, for
/// [`WorkerBuilder::agent`](crate::WorkerBuilder::agent).
#[derive(Debug, Clone)]
pub struct AgentBinding {
    registry: AgentRegistry,
    name: String,
    capabilities: BTreeSet<String>,
}

impl AgentBinding {
    /// The agent `name` in `registry` (its name is checked when the worker starts).
    pub fn new(registry: AgentRegistry, name: impl Into<String>) -> Self {
        Self {
            registry,
            name: name.into(),
            capabilities: BTreeSet::new(),
        }
    }

    /// A capability the agent registers with.
    pub fn capability(mut self, capability: impl Into<String>) -> Self {
        self.capabilities.insert(capability.into());
        self
    }

    fn status(&self, task: &Option<String>) -> AgentStatus {
        let mut status = AgentStatus::new(if task.is_some() {
            Status::Busy
        } else {
            Status::Idle
        });
        status.current_task = task.clone();
        status.capabilities = self.capabilities.clone();
        status
    }

    /// Registers the agent idle: the worker's start fails when this fails.
    pub(crate) async fn register(&self) -> crate::Result<()> {
        self.registry
            .set_status(&self.name, &self.status(&None))
            .await
            .map_err(agent_error)?;
        Ok(())
    }

    /// Keeps the record until `stop`: heartbeats at a third of the TTL (registering again when
    /// the record expired), and the latest of `task` (the task running, or none) as busy/idle.
    /// Then removes the record.
    pub(crate) async fn keep(
        self,
        mut task: watch::Receiver<Option<String>>,
        mut stop: watch::Receiver<bool>,
        health: Arc<Health>,
    ) {
        let beat = (self.registry.ttl() / 3).max(Duration::from_millis(10));
        let mut applied: Option<String> = None;
        while !*stop.borrow() {
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
                changed = task.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let now = task.borrow_and_update().clone();
                    if now != applied {
                        let state = self.status(&now);
                        match self.registry.set_state(&self.name, &state.status, now.as_deref()).await {
                            Ok(_) => applied = now,
                            Err(e) => health.failed("agent record", e.to_string()),
                        }
                    }
                }
                _ = tokio::time::sleep(beat) => {
                    match self.registry.heartbeat(&self.name).await {
                        Ok(true) => {}
                        // Expired (an outage outlasted the TTL): come back as it is now.
                        Ok(false) => {
                            let now = task.borrow().clone();
                            if let Err(e) = self.registry.set_status(&self.name, &self.status(&now)).await {
                                health.failed("agent record", e.to_string());
                            } else {
                                applied = now;
                            }
                        }
                        Err(e) => health.failed("agent record", e.to_string()),
                    }
                }
            }
        }
        if let Err(e) = self.registry.remove(&self.name).await {
            tracing::warn!(agent = %self.name, error = %e, "could not remove the agent record");
        }
    }
}

fn agent_error(e: coordkit_context::ContextError) -> crate::QueueError {
    match e {
        coordkit_context::ContextError::Core(core) => crate::QueueError::Core(core),
        other => crate::QueueError::Agent(other),
    }
}
