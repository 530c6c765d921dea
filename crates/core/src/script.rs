//! [`Script`]: a Lua script of a primitive, with coordkit's prelude, run by EVALSHA.
//!
//! Every primitive keeps its scripts in `lua/*.lua` and loads them with `include_str!`. Each file
//! starts with a header that documents every `KEYS[i]`, every `ARGV[i]` and the return value.
//! [`Script::new`] puts coordkit's Lua prelude (`lua/prelude.lua` in this crate) in front of the
//! body, so every script can use:
//!
//! - `ck_now(arg)`: the time in milliseconds: `arg` when it is a positive number (a manual clock
//!   injected by tests, see [`Clock`](crate::Clock)), otherwise the server's `TIME`.
//! - `ck_now_text(arg)`: the same time as decimal text, made without turning numbers into text
//!   (for scripts that write the time into strings).
//! - `ck_emit(channel, kind, source, entity, ts_ms, payload)`: publishes an event envelope (see
//!   [`Event`](crate::Event)), so a state change and its event come from the same script;
//!   `ck_emit_json` takes the payload already encoded, and `ck_envelope(kind, source, entity,
//!   ts_ms, payload_json)` answers the envelope's text for a script that sends it with another
//!   command (`SPUBLISH`).
//! - `ck_fail(code, detail)`: answers `redis.error_reply("CODE detail")`, which reaches Rust as
//!   [`Error::Script`](crate::Error::Script) with that code.
//! - `ck_expect_type(key, type)`: fails with `WRONGTYPE <key> <found>` (reaching Rust as
//!   [`Error::WrongType`](crate::Error::WrongType)) when `key` exists with another type.
//! - `ck_read(type, cmd, key, ...)`: `redis.call(cmd, key, ...)` for a read, failing as
//!   `ck_expect_type` does when `key` holds another type, without a `TYPE` call first.
//! - `ck_corrupt(key, detail)`: fails with `CORRUPT <key> <detail>` (reaching Rust as
//!   [`Error::Corrupt`](crate::Error::Corrupt) naming the key) when stored data cannot be used.
//! - `ck_int(value, key, what, max)`: a stored number as a whole number in `0..=max` (`nil` when
//!   absent), or the `CORRUPT` failure naming the key and field.
//!
//! Redis keeps the writes a script made before it failed, so a script checks the types of the
//! keys it may write and decodes every stored value it uses *before its first write*; its
//! "validation" section is marked as such (see `CONTRIBUTING.md`).
//!
//! A script is invoked by its SHA1 (EVALSHA); when the server does not know it (after a restart
//! or a `SCRIPT FLUSH`) it is loaded and the call is retried once, on every node of a cluster.
//!
//! ```
//! use coordkit_core::{Keyspace, Pool, PoolConfig, Script};
//!
//! static INCR: Script = Script::new(
//!     "incr",
//!     "-- KEYS[1]: a hash. ARGV[1]: field. Returns the new value.\n\
//!      return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)",
//! );
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = coordkit_testkit::RedisServer::start()?;
//! # let url = server.url(); // e.g. "redis://127.0.0.1:6379"
//! let pool = Pool::connect(PoolConfig::from_url(&url)?).await?;
//! let counters = Keyspace::new("demo")?.instance("counter", "visits")?;
//! let n: i64 = INCR.prepare().key(&counters.key("hash")).arg("home").invoke(&pool).await?;
//! assert!(n >= 1);
//! # Ok(()) }
//! ```

use std::sync::OnceLock;

use redis::{FromRedisValue, ToRedisArgs};

use crate::error::Result;
use crate::keyspace::Key;
use crate::pool::Pool;

/// The Lua prelude: the helpers put in front of every script that names them.
pub const PRELUDE: &str = include_str!("../lua/prelude.lua");

/// A named Lua script, usable in a `static`. Its full source (prelude + body) and SHA1 are
/// computed on first use.
pub struct Script {
    name: &'static str,
    body: &'static str,
    with_prelude: bool,
    compiled: OnceLock<redis::Script>,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script")
            .field("name", &self.name)
            .field("sha1", &self.sha1())
            .finish()
    }
}

impl Script {
    /// A script named `name` (used in errors) with Lua source `body`.
    pub const fn new(name: &'static str, body: &'static str) -> Self {
        Self {
            name,
            body,
            with_prelude: true,
            compiled: OnceLock::new(),
        }
    }

    /// A script without the prelude: exactly `body`. For baselines and for scripts that need
    /// none of the helpers.
    pub const fn bare(name: &'static str, body: &'static str) -> Self {
        Self {
            name,
            body,
            with_prelude: false,
            compiled: OnceLock::new(),
        }
    }

    /// The script's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The SHA1 of the full source (what EVALSHA sends).
    pub fn sha1(&self) -> &str {
        self.compiled().get_hash()
    }

    /// The full source: the prelude's helpers that the body names (none for
    /// [`Script::bare`]), then the body. A helper the body does not name is left out, so no
    /// call pays for creating its closure.
    pub fn source(&self) -> String {
        if !self.with_prelude {
            return self.body.to_owned();
        }
        // The helpers the body names, and the helpers those name (a helper names only
        // helpers defined before it, so walking the prelude backwards finds them all).
        let helpers: Vec<_> = prelude_helpers().collect();
        let mut wanted = vec![false; helpers.len()];
        for i in (0..helpers.len()).rev() {
            let (name, _) = helpers[i];
            wanted[i] = names(self.body, name)
                || (i + 1..helpers.len()).any(|j| wanted[j] && names(helpers[j].1, name));
        }
        let mut source = String::with_capacity(PRELUDE.len() + self.body.len() + 1);
        for ((_, helper), wanted) in helpers.iter().zip(wanted) {
            if wanted {
                source.push_str(helper);
            }
        }
        source.push('\n');
        source.push_str(self.body);
        source
    }

