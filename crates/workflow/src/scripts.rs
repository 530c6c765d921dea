//! The store's scripts, one per operation: `lua/<operation>.lua` after `lua/lib/store.lua`
//! (the keys, the settings, the header's layout, the codes, and the pieces that delete and
//! sweep records).

use coordkit_core::Script;

macro_rules! script {
    ($op:literal) => {
        Script::new(
            concat!("workflow-", $op),
            concat!(
                include_str!("../lua/lib/store.lua"),
                include_str!(concat!("../lua/", $op, ".lua")),
            ),
        )
    };
}

pub(crate) static CREATE: Script = script!("create");
pub(crate) static CLAIM: Script = script!("claim");
pub(crate) static STEP: Script = script!("step");
pub(crate) static FINISH: Script = script!("finish");
pub(crate) static GET: Script = script!("get");
pub(crate) static LIST: Script = script!("list");
pub(crate) static STATS: Script = script!("stats");
