//! Groups: the limits of one group of tasks (an API key, a downstream, a tenant), shared by
//! every worker, and what a group holds. A task names its group with
//! [`TaskOptions::group`](crate::TaskOptions::group).

use coordkit_core::redis::Value;
use coordkit_core::validate_name;
use coordkit_core::wire::Reply;

use crate::error::Result;
use crate::limits::Limits;
use crate::queue::{Queue, some};
use crate::scripts;

/// One group's state, from [`Queue::group_stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupStats {
    /// Its tasks leased now.
    pub leased: u64,
    /// Its ready tasks (in its own lanes).
    pub ready: u64,
    /// Its limits.
    pub limits: Limits,
    /// While it waits for its rate limit: when it may start a task next (server time, ms).
    pub next_start_ms: Option<u64>,
    /// The server's time of this reading (ms).
    pub now_ms: u64,
}

impl Queue {
    /// Sets the limits of `group`, obeyed by every worker's claims from their next claim on:
    /// at most `max_leased` of its tasks leased at once, at most `rate.starts` starts in any
    /// window of `rate.per` (a sliding window on server time: exact). A group over a limit
    /// holds back only its own tasks, which stay ready and spend no attempt; the claims answer
    /// when its next start is allowed and the workers sleep until then. `Limits::default()`
    /// removes them. A limit out of range is
    /// [`Error::InvalidConfig`](coordkit_core::Error::InvalidConfig) naming it, a bad group
    /// name [`Error::InvalidName`](coordkit_core::Error::InvalidName), with nothing written.
    pub async fn set_group_limits(&self, group: &str, limits: Limits) -> Result<()> {
        validate_name("group", group)?;
        let (max_leased, starts, per) = limits.wire()?;
        self.registered().await?;
        let mut call = self.call(&scripts::GROUP_LIMITS);
        call.arg(group).arg(max_leased).arg(starts).arg(per);
        let _: u64 = call.invoke(self.inner_pool()).await?;
        Ok(())
    }

    /// What `group` holds now, and its limits.
    pub async fn group_stats(&self, group: &str) -> Result<GroupStats> {
        validate_name("group", group)?;
        let mut call = self.call(&scripts::GROUP);
        call.arg(group);
        let answer: Value = call.invoke(self.inner_pool()).await?;
        let r = Reply::array(scripts::GROUP.name(), &answer)?;
        let n = |i: usize, what: &'static str| r.u64(i, what);
        Ok(GroupStats {
            leased: n(0, "leased")?,
            limits: Limits::from_wire(n(1, "max_leased")?, n(2, "rate_max")?, n(3, "rate_ms")?),
            ready: n(4, "ready")?,
            next_start_ms: some(r.i64(5, "next start")?),
            now_ms: n(6, "now")?,
        })
    }
}
