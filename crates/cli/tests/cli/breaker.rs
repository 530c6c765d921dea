//! `coordkit breaker …` against the breaker's own snapshot.

use coordkit_circuit_breaker::{Admission, CircuitBreaker, Outcome, State};

use crate::cli_test;
use crate::common::Harness;

/// A breaker with the default rules, opened by ten failures.
fn opened(t: &Harness, name: &str) -> CircuitBreaker {
    let breaker = CircuitBreaker::builder(&t.pool, &t.keyspace, name)
        .build()
        .unwrap();
    t.block_on(async {
        for _ in 0..10 {
            if let Admission::Admitted(permit) = breaker.acquire().await.unwrap() {
                breaker.record(permit, Outcome::Failure).await.unwrap();
            }
        }
    });
    assert_eq!(t.block_on(breaker.snapshot()).unwrap().state, State::Open);
    breaker
}

cli_test! {
    fn show_matches_the_snapshot(t) {
        let breaker = opened(&t, "llm-api");
        let json = t.json(&["breaker", "show", "llm-api"]);
        let s = t.block_on(breaker.snapshot()).unwrap();
        assert_eq!(json["breaker"], "llm-api");
        assert_eq!(json["state"], "open");
        assert_eq!(json["epoch"], s.epoch);
        assert_eq!(json["calls"], s.calls);
        assert_eq!(json["failures"], s.failures);
        assert_eq!(json["failure_rate"], s.failure_rate());
        assert_eq!(json["consecutive_failures"], s.consecutive_failures);
        assert_eq!(json["open_until_ms"], s.open_until_ms);
        assert_eq!(json["opened_at_ms"], s.opened_at_ms);

        let human = t.ok(&["breaker", "show", "llm-api"]);
        assert!(human.contains(" open "), "{human}");
        assert!(human.contains(&format!(" {} ", s.epoch)), "{human}");

        let err = t.fails(1, &["breaker", "show", "never-used"]);
        assert!(err.contains("unknown breaker \"never-used\""), "{err}");
    }
}

cli_test! {
    fn force_and_clear_change_the_shared_state(t) {
        let breaker = opened(&t, "db");
        t.fails(2, &["breaker", "clear", "db"]);
        assert_eq!(t.block_on(breaker.snapshot()).unwrap().state, State::Open);

        let json = t.json(&["-y", "breaker", "clear", "db"]);
        assert_eq!((json["before"].as_str(), json["state"].as_str()), (Some("open"), Some("closed")));
        let s = t.block_on(breaker.snapshot()).unwrap();
        assert_eq!((s.state, s.calls), (State::Closed, 0));
        assert_eq!(json["epoch"], s.epoch);

        assert_eq!(
            t.ok(&["-y", "breaker", "force-open", "db"]),
            format!("breaker db: closed -> forced_open (epoch {})\n", s.epoch + 1)
        );
        assert_eq!(t.block_on(breaker.snapshot()).unwrap().state, State::ForcedOpen);
        assert!(matches!(t.block_on(breaker.acquire()).unwrap(), Admission::Rejected(_)));

        t.json(&["-y", "breaker", "force-closed", "db"]);
        assert_eq!(t.block_on(breaker.snapshot()).unwrap().state, State::MetricsOnly);
        t.json(&["-y", "breaker", "force-closed", "db", "--no-count"]);
        assert_eq!(t.block_on(breaker.snapshot()).unwrap().state, State::Disabled);

        // A breaker with no state yet can be forced (to stop calls before it ever tripped).
        t.ok(&["-y", "breaker", "force-open", "fresh"]);
        let fresh = CircuitBreaker::builder(&t.pool, &t.keyspace, "fresh").build().unwrap();
        assert_eq!(t.block_on(fresh.snapshot()).unwrap().state, State::ForcedOpen);
        // Clearing one that has none is an unknown instance.
        t.fails(1, &["-y", "breaker", "clear", "ghost"]);
    }
}

cli_test! {
    fn a_breaker_with_its_own_rules_is_read_and_steered_by_them(t) {
        use coordkit_circuit_breaker::{BreakerConfig, OpenDuration, Window};
        use std::time::Duration;
        // Rules unlike the defaults: a window of 20 calls, a 10-minute open period.
        let rules = BreakerConfig::builder()
            .window(Window::Count(20))
            .minimum_calls(50)
            .open_duration(OpenDuration::Fixed(Duration::from_secs(600)))
            .build()
            .unwrap();
        let breaker = CircuitBreaker::builder(&t.pool, &t.keyspace, "search")
            .config(rules)
            .build()
            .unwrap();
        let calls = |n: usize, outcome: Outcome| {
            t.block_on(async {
                for _ in 0..n {
                    if let Admission::Admitted(permit) = breaker.acquire().await.unwrap() {
                        breaker.record(permit, outcome).await.unwrap();
                    }
                }
            })
        };
        calls(7, Outcome::Failure);
        let shown = t.json(&["breaker", "show", "search"]);
        let own = t.block_on(breaker.snapshot()).unwrap();
        assert_eq!(shown["calls"], own.calls);
        assert_eq!((shown["calls"].as_u64(), shown["failures"].as_u64()), (Some(7), Some(7)));

        // Forced closed and cleared from the command line, the application's own handle goes
        // on recording without a fault, with its own window.
        t.json(&["breaker", "force-closed", "search", "--yes"]);
        calls(30, Outcome::Success);
        t.json(&["breaker", "clear", "search", "--yes"]);
        calls(25, Outcome::Success);
        let after = t.block_on(breaker.snapshot()).unwrap();
        assert_eq!((after.state, after.calls, after.failures), (State::Closed, 20, 0));
        assert_eq!(t.json(&["breaker", "show", "search"])["calls"], 20);
    }
}
