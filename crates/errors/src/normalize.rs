//! Message normalization and fingerprints.
//!
//! [`normalize`] turns a message into its *template*: every variable part is replaced by a
//! placeholder, so two occurrences of the same problem that differ only in ids, numbers, hosts or
//! times share a template, and [`fingerprint`] hashes the template with the error's kind (and
//! component) into a stable signature.
//!
//! | variable part | example | placeholder |
//! |---|---|---|
//! | quoted value | `'alice'`, `"a b"`, `` `x` `` | `<str>` |
//! | URL | `https://api.example.com/v1?q=2` | `<url>` |
//! | e-mail | `bob@example.org` | `<email>` |
//! | UUID | `550e8400-e29b-41d4-a716-446655440000` | `<uuid>` |
//! | timestamp | `2024-05-01T10:00:00Z`, `10:00:00.123` | `<ts>` |
//! | IP address | `10.0.0.1:6379`, `fe80::1` | `<ip>` |
//! | path | `/var/log/app.log`, `src/main.rs:42`, `C:\temp` | `<path>` |
//! | hex id or hash | `0x7ffe`, `9f86d081884c7d65` | `<hex>` |
//! | duration | `150ms`, `1.5s`, `1h30m` | `<dur>` |
//! | number | `42`, `-3.5`, `1e9`, `80%` | `<num>` |
//! | digits inside a word | `worker7`, `task-12` | `worker<num>`, `task-<num>` |
//!
//! Whitespace runs collapse to one space. The rules are versioned ([`NORMALIZER_VERSION`]) and
//! the version is part of every computed fingerprint, so a change to the rules shows as new
//! signatures rather than silently merging or splitting old ones. The hash is SHA-1 (not std's
//! `DefaultHasher`), so the same input gives the same signature in every process and build.
//!
//! ```
//! use coordkit_errors::{fingerprint, normalize};
//!
//! let a = normalize("timeout after 1500ms connecting to 10.0.0.7:6379 for task 42");
//! let b = normalize("timeout after 30s connecting to 10.0.0.9:6380 for task 7");
//! assert_eq!(a, "timeout after <dur> connecting to <ip> for task <num>");
//! assert_eq!(a, b);
//! assert_eq!(
//!     fingerprint("Timeout", Some("fetcher"), &a),
//!     fingerprint("Timeout", Some("fetcher"), &b),
//! );
//! assert_ne!(
//!     fingerprint("Timeout", Some("fetcher"), &a),
//!     fingerprint("Timeout", Some("indexer"), &a),
//! );
//! ```

/// The version of the normalization rules; it prefixes every computed fingerprint (`v1-…`).
pub const NORMALIZER_VERSION: u32 = 1;

/// The template of `message`: variable parts replaced by placeholders (see the module docs).
pub fn normalize(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut i = 0;
    let mut prev: Option<char> = None;
    while i < message.len() {
        let c = message[i..].chars().next().unwrap_or(' ');
        if c.is_whitespace() {
            if !out.is_empty() && !out.ends_with(' ') {
                out.push(' ');
            }
            i += c.len_utf8();
            prev = Some(c);
            continue;
        }
        if is_quote_start(c, prev)
            && let Some(end) = closing_quote(message, i, c)
        {
            out.push_str("<str>");
            i = end + c.len_utf8();
            prev = Some(c);
            continue;
        }
        // A token: up to whitespace or the start of a quoted value.
        let start = i;
        let mut p = prev;
        let mut j = i;
        while j < message.len() {
            let d = message[j..].chars().next().unwrap_or(' ');
            if d.is_whitespace()
                || (j > start && is_quote_start(d, p) && closing_quote(message, j, d).is_some())
            {
                break;
            }
            p = Some(d);
            j += d.len_utf8();
        }
        token(&message[start..j], &mut out);
        prev = p;
        i = j;
    }
    while out.ends_with(' ') {
        out.pop();
    }
    out
}

fn is_quote_start(c: char, prev: Option<char>) -> bool {
    matches!(c, '"' | '\'' | '`') && !prev.is_some_and(|p| p.is_alphanumeric())
}

/// The byte offset of the quote closing the one at `open`: the same character, not followed by
/// a letter or digit.
fn closing_quote(message: &str, open: usize, quote: char) -> Option<usize> {
    let body = open + quote.len_utf8();
    let mut from = body;
    while let Some(found) = message[from..].find(quote) {
        let at = from + found;
        let after = message[at + quote.len_utf8()..].chars().next();
        if !after.is_some_and(|a| a.is_alphanumeric()) {
            return Some(at);
        }
        from = at + quote.len_utf8();
    }
    None
}

