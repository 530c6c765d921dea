//! A throwaway 3-master Redis Cluster.

use std::time::{Duration, Instant};

use crate::TestkitError;
use crate::server::{RedisServer, ServerOptions};

/// Three `redis-server` processes in cluster mode, with the 16384 slots split between them and
/// every node reporting `cluster_state:ok` with its links to the others up. Killed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three masters (no replicas) and waits until the cluster is ready.
    pub fn start() -> Result<Self, TestkitError> {
        let options = ServerOptions {
            cluster: true,
            ..ServerOptions::default()
        };
        let nodes = (0..3)
            .map(|_| RedisServer::start_with(options.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let cluster = RedisCluster { nodes };
        cluster.assign_slots()?;
        cluster.wait_ok(Duration::from_secs(30))?;
        Ok(cluster)
    }

    fn assign_slots(&self) -> Result<(), TestkitError> {
        let fail = |what: &str, e: redis::RedisError| TestkitError(format!("cluster {what}: {e}"));
        let per_node = 16384 / self.nodes.len();
        for (i, node) in self.nodes.iter().enumerate() {
            let first = i * per_node;
            let last = if i + 1 == self.nodes.len() {
                16383
            } else {
                first + per_node - 1
            };
            node.command::<()>(&[
                "CLUSTER",
                "ADDSLOTSRANGE",
                &first.to_string(),
                &last.to_string(),
            ])
            .map_err(|e| fail("ADDSLOTSRANGE", e))?;
        }
        let first = &self.nodes[0];
        for other in &self.nodes[1..] {
            first
                .command::<()>(&["CLUSTER", "MEET", "127.0.0.1", &other.port().to_string()])
                .map_err(|e| fail("MEET", e))?;
        }
        Ok(())
    }

    /// Waits until every node says `cluster_state:ok`, knows all slots' owners and has its own
    /// bus link to each other node (so a `PUBLISH` reaches subscribers on every node).
    pub fn wait_ok(&self, limit: Duration) -> Result<(), TestkitError> {
        let deadline = Instant::now() + limit;
        loop {
            if self.nodes.iter().all(node_ready) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(TestkitError(format!(
                    "the cluster on ports {:?} was not ok within {limit:?}",
                    self.ports()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The nodes' ports.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    /// `redis://127.0.0.1:<port>` for each node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// `redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,127.0.0.1:<p3>`.
    pub fn cluster_url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(RedisServer::addr).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The nodes, for admin commands.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The nodes, to kill or restart them.
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// One node, to kill or restart it.
    pub fn node_mut(&mut self, index: usize) -> &mut RedisServer {
        &mut self.nodes[index]
    }

    /// Restarts every node (same ports, same `nodes.conf`) and waits for `cluster_state:ok`.
    pub fn restart_all(&mut self) -> Result<(), TestkitError> {
        for node in &mut self.nodes {
            node.kill();
        }
        for node in &mut self.nodes {
            node.restart()?;
        }
        self.wait_ok(Duration::from_secs(30))
    }
}

fn node_ready(node: &RedisServer) -> bool {
    let info: String = match node.command(&["CLUSTER", "INFO"]) {
        Ok(info) => info,
        Err(_) => return false,
    };
    let ok = info.contains("cluster_state:ok");
    let known = info
        .lines()
        .find_map(|l| l.strip_prefix("cluster_known_nodes:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let assigned = info
        .lines()
        .find_map(|l| l.strip_prefix("cluster_slots_ok:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0);
    ok && known >= 3 && assigned == 16384 && links_up(node, known)
}

/// Whether `node` has its own link to each of the other `known - 1` nodes, none of them in
/// handshake or suspected failed. `cluster_state:ok` can come before that (a node learns the
/// slots of a peer from the peer's link to it), and a `PUBLISH` only crosses the bus on a
/// node's own links: a test that published in that window lost the message.
fn links_up(node: &RedisServer, known: usize) -> bool {
    let nodes: String = match node.command(&["CLUSTER", "NODES"]) {
        Ok(nodes) => nodes,
        Err(_) => return false,
    };
    let peers: Vec<Vec<&str>> = nodes
        .lines()
        .map(|line| line.split(' ').collect::<Vec<_>>())
        .filter(|fields| fields.len() > 7 && !fields[2].contains("myself"))
        .collect();
    peers.len() + 1 == known
        && peers.iter().all(|fields| {
            fields[7] == "connected"
                && !fields[2].contains("handshake")
                && !fields[2].contains("fail")
                && !fields[2].contains("noaddr")
        })
}
