//! The Redis backend: packing each operation's arguments and reading its script's answer.

use coordkit_core::redis::Value;
use coordkit_core::time::duration_ms;
use coordkit_core::wire::{self, Packed, Reply};
use coordkit_core::{
    Clock, Error, InstanceIndex, Invocation, Key, KeyKind, Keyspace, Lifetime, Pool, Registration,
    Script,
};

use crate::code;
use crate::config::StoreConfig;
use crate::error::{Result, WorkflowError};
use crate::model::ClaimEntry;
use crate::scripts;
use crate::types::{
    Checkpoint, Created, Cursor, Listing, Outcome, Page, Status, Workflow, WorkflowInfo,
};

/// The suffixes of a store's keys, in the scripts' `KEYS` order.
pub(crate) const KEYS: [(&str, KeyKind); 9] = [
    ("records", KeyKind::Hash),
    ("active", KeyKind::ZSet),
    ("pending", KeyKind::ZSet),
    ("leases", KeyKind::ZSet),
    ("completed", KeyKind::ZSet),
    ("failed", KeyKind::ZSet),
    ("cancelled", KeyKind::ZSet),
    ("types", KeyKind::ZSet),
    ("expiry", KeyKind::ZSet),
];

/// A store on Redis: its pool, keys and the settings argument every script takes.
pub(crate) struct RedisBackend {
    pub(crate) pool: Pool,
    pub(crate) keys: Vec<Key>,
    pub(crate) channel_prefix: String,
    settings: Vec<u8>,
    clock: Clock,
    /// The store's entry in the namespace's index of stores.
    registration: Registration,
}

/// The kind of a store's keys (`<ns>:{wf:<name>}:…`) and of its index.
pub(crate) const INSTANCE_KIND: &str = "wf";

impl RedisBackend {
    pub(crate) fn new(
        pool: Pool,
        keyspace: &Keyspace,
        name: &str,
        config: &StoreConfig,
    ) -> Result<Self> {
        let instance = keyspace.instance(INSTANCE_KIND, name)?;
        let registration = Registration::new(InstanceIndex::new(keyspace, INSTANCE_KIND)?, name);
        let keys = KEYS
            .iter()
            .map(|(suffix, kind)| instance.typed_key(suffix, *kind))
            .collect();
        let any = keyspace.channel("workflow", "x")?;
        let channel_prefix = any[..any.len() - 1].to_owned();
        let mut settings = Packed::new()
            .u64_le(duration_ms(config.active_ttl))
            .u64_le(duration_ms(config.finished_ttl))
            .u64_le(config.keep_finished)
            .bytes(&config.sweep_limit.to_le_bytes());
        for s in [name, &channel_prefix] {
            let len = u16::try_from(s.len())
                .map_err(|_| Error::invalid_config("name", "too long for the store's channels"))?;
            settings = settings.bytes(&len.to_le_bytes()).bytes(s.as_bytes());
        }
        Ok(Self {
            pool,
            keys,
            channel_prefix,
            settings: settings.into_bytes(),
            clock: config.clock.clone(),
            registration,
        })
    }

    /// A stored checkpoint of `id`, or `Corrupt` naming the records' key.
    fn checkpoint(&self, id: &str, b: &[u8]) -> Result<Checkpoint> {
        Checkpoint::decode(b).ok_or_else(|| {
            Error::corrupt(
                self.keys[0].as_str(),
                format!("a checkpoint of workflow {id} is shorter than 4 bytes"),
            )
            .into()
        })
    }

