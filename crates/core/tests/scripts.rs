//! Scripts: EVALSHA with NOSCRIPT recovery, typed errors, the prelude's clock.

use coordkit_core::{Clock, Error, Invocation, ManualClock, Script};
use coordkit_testkit::redis_test;

static COUNTER: Script = Script::new(
    "counter",
    "-- KEYS[1] hash. ARGV[1] field, ARGV[2] by. Returns the new value.\n\
     ck_expect_type(KEYS[1], 'hash')\n\
     return redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])",
);

static GUARDED: Script = Script::new(
    "guarded",
    "-- KEYS[1] hash. ARGV[1] expected version. Fails with CONFLICT <current> on mismatch.\n\
     local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')\n\
     if current ~= tonumber(ARGV[1]) then return ck_fail('CONFLICT', tostring(current)) end\n\
     return redis.call('HINCRBY', KEYS[1], 'v', 1)",
);

static READ: Script = Script::new(
    "read",
    "-- KEYS[1] a hash (or nothing), KEYS[2] any key. Returns KEYS[1]'s field n, its type\n\
     -- checked by the read.\n\
     return ck_read('hash', 'HGET', KEYS[1], 'n')",
);

static UNCHECKED: Script = Script::new(
    "unchecked",
    "-- KEYS[1] any key. Increments a hash field without checking the type first.\n\
     return redis.call('HINCRBY', KEYS[1], 'n', 1)",
);

static NOW: Script = Script::new(
    "now",
    "-- ARGV[1] now_ms (\"\" = server time). Returns ck_now(ARGV[1]).\n\
     return ck_now(ARGV[1])",
);

static NOW_TEXT: Script = Script::new(
    "now-text",
    "-- ARGV[1] now_ms (\"\" = server time). Returns ck_now_text(ARGV[1]) and, read in the\n\
     -- same call just before and just after it, TIME's seconds and microseconds.\n\
     local b = redis.call('TIME')\n\
     local text = ck_now_text(ARGV[1])\n\
     local t = redis.call('TIME')\n\
     return {text, b[1], b[2], t[1], t[2]}",
);

static BOUNDED: Script = Script::new(
    "bounded",
    "-- KEYS[1] hash. Reads field n as a whole number in 0..1000 (validation), then adds one.\n\
     local n = ck_int(redis.call('HGET', KEYS[1], 'n'), KEYS[1], 'field n', 1000) or 0\n\
     if n == 1000 then ck_corrupt(KEYS[1], 'field n is at its cap') end\n\
     redis.call('HSET', KEYS[1], 'n', n + 1, 'touched', 1)\n\
     return n + 1",
);

static TRANSITION_EMIT: Script = Script::new(
    "emit",
    "-- ARGV[1] channel. Emits an event.\nck_emit(ARGV[1], 'k', 's', 'e', 1, nil)",
);

static WORD: Script = Script::new("word", "-- Returns a word.\nreturn 'not a number'");

redis_test! {
    async fn scripts_survive_script_flush_between_calls(redis) {
        let pool = redis.pool().await;
        let key = redis.keyspace().instance("test", "flush").unwrap().key("h");
        let first: i64 = COUNTER.prepare().key(&key).arg("n").arg(5).invoke(&pool).await.unwrap();
        assert_eq!(first, 5);
        for round in 0..3 {
            let flushed: Vec<String> = redis.on_every_server(&["SCRIPT", "FLUSH"]);
            assert!(flushed.iter().all(|r| r == "OK"));
            let n: i64 = COUNTER.prepare().key(&key).arg("n").arg(1).invoke(&pool).await.unwrap();
            assert_eq!(n, 6 + round);
        }
        // After the reload the script is known again: EVALSHA answers without a load.
        let sha = COUNTER.sha1().to_owned();
        let known: Vec<Vec<bool>> = redis.on_every_server(&["SCRIPT", "EXISTS", &sha]);
        assert!(known.iter().any(|k| k == &vec![true]), "{known:?}");
    }
}

