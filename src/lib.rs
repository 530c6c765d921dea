//! # coordkit
//!
//! Coordination primitives for multi-agent systems over Redis. This umbrella crate re-exports
//! the workspace's crates; today that is [`core`] (the pool, keyspace, scripts, clock and
//! events every primitive stands on). The primitives (context, errors, circuit breaker, retry
//! queue, metrics) join behind features of their own as they land.
//!
//! ```
//! use coordkit::core::{Pool, PoolConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = coordkit_testkit::RedisServer::start()?;
//! # let url = server.url(); // e.g. "redis://127.0.0.1:6379"
//! let pool = Pool::connect(PoolConfig::from_url(&url)?).await?;
//! let pong: String = pool.query(&coordkit::core::redis::cmd("PING")).await?;
//! assert_eq!(pong, "PONG");
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use coordkit_core as core;
