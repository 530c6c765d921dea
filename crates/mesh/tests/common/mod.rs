//! Helpers shared by this crate's tests.

use coordkit_testkit::TestRedis;

/// Every command the servers ran since their stats were reset, by name and sorted, from
/// `INFO commandstats` (leaving out `INFO` and `CONFIG` themselves): what proves how many
/// round trips an operation costs, and what the scripts it ran read.
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