redis_test! {
    async fn a_script_rejection_is_a_typed_error_with_its_code(redis) {
        let pool = redis.pool().await;
        let key = redis.keyspace().instance("test", "cas").unwrap().key("h");
        let v: i64 = GUARDED.prepare().key(&key).arg(0).invoke(&pool).await.unwrap();
        assert_eq!(v, 1);
        let err = GUARDED.prepare().key(&key).arg(0).invoke::<i64>(&pool).await.unwrap_err();
        match &err {
            Error::Script { script, code, detail } => {
                assert_eq!(*script, "guarded");
                assert_eq!(code, "CONFLICT");
                assert_eq!(detail, "1");
            }
            other => panic!("expected a script error, got {other:?}"),
        }
        assert_eq!(err.script_code(), Some("CONFLICT"));
        assert!(!err.is_retryable());
    }
}

redis_test! {
    async fn a_key_of_the_wrong_type_is_named(redis) {
        let pool = redis.pool().await;
        let inst = redis.keyspace().instance("test", "wrongtype").unwrap();
        let key = inst.key("h");
        let _: () = pool.query(redis::cmd("SET").arg(&key).arg("garbage")).await.unwrap();

        // Checked by the script itself (the prelude's ck_expect_type).
        let err = COUNTER.prepare().key(&key).arg("n").arg(1).invoke::<i64>(&pool).await.unwrap_err();
        match err {
            Error::WrongType { key: k, found } => {
                assert_eq!(k, key.as_str());
                assert_eq!(found, "string");
            }
            other => panic!("expected WrongType, got {other:?}"),
        }

        // Checked by the read itself (the prelude's ck_read): named even when another of the
        // call's keys holds a type the pool could not tell from the culprit's.
        let list = inst.key("list");
        let _: () = pool.query(redis::cmd("RPUSH").arg(&list).arg("x")).await.unwrap();
        let err = READ.prepare().key(&key).key(&list).invoke::<Option<i64>>(&pool).await;
        match err.unwrap_err() {
            Error::WrongType { key: k, found } => {
                assert_eq!(k, key.as_str());
                assert_eq!(found, "string");
            }
            other => panic!("expected WrongType, got {other:?}"),
        }
        let hash = inst.key("hash");
        let _: () = pool.query(redis::cmd("HSET").arg(&hash).arg("n").arg(7)).await.unwrap();
        let n: Option<i64> = READ.prepare().key(&hash).key(&list).invoke(&pool).await.unwrap();
        assert_eq!(n, Some(7));

        // Redis's own WRONGTYPE: the pool finds which key it was.
        let err = UNCHECKED.prepare().key(&key).invoke::<i64>(&pool).await.unwrap_err();
        match err {
            Error::WrongType { key: k, found } => {
                assert_eq!(k, key.as_str());
                assert_eq!(found, "string");
            }
            other => panic!("expected WrongType, got {other:?}"),
        }
        // Nothing was written over the foreign value.
        let v: String = pool.query(redis::cmd("GET").arg(&key)).await.unwrap();
        assert_eq!(v, "garbage");
    }
}

