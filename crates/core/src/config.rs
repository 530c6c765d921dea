//! Where Redis is and how to talk to it: [`PoolConfig`].

use std::fmt;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

use crate::error::{Error, Result, preview};

/// The URL used when `REDIS_URL` is not set.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// The server topology a [`Pool`](crate::Pool) talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// One server (or a primary behind a proxy).
    Standalone,
    /// A Redis Cluster.
    Cluster,
}

/// How to reach Redis and how patient to be: the input of [`Pool::connect`](crate::Pool::connect).
///
/// Built from a URL or a list of cluster seed nodes; the setters take plain values and
/// [`Pool::connect`](crate::Pool::connect) validates them, naming the field at fault.
///
/// | URL | meaning |
/// |---|---|
/// | `redis://[user:password@]host:port[/db]` | one server |
/// | `rediss://…` | one server over TLS (feature `tls`) |
/// | `redis+cluster://[user:password@]host1:port1,host2:port2,…` | a cluster, by its seed nodes |
/// | `rediss+cluster://…` | a cluster over TLS (feature `tls`) |
///
/// `Debug` never shows a password.
///
/// ```
/// use std::time::Duration;
/// use coordkit_core::{PoolConfig, Topology};
///
/// let config = PoolConfig::from_url("redis://:s3cret@127.0.0.1:6380/0")?
///     .pool_size(32)
///     .command_timeout(Duration::from_millis(500));
/// assert_eq!(config.topology(), Topology::Standalone);
/// assert_eq!(config.address(), "127.0.0.1:6380");
/// assert!(!format!("{config:?}").contains("s3cret"));
///
/// let cluster = PoolConfig::from_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7000")?;
/// assert_eq!(cluster.topology(), Topology::Cluster);
/// # Ok::<(), coordkit_core::Error>(())
/// ```
#[derive(Clone)]
pub struct PoolConfig {
    pub(crate) nodes: Vec<ConnectionInfo>,
    pub(crate) topology: Topology,
    pub(crate) pool_size: u32,
    pub(crate) connection_timeout: Duration,
    pub(crate) command_timeout: Duration,
}

