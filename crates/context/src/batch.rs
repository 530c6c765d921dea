//! The store's group commits: concurrent plain reads share a pipeline, concurrent writes
//! share one write-script call.

use std::sync::Arc;

use coordkit_core::{Clock, GroupCommit, Key, Pool, Script};
use redis::Value;

use crate::code;
use crate::wire::META;

/// The write script (`lua/write.lua`): a batch of writes.
static WRITE: Script = Script::new("context-write", include_str!("../lua/write.lua"));

/// A read of a whole entity (no fields) or of some fields, without a script.
#[derive(Debug)]
pub(crate) struct PlainRead {
    pub(crate) data: Key,
    pub(crate) fields: Vec<String>,
}

impl PlainRead {
    /// The read's command (`HGETALL`, or `HMGET` of the stamps and the fields), with its key.
    fn command(&self) -> (redis::Cmd, &[Key]) {
        let cmd = if self.fields.is_empty() {
            let mut cmd = redis::cmd("HGETALL");
            cmd.arg(&self.data);
            cmd
        } else {
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(&self.data).arg(&META[..]).arg(&self.fields);
            cmd
        };
        (cmd, std::slice::from_ref(&self.data))
    }
}

/// The store's group commit of plain reads: concurrent reads share one pipeline.
pub(crate) type ReadBatcher = GroupCommit<PlainRead, coordkit_core::Result<Vec<Value>>>;

/// How many read pipelines per lane may be on the wire at once.
const READS_IN_FLIGHT: usize = 4;
/// The most reads one pipeline carries.
const MAX_READ_BATCH: usize = 128;

pub(crate) fn read_batcher(pool: &Pool) -> ReadBatcher {
    GroupCommit::new(
        pool,
        READS_IN_FLIGHT,
        MAX_READ_BATCH,
        |pool, reads: Vec<PlainRead>| {
            Box::pin(async move {
                if let [read] = &reads[..] {
                    // A lone read needs no pipeline: its failure, whatever it is, is its own.
                    let (cmd, keys) = read.command();
                    return Ok(vec![pool.query_keys(&cmd, keys).await]);
                }
                let commands: Vec<(redis::Cmd, &[Key])> =
                    reads.iter().map(PlainRead::command).collect();
                pool.query_each(&commands).await
            })
        },
    )
}

/// A checked write, ready for the write script (alone or in a batch).
#[derive(Debug)]
pub(crate) struct PreparedWrite {
    pub(crate) data: Key,
    pub(crate) history: Key,
    pub(crate) numbers: Vec<u8>,
    pub(crate) actor: String,
    pub(crate) history_head: String,
    /// The event's entity, `<kind>:<id>`.
    pub(crate) event_entity: String,
    /// The event's payload JSON up to its version (the script appends it).
    pub(crate) event_payload_head: String,
    pub(crate) set: Vec<(String, String)>,
    pub(crate) delete: Vec<String>,
}

/// What the write script answered for one write.
#[derive(Debug)]
pub(crate) enum WriteOutcome {
    Written(u64),
    Conflict(u64),
    Failed(coordkit_core::Error),
}

/// The store's group commit of writes: concurrent writes share one write-script call.
pub(crate) type WriteBatcher = GroupCommit<PreparedWrite, WriteOutcome>;

/// How many write calls per lane may be on the wire at once.
const WRITES_IN_FLIGHT: usize = 4;
/// The most writes one call carries.
const MAX_WRITE_BATCH: usize = 128;

pub(crate) fn write_batcher(pool: &Pool, clock: Clock, channel: Arc<str>) -> WriteBatcher {
    GroupCommit::new(
        pool,
        WRITES_IN_FLIGHT,
        MAX_WRITE_BATCH,
        move |pool, writes: Vec<PreparedWrite>| {
            let now_arg = clock.arg();
            let channel = channel.clone();
            Box::pin(async move {
                let mut call = WRITE.prepare();
                for w in &writes {
                    call.key(&w.data).key(&w.history);
                }
                call.arg(now_arg).arg(&*channel);
                for w in &writes {
                    call.arg(&w.numbers[..])
                        .arg(&w.actor)
                        .arg(&w.history_head)
                        .arg(&w.event_entity)
                        .arg(&w.event_payload_head);
                    for (field, value) in &w.set {
                        call.arg(field).arg(value);
                    }
                    for field in &w.delete {
                        call.arg(field);
                    }
                }
                // A lone write's answer comes alone, a batch's as a list.
                let answers = match call.invoke::<Value>(&pool).await? {
                    Value::Array(answers) if writes.len() > 1 => answers,
                    answer if writes.len() == 1 => vec![answer],
                    other => {
                        return Err(coordkit_core::Error::decode(
                            "the write script's answer",
                            format!("{other:?} for {} writes", writes.len()),
                        ));
                    }
                };
                if answers.len() != writes.len() {
                    return Err(coordkit_core::Error::decode(
                        "the write script's answer",
                        format!("{} answers for {} writes", answers.len(), writes.len()),
                    ));
                }
                Ok(writes
                    .iter()
                    .zip(answers)
                    .map(|(w, answer)| write_outcome(w, answer))
                    .collect())
            })
        },
    )
}

fn write_outcome(write: &PreparedWrite, answer: Value) -> WriteOutcome {
    let unexpected = |what: &dyn std::fmt::Debug| {
        WriteOutcome::Failed(coordkit_core::Error::decode(
            "the write script's answer",
            format!("unexpected {what:?}"),
        ))
    };
    match answer {
        Value::Int(v) if v > 0 => WriteOutcome::Written(v.unsigned_abs()),
        // A conflict answers -(current + CONFLICT_OFFSET).
        Value::Int(v) => match v
            .checked_add(code::CONFLICT_OFFSET)
            .and_then(i64::checked_neg)
        {
            Some(current) => WriteOutcome::Conflict(current.unsigned_abs()),
            None => unexpected(&v),
        },
        Value::BulkString(text) => {
            let text = String::from_utf8_lossy(&text);
            let mut words = text.splitn(3, ' ');
            let (code, which, rest) = (words.next(), words.next(), words.next());
            let key = if which == Some("history") {
                &write.history
            } else {
                &write.data
            };
            match (code, which) {
                (Some("WRONGTYPE"), Some(_)) => {
                    WriteOutcome::Failed(coordkit_core::Error::WrongType {
                        key: key.to_string(),
                        found: rest.unwrap_or("unknown").to_owned(),
                    })
                }
                (Some("CORRUPT"), Some("data" | "history")) => WriteOutcome::Failed(
                    coordkit_core::Error::corrupt(key.as_str(), rest.unwrap_or_default()),
                ),
                _ => unexpected(&text),
            }
        }
        other => unexpected(&other),
    }
}
