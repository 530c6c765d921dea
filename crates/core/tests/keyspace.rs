//! Keyspace: no accepted name can escape its namespace or its hash tag.

use coordkit_core::{Error, Keyspace, MAX_NAME_BYTES, redis_hash_tag};
use coordkit_testkit::{TestRedis, Topology};
use proptest::prelude::*;

/// Names from a wide alphabet: braces, colons, glob characters, whitespace, control characters
/// and multi-byte text, at lengths around the limit.
fn any_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9:_.*?-]{1,12}",
        ".{0,24}",
        "[{}: \\t\\na-c]{0,8}",
        proptest::collection::vec(
            prop_oneof![Just('x'), Just('é'), Just('{'), Just(':')],
            190..215
        )
        .prop_map(|chars| chars.into_iter().collect()),
    ]
}

fn breaks_a_rule(name: &str) -> bool {
    name.is_empty()
        || name.len() > MAX_NAME_BYTES
        || name.contains(['{', '}'])
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn accepted_names_stay_in_their_namespace_and_tag(
        namespace in any_name(),
        name in any_name(),
        suffix in "[a-z]{1,8}",
    ) {
        match Keyspace::new(&namespace) {
            Err(Error::InvalidName { what, .. }) => {
                prop_assert!(breaks_a_rule(&namespace));
                prop_assert_eq!(what, "namespace");
            }
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            Ok(keyspace) => {
                prop_assert!(!breaks_a_rule(&namespace));
                match keyspace.instance("queue", &name) {
                    Err(Error::InvalidName { what, rule, .. }) => {
                        prop_assert!(breaks_a_rule(&name), "{name:?} rejected for {rule}");
                        prop_assert_eq!(what, "instance name");
                    }
                    Err(other) => prop_assert!(false, "unexpected error {other:?}"),
                    Ok(instance) => {
                        prop_assert!(!breaks_a_rule(&name));
                        let key = instance.key(&suffix);
                        let key = key.as_str();
                        let expected_tag = format!("queue:{name}");
                        // The hash tag Redis computes is exactly kind:name…
                        prop_assert_eq!(redis_hash_tag(key), expected_tag.as_str());
                        prop_assert_eq!(instance.hash_tag(), expected_tag.as_str());
                        prop_assert_eq!(instance.name(), name.as_str());
                        // …the key starts with the namespace and ends with the suffix…
                        let expected_prefix = format!("{namespace}:{{");
                        prop_assert!(key.starts_with(&expected_prefix));
                        let expected_suffix = format!("}}:{suffix}");
                        prop_assert!(key.ends_with(&expected_suffix));
                        // …and the parts can be read back unambiguously.
                        let open = key.find('{').unwrap();
                        prop_assert_eq!(&key[..open - 1], namespace.as_str());
                    }
                }
            }
        }
    }

    #[test]
    fn different_instances_never_share_a_key(
        a in "[a-z:]{1,6}",
        b in "[a-z:]{1,6}",
        sa in "[a-z:]{1,4}",
        sb in "[a-z:]{1,4}",
    ) {
        let ks = Keyspace::new("ns").unwrap();
        let ka = ks.instance("cb", &a).unwrap().key(&sa);
        let kb = ks.instance("cb", &b).unwrap().key(&sb);
        prop_assert_eq!(ka == kb, a == b && sa == sb);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_of_an_instance_lands_in_one_cluster_slot() {
    let redis = TestRedis::start(Topology::Cluster);
    let node = &match &redis {
        TestRedis::Cluster(cluster) => cluster.nodes(),
        TestRedis::Standalone(_) => unreachable!(),
    }[0];
    let ks = redis.keyspace();
    for name in [
        "payments",
        "a:b:c",
        "émoji-ünïcode",
        "x*?[]",
        &"n".repeat(200),
    ] {
        let instance = ks.instance("cb", name).unwrap();
        let slots: Vec<i64> = ["state", "window", "probes", "events"]
            .iter()
            .map(|suffix| {
                node.command(&["CLUSTER", "KEYSLOT", instance.key(suffix).as_str()])
                    .unwrap()
            })
            .collect();
        assert!(slots.windows(2).all(|w| w[0] == w[1]), "{name}: {slots:?}");
        let tag_slot: i64 = node
            .command(&["CLUSTER", "KEYSLOT", instance.hash_tag()])
            .unwrap();
        assert_eq!(slots[0], tag_slot);
    }
}
