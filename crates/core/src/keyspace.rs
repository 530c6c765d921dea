//! Key names: the only place in coordkit where they are built.
//!
//! A key has the shape `<namespace>:{<kind>:<name>}:<suffix>`, for example
//! `prod:{cb:payments}:state`. The part in braces is the Redis Cluster hash tag, so every key of
//! one primitive instance (one breaker, one queue) lands in the same slot and a script can touch
//! them all. Namespaces, kinds and names are validated: they can contain neither braces (which
//! would move the hash tag) nor whitespace or control characters, and are at most
//! [`MAX_NAME_BYTES`] long, so no accepted name can escape its namespace or its hash tag.
//!
//! ```
//! use coordkit_core::Keyspace;
//!
//! let keyspace = Keyspace::new("prod")?;
//! let breaker = keyspace.instance("cb", "payments")?;
//! assert_eq!(breaker.key("state").as_str(), "prod:{cb:payments}:state");
//! assert_eq!(breaker.hash_tag(), "cb:payments");
//! assert!(keyspace.instance("cb", "bad{name}").is_err());
//! # Ok::<(), coordkit_core::Error>(())
//! ```

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, NameRule, Result, preview};

/// The longest accepted namespace, kind or name, in bytes.
pub const MAX_NAME_BYTES: usize = 200;

/// Checks a user-supplied name against the naming rules; `what` names it in the error.
///
/// Primitive crates call this for their own names (field names, labels) so every name in
/// coordkit follows the same rules.
pub fn validate_name(what: &'static str, input: &str) -> Result<()> {
    let rule = if input.is_empty() {
        Some(NameRule::Empty)
    } else if input.len() > MAX_NAME_BYTES {
        Some(NameRule::TooLong {
            len: input.len(),
            max: MAX_NAME_BYTES,
        })
    } else if input.contains(['{', '}']) {
        Some(NameRule::Brace)
    } else {
        input
            .chars()
            .find(|c| c.is_whitespace() || c.is_control())
            .map(|found| NameRule::WhitespaceOrControl { found })
    };
    match rule {
        None => Ok(()),
        Some(rule) => Err(Error::InvalidName {
            what,
            input: preview(input),
            rule,
        }),
    }
}

/// A namespace: the prefix every key and channel of one application shares.
///
/// Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Keyspace {
    namespace: Arc<str>,
}

impl Keyspace {
    /// A keyspace under `namespace` (validated like any name).
    pub fn new(namespace: &str) -> Result<Self> {
        validate_name("namespace", namespace)?;
        Ok(Self {
            namespace: namespace.into(),
        })
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The keys of one primitive instance: `kind` is the primitive's short name (`cb`, `queue`,
    /// `ctx`, …) and `name` the user's name for the instance.
    pub fn instance(&self, kind: &str, name: &str) -> Result<InstanceKeys> {
        validate_name("kind", kind)?;
        validate_name("instance name", name)?;
        Ok(InstanceKeys {
            prefix: format!("{}:{{{kind}:{name}}}", self.namespace).into(),
            name_start: self.namespace.len() + 2 + kind.len() + 1,
        })
    }

    /// The pub/sub channel of one kind of event of one primitive:
    /// `<namespace>:events:<primitive>:<kind>`.
    pub fn channel(&self, primitive: &str, kind: &str) -> Result<String> {
        validate_name("event primitive", primitive)?;
        validate_name("event kind", kind)?;
        Ok(format!("{}:events:{primitive}:{kind}", self.namespace))
    }

    /// A pattern that matches every event channel of one primitive
    /// (`<namespace>:events:<primitive>:*`), or of all primitives when `primitive` is `None`.
    pub fn channel_pattern(&self, primitive: Option<&str>) -> Result<String> {
        match primitive {
            Some(p) => {
                validate_name("event primitive", p)?;
                Ok(format!("{}:events:{p}:*", escape_glob(&self.namespace)))
            }
            None => Ok(format!("{}:events:*", escape_glob(&self.namespace))),
        }
    }
}

impl Keyspace {
    /// A `SCAN MATCH` pattern for the `suffix` key of every instance of `kind` whose name
    /// starts with `name_prefix` (glob characters in the parts are escaped).
    pub fn instance_pattern(&self, kind: &str, name_prefix: &str, suffix: &str) -> Result<String> {
        validate_name("kind", kind)?;
        validate_name("key suffix", suffix)?;
        if !name_prefix.is_empty() {
            validate_name("name prefix", name_prefix)?;
        }
        Ok(format!(
            "{}:{{{}:{}*}}:{}",
            escape_glob(&self.namespace),
            escape_glob(kind),
            escape_glob(name_prefix),
            escape_glob(suffix)
        ))
    }

    /// The instance name inside a key built by this keyspace for `kind` and `suffix`, or `None`
    /// when the key is not one of those.
    pub fn instance_name_of<'k>(&self, key: &'k str, kind: &str, suffix: &str) -> Option<&'k str> {
        let rest = key.strip_prefix(&*self.namespace)?.strip_prefix(":{")?;
        let rest = rest.strip_prefix(kind)?.strip_prefix(':')?;
        let name = rest.strip_suffix(suffix)?.strip_suffix("}:")?;
        validate_name("instance name", name).ok().map(|()| name)
    }
}

/// `input` with the glob characters of Redis patterns (`* ? [ ] \\`) escaped, so that a
/// pattern built from it matches it literally.
pub fn escape_glob(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for c in input.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl fmt::Debug for Keyspace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Keyspace").field(&&*self.namespace).finish()
    }
}

