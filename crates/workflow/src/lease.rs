//! [`Lease`]: a claimed workflow, and the writes only its holder may make.

use std::time::Duration;

use coordkit_core::Error;
use coordkit_core::time::duration_ms;

use crate::code;
use crate::config::MAX_DURATION_MS;
use crate::error::{Result, WorkflowError};
use crate::store::WorkflowStore;
use crate::types::{Checkpoint, Outcome, Status, WorkflowInfo};

/// What [`WorkflowStore::claim`] found.
#[derive(Debug)]
pub enum Claim {
    /// Claimed: the lease, with the workflow's input and last checkpoint.
    Claimed(Lease),
    /// Another owner's lease is live.
    Busy(WorkflowInfo),
    /// It finished.
    Finished(WorkflowInfo),
    /// No such workflow (or its TTL ran out).
    NotFound,
}

/// What [`WorkflowStore::claim_next`] and [`WorkflowStore::resume_orphans`] claimed.
#[derive(Debug, Default)]
pub struct Claimed {
    /// The leases, one per claimed workflow.
    pub leases: Vec<Lease>,
    /// Ids met whose header, or last checkpoint, does not decode (bad stored data): left as
    /// they are.
    pub skipped: Vec<String>,
}

/// A workflow claimed by this store's owner, with a fencing token: the only handle that may
/// checkpoint, complete, fail or extend it. Once another owner claims the workflow (after this
/// lease ran out), or it is cancelled, every write answers [`Outcome::LeaseLost`] and writes
/// nothing.
#[derive(Clone)]
pub struct Lease {
    store: WorkflowStore,
    info: WorkflowInfo,
    input: Vec<u8>,
    last: Option<Checkpoint>,
}

impl std::fmt::Debug for Lease {
    /// The store's name, the workflow's id, token, step and the input's length (not its
    /// bytes: an input may be large).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("store", &self.store.name())
            .field("id", &self.info.id)
            .field("token", &self.info.token)
            .field("step", &self.info.step)
            .field("lease_until_ms", &self.info.lease_until_ms)
            .field("input_bytes", &self.input.len())
            .finish()
    }
}

impl Lease {
    pub(crate) fn new(
        store: WorkflowStore,
        info: WorkflowInfo,
        input: Vec<u8>,
        last: Option<Checkpoint>,
    ) -> Self {
        Self {
            store,
            info,
            input,
            last,
        }
    }

    /// The workflow's id.
    pub fn id(&self) -> &str {
        &self.info.id
    }

    /// The lease's fencing token (each claim of a workflow has a larger one).
    pub fn token(&self) -> u64 {
        self.info.token
    }

    /// The workflow's header as of this lease's last write.
    pub fn info(&self) -> &WorkflowInfo {
        &self.info
    }

    /// The workflow's input.
    pub fn input(&self) -> &[u8] {
        &self.input
    }

    /// The last checkpoint when it was claimed or since written through this lease.
    pub fn last_checkpoint(&self) -> Option<&Checkpoint> {
        self.last.as_ref()
    }

    /// Whether the claim resumed a workflow claimed before (whose lease ran out), rather than
    /// starting a pending one.
    pub fn resumed(&self) -> bool {
        self.info.claims > 1
    }

    /// The step to run next: the one after the last checkpointed step (1 when none).
    pub fn next_step(&self) -> u32 {
        self.info.step.saturating_add(1)
    }

    /// When the lease runs out, as of its last write (ms, the store's clock).
    pub fn lease_until_ms(&self) -> u64 {
        self.info.lease_until_ms.unwrap_or(0)
    }

    /// Writes `step`'s output and renews the lease. [`Outcome::StepDone`] when `step` is not
    /// after the last checkpointed one (a retried checkpoint that was written the first time);
    /// [`Outcome::LeaseLost`] when the lease is no longer valid. Steps count from 1 and need
    /// not be consecutive; a workflow holds at most 100,000 checkpoints.
    pub async fn checkpoint(&mut self, step: u32, output: impl AsRef<[u8]>) -> Result<Outcome> {
        let output = output.as_ref();
        if step == 0 {
            return Err(WorkflowError::StepZero);
        }
        self.store.check_output("checkpoint", output.len())?;
        // A fast path: the scripts (and the model) check the count the workflow holds, which
        // another clone of this lease may have raised.
        if self.info.checkpoints >= code::MAX_CHECKPOINTS {
            return Err(WorkflowError::TooManyCheckpoints {
                max: code::MAX_CHECKPOINTS,
            });
        }
        let lease = self.store.config().lease;
        let (o, info) = self
            .store
            .step(
                code::CHECKPOINT,
                &self.info.id,
                self.info.token,
                lease,
                step,
                output,
            )
            .await?;
        if let Some(info) = info {
            self.info = info;
            self.last = Some(Checkpoint {
                step,
                output: output.to_vec(),
            });
        }
        Ok(o)
    }

    /// Renews the lease to at least now + the store's [`lease`](crate::StoreConfig::lease)
    /// (it is never shortened).
    pub async fn extend(&mut self) -> Result<Outcome> {
        self.extend_by(self.store.config().lease).await
    }

    /// Renews the lease to at least now + `by` (0 to 2^40 ms; longer is
    /// [`Error::InvalidConfig`](coordkit_core::Error::InvalidConfig) naming `extend_by`, with
    /// nothing written).
    pub async fn extend_by(&mut self, by: Duration) -> Result<Outcome> {
        if duration_ms(by) > MAX_DURATION_MS {
            return Err(Error::invalid_config("extend_by", "must be at most 2^40 ms").into());
        }
        let (o, info) = self
            .store
            .step(code::EXTEND, &self.info.id, self.info.token, by, 0, &[])
            .await?;
        if let Some(info) = info {
            self.info = info;
        }
        Ok(o)
    }

    /// Completes the workflow with `result`. A retried complete (the first one was written)
    /// answers [`Outcome::AlreadyFinished`].
    pub async fn complete(&mut self, result: impl AsRef<[u8]>) -> Result<Outcome> {
        self.finish(Status::Completed, "result", result.as_ref())
            .await
    }

    /// Fails the workflow with `error`.
    pub async fn fail(&mut self, error: impl AsRef<[u8]>) -> Result<Outcome> {
        self.finish(Status::Failed, "error", error.as_ref()).await
    }

    async fn finish(&mut self, to: Status, what: &'static str, payload: &[u8]) -> Result<Outcome> {
        self.store.check_output(what, payload.len())?;
        let (o, info) = self
            .store
            .finish(&self.info.id, self.info.token, to, payload)
            .await?;
        if let Some(info) = info {
            self.info = info;
        }
        Ok(o)
    }
}
