//! `context-update` (one field of an entity) and `context-read` (a whole entity of 10 fields).

use std::sync::Arc;

use coordkit_context::{ContextStore, Entity};
use coordkit_core::{Keyspace, Pool};

use super::{BoxFuture, Result, Workload, memory_usage};

/// Operations spread over this many entities (each its own hash tag).
const ENTITIES: u64 = 16;

struct Update {
    entities: Vec<Entity>,
}

impl Workload for Update {
    fn op<'a>(&'a self, _pool: &'a Pool, i: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let entity = &self.entities[(i % ENTITIES) as usize];
            entity.set([("progress", i.to_string())]).await?;
            Ok(())
        })
    }

    fn report<'a>(
        &'a self,
        pool: &'a Pool,
    ) -> BoxFuture<'a, Result<serde_json::Map<String, serde_json::Value>>> {
        Box::pin(async move {
            let mut extra = serde_json::Map::new();
            let entity = &self.entities[0];
            let bytes = memory_usage(pool, [entity.data_key()]).await?;
            extra.insert("entity_data_bytes".into(), bytes.into());
            Ok(extra)
        })
    }
}

struct Read {
    entities: Vec<Entity>,
}

impl Workload for Read {
    fn op<'a>(&'a self, _pool: &'a Pool, i: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let entity = &self.entities[(i % ENTITIES) as usize];
            let snapshot = entity.get_all().await?;
            if snapshot.map(|s| s.fields.len()) != Some(10) {
                return Err("an entity lost its fields".into());
            }
            Ok(())
        })
    }
}

async fn entities(pool: &Pool, keyspace: &Keyspace) -> Result<Vec<Entity>> {
    let store = ContextStore::builder(pool, keyspace)
        .actor("bench")
        .build()?;
    let mut entities = Vec::new();
    for n in 0..ENTITIES {
        let entity = store.entity("project", &format!("p{n}"))?;
        entity
            .set((0..10).map(|f| (format!("field{f}"), format!("value-{n}-{f}"))))
            .await?;
        entities.push(entity);
    }
    Ok(entities)
}

pub(crate) async fn prepare_update(pool: &Pool, keyspace: &Keyspace) -> Result<Arc<dyn Workload>> {
    Ok(Arc::new(Update {
        entities: entities(pool, keyspace).await?,
    }))
}

pub(crate) async fn prepare_read(pool: &Pool, keyspace: &Keyspace) -> Result<Arc<dyn Workload>> {
    Ok(Arc::new(Read {
        entities: entities(pool, keyspace).await?,
    }))
}
