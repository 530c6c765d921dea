//! [`AgentRegistry`]: agent status with indexes and heartbeats, the seed's pattern done right.
//!
//! The seed scanned every `agent:status:*` key and read each one to find idle agents. Here an
//! agent's status, current task and capabilities are written atomically together with two
//! indexes (by status, by capability), so "which agents are idle" and "who can do X" are one
//! call. Every agent has a heartbeat deadline on the server's clock; an agent that stops
//! heartbeating drops out of every answer, and its entries are removed by the next calls.

use std::collections::BTreeSet;

use coordkit_core::time::duration_ms;
use coordkit_core::{Invocation, Key, KeyKind, Script, validate_name};
use redis::Value;
use serde::{Deserialize, Serialize};

use crate::code;
use crate::error::{ContextError, Result};
use crate::store::ContextStore;
use crate::wire::{MAX_STORED, corrupt, list_or_empty};

/// The agent scripts share `decode_record`, which comes first in each.
static SET: Script = Script::new(
    "agents-set",
    concat!(
        include_str!("../lua/agent_record.lua"),
        include_str!("../lua/agent_set.lua")
    ),
);
static HEARTBEAT: Script = Script::new(
    "agents-heartbeat",
    concat!(
        include_str!("../lua/agent_record.lua"),
        include_str!("../lua/agent_heartbeat.lua")
    ),
);
static QUERY: Script = Script::new(
    "agents-query",
    concat!(
        include_str!("../lua/agent_record.lua"),
        include_str!("../lua/agent_query.lua")
    ),
);

/// How many expired agents one call removes at most.
const PURGE_LIMIT: u32 = 100;

/// An agent's status.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Waiting for work.
    Idle,
    /// Working.
    Busy,
    /// Broken.
    Failed,
    /// Anything else (a valid name).
    Custom(String),
}

impl Status {
    /// The stored name: `idle`, `busy`, `failed`, or the custom one.
    pub fn as_str(&self) -> &str {
        match self {
            Status::Idle => "idle",
            Status::Busy => "busy",
            Status::Failed => "failed",
            Status::Custom(s) => s,
        }
    }

    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "idle" => Status::Idle,
            "busy" => Status::Busy,
            "failed" => Status::Failed,
            other => Status::Custom(other.to_owned()),
        }
    }
}

/// What an agent reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentStatus {
    /// Its status.
    pub status: Status,
    /// The task it works on, if any.
    pub current_task: Option<String>,
    /// What it can do.
    pub capabilities: BTreeSet<String>,
}

impl AgentStatus {
    /// A status with no task and no capabilities.
    pub fn new(status: Status) -> Self {
        Self {
            status,
            current_task: None,
            capabilities: BTreeSet::new(),
        }
    }

    /// With a current task.
    pub fn task(mut self, task: impl Into<String>) -> Self {
        self.current_task = Some(task.into());
        self
    }

    /// With a capability.
    pub fn capability(mut self, capability: impl Into<String>) -> Self {
        self.capabilities.insert(capability.into());
        self
    }
}

/// An agent as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    /// The agent's name.
    pub agent: String,
    /// What it last reported.
    pub status: AgentStatus,
    /// When it last set its status (server time, ms).
    pub updated_ms: u64,
    /// When it drops out unless it heartbeats (server time, ms).
    pub expires_ms: u64,
}

#[derive(Deserialize, Serialize)]
struct StoredRecord {
    status: String,
    task: String,
    #[serde(deserialize_with = "list_or_empty")]
    caps: Vec<String>,
    updated_ms: u64,
    expires_ms: u64,
}

/// Agents' statuses in one registry (all its keys share one hash tag). Cheap to clone.
#[derive(Debug, Clone)]
pub struct AgentRegistry {
    store: ContextStore,
    name: String,
    alive: Key,
    records: Key,
    by_status: Key,
    by_cap: Key,
    channel: String,
}

