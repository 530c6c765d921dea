//! Property tests of the normalizer: messages that differ only in variable parts share a
//! template (and a fingerprint); messages of different templates do not.

use coordkit_errors::{fingerprint, normalize};
use proptest::prelude::*;

/// A kind of variable part, and a generator of its values.
fn variable(slot: u8) -> BoxedStrategy<String> {
    match slot % 11 {
        0 => any::<u64>().prop_map(|n| n.to_string()).boxed(),
        1 => (any::<i32>(), 0u32..1000)
            .prop_map(|(a, b)| format!("{a}.{b}"))
            .boxed(),
        2 => any::<u128>()
            .prop_map(|n| {
                let h = format!("{n:032x}");
                format!(
                    "{}-{}-{}-{}-{}",
                    &h[..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..]
                )
            })
            .boxed(),
        3 => (any::<u64>(), 1u64..u64::MAX)
            .prop_map(|(a, b)| format!("{:016x}{:x}", a | 1 << 60, b | 0xa))
            .boxed(),
        4 => (any::<[u8; 4]>(), proptest::option::of(any::<u16>()))
            .prop_map(|(ip, port)| {
                let base = format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3]);
                port.map_or(base.clone(), |p| format!("{base}:{p}"))
            })
            .boxed(),
        5 => ("[a-z][a-z0-9.]{0,8}", "[a-z]{2,8}", "[a-z]{2,4}")
            .prop_map(|(user, host, tld)| format!("{user}@{host}.{tld}"))
            .boxed(),
        6 => ("(http|https|ftp)", "[a-z]{1,8}", "[a-z0-9/]{0,12}")
            .prop_map(|(scheme, host, path)| format!("{scheme}://{host}.example/{path}"))
            .boxed(),
        7 => proptest::collection::vec("[a-z0-9_-]{1,6}", 1..4)
            .prop_map(|parts| format!("/{}.log", parts.join("/")))
            .boxed(),
        8 => (
            2000u32..2100,
            1u32..13,
            1u32..29,
            0u32..24,
            0u32..60,
            0u32..60,
        )
            .prop_map(|(y, mo, d, h, mi, s)| format!("{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"))
            .boxed(),
        9 => (
            0u32..100_000,
            prop_oneof![Just("ms"), Just("s"), Just("us"), Just("m"), Just("h")],
        )
            .prop_map(|(n, unit)| format!("{n}{unit}"))
            .boxed(),
        _ => "[a-zA-Z0-9 _.-]{0,20}"
            .prop_map(|s| format!("'{s}'"))
            .boxed(),
    }
}

/// Fixed words: letters only, so they are never taken for a variable part.
fn word() -> impl Strategy<Value = String> {
    "[a-z]{2,9}"
}

/// A template: fixed words with variable slots between some of them.
#[derive(Debug, Clone)]
struct Template {
    parts: Vec<Result<String, u8>>,
}

fn template() -> impl Strategy<Value = Template> {
    proptest::collection::vec(
        prop_oneof![3 => word().prop_map(Ok), 2 => any::<u8>().prop_map(Err)],
        1..8,
    )
    .prop_map(|parts| Template { parts })
}

fn fill(t: &Template) -> BoxedStrategy<String> {
    let slots: Vec<BoxedStrategy<String>> = t
        .parts
        .iter()
        .map(|p| match p {
            Ok(w) => Just(w.clone()).boxed(),
            Err(slot) => variable(*slot),
        })
        .collect();
    slots.prop_map(|parts| parts.join(" ")).boxed()
}

fn two_fillings() -> impl Strategy<Value = (Template, String, String)> {
    template().prop_flat_map(|t| {
        let f = fill(&t);
        (Just(t), f.clone(), f)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn variable_parts_do_not_change_the_signature((t, a, b) in two_fillings()) {
        let (na, nb) = (normalize(&a), normalize(&b));
        prop_assert_eq!(&na, &nb, "template {:?}: {:?} vs {:?}", t, a, b);
        prop_assert_eq!(
            fingerprint("Kind", Some("comp"), &na),
            fingerprint("Kind", Some("comp"), &nb)
        );
    }

    #[test]
    fn different_templates_do_not_share_a_signature(
        (t, a, _b) in two_fillings(),
        at in any::<prop::sample::Index>(),
        other in word(),
    ) {
        // Change one fixed word (or add one): a different template.
        let mut changed = t;
        let words: Vec<usize> = changed.parts.iter().enumerate().filter(|(_, p)| p.is_ok()).map(|(i, _)| i).collect();
        match words.is_empty() {
            true => changed.parts.push(Ok(other)),
            false => {
                let i = words[at.index(words.len())];
                let old = changed.parts[i].clone().unwrap();
                changed.parts[i] = Ok(if old == other { format!("{other}x") } else { other });
            }
        }
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let b = fill(&changed).new_tree(&mut runner).unwrap().current();
        prop_assert_ne!(
            fingerprint("Kind", Some("comp"), &normalize(&a)),
            fingerprint("Kind", Some("comp"), &normalize(&b)),
            "{:?} and {:?}", a, b
        );
    }

    #[test]
    fn another_kind_or_component_is_another_signature(
        (_t, a, _b) in two_fillings(),
        kind in word(),
        other in word(),
    ) {
        let n = normalize(&a);
        let base = fingerprint(&kind, Some("comp"), &n);
        let other_kind = if other == kind { format!("{other}x") } else { other.clone() };
        prop_assert_ne!(&base, &fingerprint(&other_kind, Some("comp"), &n));
        prop_assert_ne!(&base, &fingerprint(&kind, Some(&format!("comp{other}")), &n));
        // Without the component (signatures across components), another signature again.
        prop_assert_ne!(&base, &fingerprint(&kind, None, &n));
    }

    #[test]
    fn never_panics_on_any_text(s in "\\PC{0,200}") {
        let n = normalize(&s);
        // A template has no whitespace runs, and none at either end.
        prop_assert!(!n.contains("  "));
        prop_assert_eq!(n.trim(), n.as_str());
    }
}
