//! Tracing: a span per script call with its instance and outcome, and a WARN event for a
//! call that failed on the store (targets and fields: `coordkit_core::trace`).

use coordkit_core::trace::{SCRIPT_TARGET, STORE_TARGET};
use coordkit_core::{Invocation, Script};
use coordkit_testkit::redis_test;
use coordkit_testkit::spans::{SpanRecord, Spans};

static COUNTER: Script = Script::new(
    "trace-counter",
    "-- KEYS[1] hash. ARGV[1] field. Returns the new value.\n\
     ck_expect_type(KEYS[1], 'hash')\n\
     return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)",
);

static REFUSE: Script = Script::new(
    "trace-refuse",
    "-- Refuses its input: fails with BAD_INPUT.\nreturn ck_fail('BAD_INPUT', 'always')",
);

/// The closed script spans of `instance` (each test's instance name is its own).
fn script_spans(spans: &Spans, instance: &str) -> Vec<SpanRecord> {
    spans
        .closed("coordkit.script")
        .into_iter()
        .filter(|s| s.fields.get("instance").map(String::as_str) == Some(instance))
        .collect()
}

redis_test! {
    async fn a_script_call_is_a_span_naming_its_script_instance_and_outcome(redis) {
        let spans = Spans::global();
        let pool = redis.pool().await;
        let name = format!("ok-{}", redis.keyspace().namespace());
        let key = redis.keyspace().instance("trace", &name).unwrap().key("h");
        let n: i64 = COUNTER.prepare().key(&key).arg("n").invoke(&pool).await.unwrap();
        assert_eq!(n, 1);

        let instance = format!("trace:{name}");
        let found = script_spans(&spans, &instance);
        assert_eq!(found.len(), 1, "{found:?}");
        let span = &found[0];
        assert_eq!(span.target, SCRIPT_TARGET);
        assert_eq!(span.level, tracing::Level::DEBUG);
        assert_eq!(span.fields["operation"], "trace-counter");
        assert_eq!(span.fields["primitive"], "trace");
        assert_eq!(span.fields["calls"], "1");
        assert_eq!(span.fields["outcome"], "ok");
        let us: u64 = span.fields["duration_us"].parse().unwrap();
        assert!(us > 0, "{span:?}");
        // Nothing failed on the store.
        let warned = spans.events(STORE_TARGET);
        assert!(!warned.iter().any(|e| e.fields.get("instance") == Some(&instance)), "{warned:?}");
    }
}

redis_test! {
    async fn a_store_failure_is_its_outcome_and_a_warning_naming_the_key(redis) {
        let spans = Spans::global();
        let pool = redis.pool().await;
        let name = format!("wrong-{}", redis.keyspace().namespace());
        let key = redis.keyspace().instance("trace", &name).unwrap().key("h");
        let _: () = pool.query(redis::cmd("SET").arg(&key).arg("garbage")).await.unwrap();
        COUNTER.prepare().key(&key).arg("n").invoke::<i64>(&pool).await.unwrap_err();

        let instance = format!("trace:{name}");
        let found = script_spans(&spans, &instance);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].fields["outcome"], "wrong_type");
        let warned: Vec<_> = spans
            .events(STORE_TARGET)
            .into_iter()
            .filter(|e| e.fields.get("instance") == Some(&instance))
            .collect();
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert_eq!(warned[0].level, tracing::Level::WARN);
        assert_eq!(warned[0].fields["operation"], "trace-counter");
        assert_eq!(warned[0].fields["outcome"], "wrong_type");
        assert!(warned[0].fields["error"].contains(key.as_str()), "{warned:?}");
    }
}

redis_test! {
    async fn a_refused_input_is_an_outcome_not_a_warning(redis) {
        let spans = Spans::global();
        let pool = redis.pool().await;
        let name = format!("refused-{}", redis.keyspace().namespace());
        let key = redis.keyspace().instance("trace", &name).unwrap().key("h");
        REFUSE.prepare().key(&key).invoke::<i64>(&pool).await.unwrap_err();

        let instance = format!("trace:{name}");
        let found = script_spans(&spans, &instance);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].fields["outcome"], "script");
        let warned = spans.events(STORE_TARGET);
        assert!(!warned.iter().any(|e| e.fields.get("instance") == Some(&instance)), "{warned:?}");
    }
}

