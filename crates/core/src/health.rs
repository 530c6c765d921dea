//! [`Pool::health`]: what an operator asks first: does Redis answer, how fast, how full.

use std::time::{Duration, Instant};

use crate::config::Topology;
use crate::error::{Error, Result};
use crate::pool::Pool;

/// A reading of a pool and the servers behind it, from [`Pool::health`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolHealth {
    /// Standalone or cluster.
    pub topology: Topology,
    /// How long one `PING` took, through the pool (checkout included).
    pub round_trip: Duration,
    /// Connections the pool holds open.
    pub connections: u32,
    /// Of those, how many are idle (the others are in use).
    pub idle_connections: u32,
    /// Every primary (one for a standalone server), sorted by address.
    pub primaries: Vec<PrimaryHealth>,
}

/// One primary's figures, from its `INFO memory clients`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryHealth {
    /// `host:port`.
    pub addr: String,
    /// `used_memory`, in bytes.
    pub used_memory: u64,
    /// `maxmemory`, in bytes (0: no limit).
    pub max_memory: u64,
    /// `connected_clients`.
    pub connected_clients: u64,
}

impl Pool {
    /// Round-trip time, topology, connections in use, and the memory and clients of every
    /// primary: one `PING` and one `INFO` per primary. A server that is down answers
    /// [`Error::Unavailable`].
    pub async fn health(&self) -> Result<PoolHealth> {
        let started = Instant::now();
        let _: String = self.query(&redis::cmd("PING")).await?;
        let round_trip = started.elapsed();
        let mut info = redis::cmd("INFO");
        info.arg("memory").arg("clients");
        let mut primaries = Vec::new();
        match self.topology() {
            Topology::Standalone => {
                let text: String = self.query(&info).await?;
                primaries.push(primary(self.address().to_owned(), &text)?);
            }
            Topology::Cluster => {
                for (host, port) in self.cluster_primaries().await? {
                    let addr = format!("{host}:{port}");
                    let value = self.query_node(host, port, info.clone(), "INFO").await?;
                    let text: String = redis::from_redis_value(value)
                        .map_err(|e| Error::decode(format!("INFO of {addr}"), e))?;
                    primaries.push(primary(addr, &text)?);
                }
            }
        }
        let (connections, idle_connections) = self.connections();
        Ok(PoolHealth {
            topology: self.topology(),
            round_trip,
            connections,
            idle_connections,
            primaries,
        })
    }
}

/// One primary's figures from its INFO text.
fn primary(addr: String, info: &str) -> Result<PrimaryHealth> {
    let field = |name: &str| -> Result<u64> {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| Error::decode(format!("INFO of {addr}"), format!("no {name}")))
    };
    Ok(PrimaryHealth {
        used_memory: field("used_memory")?,
        max_memory: field("maxmemory")?,
        connected_clients: field("connected_clients")?,
        addr,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn info_fields_are_read_by_exact_name() {
        let info = "# Memory\r\nused_memory:1024\r\nused_memory_human:1K\r\nmaxmemory:0\r\n\
                    # Clients\r\nconnected_clients:3\r\n";
        let p = super::primary("h:1".into(), info).unwrap();
        assert_eq!(
            (p.used_memory, p.max_memory, p.connected_clients),
            (1024, 0, 3)
        );
        assert!(super::primary("h:1".into(), "used_memory:1\r\n").is_err());
    }
}