redis_test! {
    async fn stored_numbers_out_of_bounds_are_corrupt_data_naming_the_key(redis) {
        let pool = redis.pool().await;
        let key = redis.keyspace().instance("test", "bounded").unwrap().key("h");
        let n: i64 = BOUNDED.prepare().key(&key).invoke(&pool).await.unwrap();
        assert_eq!(n, 1);
        for garbage in [
            "x", "-1", "1.5", "1001", "nan", "inf", "18446744073709551615", "", "\u{e9}\r\n",
            // Numbers to Lua, but not to HINCRBY: a later increment would fail half-way.
            "5.0", " 5", "5 ", "0x10", "1e3", "+5", "05",
        ] {
            let _: () = pool.query(redis::cmd("HSET").arg(&key).arg("n").arg(garbage)).await.unwrap();
            let _: () = pool.query(redis::cmd("HDEL").arg(&key).arg("touched")).await.unwrap();
            let err = BOUNDED.prepare().key(&key).invoke::<i64>(&pool).await.unwrap_err();
            match &err {
                Error::Corrupt { key: k, detail } => {
                    assert_eq!(k, key.as_str(), "{garbage:?}");
                    assert!(detail.starts_with("field n is"), "{garbage:?}: {detail}");
                    assert!(detail.contains("0..1000"), "{garbage:?}: {detail}");
                }
                other => panic!("{garbage:?}: expected Corrupt, got {other:?}"),
            }
            assert!(!err.is_retryable());
            // Nothing written: the garbage is still there and the script's other field is not.
            let (v, touched): (String, Option<String>) = pool
                .query(redis::cmd("HMGET").arg(&key).arg("n").arg("touched"))
                .await
                .unwrap();
            assert_eq!((v.as_str(), touched), (garbage, None));
        }
        let _: () = pool.query(redis::cmd("HSET").arg(&key).arg("n").arg(1000)).await.unwrap();
        let err = BOUNDED.prepare().key(&key).invoke::<i64>(&pool).await.unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { key: k, detail } if k == key.as_str() && detail == "field n is at its cap"),
            "{err:?}"
        );
        // Repaired, it works again.
        let _: () = pool.query(redis::cmd("HSET").arg(&key).arg("n").arg(7)).await.unwrap();
        let n: i64 = BOUNDED.prepare().key(&key).invoke(&pool).await.unwrap();
        assert_eq!(n, 8);
    }
}

redis_test! {
    async fn an_answer_of_the_wrong_shape_is_a_decode_error(redis) {
        let pool = redis.pool().await;
        let key = redis.keyspace().instance("test", "decode").unwrap().key("k");
        let err = WORD.prepare().key(&key).invoke::<i64>(&pool).await.unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{err:?}");
        let word: String = WORD.prepare().key(&key).invoke(&pool).await.unwrap();
        assert_eq!(word, "not a number");
    }
}

redis_test! {
    async fn scripts_read_server_time_unless_a_manual_clock_is_given(redis) {
        let pool = redis.pool().await;
        let key = redis.keyspace().instance("test", "clock").unwrap().key("k");
        let manual = ManualClock::new(1_700_000_000_123);
        let clock = Clock::from(manual.clone());
        let t: u64 = NOW.prepare().key(&key).arg(clock.arg()).invoke(&pool).await.unwrap();
        assert_eq!(t, 1_700_000_000_123);
        manual.advance(std::time::Duration::from_secs(90));
        let t: u64 = NOW.prepare().key(&key).arg(clock.arg()).invoke(&pool).await.unwrap();
        assert_eq!(t, 1_700_000_090_123);

        let server_ms = pool.server_time_ms().await.unwrap();
        let t: u64 = NOW.prepare().key(&key).arg(Clock::Server.arg()).invoke(&pool).await.unwrap();
        assert!(t >= server_ms && t < server_ms + 60_000, "script time {t}, server time {server_ms}");
    }
}

redis_test! {
    async fn the_time_as_text_is_the_manual_clock_or_the_servers_milliseconds(redis) {
        let pool = redis.pool().await;
        let key = redis.keyspace().instance("test", "clock-text").unwrap().key("k");
        let clock = Clock::from(ManualClock::new(1_700_000_000_007));
        let (text, ..): (String, u64, u64, u64, u64) =
            NOW_TEXT.prepare().key(&key).arg(clock.arg()).invoke(&pool).await.unwrap();
        assert_eq!(text, "1700000000007");
        // Many readings, so that microsecond parts with fewer than six digits (whose
        // milliseconds need zero padding) come up too: each text is a millisecond between
        // those of the TIME read just before it and just after it (no bound on the gap: a
        // loaded machine may pause the server between the two).
        for _ in 0..200 {
            let (text, bs, bus, s, us): (String, u64, u64, u64, u64) =
                NOW_TEXT.prepare().key(&key).arg(Clock::Server.arg()).invoke(&pool).await.unwrap();
            let ms: u64 = text.parse().unwrap();
            let (before, after) = (bs * 1000 + bus / 1000, s * 1000 + us / 1000);
            assert!(before <= ms && ms <= after, "{bs}.{bus:06}, {text}, then {s}.{us:06}");
            assert_eq!(text.len(), after.to_string().len(), "{text}");
        }
    }
}

