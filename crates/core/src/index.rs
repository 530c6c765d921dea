//! The instance index: which instances of a primitive (queues, breakers, error trackers, …)
//! exist in a namespace, listed in one call instead of a `SCAN` of the whole keyspace.
//!
//! # Design
//!
//! Each primitive kind has one index per namespace, two sorted sets under their own hash tag
//! (built by [`Keyspace::instance`] with the kind `index`):
//!
//! - `<ns>:{index:<kind>}:names`: every recorded instance's name, all with score 0, so a page
//!   goes by name (`ZRANGE … BYLEX`) and stays stable while entries come and go;
//! - `<ns>:{index:<kind>}:expiry`: for instances whose keys expire by TTL, the time (ms, the
//!   server's clock) after which those keys are surely gone. Listing leaves out (and removes)
//!   the entries whose deadline has passed.
//!
//! On Redis Cluster a script touches one slot, and the index's hash tag is not the instance's,
//! so the instance's own scripts cannot write the index. Instead every handle records its
//! instance **before its first write** and again every refresh period ([`Registration`]): one
//! `ZADD` in one extra call, once per handle and period, never on each operation. Recording
//! first means an instance whose keys exist is always listed — a write made through a handle
//! was preceded by its recording — and a process that dies between the two calls leaves at
//! worst a listed instance with no keys yet, which the next handle's write fills.
//!
//! For an instance whose keys expire, a handle declares [`Lifetime::For`] `L`: no write of
//! the handle sets the keys to live longer than `L` after the write. The handle records a
//! deadline of `1.25 L` from now and records again before its first write once `L / 4` has
//! passed, so every write it makes without recording falls within `L / 4` of the recording
//! and the keys' real expiry (at most `L` after the write) comes before the deadline (extends
//! only move it later). The window: an instance whose keys expired may stay listed for up to
//! `1.25 L` after its last write; it is never missed while its keys exist.
//!
//! The crate that deletes an instance's keys forgets it ([`InstanceIndex::forget`]).
//!
//! What is exact, and the windows:
//!
//! - **Never missed.** An instance whose keys were written through a handle of this version
//!   is listed while its keys exist (recorded before the write; a deadline outlasts the keys;
//!   a recording under concurrency only adds or moves a deadline later, and `ZADD` is atomic).
//! - **Listed without keys** (the harmless direction): a handle whose first write failed
//!   after its recording; an instance whose keys expired, for up to 1.25 lifetimes; a process
//!   that died between its recording and its write.
//! - **Missed for a while**: an instance deleted (and forgotten) while a handle of another
//!   process keeps writing to it, or whose entry an operator removed, until that handle's next
//!   refresh ([`FOREVER_REFRESH`], or a quarter of the lifetime); keys written by an older coordkit, until
//!   a handle of this version writes to them.
//! - A failed recording fails the operation before its write (an unreachable server, an
//!   index key of another type), so no write goes unrecorded.
//!
//! Bad stored data: a key of the index holding another type is [`Error::WrongType`] naming it;
//! a listed name that is not a name (not UTF-8, braces, too long, …) is returned in
//! [`Listing::malformed`] with the reason, never a panic and never dropped silently; a name
//! with a score other than 0 makes a page [`Error::Corrupt`] naming the key (a recording
//! repairs it).
//!
//! ```
//! use coordkit_core::{InstanceIndex, Keyspace, Lifetime, Pool, PoolConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = coordkit_testkit::RedisServer::start()?;
//! let pool = Pool::connect(PoolConfig::from_url(&server.url())?).await?;
//! let queues = InstanceIndex::new(&Keyspace::new("app")?, "queue")?;
//! queues.record(&pool, "emails", Lifetime::Forever).await?;
//! queues.record(&pool, "reports", Lifetime::Forever).await?;
//! assert_eq!(queues.list(&pool).await?.names, ["emails", "reports"]);
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::Value;

