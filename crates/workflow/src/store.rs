//! [`WorkflowStore`]: the handle of one store, on Redis or in memory, and its operations.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use coordkit_core::time::duration_ms;
use coordkit_core::{Clock, Error, Key, NameRule, validate_name};

use crate::backend::RedisBackend;
use crate::code;
use crate::config::{StoreConfig, Target};
use crate::error::{Result, WorkflowError};
use crate::lease::{Claim, Claimed, Lease};
use crate::model::{ClaimEntry, ModelSettings, StoreModel};
use crate::types::{Created, Cursor, Listing, NewWorkflow, Outcome, Page, Status, Workflow};

/// Checks a name a script writes into JSON unescaped (an id, a type, an owner): a valid
/// coordkit name without `"` or `\`.
pub(crate) fn validate_text(what: &'static str, s: &str) -> Result<()> {
    validate_name(what, s)?;
    if let Some(found) = s.chars().find(|c| matches!(c, '"' | '\\')) {
        return Err(Error::InvalidName {
            what,
            input: s.chars().take(64).collect(),
            rule: NameRule::Forbidden { found },
        }
        .into());
    }
    Ok(())
}

pub(crate) enum Backend {
    Redis(RedisBackend),
    Memory(Mutex<StoreModel>),
}

pub(crate) struct Inner {
    pub(crate) name: String,
    pub(crate) config: StoreConfig,
    pub(crate) backend: Arc<Backend>,
}

/// One store of workflows, built by [`WorkflowStore::builder`] (on Redis) or
/// [`WorkflowStore::in_memory`]. Cheap to clone (an `Arc` inside); on Redis every operation is
/// one script call on the store's one hash tag.
#[derive(Clone)]
pub struct WorkflowStore {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for WorkflowStore {
    /// The name, the backend and the keys (never the pool's address or credentials).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.keys().iter().map(|k| k.as_str()).collect();
        let backend = match *self.inner.backend {
            Backend::Redis(_) => "redis",
            Backend::Memory(_) => "memory",
        };
        f.debug_struct("WorkflowStore")
            .field("name", &self.inner.name)
            .field("backend", &backend)
            .field("keys", &keys)
            .finish()
    }
}

fn mutex_poisoned() -> WorkflowError {
    Error::decode("the in-memory store", "a thread panicked while holding it").into()
}