const LEADING: &[char] = &['(', '[', '{', '<'];
const TRAILING: &[char] = &[')', ']', '}', '>', ',', ';', '.', '!', '?', ':'];

/// One whitespace-free token: surrounding punctuation kept, the core classified whole, or split
/// at separators and its parts classified.
fn token(tok: &str, out: &mut String) {
    let core_start = tok.len() - tok.trim_start_matches(LEADING).len();
    let lead = &tok[..core_start];
    let rest = &tok[core_start..];
    let core = rest.trim_end_matches(TRAILING);
    let trail = &rest[core.len()..];
    out.push_str(lead);
    split(core, 0, out);
    out.push_str(trail);
}

/// Separator levels, tried in order once a piece is not a variable as a whole.
const LEVELS: &[&[char]] = &[
    &['='],
    &[
        ',', ';', '|', '(', ')', '[', ']', '<', '>', '{', '}', '"', '\'',
    ],
    &[':'],
];

fn split(piece: &str, level: usize, out: &mut String) {
    if piece.is_empty() {
        return;
    }
    // A word of letters only (most of a message) is never a variable, nor split: it stays.
    if piece.bytes().all(|b| b.is_ascii_alphabetic()) {
        out.push_str(piece);
        return;
    }
    if let Some(placeholder) = classify(piece) {
        out.push_str(placeholder);
        return;
    }
    // Levels whose separators do not occur in the piece are skipped: splitting there would give
    // the piece itself, classified again the same way.
    let mut level = level;
    while LEVELS.get(level).is_some_and(|seps| {
        // Every separator is ASCII: a byte scan finds them.
        !piece
            .bytes()
            .any(|b| b.is_ascii() && seps.contains(&char::from(b)))
    }) {
        level += 1;
    }
    match LEVELS.get(level) {
        Some(seps) => {
            for part in piece.split_inclusive(*seps) {
                let (body, sep) = match part.char_indices().last() {
                    Some((at, c)) if seps.contains(&c) => (&part[..at], &part[at..]),
                    _ => (part, ""),
                };
                split(body, level + 1, out);
                out.push_str(sep);
            }
        }
        None => leaf(piece, out),
    }
}

/// A piece that is no variable as a whole: long hex runs and digit runs inside words.
fn leaf(piece: &str, out: &mut String) {
    let mut rest = piece;
    while !rest.is_empty() {
        let run_len = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        if run_len == 0 {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let run = &rest[..run_len];
        if is_hex_id(run) {
            out.push_str("<hex>");
        } else {
            let mut digits = false;
            for c in run.chars() {
                if c.is_ascii_digit() {
                    if !digits {
                        out.push_str("<num>");
                        digits = true;
                    }
                } else {
                    digits = false;
                    out.push(c);
                }
            }
        }
        rest = &rest[run_len..];
    }
}

fn classify(p: &str) -> Option<&'static str> {
    // Every variable part has a digit or one of these; most words have neither.
    if !p
        .bytes()
        .any(|b| b.is_ascii_digit() || matches!(b, b'/' | b'@' | b'\\' | b':'))
    {
        return None;
    }
    if is_url(p) {
        Some("<url>")
    } else if is_email(p) {
        Some("<email>")
    } else if is_uuid(p) {
        Some("<uuid>")
    } else if is_timestamp(p) {
        Some("<ts>")
    } else if is_ip(p) {
        Some("<ip>")
    } else if is_path(p) {
        Some("<path>")
    } else if is_hex_literal(p) || is_hex_id(p) {
        Some("<hex>")
    } else if is_duration(p) {
        Some("<dur>")
    } else if is_number(p) {
        Some("<num>")
    } else {
        None
    }
}

fn is_url(p: &str) -> bool {
    match p.find("://") {
        Some(at) if at > 0 => p[..at]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')),
        _ => false,
    }
}

fn is_email(p: &str) -> bool {
    let Some((local, domain)) = p.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-'))
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-'))
}

