//! What the store answers: a workflow's status and header, the whole workflow, the outcomes of
//! a lease's writes, pages and stats.

use crate::code;

/// Where a workflow is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Created, not claimed yet.
    Pending,
    /// Claimed: an owner holds a lease on it.
    Running,
    /// Completed with a result.
    Completed,
    /// Failed with an error.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl Status {
    /// Every status, in order.
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Running,
        Status::Completed,
        Status::Failed,
        Status::Cancelled,
    ];

    /// Its name (`pending`, `running`, `completed`, `failed`, `cancelled`), as events carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    /// The status named `name`.
    pub fn parse(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether it is final: completed, failed or cancelled.
    pub fn is_finished(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Cancelled)
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Status::Pending => code::PENDING,
            Status::Running => code::RUNNING,
            Status::Completed => code::COMPLETED,
            Status::Failed => code::FAILED,
            Status::Cancelled => code::CANCELLED,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == c)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A workflow's header: everything but its input, checkpoints' outputs and result. Times are
/// milliseconds since the Unix epoch on the server's clock (or the store's manual clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowInfo {
    /// Its id.
    pub id: String,
    /// Its type (the kind of workflow: `research`, `summarize`, …).
    pub kind: String,
    /// Its status.
    pub status: Status,
    /// The last checkpointed step (0: none yet).
    pub step: u32,
    /// How many checkpoints it holds.
    pub checkpoints: u32,
    /// The fencing token of its latest lease (0: never claimed).
    pub token: u64,
    /// While running: when its lease runs out.
    pub lease_until_ms: Option<u64>,
    /// Who claimed it last (`None`: never claimed).
    pub owner: Option<String>,
    /// When it was created.
    pub created_ms: u64,
    /// When it was first claimed.
    pub started_ms: Option<u64>,
    /// When it last changed.
    pub updated_ms: u64,
    /// When it finished.
    pub finished_ms: Option<u64>,
    /// When its TTL runs out (refreshed by activity while active; from the finish when
    /// finished): then it is gone.
    pub expires_ms: u64,
    /// How many times it was claimed (a resume is a claim).
    pub claims: u32,
}

impl WorkflowInfo {
    /// Decodes a header the scripts wrote (`None`: not one this version reads).
    pub(crate) fn decode(id: &str, h: &[u8]) -> Option<WorkflowInfo> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Option<&[u8]> {
            let s = h.get(at..at.checked_add(n)?)?;
            at += n;
            Some(s)
        };
        let status = Status::from_code(take(1)?[0])?;
        let u32_at = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let step = u32_at(take(4)?);
        let checkpoints = u32_at(take(4)?);
        let mut n = [0u64; 7];
        for slot in &mut n {
            let b = take(8)?;
            let v = u64::from_le_bytes(b.try_into().ok()?);
            if v > code::MAX {
                return None;
            }
            *slot = v;
        }
        let claims = u32_at(take(4)?);
        let tl = take(2)?;
        let tl = usize::from(u16::from_le_bytes([tl[0], tl[1]]));
        let kind = std::str::from_utf8(take(tl)?).ok()?.to_owned();
        let ol = take(2)?;
        let ol = usize::from(u16::from_le_bytes([ol[0], ol[1]]));
        let owner = std::str::from_utf8(take(ol)?).ok()?.to_owned();
        if at != h.len()
            || kind.is_empty()
            || checkpoints > step
            || checkpoints > code::MAX_CHECKPOINTS
        {
            return None;
        }
        let [token, lease, created, started, updated, finished, expires] = n;
        let nonzero = |v: u64| (v != 0).then_some(v);
        Some(WorkflowInfo {
            id: id.to_owned(),
            kind,
            status,
            step,
            checkpoints,
            token,
            lease_until_ms: if status == Status::Running {
                Some(lease)
            } else {
                None
            },
            owner: (!owner.is_empty()).then_some(owner),
            created_ms: created,
            started_ms: nonzero(started),
            updated_ms: updated,
            finished_ms: nonzero(finished),
            expires_ms: expires,
            claims,
        })
    }
}

/// One checkpoint: the step's number and its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The step (from 1).
    pub step: u32,
    /// What the step produced.
    pub output: Vec<u8>,
}

impl Checkpoint {
    /// Decodes a stored checkpoint: its 4-byte LE step, then the output.
    pub(crate) fn decode(b: &[u8]) -> Option<Checkpoint> {
        let step = u32::from_le_bytes(b.get(..4)?.try_into().ok()?);
        Some(Checkpoint {
            step,
            output: b[4..].to_vec(),
        })
    }
}

/// A whole workflow, from [`WorkflowStore::get`](crate::WorkflowStore::get).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    /// Its header.
    pub info: WorkflowInfo,
    /// Its input.
    pub input: Vec<u8>,
    /// Its checkpoints, oldest first.
    pub checkpoints: Vec<Checkpoint>,
    /// Completed: its result. Failed: its error. Cancelled: empty (a cancel takes no reason).
    pub outcome: Option<Vec<u8>>,
}

/// A new workflow for [`WorkflowStore::create`](crate::WorkflowStore::create).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWorkflow {
    pub(crate) id: Option<String>,
    pub(crate) kind: String,
    pub(crate) input: Vec<u8>,
}

