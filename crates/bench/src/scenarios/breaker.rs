//! `breaker-acquire` and `breaker-guarded-call`.

use std::sync::Arc;

use coordkit_circuit_breaker::{Admission, CallError, CircuitBreaker};
use coordkit_core::{Keyspace, Pool};

use super::{BoxFuture, Result, Workload, memory_usage};

struct Breaker {
    breaker: CircuitBreaker,
    guarded: bool,
}

impl Workload for Breaker {
    fn op<'a>(&'a self, _pool: &'a Pool, _i: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if self.guarded {
                match self
                    .breaker
                    .call(async { Ok::<_, std::io::Error>(()) })
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(CallError::Rejected(r)) => Err(format!("rejected: {r:?}").into()),
                    Err(e) => Err(e.to_string().into()),
                }
            } else {
                match self.breaker.acquire().await? {
                    Admission::Admitted(_permit) => Ok(()),
                    Admission::Rejected(r) => Err(format!("rejected: {r:?}").into()),
                }
            }
        })
    }

    fn report<'a>(
        &'a self,
        pool: &'a Pool,
    ) -> BoxFuture<'a, Result<serde_json::Map<String, serde_json::Value>>> {
        Box::pin(async move {
            let mut extra = serde_json::Map::new();
            let bytes = memory_usage(pool, [self.breaker.state_key()]).await?;
            extra.insert("breaker_state_bytes".into(), bytes.into());
            let stats = self.breaker.stats();
            extra.insert("store_errors".into(), stats.store_errors.into());
            if let Some(last) = stats.last_store_error {
                extra.insert("last_store_error".into(), last.into());
            }
            Ok(extra)
        })
    }
}

pub(crate) async fn prepare(
    pool: &Pool,
    keyspace: &Keyspace,
    guarded: bool,
) -> Result<Arc<dyn Workload>> {
    let breaker =
        CircuitBreaker::builder(pool, keyspace, if guarded { "guarded" } else { "acquire" })
            .build()?;
    // Give the breaker a state (and a window) before measuring.
    for _ in 0..10 {
        breaker.call(async { Ok::<_, std::io::Error>(()) }).await?;
    }
    Ok(Arc::new(Breaker { breaker, guarded }))
}
