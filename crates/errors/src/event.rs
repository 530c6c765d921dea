//! What a caller reports: [`ErrorEvent`], its [`Severity`], and the cleaning of bad input.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How bad an error is. Each severity has its own event channel
/// (`<ns>:events:errors:<severity>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Diagnostic noise.
    Debug,
    /// Worth knowing, nothing failed for good.
    Info,
    /// Something failed and will probably recover (a retry, a fallback).
    Warning,
    /// Something failed.
    Error,
    /// Something failed badly: data loss, a crash, a cascade.
    Critical,
}

impl Severity {
    /// Every severity, mildest first.
    pub const ALL: [Severity; 5] = [
        Severity::Debug,
        Severity::Info,
        Severity::Warning,
        Severity::Error,
        Severity::Critical,
    ];

    /// Its name: `debug`, `info`, `warning`, `error`, `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Debug => "debug",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|sev| sev.as_str() == s)
            .ok_or_else(|| format!("unknown severity {s:?}"))
    }
}

/// One error occurrence, as an agent reports it. Only the component, kind and message are
/// asked for; everything else has a default. Nothing here is ever rejected: over-long or
/// malformed parts are cleaned when recorded (see [`ErrorTracker::record`](crate::ErrorTracker::record)).
///
/// ```
/// use coordkit_errors::{ErrorEvent, Severity};
///
/// let event = ErrorEvent::new("fetcher", "Timeout", "timeout after 30s")
///     .task("task-17")
///     .code("ETIMEDOUT")
///     .frame("fetch::get (src/fetch.rs:88)")
///     .attribute("url", "https://example.com")
///     .severity(Severity::Warning)
///     .recoverable(true);
/// assert_eq!(event.kind, "Timeout");
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ErrorEvent {
    /// The component or agent that failed (`"fetcher"`, `"agent-7"`).
    pub component: String,
    /// The error's kind or type name (`"Timeout"`, `"std::io::Error"`).
    pub kind: String,
    /// The message, as raw bytes or text; invalid UTF-8 is replaced (lossy), never rejected.
    pub message: Vec<u8>,
    /// The task it happened in, if any: the task's details record is kept under this id.
    pub task_id: Option<String>,
    /// An error code (`"ECONNREFUSED"`, `"503"`).
    pub code: Option<String>,
    /// Stack frames, innermost first.
    pub stack: Vec<String>,
    /// Free-form attributes.
    pub attributes: BTreeMap<String, String>,
    /// The severity; `None` lets the tracker's classifier decide.
    pub severity: Option<Severity>,
    /// Whether the caller expects to recover (a retry will do).
    pub recoverable: bool,
    /// The caller's own fingerprint, replacing the computed one.
    pub fingerprint: Option<String>,
    /// When the error happened by the caller's clock, in ms since the epoch, when it is reported
    /// late. It only decides whether an occurrence of a resolved signature is a regression (it is
    /// when it happened after the resolution); first/last seen use the server's clock.
    pub occurred_ms: Option<u64>,
}

impl ErrorEvent {
    /// An event with a component, a kind and a message (text or bytes).
    pub fn new(
        component: impl Into<String>,
        kind: impl Into<String>,
        message: impl AsRef<[u8]>,
    ) -> Self {
        Self {
            component: component.into(),
            kind: kind.into(),
            message: message.as_ref().to_vec(),
            ..Self::default()
        }
    }

    /// Sets the task id.
    pub fn task(mut self, task_id: impl Into<String>) -> Self {
        self.task_id = Some(task_id.into());
        self
    }

    /// Sets the error code.
    pub fn code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Adds a stack frame (innermost first).
    pub fn frame(mut self, frame: impl Into<String>) -> Self {
        self.stack.push(frame.into());
        self
    }

    /// Adds an attribute.
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// Sets the severity (otherwise the classifier decides).
    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = Some(severity);
        self
    }

    /// Marks the error as recoverable or not.
    pub fn recoverable(mut self, recoverable: bool) -> Self {
        self.recoverable = recoverable;
        self
    }

    /// Uses the caller's own fingerprint instead of the computed one.
    pub fn fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.fingerprint = Some(fingerprint.into());
        self
    }

    /// When the error happened by the caller's clock (ms since the epoch).
    pub fn occurred_ms(mut self, ms: u64) -> Self {
        self.occurred_ms = Some(ms);
        self
    }

    /// The message as text (invalid UTF-8 replaced by U+FFFD).
    pub fn message_text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.message)
    }
}

