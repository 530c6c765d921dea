//! Group commit: concurrent records of one tracker share one record-script call, each applied
//! exactly once, in arrival order (see [`ErrorTrackerBuilder::max_in_flight`](crate::ErrorTrackerBuilder::max_in_flight)).

use std::sync::Arc;

use coordkit_core::time::duration_ms;
use coordkit_core::wire::pack_f64_be;
use coordkit_core::{Clock, GroupCommit, Pool, Script};

use crate::config::Settings;
use crate::event::Severity;
use crate::tracker::{Keys, MAX_BATCH, Repair};
use crate::wire::{decode_outcomes, put_long, put_short};

/// The record script (`lua/record.lua`): a batch of records in one call.
pub(crate) static RECORD: Script = Script::new("errors-record", include_str!("../lua/record.lua"));

/// What every record-script call repeats.
pub(crate) struct RecordCall {
    keys: Keys,
    clock: Clock,
    /// The script's settings, the head of its argument (see `lua/record.lua`): its numbers and
    /// log length (then the clock) ...
    header: Vec<u8>,
    /// ... and what its events need (after the clock).
    events: Vec<u8>,
}

#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) count: u64,
    pub(crate) first_seen_ms: u64,
    pub(crate) ts_ms: u64,
    pub(crate) new_signature: bool,
    pub(crate) regression: bool,
    pub(crate) cascade: bool,
    pub(crate) repaired: Vec<Repair>,
}

/// One record, cleaned and encoded: its section of the script's argument (field names and
/// delimited names built here, so the script does less string work; see `lua/record.lua`), and
/// what the caller is told.
pub(crate) struct Prepared {
    pub(crate) signature: String,
    /// The record's arguments of the script (see `lua/record.lua`), its JSON last.
    pub(crate) args: Vec<Vec<u8>>,
    pub(crate) severity: Severity,
    pub(crate) truncated: bool,
}

impl RecordCall {
    /// The tracker `name`'s calls: its keys, and its settings packed as the script's header.
    /// `channel_prefix` is the event channel without the severity.
    pub(crate) fn new(keys: Keys, s: &Settings, channel_prefix: &str, name: &str) -> Self {
        let mut header = pack_f64_be(&[
            duration_ms(s.log_max_age) as f64,
            if s.every_event { 1.0 } else { 0.0 },
            f64::from(s.max_signatures),
            f64::from(s.max_counters),
            duration_ms(s.window) as f64,
            f64::from(s.cascade_threshold),
        ]);
        put_short(&mut header, s.log_max_len.to_string().as_bytes());
        let mut event_names = Vec::new();
        put_short(&mut event_names, channel_prefix.as_bytes());
        put_short(&mut event_names, name.as_bytes());
        let mut events = Vec::with_capacity(4 + event_names.len());
        put_long(&mut events, &event_names);
        Self {
            keys,
            clock: s.clock.clone(),
            header,
            events,
        }
    }
}

/// The tracker's group commit: at most `max_in_flight` record calls at once, each of at most
/// [`MAX_BATCH`] records.
pub(crate) fn group_commit(
    pool: &Pool,
    call: RecordCall,
    max_in_flight: usize,
) -> GroupCommit<Prepared, Outcome> {
    let call = Arc::new(call);
    GroupCommit::new(
        pool,
        max_in_flight,
        MAX_BATCH,
        move |pool, batch: Vec<Prepared>| {
            let call = call.clone();
            Box::pin(async move { send(&pool, &call, batch).await })
        },
    )
}

/// One record-script call for `batch`: its outcomes, in order.
async fn send(
    pool: &Pool,
    common: &RecordCall,
    batch: Vec<Prepared>,
) -> coordkit_core::Result<Vec<Outcome>> {
    let keys = &common.keys;
    let clock = common.clock.arg();
    let mut header =
        Vec::with_capacity(common.header.len() + clock.len() + 2 + common.events.len());
    header.extend_from_slice(&common.header);
    put_short(&mut header, clock.as_bytes());
    header.extend_from_slice(&common.events);
    let mut call = RECORD.prepare();
    call.key(&keys.data)
        .key(&keys.seen)
        .key(&keys.log)
        .arg(header);
    let records = batch.len();
    for p in batch {
        for arg in p.args {
            call.arg_bytes(arg);
        }
    }
    let packed: Vec<u8> = call.invoke(pool).await?;
    decode_outcomes(&packed, records)
}