    fn compiled(&self) -> &redis::Script {
        self.compiled
            .get_or_init(|| redis::Script::new(&self.source()))
    }

    /// Starts an invocation: add keys and arguments, then [`Invocation::invoke`].
    pub fn prepare(&self) -> Invocation<'_> {
        Invocation {
            script: self,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }

    /// Loads the script on the connection's server (every primary of a cluster).
    pub(crate) async fn load<C: redis::aio::ConnectionLike>(
        &self,
        conn: &mut C,
    ) -> redis::RedisResult<String> {
        self.compiled().load_async(conn).await
    }
}

/// Whether `body` names the identifier `name` (not merely a longer one that starts with it).
fn names(body: &str, name: &str) -> bool {
    body.match_indices(name).any(|(at, _)| {
        let next = body[at + name.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// The prelude's helpers: each section of `lua/prelude.lua` that starts with a line
/// `-- helper: NAME`, as (name, code). The mark counts only at the start of a line, so the
/// header may mention it.
fn prelude_helpers() -> impl Iterator<Item = (&'static str, &'static str)> {
    const MARK: &str = "\n-- helper: ";
    PRELUDE.split(MARK).skip(1).map(|section| {
        let (name, code) = section.split_once('\n').unwrap_or((section, ""));
        (name.trim(), code)
    })
}

/// One call of a [`Script`] being prepared.
pub struct Invocation<'a> {
    script: &'a Script,
    keys: Vec<Key>,
    args: Vec<Vec<u8>>,
}

impl Invocation<'_> {
    /// Adds a key (`KEYS[n]`). Keys come only from a [`Keyspace`](crate::Keyspace); on a cluster
    /// all keys of one call must share a hash tag.
    pub fn key(&mut self, key: &Key) -> &mut Self {
        self.keys.push(key.clone());
        self
    }

    /// Adds an argument (`ARGV[n]`; a value that writes several arguments adds them all).
    pub fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        arg.write_redis_args(&mut self.args);
        self
    }

    /// Adds an argument of raw bytes, taken as they are (no copy).
    pub fn arg_bytes(&mut self, bytes: Vec<u8>) -> &mut Self {
        self.args.push(bytes);
        self
    }

    /// The EVALSHA command of this invocation.
    pub(crate) fn command(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script.sha1()).arg(self.keys.len());
        for key in &self.keys {
            cmd.arg(key);
        }
        for arg in &self.args {
            cmd.arg(arg.as_slice());
        }
        cmd
    }

    /// Runs the script (one round trip; two more only when the server had to load it) and
    /// decodes its answer.
    pub async fn invoke<T: FromRedisValue>(&self, pool: &Pool) -> Result<T> {
        pool.invoke(self.script, &self.command(), &self.keys, &[])
            .await
    }

    /// Like [`Invocation::invoke`], with `earlier` invocations of the same script sent ahead
    /// of it in one pipeline: the server runs them first, in order, the whole costs one round
    /// trip, and their answers are dropped (an error of theirs fails this call). For reports
    /// that must reach Redis before the next call of the same process.
    pub async fn invoke_after<T: FromRedisValue>(
        &self,
        pool: &Pool,
        earlier: &[Invocation<'_>],
    ) -> Result<T> {
        let before: Vec<redis::Cmd> = earlier.iter().map(Invocation::command).collect();
        pool.invoke(self.script, &self.command(), &self.keys, &before)
            .await
    }

    /// Runs `calls` (invocations of one script) in one pipeline on one connection: one round
    /// trip for all, each with its own answer, in order — a call that fails (a script error,
    /// a key of the wrong type) fails alone. `Err` means the round trip itself failed (the
    /// server is unreachable, the answer timed out): any of the calls may have run. An empty
    /// `calls` sends nothing.
    pub async fn invoke_each<T: FromRedisValue>(
        pool: &Pool,
        calls: &[Invocation<'_>],
    ) -> Result<Vec<Result<T>>> {
        let Some(first) = calls.first() else {
            return Ok(Vec::new());
        };
        let commands: Vec<(redis::Cmd, &[Key])> = calls
            .iter()
            .map(|c| (c.command(), c.keys.as_slice()))
            .collect();
        pool.invoke_each(Some(first.script), &commands).await
    }

    /// Sends the script without waiting for its answer: the call returns once the command is
    /// queued on a connection, so it costs the caller no round trip. Its answer, error included,
    /// is discarded — use it only for reports whose loss is tolerable and whose script this
    /// process has already run (a server that does not know the script answers NOSCRIPT, which
    /// nobody reads). Fails only when no connection can be had.
    pub async fn send_without_reply(&self, pool: &Pool) -> Result<()> {
        let mut cmd = self.command();
        cmd.set_no_response(true);
        pool.send_without_reply(self.script.name(), &cmd, &self.keys)
            .await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_prelude_sections_are_its_helpers() {
        let names: Vec<&str> = super::prelude_helpers().map(|(name, _)| name).collect();
        assert_eq!(
            names,
            [
                "ck_now",
                "ck_now_text",
                "ck_envelope",
                "ck_emit_json",
                "ck_emit",
                "ck_fail",
                "ck_expect_type",
                "ck_read",
                "ck_corrupt",
                "ck_int"
            ]
        );
    }
}