fn is_uuid(p: &str) -> bool {
    p.len() == 36
        && p.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn digits(s: &str, n: usize) -> bool {
    s.len() >= n && s.as_bytes()[..n].iter().all(u8::is_ascii_digit)
}

fn is_timestamp(p: &str) -> bool {
    let b = p.as_bytes();
    // 2024-05-01, 2024-05-01T10:00:00Z, 2024/05/01 …
    if digits(p, 4)
        && b.len() >= 10
        && matches!(b[4], b'-' | b'/')
        && digits(&p[5..], 2)
        && b[7] == b[4]
        && digits(&p[8..], 2)
    {
        return true;
    }
    // 10:00:00, 9:05:07.123
    let h = p.bytes().take_while(u8::is_ascii_digit).count();
    (1..=2).contains(&h)
        && b.len() >= h + 6
        && b[h] == b':'
        && digits(&p[h + 1..], 2)
        && b[h + 3] == b':'
        && digits(&p[h + 4..], 2)
}

fn is_ip(p: &str) -> bool {
    // Drop a port or a prefix length.
    let v4 = p
        .rsplit_once([':', '/'])
        .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .map_or(p, |(ip, _)| ip);
    let mut parts = 0;
    let mut digits_only = true;
    for x in v4.split('.') {
        parts += 1;
        digits_only &= (1..=3).contains(&x.len()) && x.bytes().all(|b| b.is_ascii_digit());
    }
    if parts == 4 && digits_only {
        return true;
    }
    let v6 = p.trim_start_matches('[');
    let v6 = v6.split(['%', ']', '/']).next().unwrap_or(v6);
    let colons = v6.matches(':').count();
    (v6.contains("::") || colons >= 5)
        && colons >= 2
        && v6.bytes().any(|b| b.is_ascii_hexdigit())
        && v6
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
}

fn is_path(p: &str) -> bool {
    let b = p.as_bytes();
    if p.len() < 2 {
        return false;
    }
    if p.starts_with('/') || p.starts_with("./") || p.starts_with("../") || p.starts_with("~/") {
        return true;
    }
    if b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\' {
        return true;
    }
    if p.contains('\\') {
        return true;
    }
    // A relative path with a file name: src/main.rs, lib/app.py:12
    match p.rsplit_once('/') {
        Some((dir, file)) => !dir.is_empty() && file.contains('.') && !file.ends_with('.'),
        None => false,
    }
}

fn is_hex_literal(p: &str) -> bool {
    let body = p
        .strip_prefix("0x")
        .or_else(|| p.strip_prefix("0X"))
        .unwrap_or("");
    !body.is_empty() && body.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A hex id or hash: hex digits only, at least 8, with at least one digit and one letter (a run
/// of digits only is a number).
fn is_hex_id(p: &str) -> bool {
    p.len() >= 8
        && p.bytes().all(|b| b.is_ascii_hexdigit())
        && p.bytes().any(|b| b.is_ascii_digit())
        && p.bytes().any(|b| b.is_ascii_alphabetic())
}

/// Splits a leading decimal number (`-1.5`, `3`, `2e9`) from the rest.
fn number_prefix(p: &str) -> Option<(&str, &str)> {
    let b = p.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'-' | b'+')));
    let int = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    if int == 0 {
        return None;
    }
    i += int;
    while i + 1 < b.len() && matches!(b[i], b'.' | b',') && b[i + 1].is_ascii_digit() {
        i += 1;
        i += b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    }
    if i + 1 < b.len() && matches!(b[i], b'e' | b'E') {
        let mut k = i + 1;
        if matches!(b[k], b'-' | b'+') {
            k += 1;
        }
        let exp = b
            .get(k..)
            .map_or(0, |e| e.iter().take_while(|c| c.is_ascii_digit()).count());
        if exp > 0 {
            i = k + exp;
        }
    }
    Some((&p[..i], &p[i..]))
}

fn is_number(p: &str) -> bool {
    matches!(number_prefix(p), Some((_, rest)) if rest.is_empty() || rest == "%")
}

const UNITS: &[&str] = &[
    "ns", "us", "µs", "μs", "ms", "s", "sec", "secs", "m", "min", "mins", "h", "hr", "hrs", "d",
];

fn is_duration(p: &str) -> bool {
    let mut rest = p;
    let mut parts = 0;
    while !rest.is_empty() {
        let Some((_, after)) = number_prefix(rest) else {
            return false;
        };
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '-' || c == '+')
            .unwrap_or(after.len());
        if !UNITS.contains(&&after[..unit_len]) {
            return false;
        }
        rest = &after[unit_len..];
        parts += 1;
    }
    parts > 0
}

