//! The `ls` commands: a kind's instances from the namespace's index, in one call (no SCAN,
//! however many keys the namespace holds); `--stats` then reads each one.

use coordkit_core::Listing;
use serde_json::{Value, json};

use crate::out::{Report, table};

/// The names of a listing, with the index's entries that are not names (written by something
/// else) said apart, so an operator sees them rather than losing them.
pub(crate) fn names_report(kind: &str, namespace: &str, listing: &Listing) -> Report {
    let mut human = table(&[kind], listing.names.iter().map(|name| vec![name.clone()]));
    human.push_str(&format!(
        "{} {kind}(s) in namespace {namespace}\n",
        listing.names.len()
    ));
    for m in &listing.malformed {
        human.push_str(&format!(
            "not a name in the index: {:?} ({})\n",
            m.entry, m.reason
        ));
    }
    Report {
        human,
        json: json!({
            "kind": kind,
            "names": listing.names,
            "malformed": malformed_json(listing),
        }),
    }
}

/// The index's entries that are not names.
pub(crate) fn malformed_json(listing: &Listing) -> Vec<Value> {
    listing
        .malformed
        .iter()
        .map(|m| json!({ "entry": m.entry, "reason": m.reason }))
        .collect()
}
