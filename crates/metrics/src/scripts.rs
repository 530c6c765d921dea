//! The Lua scripts of this crate (`lua/*.lua`, each documented in its header).

use coordkit_core::Script;

/// Appends samples, trims by count and age, updates total, rollups and alerts.
pub(crate) static RECORD: Script = Script::new("metrics.record", include_str!("../lua/record.lua"));

/// One sample into a plain gauge: record.lua's commonest case as a lean script of its own.
pub(crate) static RECORD_ONE: Script =
    Script::new("metrics.record_one", include_str!("../lua/record_one.lua"));

/// Selects samples (last n, range, recent) or aggregates them.
pub(crate) static QUERY: Script = Script::new("metrics.query", include_str!("../lua/query.lua"));

/// HGETALL with a type check.
pub(crate) static READ_HASH: Script =
    Script::new("metrics.read_hash", include_str!("../lua/read_hash.lua"));

/// Adds observations to a histogram.
pub(crate) static OBSERVE: Script =
    Script::new("metrics.observe", include_str!("../lua/observe.lua"));