/// The keys of one primitive instance; every key shares one hash tag.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct InstanceKeys {
    /// `<namespace>:{<kind>:<name>}`
    prefix: Arc<str>,
    /// Where `<name>` starts in `prefix`.
    name_start: usize,
}

impl InstanceKeys {
    /// The key `<namespace>:{<kind>:<name>}:<suffix>`. Suffixes are fixed by the primitive's
    /// code, not by users.
    pub fn key(&self, suffix: &str) -> Key {
        debug_assert!(
            validate_name("key suffix", suffix).is_ok(),
            "bad suffix {suffix:?}"
        );
        Key {
            name: format!("{}:{suffix}", self.prefix).into(),
            kind: None,
        }
    }

    /// Like [`InstanceKeys::key`], for a key that holds a `kind` of value: when Redis answers
    /// `WRONGTYPE` for a call on several keys, the error names the one that is not of its kind.
    pub fn typed_key(&self, suffix: &str, kind: KeyKind) -> Key {
        let mut key = self.key(suffix);
        key.kind = Some(kind);
        key
    }

    /// The instance's name, as the user gave it.
    pub fn name(&self) -> &str {
        &self.prefix[self.name_start..self.prefix.len() - 1]
    }

    /// The hash tag shared by all of this instance's keys (`<kind>:<name>`).
    pub fn hash_tag(&self) -> &str {
        let open = self.prefix.find('{').unwrap_or(0);
        &self.prefix[open + 1..self.prefix.len() - 1]
    }
}

impl fmt::Debug for InstanceKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("InstanceKeys").field(&&*self.prefix).finish()
    }
}

/// A Redis key built by a [`Keyspace`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    name: Arc<str>,
    kind: Option<KeyKind>,
}

/// The Redis type a key is meant to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyKind {
    /// A string.
    String,
    /// A hash.
    Hash,
    /// A list.
    List,
    /// A set.
    Set,
    /// A sorted set.
    ZSet,
    /// A stream.
    Stream,
}

impl KeyKind {
    /// The name `TYPE` answers for it.
    pub fn type_name(self) -> &'static str {
        match self {
            KeyKind::String => "string",
            KeyKind::Hash => "hash",
            KeyKind::List => "list",
            KeyKind::Set => "set",
            KeyKind::ZSet => "zset",
            KeyKind::Stream => "stream",
        }
    }
}

impl Key {
    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The kind of value it is meant to hold, when declared.
    pub fn kind(&self) -> Option<KeyKind> {
        self.kind
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.name, f)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

impl redis::ToRedisArgs for Key {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg(self.name.as_bytes());
    }
}

impl redis::ToSingleRedisArg for Key {}

/// The hash tag Redis Cluster derives from `key`: the text between the first `{` and the next
/// `}` when that text is not empty, otherwise the whole key.
pub fn redis_hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_tagged_keys() {
        let ks = Keyspace::new("app").unwrap();
        let inst = ks.instance("queue", "emails").unwrap();
        assert_eq!(inst.key("ready").as_str(), "app:{queue:emails}:ready");
        assert_eq!(inst.name(), "emails");
        assert_eq!(inst.hash_tag(), "queue:emails");
        assert_eq!(redis_hash_tag(inst.key("x").as_str()), "queue:emails");
        assert_eq!(ks.channel("cb", "opened").unwrap(), "app:events:cb:opened");
    }

    #[test]
    fn rejects_each_rule() {
        let ks = Keyspace::new("app").unwrap();
        let rule = |name: &str| match ks.instance("cb", name) {
            Err(Error::InvalidName { rule, what, .. }) => {
                assert_eq!(what, "instance name");
                rule
            }
            other => panic!("expected InvalidName, got {other:?}"),
        };
        assert_eq!(rule(""), NameRule::Empty);
        assert_eq!(
            rule(&"x".repeat(201)),
            NameRule::TooLong { len: 201, max: 200 }
        );
        assert_eq!(rule("a{b"), NameRule::Brace);
        assert_eq!(rule("a}b"), NameRule::Brace);
        assert_eq!(rule("a b"), NameRule::WhitespaceOrControl { found: ' ' });
        assert_eq!(rule("a\nb"), NameRule::WhitespaceOrControl { found: '\n' });
        assert_eq!(
            rule("a\u{0}b"),
            NameRule::WhitespaceOrControl { found: '\u{0}' }
        );
        assert!(ks.instance("cb", &"x".repeat(200)).is_ok());
        assert!(Keyspace::new("").is_err());
    }

    #[test]
    fn instance_patterns_and_names_round_trip() {
        let ks = Keyspace::new("app").unwrap();
        let key = ks.instance("ctx", "task:t-1").unwrap().key("data");
        assert_eq!(
            ks.instance_pattern("ctx", "task:", "data").unwrap(),
            "app:{ctx:task:*}:data"
        );
        assert_eq!(
            ks.instance_name_of(key.as_str(), "ctx", "data"),
            Some("task:t-1")
        );
        assert_eq!(ks.instance_name_of(key.as_str(), "ctx", "history"), None);
        assert_eq!(
            ks.instance_name_of("other:{ctx:x}:data", "ctx", "data"),
            None
        );
    }

    #[test]
    fn patterns_escape_glob_characters() {
        let ks = Keyspace::new("a*b").unwrap();
        assert_eq!(ks.channel_pattern(None).unwrap(), "a\\*b:events:*");
        assert_eq!(ks.channel_pattern(Some("cb")).unwrap(), "a\\*b:events:cb:*");
    }
}