redis_test! {
    async fn a_pipeline_of_script_calls_is_one_span_counting_them(redis) {
        let spans = Spans::global();
        let pool = redis.pool().await;
        let name = format!("each-{}", redis.keyspace().namespace());
        let key = redis.keyspace().instance("trace", &name).unwrap().key("h");
        let mut calls = Vec::new();
        for _ in 0..3 {
            let mut call = COUNTER.prepare();
            call.key(&key).arg("n");
            calls.push(call);
        }
        let answers: Vec<coordkit_core::Result<i64>> =
            Invocation::invoke_each(&pool, &calls).await.unwrap();
        assert_eq!(answers.into_iter().map(Result::unwrap).collect::<Vec<_>>(), [1, 2, 3]);

        let found = script_spans(&spans, &format!("trace:{name}"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].fields["calls"], "3");
        assert_eq!(found[0].fields["outcome"], "ok");
    }
}

redis_test! {
    async fn a_pipeline_over_several_instances_with_a_failure_is_partial(redis) {
        let spans = Spans::global();
        let pool = redis.pool().await;
        let ns = redis.keyspace().namespace().to_owned();
        // Two instances (on a cluster each pipeline holds one slot's calls: the pool sends
        // them per node, so this test keeps both in one instance there).
        let standalone = matches!(redis.topology(), coordkit_testkit::Topology::Standalone);
        let first = redis.keyspace().instance("trace", &format!("mix-a-{ns}")).unwrap().key("h");
        let second_name = if standalone { format!("mix-b-{ns}") } else { format!("mix-a-{ns}") };
        let second = redis.keyspace().instance("trace", &second_name).unwrap().key("bad");
        let _: () = pool.query(redis::cmd("SET").arg(&second).arg("garbage")).await.unwrap();
        let mut calls = Vec::new();
        for key in [&first, &second] {
            let mut call = COUNTER.prepare();
            call.key(key).arg("n");
            calls.push(call);
        }
        let answers: Vec<coordkit_core::Result<i64>> =
            Invocation::invoke_each(&pool, &calls).await.unwrap();
        assert!(answers[0].is_ok() && answers[1].is_err(), "{answers:?}");

        let instance = if standalone { "*".to_owned() } else { format!("trace:mix-a-{ns}") };
        let found: Vec<_> = spans
            .closed("coordkit.script")
            .into_iter()
            .filter(|s| s.fields.get("instance") == Some(&instance) && s.fields["calls"] == "2")
            .filter(|s| s.fields["operation"] == "trace-counter")
            .collect();
        assert!(found.iter().any(|s| s.fields["outcome"] == "partial"), "{found:?}");
        // The failed call's store failure is a warning naming its own instance.
        let warned = spans.events(STORE_TARGET);
        let own = format!("trace:{second_name}");
        assert!(warned.iter().any(|e| e.fields.get("instance") == Some(&own)), "{warned:?}");
    }
}

redis_test! {
    async fn a_call_sent_without_its_answer_is_a_span_too(redis) {
        let spans = Spans::global();
        let pool = redis.pool().await;
        let name = format!("sent-{}", redis.keyspace().namespace());
        let key = redis.keyspace().instance("trace", &name).unwrap().key("h");
        // Known to the server first (a call sent without reply cannot load it).
        let _: i64 = COUNTER.prepare().key(&key).arg("n").invoke(&pool).await.unwrap();
        COUNTER.prepare().key(&key).arg("n").send_without_reply(&pool).await.unwrap();
        let instance = format!("trace:{name}");
        let outcomes: Vec<String> = script_spans(&spans, &instance)
            .into_iter()
            .map(|s| s.fields["outcome"].clone())
            .collect();
        assert_eq!(outcomes, ["ok", "sent"]);
    }
}