impl PoolConfig {
    /// The configuration from the environment (see [`PoolConfig::from_env_with`]).
    pub fn from_env() -> Result<Self> {
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    /// The configuration from variables looked up by `lookup` (the environment, for
    /// [`PoolConfig::from_env`]):
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `REDIS_URL` | the whole URL (see the table above); when set, the others are ignored |
    /// | `REDIS_HOST` | host name or address; default `127.0.0.1` |
    /// | `REDIS_PORT` | port, 1 to 65535; default `6379` |
    /// | `REDIS_PASSWORD` | password of the `default` user; default none |
    /// | `REDIS_DB` | database index, 0 or more; default `0` |
    ///
    /// Empty values count as unset. Nothing set means [`DEFAULT_URL`]. A malformed value is
    /// [`Error::InvalidConfig`] with `field` the variable's name.
    ///
    /// ```
    /// use coordkit_core::PoolConfig;
    ///
    /// let env = |name: &str| match name {
    ///     "REDIS_HOST" => Some("10.0.0.5".to_owned()),
    ///     "REDIS_PORT" => Some("6380".to_owned()),
    ///     "REDIS_PASSWORD" => Some("s3cret".to_owned()),
    ///     _ => None,
    /// };
    /// let config = PoolConfig::from_env_with(env)?;
    /// assert_eq!(config.address(), "10.0.0.5:6380");
    ///
    /// let err = PoolConfig::from_env_with(|name| (name == "REDIS_PORT").then(|| "70000".into()))
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("REDIS_PORT"), "{err}");
    /// # Ok::<(), coordkit_core::Error>(())
    /// ```
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if let Some(url) = var("REDIS_URL") {
            return Self::from_url(&url);
        }
        let host = var("REDIS_HOST").unwrap_or_else(|| "127.0.0.1".to_owned());
        if host.contains(['/', '@', '?', '#', ' ']) {
            return Err(Error::invalid_config(
                "REDIS_HOST",
                format!("{:?} is not a host name or address", preview(&host)),
            ));
        }
        let port = match var("REDIS_PORT") {
            Some(text) => parse_port(&text).map_err(|rule| {
                Error::invalid_config("REDIS_PORT", format!("{:?} {rule}", preview(&text)))
            })?,
            None => 6379,
        };
        let db = match var("REDIS_DB") {
            Some(text) => text.parse::<u32>().map_err(|_| {
                Error::invalid_config(
                    "REDIS_DB",
                    format!("{:?} is not a database index (0 or more)", preview(&text)),
                )
            })?,
            None => 0,
        };
        // An IPv6 address goes in brackets in a URL.
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        let mut config = Self::from_url(&format!("redis://{host}:{port}/{db}"))?;
        if let Some(password) = lookup("REDIS_PASSWORD").filter(|p| !p.is_empty()) {
            let settings = config.nodes[0]
                .redis_settings()
                .clone()
                .set_password(password);
            config.nodes[0] = config.nodes[0].clone().set_redis_settings(settings);
        }
        Ok(config)
    }

    /// The configuration for one URL (see the table above).
    pub fn from_url(url: &str) -> Result<Self> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            Error::invalid_config(
                "url",
                format!(
                    "{:?} is not a URL (expected redis://host:port)",
                    redact_url(url)
                ),
            )
        })?;
        match scheme {
            "redis" | "rediss" => Ok(Self::with_nodes(
                vec![parse_node(url)?],
                Topology::Standalone,
            )),
            "redis+cluster" | "rediss+cluster" => {
                let node_scheme = scheme.trim_end_matches("+cluster");
                let (userinfo, hosts) = match rest.rsplit_once('@') {
                    Some((user, hosts)) => (format!("{user}@"), hosts),
                    None => (String::new(), rest),
                };
                let hosts = hosts.trim_end_matches('/');
                let nodes = hosts
                    .split(',')
                    .map(|host| parse_node(&format!("{node_scheme}://{userinfo}{}", host.trim())))
                    .collect::<Result<Vec<_>>>()?;
                Self::cluster_of(nodes)
            }
            other => Err(Error::invalid_config(
                "url",
                format!(
                    "unknown scheme {other:?} (use redis, rediss, redis+cluster or rediss+cluster)"
                ),
            )),
        }
    }

    /// The configuration for a cluster, given the URLs of some of its nodes
    /// (`redis://host:port` each; one reachable node is enough).
    pub fn cluster<I, S>(seed_urls: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nodes = seed_urls
            .into_iter()
            .map(|url| parse_node(url.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Self::cluster_of(nodes)
    }

    fn cluster_of(nodes: Vec<ConnectionInfo>) -> Result<Self> {
        if nodes.is_empty() {
            return Err(Error::invalid_config(
                "url",
                "a cluster needs at least one seed node",
            ));
        }
        Ok(Self::with_nodes(nodes, Topology::Cluster))
    }

    fn with_nodes(nodes: Vec<ConnectionInfo>, topology: Topology) -> Self {
        Self {
            nodes,
            topology,
            pool_size: 16,
            connection_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(2),
        }
    }

    /// How many connections the pool keeps at most (1 to 1024; default 16). Each standalone
    /// connection is multiplexed; a cluster connection holds one socket per primary.
    pub fn pool_size(mut self, size: u32) -> Self {
        self.pool_size = size;
        self
    }

    /// How long to wait for a connection (checkout or connect), 1 ms to 10 min; default 2 s.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// How long to wait for the answer to one command or script, 1 ms to 10 min; default 2 s.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Standalone or cluster.
    pub fn topology(&self) -> Topology {
        self.topology
    }

    /// The address as shown in errors: `host:port`, or the seed nodes of a cluster joined by
    /// commas. Never contains credentials.
    pub fn address(&self) -> String {
        self.nodes
            .iter()
            .map(|info| display_addr(info.addr()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The password given in the URL, if any; used to scrub it from driver messages.
    pub(crate) fn secrets(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter_map(|info| info.redis_settings().password())
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if !(1..=1024).contains(&self.pool_size) {
            return Err(Error::invalid_config(
                "pool_size",
                format!("must be between 1 and 1024, got {}", self.pool_size),
            ));
        }
        for (field, value) in [
            ("connection_timeout", self.connection_timeout),
            ("command_timeout", self.command_timeout),
        ] {
            if value < Duration::from_millis(1) || value > Duration::from_secs(600) {
                return Err(Error::invalid_config(
                    field,
                    format!("must be between 1ms and 10min, got {value:?}"),
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for PoolConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users: Vec<Option<&str>> = self
            .nodes
            .iter()
            .map(|n| n.redis_settings().username())
            .collect();
        f.debug_struct("PoolConfig")
            .field("topology", &self.topology)
            .field("address", &self.address())
            .field("username", &users.first().copied().flatten())
            .field(
                "password",
                &if self.secrets().is_empty() {
                    "none"
                } else {
                    "<redacted>"
                },
            )
            .field("pool_size", &self.pool_size)
            .field("connection_timeout", &self.connection_timeout)
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
}

fn parse_node(url: &str) -> Result<ConnectionInfo> {
    if url.starts_with("rediss://") && !cfg!(feature = "tls") {
        return Err(Error::invalid_config(
            "url",
            format!(
                "{:?} uses TLS (rediss://), which needs the cargo feature `tls` of `coordkit` \
                 (or `coordkit-core`): enable it, or use redis://",
                redact_url(url)
            ),
        ));
    }
    check_port(url)?;
    url.into_connection_info().map_err(|e| {
        Error::invalid_config(
            "url",
            format!(
                "{:?} is not a valid redis URL: {}",
                redact_url(url),
                scrub(&e.to_string(), &[])
            ),
        )
    })
}

/// Rejects a URL whose port is not a port number, naming it (the driver only says "did not
/// parse").
fn check_port(url: &str) -> Result<()> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    // After an IPv6 address's closing bracket, or else after the last colon.
    let port = match host_port.rsplit_once(']') {
        Some((_, after)) => after.strip_prefix(':'),
        None => host_port.rsplit_once(':').map(|(_, port)| port),
    };
    match port {
        Some(text) => parse_port(text).map(drop).map_err(|rule| {
            Error::invalid_config(
                "url",
                format!("port {:?} in {:?} {rule}", preview(text), redact_url(url)),
            )
        }),
        None => Ok(()),
    }
}

/// A port number, 1 to 65535; the error says why not.
fn parse_port(text: &str) -> std::result::Result<u16, &'static str> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err("is not a port number (1 to 65535)"),
    }
}

pub(crate) fn display_addr(addr: &ConnectionAddr) -> String {
    match addr {
        ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port} (tls)"),
        ConnectionAddr::Unix(path) => format!("unix:{}", path.display()),
        #[allow(unreachable_patterns)]
        _ => "unknown address".to_owned(),
    }
}

/// `url` with any userinfo replaced by `***`.
pub(crate) fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_owned(),
        },
        None => match url.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => url.to_owned(),
        },
    }
}

/// `message` with every secret replaced by `***`.
pub(crate) fn scrub(message: &str, secrets: &[String]) -> String {
    let mut out = message.to_owned();
    for secret in secrets {
        out = out.replace(secret.as_str(), "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_urls_with_credentials() {
        let c = PoolConfig::from_url("redis+cluster://app:pw@h1:7000,h2:7001/").unwrap();
        assert_eq!(c.topology(), Topology::Cluster);
        assert_eq!(c.address(), "h1:7000,h2:7001");
        assert_eq!(c.secrets(), vec!["pw".to_owned(), "pw".to_owned()]);
        assert_eq!(c.nodes[1].redis_settings().username(), Some("app"));
        let debug = format!("{c:?}");
        assert!(!debug.contains("pw\""), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn rejects_bad_urls_without_echoing_passwords() {
        for bad in ["nonsense", "http://h:1", "redis://:topsecret@h:notaport"] {
            let err = PoolConfig::from_url(bad).unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(err, Error::InvalidConfig { field: "url", .. }),
                "{msg}"
            );
            assert!(!msg.contains("topsecret"), "{msg}");
        }
    }

    #[test]
    fn validates_ranges_naming_the_field() {
        let base = PoolConfig::from_url(DEFAULT_URL).unwrap();
        let field = |c: PoolConfig| match c.validate() {
            Err(Error::InvalidConfig { field, .. }) => field,
            other => panic!("expected InvalidConfig, got {other:?}"),
        };
        assert_eq!(field(base.clone().pool_size(0)), "pool_size");
        assert_eq!(field(base.clone().pool_size(5000)), "pool_size");
        assert_eq!(
            field(base.clone().connection_timeout(Duration::ZERO)),
            "connection_timeout"
        );
        assert_eq!(
            field(base.clone().command_timeout(Duration::from_secs(3600))),
            "command_timeout"
        );
        assert!(base.validate().is_ok());
    }

    #[test]
    fn redacts_userinfo() {
        assert_eq!(redact_url("redis://u:p@h:1"), "redis://***@h:1");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
        assert_eq!(
            scrub("bad password hunter2", &["hunter2".into()]),
            "bad password ***"
        );
    }
}
