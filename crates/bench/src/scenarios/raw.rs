//! `raw-evalsha`: the baseline every coordkit scenario is compared with.

use std::sync::Arc;

use coordkit_core::{Key, Keyspace, Pool, Script};

use super::{BoxFuture, Result, Workload};

static RAW_EVALSHA: Script = Script::bare("raw-evalsha", include_str!("../../lua/raw_evalsha.lua"));

struct RawEvalsha {
    key: Key,
}

impl Workload for RawEvalsha {
    fn op<'a>(&'a self, pool: &'a Pool, _i: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let _: String = RAW_EVALSHA.prepare().key(&self.key).invoke(pool).await?;
            Ok(())
        })
    }
}

pub(crate) async fn prepare(_pool: &Pool, keyspace: &Keyspace) -> Result<Arc<dyn Workload>> {
    Ok(Arc::new(RawEvalsha {
        key: keyspace.instance("bench", "raw")?.key("h"),
    }))
}
