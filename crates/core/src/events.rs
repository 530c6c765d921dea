//! Events: the envelope every primitive publishes, and how to publish one.
//!
//! A state change and its event come from the same Lua script (the prelude's `ck_emit`), so a
//! subscriber never sees an event for a change that did not happen, nor misses one that did
//! while it was connected. Channels are namespaced, `<namespace>:events:<primitive>:<kind>`
//! (built by [`Keyspace::channel`](crate::Keyspace::channel)), so one pattern subscription can
//! watch a whole family. Pub/sub delivers to connected subscribers only: an event published while
//! a subscriber is reconnecting is not replayed to it.
//!
//! ```
//! use coordkit_core::Event;
//!
//! let json = r#"{"kind":"opened","source":"cb","entity":"payments","ts_ms":1700000000000,
//!               "payload":{"failure_rate":0.75}}"#;
//! let event: Event = serde_json::from_str(json)?;
//! assert_eq!(event.kind, "opened");
//! assert_eq!(event.payload["failure_rate"], 0.75);
//! # Ok::<(), serde_json::Error>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::pool::Pool;
use crate::script::Script;

/// The envelope of every coordkit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event<P = serde_json::Value> {
    /// What happened (`opened`, `dead_lettered`, …).
    pub kind: String,
    /// Which primitive emitted it (`cb`, `queue`, …), or the publisher's name.
    pub source: String,
    /// The instance it concerns (a breaker's name, a task id, …).
    pub entity: String,
    /// When it happened, in milliseconds since the Unix epoch, by the server's clock (or the
    /// manual clock the script was given).
    #[serde(with = "crate::time::millis")]
    pub ts_ms: u64,
    /// The primitive-specific details.
    pub payload: P,
}

impl<P> Event<P> {
    /// Whether `source`'s instance `entity` emitted it: what a typed stream of one instance's
    /// events keeps.
    pub fn is_from(&self, source: &str, entity: &str) -> bool {
        self.source == source && self.entity == entity
    }
}

static PUBLISH: Script = Script::new("publish", include_str!("../lua/publish.lua"));

/// Publishes an event from Rust, stamped with the server's time, in one round trip. Primitives
/// publish from their own scripts instead; this is for application events that share the
/// envelope. Returns how many subscribers received it (on a cluster: on the node that ran it).
pub async fn publish<P: Serialize>(
    pool: &Pool,
    channel: &str,
    kind: &str,
    source: &str,
    entity: &str,
    payload: &P,
) -> Result<u64> {
    let payload =
        serde_json::to_string(payload).map_err(|e| crate::Error::decode("the event payload", e))?;
    PUBLISH
        .prepare()
        .arg(channel)
        .arg(kind)
        .arg(source)
        .arg(entity)
        .arg(payload)
        .arg("")
        .invoke(pool)
        .await
}
