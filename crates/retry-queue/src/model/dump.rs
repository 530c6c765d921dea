//! [`Dump`]: the whole stored state of a queue, as the model holds it (the property tests
//! read Redis into the same form).

use std::collections::BTreeMap;

use super::{QueueModel, ordered};
use crate::record::Record;
use crate::types::Failure;

/// The whole stored state of a queue, in a form both the model and Redis can be read into.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dump {
    /// The ready list, head (LPUSH side) first, as `LRANGE 0 -1` reads it.
    pub ready: Vec<String>,
    /// The ready tasks with a priority by (rank, id): rank (9 − priority) × 2^49 + order.
    pub urgent: Vec<(String, u64)>,
    /// Delayed tasks by (due, id).
    pub delayed: Vec<(String, u64)>,
    /// Leased tasks by (deadline, id).
    pub leased: Vec<(String, u64)>,
    /// The fencing token of each lease, or minus the token that settled a task (not acked)
    /// since it was last claimed.
    pub leases: BTreeMap<String, i64>,
    /// Dead letters by (dead at, id).
    pub dlq: Vec<(String, u64)>,
    /// Every task's record.
    pub tasks: BTreeMap<String, Record>,
    /// Error histories.
    pub errors: BTreeMap<String, Vec<Failure>>,
    /// Dead-letter reasons.
    pub dead: BTreeMap<String, String>,
    /// Whether claims are paused.
    pub paused: bool,
    /// The limits as stored: max_leased, rate_max, rate_ms (0: none).
    pub limits: (u64, u64, u64),
    /// The log of starts the rate limit counts, by (time, entry).
    pub starts: Vec<(String, u64)>,
    /// The groups: states, gready, glease, lanes and starts.
    pub groups: super::GroupsDump,
    /// Stored results: task id -> (expires at, bytes), expired ones included (they are no
    /// outcome any more, and Redis drops them on its own clock).
    pub results: BTreeMap<String, (u64, Vec<u8>)>,
}

impl QueueModel {
    /// The whole state.
    pub fn dump(&self) -> Dump {
        Dump {
            ready: self.ready.iter().cloned().collect(),
            urgent: ordered(&self.urgent),
            delayed: ordered(&self.delayed),
            leased: ordered(&self.leased),
            leases: self
                .tasks
                .iter()
                .filter_map(|(k, t)| {
                    let v = if t.token != 0 {
                        t.token as i64
                    } else if t.mark != 0 {
                        -(t.mark as i64)
                    } else {
                        return None;
                    };
                    Some((k.clone(), v))
                })
                .collect(),
            dlq: ordered(&self.dlq),
            tasks: self
                .tasks
                .iter()
                .map(|(k, t)| {
                    let payload = self.payloads.get(k).map_or(&[][..], Vec::as_slice);
                    (k.clone(), Self::record(t, payload))
                })
                .collect(),
            errors: self.errors.clone(),
            dead: self.dead.clone(),
            paused: self.paused,
            limits: (self.max_leased, self.rate_max, self.rate_ms),
            starts: ordered(&self.starts),
            results: self.results.clone(),
            groups: self.groups.dump(),
        }
    }
}
