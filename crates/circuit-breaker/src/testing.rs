//! Test support (feature `testing`): the script's operations with explicit permit ids.

use coordkit_core::{Result, redis::Value};

use crate::breaker::CircuitBreaker;
use crate::permit::Report;
use crate::state::{AcquireAnswer, Outcome, PermitKind, RecordAnswer};
use crate::wire::decode_acquire;

/// Test hooks (feature `testing`, not part of the API): drive the script's operations with
/// explicit permit ids, to compare them with the reference model step by step.
impl CircuitBreaker {
    /// The script's acquire for permit id `permit`, its answer as the script gave it.
    pub async fn raw_acquire(&self, permit: &str) -> Result<AcquireAnswer> {
        self.registered().await?;
        let mut call = self.script("acquire");
        call.arg(permit);
        let value: Value = call.invoke(&self.inner.pool).await?;
        let answer = decode_acquire(&value)?;
        self.saw_acquire(&answer);
        Ok(answer)
    }

    /// The script's record of permit `permit` (given at `epoch`, of `kind`), its answer as
    /// the script gave it.
    pub async fn raw_record(
        &self,
        permit: &str,
        epoch: u64,
        kind: PermitKind,
        outcome: Outcome,
        duration_ms: u64,
    ) -> Result<RecordAnswer> {
        let report = Report {
            id: permit.to_owned(),
            epoch,
            kind,
            local: false,
            outcome,
            duration_ms,
        };
        self.registered().await?;
        let value: Value = self.record_call(&report).invoke(&self.inner.pool).await?;
        self.recorded(&value)
    }
}