/// Decides the severity of events that do not carry one.
pub type Classifier = dyn Fn(&ErrorEvent) -> Severity + Send + Sync;

/// The default classifier: `Critical` for kinds or codes that name a panic, a crash, data loss
/// or memory exhaustion; `Warning` for recoverable errors; `Error` otherwise.
pub fn default_classifier(event: &ErrorEvent) -> Severity {
    const CRITICAL: &[&str] = &[
        "panic",
        "fatal",
        "crash",
        "outofmemory",
        "oom",
        "corrupt",
        "dataloss",
    ];
    // Lowercase, without `_`, `-` and spaces: one pass and one string each.
    let squash = |text: &str| -> String {
        text.chars()
            .filter(|c| !matches!(c, '_' | '-' | ' '))
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let kind = squash(&event.kind);
    let code = squash(event.code.as_deref().unwrap_or(""));
    if CRITICAL
        .iter()
        .any(|word| kind.contains(word) || code.contains(word))
    {
        Severity::Critical
    } else if event.recoverable {
        Severity::Warning
    } else {
        Severity::Error
    }
}

/// The longest kind, component or task id kept, in bytes.
pub(crate) const MAX_NAME: usize = 120;

/// A name usable in keys, fields and separators: whitespace, control characters and braces
/// become `_`, the text is cut at [`MAX_NAME`] bytes (with a hash of the whole, so long names
/// stay distinct), and an empty name becomes `unknown`.
pub(crate) fn clean_name(input: &str) -> String {
    let mut out: String = input
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() || matches!(c, '{' | '}' | '"' | '\\') {
                '_'
            } else {
                c
            }
        })
        .collect();
    if out.is_empty() {
        return "unknown".to_owned();
    }
    if out.len() > MAX_NAME {
        mark_with_digest(&mut out, input, MAX_NAME);
    }
    out
}

/// Cuts `out` so that, with `~` and 16 hex digits of the SHA-1 of `original` appended, it is at
/// most `max` bytes, and appends them: texts cut or cleaned alike stay different.
pub(crate) fn mark_with_digest(out: &mut String, original: &str, max: usize) {
    let digest = sha1_smol::Sha1::from(original.as_bytes())
        .digest()
        .to_string();
    let mut cut = out.len().min(max.saturating_sub(17));
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    out.truncate(cut);
    out.push('~');
    out.push_str(&digest[..16]);
}

/// Cuts `text` to at most `max` bytes (at a character boundary), ending with a marker that
/// says how much was cut. Returns whether it cut.
pub(crate) fn truncate(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let original = text.len();
    let marker = format!("…[truncated {original} bytes]");
    let mut cut = max.saturating_sub(marker.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(&marker);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned_not_rejected() {
        assert_eq!(clean_name(""), "unknown");
        assert_eq!(clean_name("a b{c}\n"), "a_b_c__");
        let long = "x".repeat(500);
        let cleaned = clean_name(&long);
        assert!(cleaned.len() <= MAX_NAME, "{}", cleaned.len());
        assert_ne!(cleaned, clean_name(&"x".repeat(501)));
        assert!(clean_name(&"é".repeat(300)).len() <= MAX_NAME);
    }

    #[test]
    fn truncation_marks_and_respects_boundaries() {
        let mut s = "é".repeat(100);
        assert!(truncate(&mut s, 50));
        assert!(s.len() <= 50, "{}", s.len());
        assert!(s.ends_with("…[truncated 200 bytes]"), "{s}");
        let mut short = "ok".to_owned();
        assert!(!truncate(&mut short, 50));
        assert_eq!(short, "ok");
    }

    #[test]
    fn default_classification() {
        let e = ErrorEvent::new("c", "Timeout", "x");
        assert_eq!(default_classifier(&e), Severity::Error);
        assert_eq!(default_classifier(&e.recoverable(true)), Severity::Warning);
        assert_eq!(
            default_classifier(&ErrorEvent::new("c", "OutOfMemory", "x")),
            Severity::Critical
        );
        assert_eq!(
            default_classifier(&ErrorEvent::new("c", "X", "x").code("DATA_LOSS")),
            Severity::Critical
        );
    }
}
