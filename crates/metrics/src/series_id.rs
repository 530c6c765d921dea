//! [`SeriesId`]: a metric name plus labels, encoded into one instance name (one hash tag).

use std::collections::BTreeMap;
use std::fmt;

use coordkit_core::{Error, MAX_NAME_BYTES, validate_name};

use crate::error::Result;

/// A series' identity: a metric name and its labels, sorted by label name.
///
/// It is encoded as `name,label=value,label=value` (with `%`, `,` and `=` inside the parts
/// written as `%25`, `%2C` and `%3D`), which becomes the series' instance name, so all of a
/// series' keys share the hash tag `{metric:<encoded>}` and every script touches one slot.
/// Names, label names and label values follow [`validate_name`]: not empty, at most 200 bytes,
/// no braces, whitespace or control characters; the whole encoding is at most 200 bytes too.
///
/// ```
/// use coordkit_metrics::SeriesId;
///
/// let id = SeriesId::new("latency_ms", &[("route", "/chat"), ("model", "a=b")])?;
/// assert_eq!(id.encoded(), "latency_ms,model=a%3Db,route=/chat");
/// assert!(SeriesId::new("bad name", &[]).is_err());
/// # Ok::<(), coordkit_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesId {
    name: String,
    labels: BTreeMap<String, String>,
    encoded: String,
}

impl SeriesId {
    /// Validates and encodes a name and labels. A label name given twice is refused.
    pub fn new(name: &str, labels: &[(&str, &str)]) -> Result<Self, Error> {
        validate_name("metric name", name)?;
        let mut sorted = BTreeMap::new();
        for (label, value) in labels {
            validate_name("label name", label)?;
            validate_name("label value", value)?;
            if sorted
                .insert((*label).to_owned(), (*value).to_owned())
                .is_some()
            {
                return Err(Error::invalid_config(
                    "labels",
                    format!("label {label:?} is given more than once"),
                ));
            }
        }
        let mut encoded = escape(name);
        for (label, value) in &sorted {
            encoded.push(',');
            encoded.push_str(&escape(label));
            encoded.push('=');
            encoded.push_str(&escape(value));
        }
        if encoded.len() > MAX_NAME_BYTES {
            return Err(Error::invalid_config(
                "labels",
                format!(
                    "the name and labels encode to {} bytes; at most {MAX_NAME_BYTES} are allowed",
                    encoded.len()
                ),
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            labels: sorted,
            encoded,
        })
    }

    /// The metric name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The labels, sorted by label name.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// The encoding used as instance name (and as the `entity` of alert events).
    pub fn encoded(&self) -> &str {
        &self.encoded
    }
}

impl fmt::Debug for SeriesId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SeriesId").field(&self.encoded).finish()
    }
}

impl fmt::Display for SeriesId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encoded)
    }
}

fn escape(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for c in part.chars() {
        match c {
            '%' => out.push_str("%25"),
            ',' => out.push_str("%2C"),
            '=' => out.push_str("%3D"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_and_escaped_so_encodings_never_collide() {
        let a = SeriesId::new("m", &[("b", "2"), ("a", "1")]).unwrap();
        let b = SeriesId::new("m", &[("a", "1"), ("b", "2")]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.encoded(), "m,a=1,b=2");
        // A value holding the separators cannot impersonate two labels.
        let tricky = SeriesId::new("m", &[("a", "1,b=2")]).unwrap();
        assert_ne!(tricky.encoded(), a.encoded());
        assert_eq!(tricky.encoded(), "m,a=1%2Cb%3D2");
        let percent = SeriesId::new("m%2C", &[]).unwrap();
        assert_eq!(percent.encoded(), "m%252C");
    }

    #[test]
    fn bad_names_and_labels_are_refused() {
        let what = |r: Result<SeriesId, Error>| match r {
            Err(Error::InvalidName { what, .. }) => what,
            other => panic!("expected InvalidName, got {other:?}"),
        };
        assert_eq!(what(SeriesId::new("", &[])), "metric name");
        assert_eq!(what(SeriesId::new("a{b}", &[])), "metric name");
        assert_eq!(what(SeriesId::new("m", &[("x y", "1")])), "label name");
        assert_eq!(what(SeriesId::new("m", &[("x", "")])), "label value");
        assert_eq!(what(SeriesId::new("m", &[("x", "a\nb")])), "label value");
        assert!(matches!(
            SeriesId::new("m", &[("x", "1"), ("x", "2")]),
            Err(Error::InvalidConfig {
                field: "labels",
                ..
            })
        ));
        let long = "v".repeat(150);
        assert!(matches!(
            SeriesId::new(&long, &[("l", &long)]),
            Err(Error::InvalidConfig {
                field: "labels",
                ..
            })
        ));
    }
}
