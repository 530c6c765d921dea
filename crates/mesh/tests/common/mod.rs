//! Helpers shared by this crate's tests.

use coordkit_testkit::TestRedis;

/// Every command the servers ran since their stats were reset, by name and sorted, from
/// `INFO commandstats` (leaving out `INFO` and `CONFIG` themselves): what proves how many
/// round trips an operation costs, and what the scripts it ran read.
#[allow(dead_code)]
pub(crate) fn commands(redis: &TestRedis) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for info in redis.on_every_server::<String>(&["INFO", "commandstats"]) {
        for line in info.lines() {
            let Some(rest) = line.strip_prefix("cmdstat_") else {
                continue;
            };
            let Some((name, stats)) = rest.split_once(":calls=") else {
                continue;
            };
            let calls: u64 = stats.split(',').next().unwrap().parse().unwrap();
            if name != "info" && !name.starts_with("config") {
                out.push((name.to_owned(), calls));
            }
        }
    }
    out.sort();
    out
}

/// The agent's inbox once the copies of replies that reached it by push are forgotten (the
/// agent does that in the background, batched): waits until none is stored, a minute at most.
#[allow(dead_code)]
pub(crate) async fn settled(agent: &coordkit_mesh::MeshAgent) -> coordkit_mesh::InboxStats {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let stats = agent.inbox_stats().await.unwrap();
        if stats.replies == 0 || tokio::time::Instant::now() > deadline {
            return stats;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Waits until `servers` have answered `n` requests between them (a minute at most), and
/// answers how many they did: a reply can reach its asker, by push, before the responder has
/// counted it.
#[allow(dead_code)]
pub(crate) async fn served(servers: &[&coordkit_mesh::Server], n: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let done: u64 = servers.iter().map(|s| s.served()).sum();
        if done >= n || tokio::time::Instant::now() > deadline {
            return done;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Whether anyone subscribes to `channel`, by `SUBSCRIBE` or (an inbox's wake channel on a
/// cluster) `SSUBSCRIBE`, on any server.
#[allow(dead_code)]
pub(crate) fn subscribed(redis: &TestRedis, channel: &str) -> bool {
    ["NUMSUB", "SHARDNUMSUB"].iter().any(|sub| {
        redis
            .on_every_server::<Vec<(String, u64)>>(&["PUBSUB", sub, channel])
            .iter()
            .any(|counts| counts.iter().any(|(_, n)| *n > 0))
    })
}