impl WorkflowStore {
    pub(crate) fn from_config(target: Target, name: &str, config: StoreConfig) -> Result<Self> {
        let backend = match target {
            Target::Redis(pool, keyspace) => {
                Backend::Redis(RedisBackend::new(pool, &keyspace, name, &config)?)
            }
            Target::Memory => {
                validate_name("instance name", name)?;
                Backend::Memory(Mutex::new(StoreModel::new(ModelSettings {
                    active_ttl_ms: duration_ms(config.active_ttl),
                    finished_ttl_ms: duration_ms(config.finished_ttl),
                    keep_finished: config.keep_finished,
                })))
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                config,
                backend: Arc::new(backend),
            }),
        })
    }

    /// The index of the stores of `keyspace` on Redis: every store a handle created or claimed
    /// a workflow in is listed there, recorded by the handle before its first write (see
    /// [`coordkit_core::index`]). A store keeps its keys: no deadline.
    pub fn index(keyspace: &coordkit_core::Keyspace) -> Result<coordkit_core::InstanceIndex> {
        Ok(coordkit_core::InstanceIndex::new(
            keyspace,
            crate::backend::INSTANCE_KIND,
        )?)
    }

    /// The names of every store of `keyspace`, sorted, in one call (no `SCAN`), and the
    /// index's entries that are not store names, if any. (Not the workflows of one store:
    /// that is [`WorkflowStore::list`].)
    pub async fn stores(
        pool: &coordkit_core::Pool,
        keyspace: &coordkit_core::Keyspace,
    ) -> Result<coordkit_core::Listing> {
        Ok(Self::index(keyspace)?.list(pool).await?)
    }

    /// One page of [`WorkflowStore::stores`]: up to `count` (1..=1000) names after `after`
    /// (`None`: from the first, then each page's `next`), in one call.
    pub async fn stores_page(
        pool: &coordkit_core::Pool,
        keyspace: &coordkit_core::Keyspace,
        after: Option<&str>,
        count: u32,
    ) -> Result<coordkit_core::IndexPage> {
        Ok(Self::index(keyspace)?.page(pool, after, count).await?)
    }

    /// A handle on the same store (the same records; in memory, the same memory) whose claims
    /// are for `owner`: for several orchestrators in one process.
    pub fn with_owner(&self, owner: &str) -> Result<WorkflowStore> {
        validate_text("owner", owner)?;
        let mut config = self.inner.config.clone();
        owner.clone_into(&mut config.owner);
        Ok(Self {
            inner: Arc::new(Inner {
                name: self.inner.name.clone(),
                config,
                backend: self.inner.backend.clone(),
            }),
        })
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Its settings.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// Whether it keeps its workflows in this process's memory ([`WorkflowStore::in_memory`]).
    pub fn is_in_memory(&self) -> bool {
        matches!(*self.inner.backend, Backend::Memory(_))
    }

    /// Its Redis keys, in the scripts' `KEYS` order (for operators and tests): records,
    /// active, pending, leases, completed, failed, cancelled, types, expiry. Empty for
    /// an in-memory store.
    pub fn keys(&self) -> &[Key] {
        match &*self.inner.backend {
            Backend::Redis(r) => &r.keys,
            Backend::Memory(_) => &[],
        }
    }

    /// The channel of one kind of its events (`created`, `started`, `resumed`,
    /// `checkpointed`, `completed`, `failed`, `cancelled`); every store of the namespace
    /// publishes there, the envelope's `entity` is the store's name. `None` in memory.
    pub fn channel(&self, kind: &str) -> Option<String> {
        match &*self.inner.backend {
            Backend::Redis(r) => Some(format!("{}{kind}", r.channel_prefix)),
            Backend::Memory(_) => None,
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        match &self.inner.config.clock {
            Clock::Manual(m) => m.now_ms(),
            Clock::Server => duration_ms(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default(),
            ),
        }
    }

    pub(crate) fn with_model<T>(&self, f: impl FnOnce(&mut StoreModel, u64) -> T) -> Result<T> {
        let Backend::Memory(m) = &*self.inner.backend else {
            unreachable!("with_model on a Redis store");
        };
        let now = self.now_ms();
        let mut model = m.lock().map_err(|_| mutex_poisoned())?;
        Ok(f(&mut model, now))
    }

    pub(crate) fn lease_ms(&self) -> u64 {
        duration_ms(self.inner.config.lease)
    }

    fn check_size(&self, what: &'static str, len: usize) -> Result<()> {
        let c = &self.inner.config;
        let (max, setter) = match what {
            "input" => (c.max_input_bytes, "WorkflowStoreBuilder::max_input_bytes"),
            "checkpoint" => (
                c.max_checkpoint_bytes,
                "WorkflowStoreBuilder::max_checkpoint_bytes",
            ),
            _ => (c.max_result_bytes, "WorkflowStoreBuilder::max_result_bytes"),
        };
        if len > max {
            return Err(WorkflowError::TooLarge {
                what,
                len,
                max,
                setter,
            });
        }
        Ok(())
    }

    pub(crate) fn check_output(&self, what: &'static str, len: usize) -> Result<()> {
        self.check_size(what, len)
    }

    /// Creates a pending workflow. With an id given, it is idempotent: when a workflow of that
    /// id exists (its TTL has not run out), nothing is written and
    /// [`Created::Exists`] carries it. Without one, a random id (32 hex digits) is generated.
    ///
    /// Also deletes up to [`sweep_limit`](crate::WorkflowStoreBuilder::sweep_limit) records
    /// whose TTL ran out, with their index entries.
    pub async fn create(&self, new: NewWorkflow) -> Result<Created> {
        let id = match new.id {
            Some(id) => id,
            None => format!("{:032x}", rand::random::<u128>()),
        };
        validate_text("workflow id", &id)?;
        validate_text("workflow type", &new.kind)?;
        self.check_size("input", new.input.len())?;
        match &*self.inner.backend {
            Backend::Redis(r) => r.create(&id, &new.kind, &new.input).await,
            Backend::Memory(_) => {
                self.with_model(|m, now| m.create(now, &id, &new.kind, &new.input))
            }
        }
    }

    /// Claims the workflow `id` for this store's owner: a pending one (it starts) or a running
    /// one whose lease ran out (it resumes, from the step after its last checkpoint). The
    /// lease has a new fencing token: the previous holder's writes are refused from now on.
    pub async fn claim(&self, id: &str) -> Result<Claim> {
        validate_text("workflow id", id)?;
        let entries = self.claim_raw(code::BY_ID, id, 1).await?;
        Ok(match entries.into_iter().next() {
            Some(ClaimEntry::Claimed { info, input, last }) => {
                Claim::Claimed(Lease::new(self.clone(), info, input, last))
            }
            Some(ClaimEntry::Busy(info)) => Claim::Busy(info),
            Some(ClaimEntry::Finished(info)) => Claim::Finished(info),
            _ => Claim::NotFound,
        })
    }

    /// Claims the oldest pending workflows (by creation), up to `max` (1 to 10,000).
    pub async fn claim_next(&self, max: usize) -> Result<Claimed> {
        self.claim_many(code::OLDEST_PENDING, max).await
    }

    /// Claims up to `max` (1 to 10,000) running workflows whose owner's lease ran out (the
    /// owner died or stalled), each with its last checkpoint: continue each from
    /// [`Lease::next_step`]; those whose lease ran out first come first (then by id). Two
    /// stores racing for one orphan: exactly one gets it.
    pub async fn resume_orphans(&self, max: usize) -> Result<Claimed> {
        self.claim_many(code::ORPHANS, max).await
    }

    async fn claim_many(&self, mode: u8, max: usize) -> Result<Claimed> {
        if !(1..=10_000).contains(&max) {
            return Err(Error::invalid_config("max", "must be 1 to 10000").into());
        }
        let entries = self.claim_raw(mode, &max.to_string(), max).await?;
        let mut claimed = Claimed::default();
        for e in entries {
            match e {
                ClaimEntry::Claimed { info, input, last } => {
                    claimed
                        .leases
                        .push(Lease::new(self.clone(), info, input, last));
                }
                ClaimEntry::Skipped(id) => claimed.skipped.push(id),
                _ => {}
            }
        }
        Ok(claimed)
    }

    async fn claim_raw(&self, mode: u8, arg: &str, max: usize) -> Result<Vec<ClaimEntry>> {
        let owner = self.inner.config.owner.clone();
        let lease = self.lease_ms();
        match &*self.inner.backend {
            Backend::Redis(r) => r.claim(mode, arg, &owner, lease).await,
            Backend::Memory(_) => self.with_model(|m, now| match mode {
                code::BY_ID => vec![m.claim(now, arg, &owner, lease)],
                code::OLDEST_PENDING => m.claim_pending(now, max, &owner, lease),
                _ => m.claim_orphans(now, max, &owner, lease),
            }),
        }
    }

    /// Cancels the workflow `id`, pending or running (a holder's next write answers
    /// [`Outcome::LeaseLost`]): [`Outcome::Done`], [`Outcome::AlreadyFinished`] or
    /// [`Outcome::NotFound`].
    pub async fn cancel(&self, id: &str) -> Result<Outcome> {
        validate_text("workflow id", id)?;
        Ok(self.finish(id, 0, Status::Cancelled, &[]).await?.0)
    }

    pub(crate) async fn finish(
        &self,
        id: &str,
        token: u64,
        to: Status,
        payload: &[u8],
    ) -> Result<(Outcome, Option<crate::WorkflowInfo>)> {
        match &*self.inner.backend {
            Backend::Redis(r) => r.finish(id, token, to, payload).await,
            Backend::Memory(_) => self.with_model(|m, now| m.finish(now, id, token, to, payload)),
        }
    }

    /// The whole workflow `id` (`None`: no such workflow, or its TTL ran out).
    pub async fn get(&self, id: &str) -> Result<Option<Workflow>> {
        validate_text("workflow id", id)?;
        match &*self.inner.backend {
            Backend::Redis(r) => r.get(id).await,
            Backend::Memory(_) => self.with_model(|m, now| m.get(now, id)),
        }
    }

    /// One page of up to `limit` (1 to 10,000) workflows of a listing, oldest first, after
    /// `after` (the previous page's [`Page::next`]). Stable under concurrent changes: a
    /// workflow listed by its status from the first page to the last is seen once.
    pub async fn list(
        &self,
        listing: &Listing,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page> {
        if !(1..=10_000).contains(&limit) {
            return Err(Error::invalid_config("limit", "must be 1 to 10000").into());
        }
        if let Listing::Type(t) = listing {
            validate_text("workflow type", t)?;
        }
        match &*self.inner.backend {
            Backend::Redis(r) => r.list(listing, after, limit).await,
            Backend::Memory(_) => self.with_model(|m, now| m.list(now, listing, after, limit)),
        }
    }

    pub(crate) async fn step(
        &self,
        op: u8,
        id: &str,
        token: u64,
        lease: Duration,
        step: u32,
        output: &[u8],
    ) -> Result<(Outcome, Option<crate::WorkflowInfo>)> {
        let lease_ms = duration_ms(lease);
        match &*self.inner.backend {
            Backend::Redis(r) => r.step(op, id, token, lease_ms, step, output).await,
            Backend::Memory(_) => self.with_model(|m, now| {
                if op == code::CHECKPOINT {
                    m.checkpoint(now, id, token, lease_ms, step, output)
                } else {
                    Ok(m.extend(now, id, token, lease_ms))
                }
            })?,
        }
    }
}