use crate::clock::Clock;
use crate::error::{Error, Result, preview};
use crate::keyspace::{Key, KeyKind, Keyspace, validate_name};
use crate::pool::Pool;
use crate::script::Script;
use crate::time::duration_ms;

static INDEX: Script = Script::new("index", include_str!("../lua/index.lua"));

/// The kind under which the index keys are built (`<ns>:{index:<kind>}:…`).
pub const INDEX_KIND: &str = "index";

/// The most names one [`InstanceIndex::page`] looks at.
pub const MAX_PAGE: u32 = 1000;

/// How often a [`Registration`] of an instance without expiry records it again (so that an
/// instance deleted under a live handle is listed again).
pub const FOREVER_REFRESH: Duration = Duration::from_secs(60);

/// The longest lifetime recorded, in ms (about 35 000 years): longer ones are clamped.
const MAX_LIFETIME_MS: u64 = 1 << 50;

/// How long an instance's keys may outlive a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// The keys live until deleted.
    Forever,
    /// The keys expire at most this long after the recording (a TTL).
    For(Duration),
}

impl Lifetime {
    fn arg(self) -> String {
        match self {
            Lifetime::Forever => String::new(),
            Lifetime::For(d) => duration_ms(d).min(MAX_LIFETIME_MS).to_string(),
        }
    }
}

/// A listed entry that is not a valid instance name: named here, not dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// The entry (invalid UTF-8 replaced, cut to 64 characters).
    pub entry: String,
    /// Why it is not a name.
    pub reason: String,
}

/// Every listed instance of a kind: [`InstanceIndex::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// The names, sorted.
    pub names: Vec<String>,
    /// Entries of the index that are not names (written by something else).
    pub malformed: Vec<Malformed>,
}

/// One page of a kind's instances: [`InstanceIndex::page`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexPage {
    /// The listed names of this page, sorted (possibly fewer than asked, even none, while more
    /// follow: entries whose deadline passed are skipped).
    pub names: Vec<String>,
    /// Entries of this page that are not names.
    pub malformed: Vec<Malformed>,
    /// The cursor of the next page (`None`: this was the last).
    pub next: Option<String>,
}

/// The index of one primitive kind in one namespace. Cheap to clone.
#[derive(Clone)]
pub struct InstanceIndex {
    kind: Arc<str>,
    names: Key,
    expiry: Key,
    clock: Clock,
}

impl std::fmt::Debug for InstanceIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceIndex")
            .field("kind", &&*self.kind)
            .field("names", &self.names)
            .field("expiry", &self.expiry)
            .finish()
    }
}

/// How a recording changes an existing deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Extend,
    Set,
}

impl InstanceIndex {
    /// The index of the instances of `kind` (`queue`, `cb`, … — the kind the primitive gives
    /// [`Keyspace::instance`]) under `keyspace`.
    pub fn new(keyspace: &Keyspace, kind: &str) -> Result<Self> {
        validate_name("kind", kind)?;
        let keys = keyspace.instance(INDEX_KIND, kind)?;
        Ok(Self {
            kind: kind.into(),
            names: keys.typed_key("names", KeyKind::ZSet),
            expiry: keys.typed_key("expiry", KeyKind::ZSet),
            clock: Clock::Server,
        })
    }

    /// The same index on `clock` (deadlines and listings at a manual time, for tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The primitive kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The index's keys: the names, then the deadlines.
    pub fn keys(&self) -> [&Key; 2] {
        [&self.names, &self.expiry]
    }

    /// Records `name`: listed from now on, until forgotten or, with [`Lifetime::For`], until
    /// its deadline (now + the lifetime) passes. A deadline only moves later, and an instance
    /// recorded without expiry keeps none. Answers whether the name was not listed before.
    pub async fn record(&self, pool: &Pool, name: &str, lifetime: Lifetime) -> Result<bool> {
        self.record_with(pool, name, lifetime, Mode::Extend).await
    }