impl AgentRegistry {
    pub(crate) fn new(store: ContextStore, name: &str) -> Result<Self> {
        let keys = store.keyspace.instance("agents", name)?;
        let channel = store
            .keyspace
            .channel(crate::store::INSTANCE_KIND, "agents")?;
        Ok(Self {
            // Typed: a key of another type is named in errors even when Redis does not say which.
            alive: keys.typed_key("alive", KeyKind::ZSet),
            records: keys.typed_key("records", KeyKind::Hash),
            by_status: keys.typed_key("by_status", KeyKind::ZSet),
            by_cap: keys.typed_key("by_cap", KeyKind::ZSet),
            channel,
            name: name.to_owned(),
            store,
        })
    }

    /// The registry's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The channel of the `agent_status` and `agent_expired` events of every registry of the
    /// namespace (each payload names its registry); [`events`](Self::events) subscribes to
    /// this registry's, typed.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The store it belongs to.
    pub(crate) fn store(&self) -> &ContextStore {
        &self.store
    }

    /// Sets `agent`'s status, task and capabilities (and heartbeat) atomically with the
    /// indexes; returns its previous status if it was alive. Emits `agent_status` when the
    /// status changed.
    pub async fn set_status(&self, agent: &str, status: &AgentStatus) -> Result<Option<Status>> {
        for capability in &status.capabilities {
            validate_name("capability", capability)?;
        }
        let caps: Vec<&String> = status.capabilities.iter().collect();
        let caps = serde_json::to_string(&caps)
            .map_err(|e| coordkit_core::Error::decode("capabilities", e))?;
        self.set(agent, &status.status, status.current_task.as_deref(), &caps)
            .await
    }

    /// Sets `agent`'s status and current task (and heartbeat), keeping the capabilities it
    /// registered with [`set_status`](Self::set_status) (none for an agent the registry does
    /// not know): the busy/idle flip of a working agent, without restating what it can do.
    /// Returns its previous status if it was alive.
    pub async fn set_state(
        &self,
        agent: &str,
        status: &Status,
        task: Option<&str>,
    ) -> Result<Option<Status>> {
        self.set(agent, status, task, "").await
    }

    /// One `agent_set` script: `caps` is the JSON list, or "" to keep the stored one.
    async fn set(
        &self,
        agent: &str,
        status: &Status,
        task: Option<&str>,
        caps: &str,
    ) -> Result<Option<Status>> {
        validate_name("agent", agent)?;
        validate_name("status", status.as_str())?;
        if let Some(task) = task {
            validate_name("task", task)?;
        }
        // The previous status is whatever the stored record held: bytes, read lossily, so a
        // write that was applied is never answered as a decoding error.
        let previous: Option<Vec<u8>> = self
            .call(&SET)
            .arg(agent)
            .arg(status.as_str())
            .arg(task.unwrap_or(""))
            .arg(caps)
            .arg(duration_ms(self.store.settings.agent_ttl))
            .arg(&self.channel)
            .arg(&self.name)
            .invoke(&self.store.pool)
            .await?;
        Ok(previous.map(|s| Status::parse(&String::from_utf8_lossy(&s))))
    }

    /// How long an agent stays alive without a heartbeat (the store's `agent_ttl`).
    pub fn ttl(&self) -> std::time::Duration {
        self.store.settings.agent_ttl
    }

