//! # coordkit-mesh
//!
//! Agent messaging over Redis, for fleets of agents that talk as well as share state:
//!
//! - **Typed channels** ([`Channel`]): a name and a payload type; `publish` answers how many
//!   subscribers received it; subscribe with a handler or as a stream, by name or pattern.
//!
//! Every send is one atomic Lua script (or one `PUBLISH`), one round trip, over the shared
//! pool, on the server's clock, and works on Redis Cluster.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
