//! Reading and steering a breaker: [`CircuitBreaker::snapshot`], [`force`](CircuitBreaker::force),
//! [`clear`](CircuitBreaker::clear).

use coordkit_core::{Lifetime, Result, redis, redis::Value};

use crate::breaker::CircuitBreaker;
use crate::config::BreakerConfig;
use crate::state::{Forced, Snapshot, State};
use crate::wire::{decode_rules, decode_snapshot, decode_state_epoch};

impl CircuitBreaker {
    /// The state and the window's figures (applying lazy transitions): one round trip.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let values: Vec<Value> = self.script("snapshot").invoke(&self.inner.pool).await?;
        let (snapshot, now) = decode_snapshot(&values)?;
        let open_left = snapshot.open_until_ms.saturating_sub(now);
        self.saw(snapshot.state, snapshot.epoch, Some(open_left));
        Ok(snapshot)
    }

    /// Puts the breaker in an operator state, cluster-wide, until [`clear`](Self::clear).
    /// The breaker is listed by [`CircuitBreaker::list`] until cleared.
    pub async fn force(&self, to: Forced) -> Result<(State, u64)> {
        // Forced, the keys never expire: recorded so before the write, and again after it, so
        // that a concurrent clear's recording cannot outlast it.
        let index = self.inner.registration.index();
        index
            .record(&self.inner.pool, &self.inner.name, Lifetime::Forever)
            .await?;
        let mut call = self.script("force");
        call.arg(to.as_str());
        let values: Vec<Value> = call.invoke(&self.inner.pool).await?;
        index
            .record(&self.inner.pool, &self.inner.name, Lifetime::Forever)
            .await?;
        self.state_epoch(&values)
    }

    /// Back to closed with an empty window, from any state.
    pub async fn clear(&self) -> Result<(State, u64)> {
        // Cleared, the keys expire again: the index's deadline is set (not extended) first.
        let inner = &self.inner;
        let index = inner.registration.index();
        index
            .reset(&inner.pool, &inner.name, inner.lifetime)
            .await?;
        let values: Vec<Value> = self.script("clear").invoke(&self.inner.pool).await?;
        self.state_epoch(&values)
    }

    /// The rules the breaker's state was written under (by any process) at its first write
    /// or its last transition, force or clear, so that a reader without the application's
    /// configuration (the `coordkit` command) can build a handle that applies the same: `None` when no state is stored, or it was stored before
    /// breakers kept their rules. Rules that do not decode fail with
    /// [`Error::Corrupt`](coordkit_core::Error::Corrupt) naming the key.
    pub async fn stored_config(&self) -> Result<Option<BreakerConfig>> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(&self.inner.state_key).arg("g");
        let raw: Option<Vec<u8>> = self
            .inner
            .pool
            .query_keys(&cmd, std::slice::from_ref(&self.inner.state_key))
            .await?;
        match raw {
            None => Ok(None),
            Some(bytes) => decode_rules(&bytes).map(Some).ok_or_else(|| {
                coordkit_core::Error::corrupt(
                    self.inner.state_key.as_str(),
                    format!(
                        "field g: {} bytes that are not 16 rules in range",
                        bytes.len()
                    ),
                )
            }),
        }
    }

    pub(crate) fn state_epoch(&self, values: &[Value]) -> Result<(State, u64)> {
        let (state, epoch) = decode_state_epoch(values)?;
        self.saw(state, epoch, None);
        Ok((state, epoch))
    }
}
