//! The testkit itself: servers start, die, come back, and say how to install Redis.

use std::ffi::OsString;

use coordkit_testkit::{
    RedisCluster, RedisServer, ServerOptions, accepts_connections, find_redis_server,
};

#[test]
fn a_missing_redis_server_fails_with_the_install_command() {
    let empty = tempfile::tempdir().unwrap();
    let err = find_redis_server(None, Some(OsString::from(empty.path()))).unwrap_err();
    assert!(err.0.contains("apt-get install -y redis-server"), "{err}");
    let err =
        find_redis_server(Some(OsString::from("/nonexistent/redis-server")), None).unwrap_err();
    assert!(err.0.contains("REDIS_SERVER_BIN"), "{err}");
    assert!(err.0.contains("apt-get install -y redis-server"), "{err}");
}

#[test]
fn acknowledged_writes_survive_kill_9_with_aof_always() {
    let mut server = RedisServer::start_with(ServerOptions {
        aof: true,
        ..ServerOptions::default()
    })
    .unwrap();
    for _ in 0..100 {
        let _: i64 = server.command(&["INCR", "n"]).unwrap();
    }
    server.kill();
    assert!(!server.is_running());
    assert!(!accepts_connections(&server.addr()));
    server.restart().unwrap();
    let n: i64 = server.command(&["GET", "n"]).unwrap();
    assert_eq!(n, 100);
}

#[test]
fn without_aof_a_restart_starts_empty() {
    let mut server = RedisServer::start().unwrap();
    let _: () = server.command(&["SET", "k", "v"]).unwrap();
    let port = server.port();
    server.stop();
    server.restart().unwrap();
    assert_eq!(server.port(), port);
    let v: Option<String> = server.command(&["GET", "k"]).unwrap();
    assert_eq!(v, None);
}

#[test]
fn servers_die_with_their_handle() {
    let server = RedisServer::start().unwrap();
    let addr = server.addr();
    assert!(accepts_connections(&addr));
    drop(server);
    assert!(!accepts_connections(&addr));
}

#[test]
fn a_cluster_node_comes_back_after_a_restart() {
    let mut cluster = RedisCluster::start().unwrap();
    cluster.node_mut(1).kill();
    cluster.node_mut(1).restart().unwrap();
    cluster.wait_ok(std::time::Duration::from_secs(30)).unwrap();
    let info: String = cluster.nodes()[1].command(&["CLUSTER", "INFO"]).unwrap();
    assert!(info.contains("cluster_state:ok"), "{info}");
    let ports = cluster.ports();
    drop(cluster);
    for port in ports {
        assert!(!accepts_connections(&format!("127.0.0.1:{port}")));
    }
}

#[test]
fn a_started_cluster_carries_a_publish_from_every_node_to_every_node() {
    // Readiness once fired before a node had its own bus link to a peer: a PUBLISH made then
    // never reached that peer's subscribers. Fresh clusters, published to at once.
    for _ in 0..3 {
        let cluster = RedisCluster::start().unwrap();
        let mut subscribers: Vec<redis::Connection> = cluster
            .urls()
            .iter()
            .map(|url| {
                let mut conn = redis::Client::open(url.as_str())
                    .unwrap()
                    .get_connection()
                    .unwrap();
                conn.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                    .unwrap();
                let _: () = redis::cmd("SUBSCRIBE")
                    .arg("ready")
                    .query(&mut conn)
                    .unwrap();
                conn
            })
            .collect();
        for (i, node) in cluster.nodes().iter().enumerate() {
            let _: i64 = node.command(&["PUBLISH", "ready", &i.to_string()]).unwrap();
        }
        for (at, conn) in subscribers.iter_mut().enumerate() {
            let mut pubsub = conn.as_pubsub();
            let mut got: Vec<String> = (0..3)
                .map(|_| {
                    let message = pubsub.get_message().unwrap_or_else(|e| {
                        panic!("node {at} missed a publish: {e} ({:?})", cluster.ports())
                    });
                    message.get_payload().unwrap()
                })
                .collect();
            got.sort();
            assert_eq!(got, ["0", "1", "2"], "node {at}");
        }
    }
}