#[test]
fn every_script_carries_the_prelude_helpers_it_names() {
    let source = COUNTER.source();
    assert!(source.contains("local function ck_expect_type("));
    assert!(source.contains("HINCRBY"));
    // Helpers the body does not name are left out (their closures would cost every call).
    for unused in [
        "local function ck_now(",
        "local function ck_emit(",
        "local function ck_fail(",
    ] {
        assert!(!source.contains(unused), "{unused} in {source}");
    }
    assert!(NOW.source().contains("local function ck_now("));
    // A helper whose name starts with another's brings only itself.
    assert!(NOW_TEXT.source().contains("local function ck_now_text("));
    assert!(!NOW_TEXT.source().contains("local function ck_now("));
    assert!(GUARDED.source().contains("local function ck_fail("));
    // A helper brings the helpers it calls, before itself.
    let emit = TRANSITION_EMIT.source();
    let (envelope, table) = (
        emit.find("local function ck_envelope(")
            .expect("ck_envelope"),
        emit.find("local function ck_emit(").expect("ck_emit"),
    );
    assert!(envelope < table, "{emit}");
    assert_eq!(
        UNCHECKED
            .source()
            .lines()
            .filter(|l| l.contains("local function"))
            .count(),
        0
    );
    assert_eq!(COUNTER.sha1().len(), 40);
    assert_ne!(COUNTER.sha1(), NOW.sha1());
}

