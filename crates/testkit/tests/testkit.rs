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
