//! `retry-backoff-floor`: the floor under `retry-lifecycle --fails F` set by the backoff alone.
//! An operation makes no Redis call at all: it sleeps the backoff (`--backoff-ms`) F times, as
//! a task that fails F times must wait before each retry, whatever the queue does. At
//! concurrency C the closed loop then completes at most C ÷ (F × the sleep) operations per
//! second; against raw-evalsha in the same rounds, that is the highest ratio any retry
//! queue that honours the backoff can reach at that concurrency. It sleeps as the worker does
//! before a retry in place (async-io's timer: tokio's would stretch a 1 ms sleep to about 2).

use std::sync::Arc;
use std::time::Duration;

use coordkit_core::Pool;

use super::{BoxFuture, Params, Result, Workload};

struct BackoffFloor {
    fails: u32,
    backoff: Duration,
}

impl Workload for BackoffFloor {
    fn op<'a>(&'a self, _pool: &'a Pool, _i: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for _ in 0..self.fails {
                async_io::Timer::after(self.backoff).await;
            }
            Ok(())
        })
    }

    fn report<'a>(
        &'a self,
        _pool: &'a Pool,
    ) -> BoxFuture<'a, Result<serde_json::Map<String, serde_json::Value>>> {
        Box::pin(async move {
            let mut extra = serde_json::Map::new();
            super::retry::insert_backoff(&mut extra, self.fails, self.backoff);
            Ok(extra)
        })
    }
}

pub(crate) fn prepare(params: &Params) -> Result<Arc<dyn Workload>> {
    if params.fails == 0 {
        return Err("retry-backoff-floor needs --fails 1 or more".into());
    }
    Ok(Arc::new(BackoffFloor {
        fails: params.fails,
        backoff: params.backoff,
    }))
}