    fn call(&self, script: &'static Script) -> Invocation<'static> {
        self.call_keys(script, self.keys.len())
    }

    /// A call given the first `n` keys only: a script that touches no other key pays for no
    /// other (each key is a Lua string the server makes per call).
    fn call_keys(&self, script: &'static Script, n: usize) -> Invocation<'static> {
        let mut call = script.prepare();
        for key in &self.keys[..n] {
            call.key(key);
        }
        call.arg(self.clock.arg()).arg(self.settings.as_slice());
        call
    }

    /// Records the store in the index unless this handle already did (a lock and a clock
    /// read): before the operations that may create its keys.
    async fn registered(&self) -> Result<()> {
        if self.registration.is_due(Lifetime::Forever) {
            // Boxed: rare (once per handle and refresh period), keeps the futures small.
            Box::pin(self.registration.ensure(&self.pool, Lifetime::Forever)).await?;
        }
        Ok(())
    }

    pub(crate) async fn create(&self, id: &str, kind: &str, input: &[u8]) -> Result<Created> {
        self.registered().await?;
        let answer: Value = self
            .call(&scripts::CREATE)
            .arg(id)
            .arg(kind)
            .arg(input)
            .invoke(&self.pool)
            .await?;
        let r = Reply::array("workflow-create", &answer)?;
        let info = header("workflow-create", id, r.bytes(1, "header")?)?;
        match r.u64(0, "code")? {
            code::OK => Ok(Created::Created(info)),
            code::EXISTS => Ok(Created::Exists(info)),
            other => {
                Err(Error::decode("workflow-create", format!("no answer code {other}")).into())
            }
        }
    }

    pub(crate) async fn claim(
        &self,
        mode: u8,
        arg: &str,
        owner: &str,
        lease_ms: u64,
    ) -> Result<Vec<ClaimEntry>> {
        const S: &str = "workflow-claim";
        self.registered().await?;
        let answer: Value = self
            .call(&scripts::CLAIM)
            .arg(mode)
            .arg(arg)
            .arg(owner)
            .arg(lease_ms)
            .invoke(&self.pool)
            .await?;
        let r = Reply::array(S, &answer)?;
        let mut out = Vec::with_capacity(r.len());
        for i in 0..r.len() {
            let e = r.list(i, "entry")?;
            let code = e.u64(0, "code")?;
            if code == code::SKIPPED {
                // Named as well as it can be: an id that is not UTF-8 must not fail the batch.
                let id = String::from_utf8_lossy(e.bytes(1, "id")?).into_owned();
                out.push(ClaimEntry::Skipped(id));
                continue;
            }
            let id = e.text(1, "id")?;
            let entry = match code {
                code::OK => ClaimEntry::Claimed {
                    info: header(S, id, e.bytes(2, "header")?)?,
                    input: e.bytes(3, "input")?.to_vec(),
                    last: match e.get(4, "checkpoint")? {
                        Value::Nil => None,
                        v => Some(self.checkpoint(id, wire::bytes(S, "checkpoint", v)?)?),
                    },
                },
                code::BUSY => ClaimEntry::Busy(header(S, id, e.bytes(2, "header")?)?),
                code::FINISHED => ClaimEntry::Finished(header(S, id, e.bytes(2, "header")?)?),
                code::NOT_FOUND => ClaimEntry::NotFound,
                other => return Err(Error::decode(S, format!("no answer code {other}")).into()),
            };
            out.push(entry);
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn step(
        &self,
        op: u8,
        id: &str,
        token: u64,
        lease_ms: u64,
        step: u32,
        output: &[u8],
    ) -> Result<(Outcome, Option<WorkflowInfo>)> {
        let answer: Value = self
            .call_keys(&scripts::STEP, 1)
            .arg(op)
            .arg(id)
            .arg(token)
            .arg(lease_ms)
            .arg(step)
            .arg(output)
            .invoke(&self.pool)
            .await?;
        outcome("workflow-step", id, &answer)
    }

    pub(crate) async fn finish(
        &self,
        id: &str,
        token: u64,
        to: Status,
        payload: &[u8],
    ) -> Result<(Outcome, Option<WorkflowInfo>)> {
        let answer: Value = self
            .call(&scripts::FINISH)
            .arg(to.code())
            .arg(id)
            .arg(token)
            .arg(payload)
            .invoke(&self.pool)
            .await?;
        outcome("workflow-finish", id, &answer)
    }

    pub(crate) async fn get(&self, id: &str) -> Result<Option<Workflow>> {
        const S: &str = "workflow-get";
        let answer: Value = self.call(&scripts::GET).arg(id).invoke(&self.pool).await?;
        if answer == Value::Nil {
            return Ok(None);
        }
        let r = Reply::array(S, &answer)?;
        let info = header(S, id, r.bytes(0, "header")?)?;
        let outcome = match r.get(2, "outcome")? {
            Value::Nil => None,
            v => Some(wire::bytes(S, "outcome", v)?.to_vec()),
        };
        let list = r.list(3, "checkpoints")?;
        let mut checkpoints = Vec::with_capacity(list.len());
        for i in 0..list.len() {
            let b = list.bytes(i, "checkpoint")?;
            checkpoints.push(Checkpoint::decode(b).ok_or_else(|| {
                Error::corrupt(
                    self.keys[0].as_str(),
                    format!(
                        "checkpoint {} of workflow {id} is shorter than 4 bytes",
                        i + 1
                    ),
                )
            })?);
        }
        Ok(Some(Workflow {
            info,
            input: r.bytes(1, "input")?.to_vec(),
            checkpoints,
            outcome,
        }))
    }

    pub(crate) async fn list(
        &self,
        listing: &Listing,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page> {
        const S: &str = "workflow-list";
        let (which, score) = match listing {
            Listing::Active => (code::L_ACTIVE, None),
            Listing::Status(Status::Pending) => (code::L_PENDING, None),
            Listing::Status(Status::Completed) => (code::L_COMPLETED, None),
            Listing::Status(Status::Failed) => (code::L_FAILED, None),
            Listing::Status(Status::Cancelled) => (code::L_CANCELLED, None),
            Listing::Status(Status::Running) => (code::L_RUNNING, None),
            Listing::Type(t) => (code::L_TYPE, Some(t.as_str())),
        };
        let cursor_score = after.map_or(0, |c| c.score).to_string();
        let answer: Value = self
            .call(&scripts::LIST)
            .arg(which)
            .arg(score.unwrap_or(&cursor_score))
            .arg(after.map_or("", |c| c.id.as_str()))
            .arg(limit)
            .invoke(&self.pool)
            .await?;
        let r = Reply::array(S, &answer)?;
        let list = r.list(0, "items")?;
        let (mut items, mut skipped) = (Vec::new(), Vec::new());
        for i in 0..list.len() {
            let e = list.list(i, "item")?;
            let id = e.text(0, "id")?;
            match e.get(1, "header")? {
                Value::Nil => skipped.push(id.to_owned()),
                v => items.push(header(S, id, wire::bytes(S, "header", v)?)?),
            }
        }
        let next = match r.get(1, "next")? {
            Value::Nil => None,
            v => Some(Cursor {
                id: wire::text(S, "next", v)?.to_owned(),
                score: match r.get(2, "score")? {
                    Value::Int(n) => u64::try_from(*n).unwrap_or(0),
                    v => wire::text(S, "score", v)?
                        .parse::<f64>()
                        .map_err(|e| Error::decode(S, format!("the cursor's score: {e}")))?
                        as u64,
                },
            }),
        };
        Ok(Page {
            items,
            skipped,
            next,
        })
    }

    /// The headers of the workflows finished in the last `window_ms`.
    pub(crate) async fn finished_since(&self, window_ms: u64) -> Result<Vec<WorkflowInfo>> {
        const S: &str = "workflow-stats";
        let answer: Value = self
            .call(&scripts::STATS)
            .arg(window_ms)
            .invoke(&self.pool)
            .await?;
        let done = Reply::array(S, &answer)?;
        let mut finished = Vec::with_capacity(done.len());
        for i in 0..done.len() {
            finished.push(header(S, "", done.bytes(i, "header")?)?);
        }
        Ok(finished)
    }
}

/// A header in an answer (the script decoded it already: one this version cannot read is an
/// answer it cannot read).
fn header(script: &'static str, id: &str, h: &[u8]) -> Result<WorkflowInfo> {
    WorkflowInfo::decode(id, h)
        .ok_or_else(|| Error::decode(script, "a header this version cannot read").into())
}

/// `{ code, header or false }`.
fn outcome(
    script: &'static str,
    id: &str,
    answer: &Value,
) -> Result<(Outcome, Option<WorkflowInfo>)> {
    let r = Reply::array(script, answer)?;
    let info = match r.get(1, "header")? {
        Value::Nil => None,
        v => Some(header(script, id, wire::bytes(script, "header", v)?)?),
    };
    let o = match r.u64(0, "code")? {
        code::OK => Outcome::Done,
        code::LEASE_LOST => Outcome::LeaseLost,
        code::NOT_FOUND => Outcome::NotFound,
        code::STEP_DONE => Outcome::StepDone {
            step: info.as_ref().map_or(0, |i| i.step),
        },
        code::FINISHED => match &info {
            Some(i) => Outcome::AlreadyFinished(i.status),
            None => return Err(Error::decode(script, "a finished answer without header").into()),
        },
        code::FULL => {
            return Err(WorkflowError::TooManyCheckpoints {
                max: code::MAX_CHECKPOINTS,
            });
        }
        other => return Err(Error::decode(script, format!("no answer code {other}")).into()),
    };
    let info = if o == Outcome::Done { info } else { None };
    Ok((o, info))
}
