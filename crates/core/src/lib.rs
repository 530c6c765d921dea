//! # coordkit-core
//!
//! The foundation every coordkit primitive stands on:
//!
//! - [`Pool`]: one cheap-to-clone handle over a shared connection pool, to a standalone server
//!   (bb8 over bb8-redis) or a Redis Cluster (bb8 over the `redis` crate's cluster client), built
//!   from a [`PoolConfig`] (a URL, a cluster URL, seed nodes, or the environment: `REDIS_URL`,
//!   else `REDIS_HOST` / `REDIS_PORT` / `REDIS_PASSWORD` / `REDIS_DB`).
//! - [`Keyspace`]: the only place key names are built; one hash tag per primitive instance so
//!   every script touches one slot, and validated names that cannot escape it.
//! - [`Script`]: Lua from `lua/*.lua` with coordkit's prelude (server time, events, typed
//!   failures), run by EVALSHA with NOSCRIPT recovery.
//! - [`Clock`]: server time in scripts, or a [`ManualClock`] injected by tests.
//! - [`Event`] and [`Subscriber`]: the event envelope scripts publish, and a subscriber on its
//!   own connection that decodes, counts and resubscribes after reconnects.
//! - [`wake`]: a wake channel's subscription turned into a counter a waiting loop watches,
//!   bumped on messages and reconnections, and on a timer once the subscription is gone.
//! - [`GroupCommit`]: concurrent operations of one kind share one script call.
//! - [`InstanceIndex`]: every primitive records its instances in a per-namespace index, so
//!   tools list a kind's instances in one call instead of scanning the keyspace (the design and
//!   its window are in [`index`]).
//! - [`Error`]: the one error type, with variants a caller can act on: a server that is down
//!   is always [`Error::Unavailable`], a configuration mistake [`Error::InvalidConfig`].
//!
//! ```
//! use coordkit_core::{Keyspace, Pool, PoolConfig, Script};
//!
//! static HITS: Script = Script::new(
//!     "hits",
//!     "-- KEYS[1] counter hash; ARGV[1] now_ms (\"\" = server time); returns [count, now]\n\
//!      local now = ck_now(ARGV[1])\n\
//!      local n = redis.call('HINCRBY', KEYS[1], 'count', 1)\n\
//!      redis.call('HSET', KEYS[1], 'last_ms', now)\n\
//!      return {n, now}",
//! );
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = coordkit_testkit::RedisServer::start()?;
//! # let url = server.url(); // e.g. "redis://127.0.0.1:6379"
//! let pool = Pool::connect(PoolConfig::from_url(&url)?).await?;
//! let page = Keyspace::new("myapp")?.instance("page", "home")?;
//! let (count, now_ms): (u64, u64) = HITS
//!     .prepare()
//!     .key(&page.key("hits"))
//!     .arg("")
//!     .invoke(&pool)
//!     .await?;
//! println!("{count} hits, last at {now_ms}");
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod clock;
mod config;
mod connect_error;
mod error;
mod event_stream;
pub mod events;
mod group_commit;
mod health;
pub mod index;
mod keyspace;
mod pool;
mod script;
pub mod subscriber;
pub mod time;
pub mod trace;
pub mod wake;
pub mod wire;

pub use clock::{Clock, ManualClock};
pub use config::{DEFAULT_URL, PoolConfig, Topology};
pub use error::{Error, NameRule, Result};
pub use event_stream::{EventStream, Selected};
pub use events::Event;
pub use group_commit::{BoxFuture, GroupCommit};
pub use health::{PoolHealth, PrimaryHealth};
pub use index::{IndexPage, InstanceIndex, Lifetime, Listing, Malformed, Registration};
pub use keyspace::{
    InstanceKeys, Key, KeyKind, Keyspace, MAX_NAME_BYTES, escape_glob, redis_hash_tag,
    validate_name,
};
pub use pool::{Pool, ScanPage};
pub use script::{Invocation, PRELUDE, Script};
pub use subscriber::{
    RawMessage, RawSubscriber, Received, Subscriber, SubscriberBuilder, SubscriberControl,
    SubscriberStats,
};

/// The `redis` crate coordkit is built on, for commands and value conversions.
pub use redis;