/// The signature of an error: `v<version>-<24 hex digits>`, a SHA-1 of the normalizer version,
/// the kind, the component (when signatures are per component) and the message template.
pub fn fingerprint(kind: &str, component: Option<&str>, template: &str) -> String {
    let mut hash = sha1_smol::Sha1::new();
    hash.update(FINGERPRINT_HEADER.as_bytes());
    hash.update(kind.as_bytes());
    hash.update(b"\0");
    if let Some(component) = component {
        hash.update(component.as_bytes());
    }
    hash.update(b"\0");
    hash.update(template.as_bytes());
    // "v<version>-" and the first 12 bytes of the digest in lowercase hex (24 digits), written
    // directly: formatting the digest byte by byte cost more than hashing it.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = hash.digest().bytes();
    let mut out = String::with_capacity(FINGERPRINT_PREFIX.len() + 24);
    out.push_str(FINGERPRINT_PREFIX);
    for byte in &digest[..12] {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

/// What every fingerprint's hash starts with: the normalizer's version.
const FINGERPRINT_HEADER: &str = "coordkit-errors normalizer v1\0";
/// What every fingerprint starts with.
const FINGERPRINT_PREFIX: &str = "v1-";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, &str)] = &[
            ("connection refused", "connection refused"),
            ("  many   spaces\there \n", "many spaces here"),
            ("task 42 failed", "task <num> failed"),
            ("retry 3 of 5 (-1.5e3)", "retry <num> of <num> (<num>)"),
            ("disk at 95% full", "disk at <num> full"),
            (
                "user 550e8400-e29b-41d4-a716-446655440000 not found",
                "user <uuid> not found",
            ),
            ("commit 9f86d081884c7d65 missing", "commit <hex> missing"),
            ("bad pointer 0x7ffe12", "bad pointer <hex>"),
            ("connect 10.0.0.1:6379 refused", "connect <ip> refused"),
            ("from 192.168.1.20/24", "from <ip>"),
            ("peer fe80::1ff:fe23:4567:890a down", "peer <ip> down"),
            ("peer [2001:db8::1]:443 down", "peer [<ip> down"),
            (
                "mail to bob.smith+x@example.org bounced",
                "mail to <email> bounced",
            ),
            (
                "GET https://api.example.com/v1/items?id=3 failed: 503",
                "GET <url> failed: <num>",
            ),
            ("open /var/log/app-3.log: denied", "open <path>: denied"),
            ("at src/main.rs:42", "at <path>"),
            ("file C:\\temp\\x.txt locked", "file <path> locked"),
            ("./run.sh exited", "<path> exited"),
            ("at 2024-05-01T10:00:00.123Z boom", "at <ts> boom"),
            ("at 2024-05-01 10:00:00 boom", "at <ts> <ts> boom"),
            ("took 150ms", "took <dur>"),
            ("took 1.5s, limit 1h30m", "took <dur>, limit <dur>"),
            ("key 'alice' missing", "key <str> missing"),
            ("key \"a b c\" missing", "key <str> missing"),
            ("value `x y` bad", "value <str> bad"),
            ("can't parse it's", "can't parse it's"),
            ("unclosed 'quote here", "unclosed 'quote here"),
            ("name=\"bob\" id=17", "name=<str> id=<num>"),
            ("worker7 died", "worker<num> died"),
            (
                "job task-12 (attempt #3)",
                "job task-<num> (attempt #<num>)",
            ),
            ("host db01:5432 down", "host db<num>:<num> down"),
            ("limit=100,used=120", "limit=<num>,used=<num>"),
            ("Error: failed.", "Error: failed."),
            ("", ""),
            ("💥 ünïcödé 12", "💥 ünïcödé <num>"),
        ];
        for (input, expected) in cases {
            assert_eq!(&normalize(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn fingerprints_are_stable_and_versioned() {
        // The constants spell the version they stand for.
        assert_eq!(
            FINGERPRINT_HEADER,
            format!("coordkit-errors normalizer v{NORMALIZER_VERSION}\0")
        );
        assert_eq!(FINGERPRINT_PREFIX, format!("v{NORMALIZER_VERSION}-"));
        let fp = fingerprint("Timeout", Some("fetcher"), "timeout after <dur>");
        // Pinned: a change here means every stored signature changes; bump the version.
        assert_eq!(fp, "v1-d15efe6c49fac59a745a4bd2");
        assert!(fp.starts_with("v1-"));
        assert_ne!(fp, fingerprint("Timeout", None, "timeout after <dur>"));
        assert_ne!(
            fp,
            fingerprint("Other", Some("fetcher"), "timeout after <dur>")
        );
        // The separators keep fields apart.
        assert_ne!(
            fingerprint("ab", Some("c"), "t"),
            fingerprint("a", Some("bc"), "t")
        );
    }
}
