//! Acks of single deliveries, grouped: acks that a handle's tasks make while an earlier ack of
//! theirs is on the wire go to the server together, in one ack script per inbox, through core's
//! [`GroupCommit`]. A lone ack is sent at once, so grouping adds nothing to a quiet agent; a
//! member acking each delivery of a batch on a task of its own pays one call per group instead
//! of one per delivery.

use std::sync::Arc;

use coordkit_core::{Clock, GroupCommit, Pool};

use super::InboxRef;
use super::wire;

/// Ack calls of one agent's handle on the wire at once, per hash slot.
const IN_FLIGHT: usize = 2;
/// The most deliveries one grouped ack call settles.
const MAX_BATCH: usize = 256;

/// One delivery to acknowledge.
pub(super) struct AckOp {
    pub(super) inbox: Arc<InboxRef>,
    pub(super) id: String,
}

/// The grouped acks of a handle: each answers 1 when the delivery was pending, else 0.
pub(super) type Acks = GroupCommit<AckOp, u64>;

/// Grouped acks on `pool`, with the scripts' time from `clock`.
pub(super) fn grouped(pool: &Pool, clock: Clock) -> Acks {
    GroupCommit::new(pool, IN_FLIGHT, MAX_BATCH, move |pool, ops: Vec<AckOp>| {
        let clock = clock.clone();
        Box::pin(async move {
            // On a standalone server one batch may hold acks of several inboxes (a capability's
            // and the agent's own): one call per inbox, in the order they came.
            let mut found = vec![0; ops.len()];
            let mut done = vec![false; ops.len()];
            for first in 0..ops.len() {
                if done[first] {
                    continue;
                }
                let inbox = &ops[first].inbox;
                let group: Vec<usize> = (first..ops.len())
                    .filter(|&i| !done[i] && ops[i].inbox.keys == inbox.keys)
                    .collect();
                let mut call = wire::call(&inbox.keys, "ack", &clock.arg());
                call.arg(group.len());
                for &i in &group {
                    call.arg(ops[i].id.as_str());
                }
                for _ in &group {
                    call.arg("");
                }
                let answer: Vec<u64> = call.invoke(&pool).await?;
                for (&i, f) in group.iter().zip(answer) {
                    found[i] = f;
                    done[i] = true;
                }
            }
            Ok(found)
        })
    })
}
