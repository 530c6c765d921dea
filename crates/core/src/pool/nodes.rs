//! Commands on one node, and scans over every primary of a cluster.

use redis::{Cmd, Value};

use super::{AnyConnection, Origin, Pool};
use crate::config::Topology;
use crate::error::{Error, Result};

impl Pool {
    /// One page of `SCAN … MATCH pattern COUNT count`, over every primary of a cluster.
    ///
    /// Start with `cursor = ""`; pass each page's [`ScanPage::next`] back until it is `None`.
    /// Like `SCAN`, a key present for the whole scan is returned at least once (possibly twice),
    /// and a page may be empty while more follow. On a cluster the cursor also names the node,
    /// so a slot migration during the scan may skip or repeat keys.
    pub async fn scan_page(&self, pattern: &str, cursor: &str, count: u32) -> Result<ScanPage> {
        let bad_cursor =
            || Error::invalid_config("cursor", format!("{cursor:?} is not a scan cursor"));
        match self.topology() {
            Topology::Standalone => {
                let start: u64 = if cursor.is_empty() {
                    0
                } else {
                    cursor.parse().map_err(|_| bad_cursor())?
                };
                let (next, keys): (u64, Vec<String>) = self
                    .query(
                        redis::cmd("SCAN")
                            .arg(start)
                            .arg("MATCH")
                            .arg(pattern)
                            .arg("COUNT")
                            .arg(count.max(1)),
                    )
                    .await?;
                Ok(ScanPage {
                    keys,
                    next: (next != 0).then(|| next.to_string()),
                })
            }
            Topology::Cluster => {
                let (node, start) = if cursor.is_empty() {
                    (0usize, 0u64)
                } else {
                    let (node, start) = cursor.split_once(':').ok_or_else(bad_cursor)?;
                    (
                        node.parse().map_err(|_| bad_cursor())?,
                        start.parse().map_err(|_| bad_cursor())?,
                    )
                };
                let primaries = self.cluster_primaries().await?;
                let Some((host, port)) = primaries.get(node).cloned() else {
                    return Ok(ScanPage {
                        keys: Vec::new(),
                        next: None,
                    });
                };
                let mut scan = redis::cmd("SCAN");
                scan.arg(start)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(count.max(1));
                let value = self.query_node(host, port, scan, "SCAN").await?;
                let (next, keys): (u64, Vec<String>) = redis::from_redis_value(value)
                    .map_err(|e| Error::decode("the answer to SCAN", e))?;
                let next = if next != 0 {
                    Some(format!("{node}:{next}"))
                } else if node + 1 < primaries.len() {
                    Some(format!("{}:0", node + 1))
                } else {
                    None
                };
                Ok(ScanPage { keys, next })
            }
        }
    }

    /// Runs `cmd` on the cluster node at `host:port` (on a standalone server, on the server).
    pub(crate) async fn query_node(
        &self,
        host: String,
        port: u16,
        cmd: Cmd,
        operation: &str,
    ) -> Result<Value> {
        let mut conn = self.checkout().await?;
        let timeout = self.inner.config.command_timeout;
        let outcome = match &mut conn.inner {
            AnyConnection::Cluster(c) => {
                let routing = redis::cluster_routing::RoutingInfo::SingleNode(
                    redis::cluster_routing::SingleNodeRoutingInfo::ByAddress { host, port },
                );
                tokio::time::timeout(timeout, c.route_command(cmd, routing)).await
            }
            AnyConnection::Standalone(c) => {
                tokio::time::timeout(timeout, cmd.query_async::<Value>(c)).await
            }
        };
        self.settle(&conn, outcome, operation, Origin::NONE).await
    }

    /// The cluster's primaries, `(host, port)` sorted, from `CLUSTER SLOTS`.
    pub(crate) async fn cluster_primaries(&self) -> Result<Vec<(String, u16)>> {
        let slots: Vec<Vec<redis::Value>> = self
            .query(&redis::cmd("CLUSTER").arg("SLOTS").to_owned())
            .await?;
        let mut primaries: Vec<(String, u16)> = slots
            .iter()
            .filter_map(|range| range.get(2))
            .filter_map(|node| {
                redis::from_redis_value::<(String, u16)>(node.clone())
                    .ok()
                    .or_else(|| {
                        redis::from_redis_value::<Vec<redis::Value>>(node.clone())
                            .ok()
                            .and_then(|parts| {
                                let host =
                                    redis::from_redis_value::<String>(parts.first()?.clone())
                                        .ok()?;
                                let port =
                                    redis::from_redis_value::<u16>(parts.get(1)?.clone()).ok()?;
                                Some((host, port))
                            })
                    })
            })
            .collect();
        primaries.sort();
        primaries.dedup();
        Ok(primaries)
    }
}

/// One page of [`Pool::scan_page`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    /// The keys of this page.
    pub keys: Vec<String>,
    /// The cursor of the next page; `None` when the scan is complete.
    pub next: Option<String>,
}