redis_test! {
    async fn one_round_trip_per_invocation(redis) {
        // A full pool (4 connections for 10 tasks) so no connection is opened while measuring.
        let pool = coordkit_core::Pool::connect(redis.config().pool_size(4)).await.unwrap();
        let key = redis.keyspace().instance("test", "trips").unwrap().key("h");
        let round = || async {
            let tasks: Vec<_> = (0..10)
                .map(|_| {
                    let pool = pool.clone();
                    let key = key.clone();
                    tokio::spawn(async move {
                        for _ in 0..20 {
                            let _: i64 = COUNTER.prepare().key(&key).arg("n").arg(1).invoke(&pool).await.unwrap();
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        };
        round().await;
        assert_eq!(pool.connections().0, 4);
        redis.reset_stats();
        round().await;
        assert_eq!(redis.command_calls("evalsha"), 200);
        // No PING per checkout, no reload, nothing else on the hot path.
        assert_eq!(redis.command_calls("ping"), 0);
        assert_eq!(redis.command_calls("script|load"), 0);
        assert_eq!(redis.command_calls("eval"), 0);
    }
}

static ECHO_INCR: Script = Script::new(
    "echo-incr",
    "-- KEYS[1] counter. ARGV[1] a marker. Increments the counter; returns the marker.\n\
     redis.call('INCR', KEYS[1])\n\
     return ARGV[1]",
);

redis_test! {
    async fn replies_not_waited_for_never_reach_another_caller(redis) {
        // One connection, so sends without reply and awaited calls share its pipeline.
        let pool = coordkit_core::Pool::connect(redis.config().pool_size(1)).await.unwrap();
        let key = redis.keyspace().instance("test", "noreply").unwrap().key("n");
        // Make sure the server knows the script: a send without reply cannot load it.
        let _: String = ECHO_INCR.prepare().key(&key).arg("warm").invoke(&pool).await.unwrap();
        for i in 0..200 {
            ECHO_INCR.prepare().key(&key).arg(format!("lost-{i}")).send_without_reply(&pool).await.unwrap();
            if i % 10 == 0 {
                let marker = format!("mine-{i}");
                let got: String = ECHO_INCR.prepare().key(&key).arg(&marker).invoke(&pool).await.unwrap();
                assert_eq!(got, marker, "an awaited call got another call's reply");
            }
        }
        // Every send was applied (the awaited read after them is queued behind them).
        let n: i64 = pool.query(redis::cmd("GET").arg(&key)).await.unwrap();
        assert_eq!(n, 1 + 200 + 20);
    }
}

redis_test! {
    async fn earlier_invocations_run_first_in_the_same_round_trip(redis) {
        let pool = redis.pool().await;
        let key = redis.keyspace().instance("test", "after").unwrap().key("n");
        for round in 0..3 {
            // The second round starts from a server that forgot every script.
            if round == 1 {
                let _: Vec<String> = redis.on_every_server(&["SCRIPT", "FLUSH"]);
            }
            let mut earlier = Vec::new();
            for i in 0..3 {
                let mut inv = ECHO_INCR.prepare();
                inv.key(&key).arg(format!("earlier-{i}"));
                earlier.push(inv);
            }
            let mut last = ECHO_INCR.prepare();
            last.key(&key).arg("last");
            let got: String = last.invoke_after(&pool, &earlier).await.unwrap();
            assert_eq!(got, "last");
            let n: i64 = pool.query(redis::cmd("GET").arg(&key)).await.unwrap();
            assert_eq!(n, 4 * (round + 1), "every earlier invocation ran exactly once");
        }
    }
}

redis_test! {
    async fn pipelined_invocations_answer_each_alone(redis) {
        let pool = redis.pool().await;
        let ks = redis.keyspace();
        let inst = ks.instance("test", "each").unwrap();
        let good = inst.key("h");
        let squatted = inst.key("s");
        let _: () = pool.query(redis::cmd("SET").arg(&squatted).arg("x")).await.unwrap();
        for round in 0..2 {
            // The second round starts from a server that forgot every script: each call is
            // answered NOSCRIPT, none ran, so all are sent once more after a load.
            if round == 1 {
                let _: Vec<String> = redis.on_every_server(&["SCRIPT", "FLUSH"]);
            }
            let mut calls = Vec::new();
            for i in 0..5 {
                let mut inv = COUNTER.prepare();
                inv.key(if i == 2 { &squatted } else { &good }).arg("n").arg(1);
                calls.push(inv);
            }
            let answers = Invocation::invoke_each::<i64>(&pool, &calls).await.unwrap();
            assert_eq!(answers.len(), 5);
            let ok: Vec<i64> = answers.iter().filter_map(|a| a.as_ref().ok().copied()).collect();
            let base = 4 * round;
            assert_eq!(ok, vec![base + 1, base + 2, base + 3, base + 4], "{answers:?}");
            assert!(
                matches!(&answers[2], Err(Error::WrongType { key, found }) if key == squatted.as_str() && found == "string"),
                "{:?}", answers[2]
            );
        }
        assert!(Invocation::invoke_each::<i64>(&pool, &[]).await.unwrap().is_empty());

        // Plain commands in one pipeline: the failing one alone.
        let commands = vec![
            (redis::cmd("HGET").arg(&good).arg("n").to_owned(), std::slice::from_ref(&good)),
            (redis::cmd("HGET").arg(&squatted).arg("n").to_owned(), std::slice::from_ref(&squatted)),
        ];
        let answers = pool.query_each::<Option<i64>>(&commands).await.unwrap();
        assert_eq!(answers[0].as_ref().unwrap(), &Some(8));
        assert!(matches!(&answers[1], Err(Error::WrongType { .. })), "{:?}", answers[1]);
    }
}