impl NewWorkflow {
    /// A workflow of type `kind` with `input`; its id is generated unless [`NewWorkflow::id`]
    /// gives one.
    pub fn new(kind: &str, input: impl Into<Vec<u8>>) -> Self {
        Self {
            id: None,
            kind: kind.to_owned(),
            input: input.into(),
        }
    }

    /// Its id: creating it again with the same id creates nothing (the create is idempotent).
    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(id.to_owned());
        self
    }
}

/// What a create did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// The workflow was created, pending.
    Created(WorkflowInfo),
    /// A workflow of that id exists (its TTL has not run out): nothing was written.
    Exists(WorkflowInfo),
}

impl Created {
    /// The header, created or existing.
    pub fn info(&self) -> &WorkflowInfo {
        match self {
            Created::Created(i) | Created::Exists(i) => i,
        }
    }
}

/// What a lease's write (or a cancel) did. Only [`Outcome::Done`] wrote anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Written.
    Done,
    /// The lease is no longer valid: it ran out, another owner claimed the workflow (a newer
    /// token), it was cancelled, or its record is gone. Stop working on it.
    LeaseLost,
    /// A checkpoint of a step that is not after the last checkpointed one (`step` is that
    /// one): a retried checkpoint that was written the first time.
    StepDone {
        /// The last checkpointed step.
        step: u32,
    },
    /// The workflow finished already: completed or failed under this lease (a retried
    /// complete or fail), or, for a cancel, in any way.
    AlreadyFinished(Status),
    /// A cancel of a workflow that does not exist.
    NotFound,
}

/// A position in an index, to continue a listing from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub(crate) score: u64,
    pub(crate) id: String,
}

/// One page of a listing, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The workflows of the page.
    pub items: Vec<WorkflowInfo>,
    /// Ids whose header does not decode (bad stored data), skipped.
    pub skipped: Vec<String>,
    /// Where the next page starts (`None`: this was the last).
    pub next: Option<Cursor>,
}

/// Which workflows a listing pages through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// Pending and running, by creation.
    Active,
    /// One status: pending and running by creation, finished ones by finish time.
    Status(Status),
    /// One type, by id.
    Type(String),
}

/// What [`WorkflowStore::restore`](crate::WorkflowStore::restore) read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// Every pending and running workflow, by creation.
    pub active: Vec<WorkflowInfo>,
    /// The finished ones the store keeps: completed, failed, cancelled, each by finish time.
    pub finished: Vec<WorkflowInfo>,
    /// Ids whose header does not decode, skipped.
    pub skipped: Vec<String>,
    /// How many store calls it took.
    pub calls: usize,
}

/// Counts and durations, from [`WorkflowStore::stats`](crate::WorkflowStore::stats).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stats {
    /// Workflows by status (each status present).
    pub by_status: std::collections::BTreeMap<Status, u64>,
    /// Workflows by type and status (only those present).
    pub by_type: std::collections::BTreeMap<(String, Status), u64>,
    /// Workflows finished in the window, by status.
    pub finished_in_window: std::collections::BTreeMap<Status, u64>,
    /// The median time from creation to finish of those finished in the window (ms).
    pub duration_p50_ms: Option<u64>,
    /// The 95th percentile of the same.
    pub duration_p95_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Vec<u8> {
        let mut h = vec![code::RUNNING];
        h.extend_from_slice(&3u32.to_le_bytes()); // step
        h.extend_from_slice(&2u32.to_le_bytes()); // checkpoints
        for v in [7u64, 500, 100, 110, 400, 0, 9_000] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        h.extend_from_slice(&2u32.to_le_bytes()); // claims
        for s in ["report", "o1"] {
            h.extend_from_slice(&(s.len() as u16).to_le_bytes());
            h.extend_from_slice(s.as_bytes());
        }
        h
    }

    #[test]
    fn a_header_decodes_and_every_damaged_one_is_refused() {
        let h = header();
        let info = WorkflowInfo::decode("w", &h).unwrap();
        assert_eq!(
            (info.status, info.step, info.checkpoints, info.token),
            (Status::Running, 3, 2, 7)
        );
        assert_eq!(
            (info.lease_until_ms, info.started_ms, info.finished_ms),
            (Some(500), Some(110), None)
        );
        assert_eq!(
            (info.kind.as_str(), info.owner.as_deref(), info.claims),
            ("report", Some("o1"), 2)
        );
        // Every truncation, one byte too many, a bad status, a number beyond 2^53, more
        // checkpoints than the step: refused, never a panic.
        for n in 0..h.len() {
            assert!(WorkflowInfo::decode("w", &h[..n]).is_none(), "cut to {n}");
        }
        let mut long = h.clone();
        long.push(0);
        assert!(WorkflowInfo::decode("w", &long).is_none());
        let mut bad = h.clone();
        bad[0] = 9;
        assert!(WorkflowInfo::decode("w", &bad).is_none());
        let mut big = h.clone();
        big[9..17].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(WorkflowInfo::decode("w", &big).is_none());
        let mut many = h;
        many[5..9].copy_from_slice(&4u32.to_le_bytes());
        assert!(WorkflowInfo::decode("w", &many).is_none());
        assert!(Checkpoint::decode(&[1, 0, 0]).is_none());
        assert_eq!(
            Checkpoint::decode(&[2, 0, 0, 0, b'x']).unwrap().output,
            b"x"
        );
    }
}