    /// Like [`record`](Self::record), but the deadline becomes exactly now + the lifetime (or
    /// none): for an instance whose keys were just made to expire sooner (a breaker leaving a
    /// forced state).
    pub async fn reset(&self, pool: &Pool, name: &str, lifetime: Lifetime) -> Result<bool> {
        self.record_with(pool, name, lifetime, Mode::Set).await
    }

    async fn record_with(
        &self,
        pool: &Pool,
        name: &str,
        lifetime: Lifetime,
        mode: Mode,
    ) -> Result<bool> {
        validate_name("instance name", name)?;
        let mode = match mode {
            Mode::Extend => "extend",
            Mode::Set => "set",
        };
        let new: u8 = self
            .call("record")
            .arg(name)
            .arg(lifetime.arg())
            .arg(mode)
            .invoke(pool)
            .await?;
        Ok(new == 1)
    }

    /// Forgets `name` (its keys were deleted). Answers whether it was recorded.
    pub async fn forget(&self, pool: &Pool, name: &str) -> Result<bool> {
        validate_name("instance name", name)?;
        let n: u8 = self.call("forget").arg(name).invoke(pool).await?;
        Ok(n == 1)
    }

    /// Every listed instance, in one call (one script; entries whose deadline passed are
    /// removed by it). The server spends time in proportion to the names (40 to 60 ms per
    /// 100,000 on redis 7.0) and the answer holds them all: a tool that must not hold the
    /// server that long walks [`page`](Self::page)s instead.
    pub async fn list(&self, pool: &Pool) -> Result<Listing> {
        let answer: Vec<Vec<u8>> = self.call("list").invoke(pool).await?;
        let (mut names, malformed) = split(answer);
        names.sort_unstable();
        Ok(Listing { names, malformed })
    }

    /// One page of the listed instances, in name order: up to `count` (1..=[`MAX_PAGE`])
    /// entries after `after` (`None`: from the first; then each page's
    /// [`next`](IndexPage::next)). An instance listed for the whole walk is returned exactly
    /// once. Read-only.
    pub async fn page(&self, pool: &Pool, after: Option<&str>, count: u32) -> Result<IndexPage> {
        if !(1..=MAX_PAGE).contains(&count) {
            return Err(Error::invalid_config(
                "count",
                format!("{count} is not in 1..={MAX_PAGE}"),
            ));
        }
        let answer: Value = self
            .call("page")
            .arg(after.unwrap_or(""))
            .arg(count)
            .invoke(pool)
            .await?;
        let (next, entries): (Vec<u8>, Vec<Vec<u8>>) = redis::from_redis_value(answer)
            .map_err(|e| Error::decode("the answer of script `index` (page)", e))?;
        let next = if next.is_empty() {
            None
        } else {
            Some(String::from_utf8_lossy(&next).into_owned())
        };
        let (names, malformed) = split(entries);
        Ok(IndexPage {
            names,
            malformed,
            next,
        })
    }

    fn call(&self, op: &str) -> crate::Invocation<'static> {
        let mut call = INDEX.prepare();
        call.key(&self.names)
            .key(&self.expiry)
            .arg(op)
            .arg(self.clock.arg());
        call
    }
}

/// The entries that are names, and the others with the reason.
fn split(entries: Vec<Vec<u8>>) -> (Vec<String>, Vec<Malformed>) {
    let mut names = Vec::with_capacity(entries.len());
    let mut malformed = Vec::new();
    for entry in entries {
        match String::from_utf8(entry) {
            Ok(name) => match validate_name("instance name", &name) {
                Ok(()) => names.push(name),
                Err(e) => malformed.push(Malformed {
                    entry: preview(&name),
                    reason: e.to_string(),
                }),
            },
            Err(e) => malformed.push(Malformed {
                entry: preview(&String::from_utf8_lossy(e.as_bytes())),
                reason: "not UTF-8".to_owned(),
            }),
        }
    }
    (names, malformed)
}

