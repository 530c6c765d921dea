//! The `coordkit` binary driven as a user drives it, against real servers started by the
//! testkit: one standalone server and one 3-master cluster shared by every test of this
//! binary (each test in a namespace of its own). Outputs are checked against the primitives'
//! own queries; `--json` is parsed; changes are checked to change exactly what they say.

mod common;

mod agents;
mod breaker;
mod context;
mod errors;
mod events;
mod listing;
mod mesh;
mod metrics;
mod queue;
mod serve_metrics;
mod usage;
mod workflow;