    /// An invocation of `script` with the registry's four keys and the clock argument.
    fn call(&self, script: &'static Script) -> Invocation<'static> {
        let mut call = script.prepare();
        call.key(&self.alive)
            .key(&self.records)
            .key(&self.by_status)
            .key(&self.by_cap)
            .arg(self.store.settings.clock.arg());
        call
    }

    /// Pushes `agent`'s deadline forward by the registry's TTL. `false` when the agent is
    /// unknown or already expired: it must [`set_status`](Self::set_status) again.
    pub async fn heartbeat(&self, agent: &str) -> Result<bool> {
        validate_name("agent", agent)?;
        let answer: i64 = HEARTBEAT
            .prepare()
            .key(&self.alive)
            .key(&self.records)
            .arg(self.store.settings.clock.arg())
            .arg(agent)
            .arg(duration_ms(self.store.settings.agent_ttl))
            .invoke(&self.store.pool)
            .await?;
        match answer {
            code::HEARTBEAT_ALIVE => Ok(true),
            code::HEARTBEAT_GONE => Ok(false),
            _ => Err(self.bad("a heartbeat's answer")),
        }
    }

    async fn query(&self, question: &str, arg: &str) -> Result<Value> {
        Ok(self
            .call(&QUERY)
            .arg(question)
            .arg(arg)
            .arg(PURGE_LIMIT)
            .arg(&self.channel)
            .arg(&self.name)
            .invoke(&self.store.pool)
            .await?)
    }

    /// The live agents with `status`, sorted: one call.
    pub async fn with_status(&self, status: &Status) -> Result<Vec<String>> {
        validate_name("status", status.as_str())?;
        self.names(self.query("status", status.as_str()).await?)
    }

    /// The live agents with `capability`, sorted: one call.
    pub async fn with_capability(&self, capability: &str) -> Result<Vec<String>> {
        validate_name("capability", capability)?;
        self.names(self.query("cap", capability).await?)
    }

    /// One live agent's record ([`coordkit_core::Error::Corrupt`] naming the records key when
    /// it does not decode).
    pub async fn get(&self, agent: &str) -> Result<Option<AgentRecord>> {
        validate_name("agent", agent)?;
        match self.query("get", agent).await? {
            Value::Nil => Ok(None),
            value => Ok(Some(self.record(agent, &value)?)),
        }
    }

    /// Every live agent's record, sorted by name. A record that does not decode (or a live
    /// agent without one) fails the call with [`coordkit_core::Error::Corrupt`] naming the
    /// records key and the agent.
    pub async fn all(&self) -> Result<Vec<AgentRecord>> {
        match self.query("all", "").await? {
            Value::Array(items) => items
                .chunks(2)
                .map(|pair| match pair {
                    [Value::BulkString(agent), Value::Nil] => Err(corrupt(
                        &self.records,
                        format!(
                            "agent {:?}: alive, but it has no record",
                            String::from_utf8_lossy(agent)
                        ),
                    )),
                    [Value::BulkString(agent), record] => {
                        self.record(&String::from_utf8_lossy(agent), record)
                    }
                    _ => Err(self.bad("an agent, record pair")),
                })
                .collect(),
            _ => Err(self.bad("a list of records")),
        }
    }

    /// Removes an agent (it stops being listed at once); `true` if it was alive.
    pub async fn remove(&self, agent: &str) -> Result<bool> {
        validate_name("agent", agent)?;
        match self.query("remove", agent).await? {
            Value::Int(code::REMOVED) => Ok(true),
            Value::Int(code::NOT_REMOVED) => Ok(false),
            _ => Err(self.bad("a removal's answer")),
        }
    }

    fn names(&self, value: Value) -> Result<Vec<String>> {
        let names: Vec<String> =
            redis::from_redis_value(value).map_err(|_| self.bad("a list of agents"))?;
        Ok(names)
    }

    fn record(&self, agent: &str, value: &Value) -> Result<AgentRecord> {
        let Value::BulkString(bytes) = value else {
            return Err(self.bad("a record"));
        };
        let stored: StoredRecord = serde_json::from_slice(bytes)
            .map_err(|e| corrupt(&self.records, format!("agent {agent:?}: {e}")))?;
        if stored.status.is_empty() {
            return Err(corrupt(
                &self.records,
                format!("agent {agent:?}: status is empty"),
            ));
        }
        for (what, n) in [
            ("updated_ms", stored.updated_ms),
            ("expires_ms", stored.expires_ms),
        ] {
            if n > MAX_STORED {
                return Err(corrupt(
                    &self.records,
                    format!(
                        "agent {agent:?}: {what} is {n}, not a whole number in 0..{MAX_STORED}"
                    ),
                ));
            }
        }
        Ok(AgentRecord {
            agent: agent.to_owned(),
            status: AgentStatus {
                status: Status::parse(&stored.status),
                current_task: (!stored.task.is_empty()).then_some(stored.task),
                capabilities: stored.caps.into_iter().collect(),
            },
            updated_ms: stored.updated_ms,
            expires_ms: stored.expires_ms,
        })
    }

    fn bad(&self, expected: &str) -> ContextError {
        ContextError::Core(coordkit_core::Error::decode(
            format!("the registry at {}", self.records),
            format!("expected {expected}"),
        ))
    }
}

impl ContextStore {
    /// An agent status registry named `name`.
    pub fn agents(&self, name: &str) -> Result<AgentRegistry> {
        AgentRegistry::new(self.clone(), name)
    }
}