/// A handle's recording of its instance: [`ensure`](Self::ensure) before each write records it
/// when this handle has not yet, or not within the refresh period, or declared another
/// lifetime — otherwise it costs a lock and a clock read, no call.
#[derive(Debug)]
pub struct Registration {
    index: InstanceIndex,
    name: Arc<str>,
    last: Mutex<Option<(Lifetime, Instant)>>,
}

impl Registration {
    /// The registration of instance `name` in `index` (the name is checked by the handle's
    /// own keys already).
    pub fn new(index: InstanceIndex, name: &str) -> Self {
        Self {
            index,
            name: name.into(),
            last: Mutex::new(None),
        }
    }

    /// The index.
    pub fn index(&self) -> &InstanceIndex {
        &self.index
    }

    /// Whether [`ensure`](Self::ensure) with `lifetime` would make a call now (no call, no
    /// await: a hot path checks this first).
    pub fn is_due(&self, lifetime: Lifetime) -> bool {
        !matches!(*self.lock(), Some((last, due)) if last == lifetime && Instant::now() < due)
    }

    /// Records the instance unless this handle did it with the same `lifetime` within its
    /// refresh period ([`FOREVER_REFRESH`], or a quarter of the lifetime). With
    /// [`Lifetime::For`] the deadline recorded is 1.25 times the lifetime from now (see the
    /// module docs). Answers whether a call was made.
    pub async fn ensure(&self, pool: &Pool, lifetime: Lifetime) -> Result<bool> {
        let now = Instant::now();
        let mode = match *self.lock() {
            Some((last, due)) if last == lifetime && now < due => return Ok(false),
            // The keys may now expire sooner than the recorded deadline: set it.
            Some((Lifetime::Forever, _)) if lifetime != Lifetime::Forever => Mode::Set,
            _ => Mode::Extend,
        };
        let (recorded, due) = match lifetime {
            Lifetime::Forever => (Lifetime::Forever, FOREVER_REFRESH),
            Lifetime::For(d) => (Lifetime::For(d.saturating_add(d / 4)), d / 4),
        };
        self.index
            .record_with(pool, &self.name, recorded, mode)
            .await?;
        *self.lock() = Some((lifetime, now.checked_add(due).unwrap_or(now)));
        Ok(true)
    }

    /// Forgets the instance in the index (its keys were deleted); the next
    /// [`ensure`](Self::ensure) records it again.
    pub async fn forget(&self, pool: &Pool) -> Result<bool> {
        *self.lock() = None;
        self.index.forget(pool, &self.name).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Lifetime, Instant)>> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_kinds_own_hash_tag() {
        let index = InstanceIndex::new(&Keyspace::new("app").unwrap(), "queue").unwrap();
        assert_eq!(index.keys()[0].as_str(), "app:{index:queue}:names");
        assert_eq!(index.keys()[1].as_str(), "app:{index:queue}:expiry");
        assert!(InstanceIndex::new(&Keyspace::new("app").unwrap(), "a{b").is_err());
    }

    #[test]
    fn split_names_the_entries_that_are_not_names() {
        let (names, malformed) = split(vec![
            b"ok".to_vec(),
            b"a{b".to_vec(),
            vec![0xff, 0xfe],
            Vec::new(),
        ]);
        assert_eq!(names, ["ok"]);
        assert_eq!(malformed.len(), 3);
        assert_eq!(malformed[0].entry, "a{b");
        assert!(malformed[0].reason.contains("`{`"), "{malformed:?}");
        assert_eq!(malformed[1].reason, "not UTF-8");
    }

    #[test]
    fn lifetimes_are_clamped() {
        assert_eq!(Lifetime::Forever.arg(), "");
        assert_eq!(Lifetime::For(Duration::from_millis(1500)).arg(), "1500");
        assert_eq!(
            Lifetime::For(Duration::MAX).arg(),
            MAX_LIFETIME_MS.to_string()
        );
    }
}
