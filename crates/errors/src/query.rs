//! Queries: recent errors, top signatures, one signature's detail, counters, task details.

use std::collections::BTreeMap;
use std::time::Duration;

use coordkit_core::time::duration_ms;
use coordkit_core::wire::Reply;
use coordkit_core::{Error, Result, Script, redis};
use serde::Deserialize;

use crate::event::Severity;
use crate::tracker::ErrorTracker;
use crate::wire::{parse_state, task_slots, whole};

static RECENT: Script = Script::new("errors-recent", include_str!("../lua/recent.lua"));
static TOP: Script = Script::new("errors-top", include_str!("../lua/top.lua"));
static TASK: Script = Script::new("errors-task", include_str!("../lua/task.lua"));
static COUNTS: Script = Script::new("errors-counts", include_str!("../lua/counts.lua"));

/// What was reported about one occurrence, as kept (after cleaning and truncation): the part
/// shared by a log entry and a full record.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Occurrence {
    /// The component.
    pub component: String,
    /// The kind.
    pub kind: String,
    /// The severity.
    pub severity: Severity,
    /// The message (after truncation).
    pub message: String,
    /// The task, if any.
    pub task_id: Option<String>,
    /// The code, if any.
    pub code: Option<String>,
    /// Whether it was reported recoverable.
    pub recoverable: bool,
}

/// One occurrence as kept in the log (the message, not the stack or attributes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The log id (`<ms>-<seq>`), usable as a paging cursor.
    pub id: String,
    /// The signature.
    pub signature: String,
    /// When it was recorded (server time, ms): the time part of its id.
    pub ts_ms: u64,
    /// What was reported.
    pub occurrence: Occurrence,
}

/// One page of [`ErrorTracker::recent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    /// Entries, newest first.
    pub entries: Vec<LogEntry>,
    /// The cursor of the next (older) page; `None` when this page was the last.
    pub next: Option<String>,
    /// The ids of entries on this page that could not be decoded (written to the log by
    /// something else): left out of `entries`, so the rest of the page still reads.
    pub undecodable: Vec<String>,
}

/// A full record: the last sample of a signature, or a task's details.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorRecord {
    /// When it was recorded (server time, ms).
    #[serde(default)]
    pub ts_ms: u64,
    /// For a signature's last sample, the signature's count with this occurrence; 0 for a
    /// task's record.
    #[serde(default)]
    pub count: u64,
    /// The signature.
    pub signature: String,
    /// What was reported.
    #[serde(flatten)]
    pub occurrence: Occurrence,
    /// Whether something was cut (see [`Recorded::truncated`](crate::Recorded::truncated)).
    pub truncated: bool,
    /// When it happened by the caller's clock, if the caller said.
    #[serde(default)]
    pub occurred_ms: Option<u64>,
    /// Stack frames, innermost first.
    pub stack: Vec<String>,
    /// Attributes.
    pub attributes: BTreeMap<String, String>,
}

/// Everything tracked about one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureDetail {
    /// The signature.
    pub signature: String,
    /// Occurrences recorded.
    pub count: u64,
    /// First occurrence (server time, ms).
    pub first_seen_ms: u64,
    /// Latest occurrence (server time, ms).
    pub last_seen_ms: u64,
    /// When it was resolved, while it is.
    pub resolved_at_ms: Option<u64>,
    /// How many times an occurrence re-opened it after a resolution.
    pub regressions: u64,
    /// The components that reported it (at most 16), in order of first report.
    pub components: Vec<String>,
    /// Kind, component and template of its first occurrence.
    pub meta: SignatureMeta,
    /// The latest occurrence in full.
    pub last_sample: Option<ErrorRecord>,
}

/// What a signature stands for (from its first occurrence).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct SignatureMeta {
    /// The kind.
    pub kind: String,
    /// The component.
    pub component: String,
    /// The normalized message (empty for a caller's own fingerprint).
    pub template: String,
    /// The normalizer version that computed it.
    pub normalizer: u32,
}

/// One signature of [`ErrorTracker::top`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopSignature {
    /// The signature.
    pub signature: String,
    /// Occurrences within the window.
    pub in_window: u64,
    /// All occurrences (0 when the signature is no longer tracked).
    pub total: u64,
    /// Latest occurrence (0 when no longer tracked).
    pub last_seen_ms: u64,
    /// What it stands for (default when no longer tracked).
    pub meta: SignatureMeta,
}

/// The answer of [`ErrorTracker::top`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopSignatures {
    /// Signatures by occurrences in the window, most first (ties by signature).
    pub signatures: Vec<TopSignature>,
    /// `false` when the log's length cap cut into the window: counts are then lower bounds.
    pub complete: bool,
    /// Log entries of the window that name no signature (written there by something else):
    /// left out of the counts.
    pub undecodable: u64,
}

/// Counters by kind and component (all occurrences since the tracker began).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counts {
    /// Per kind.
    pub by_kind: BTreeMap<String, u64>,
    /// Per component.
    pub by_component: BTreeMap<String, u64>,
    /// Per (kind, component).
    pub by_pair: BTreeMap<(String, String), u64>,
    /// Occurrences of pairs first seen beyond the counter cap.
    pub other: u64,
}

impl Counts {
    /// All occurrences counted.
    pub fn total(&self) -> u64 {
        self.by_pair
            .values()
            .fold(self.other, |sum, n| sum.saturating_add(*n))
    }
}

/// A stored JSON of the data hash `key` (`what` names the field): [`Error::Corrupt`] naming
/// the key when it does not decode (bytes, so invalid UTF-8 is that error too, not another).
fn stored_json<T: for<'de> Deserialize<'de>>(key: &str, what: &str, json: &[u8]) -> Result<T> {
    serde_json::from_slice(json).map_err(|e| Error::corrupt(key, format!("{what}: {e}")))
}

impl ErrorTracker {
    /// One page of the log, newest first (entries older than the log's max age are not
    /// shown). Start with `cursor = None` and pass [`LogPage::next`] back for older entries;
    /// the cursor is an entry id, so new records do not shift the pages.
    pub async fn recent(&self, cursor: Option<&str>, page_size: u32) -> Result<LogPage> {
        let inner = &self.inner;
        let page_size = page_size.clamp(1, 10_000);
        // Bytes: an entry written by something else may hold any.
        let raw: Vec<(String, Vec<Vec<u8>>)> = RECENT
            .prepare()
            .key(&inner.keys.log)
            .arg(inner.settings.clock.arg())
            .arg(duration_ms(inner.settings.log_max_age))
            .arg(cursor.unwrap_or(""))
            .arg(page_size)
            .invoke(&inner.pool)
            .await?;
        let full = raw.len() == page_size as usize;
        let last_id = raw.last().map(|(id, _)| id.clone());
        let mut entries = Vec::with_capacity(raw.len());
        let mut undecodable = Vec::new();
        for (id, fields) in raw {
            let mut signature = String::new();
            let mut json: &[u8] = b"";
            for pair in fields.chunks_exact(2) {
                match pair[0].as_slice() {
                    b"f" => signature = String::from_utf8_lossy(&pair[1]).into_owned(),
                    b"e" => json = &pair[1],
                    _ => {}
                }
            }
            let Ok(occurrence) = serde_json::from_slice::<Occurrence>(json) else {
                undecodable.push(id);
                continue;
            };
            let ts_ms = id
                .split('-')
                .next()
                .and_then(|ms| ms.parse().ok())
                .unwrap_or(0);
            entries.push(LogEntry {
                id,
                signature,
                ts_ms,
                occurrence,
            });
        }
        // A full page (counting the undecodable) may have older entries after it.
        let next = if full { last_id } else { None };
        Ok(LogPage {
            entries,
            next,
            undecodable,
        })
    }

    /// The `limit` signatures with the most occurrences within `window` (up to now, server
    /// time), counted from the log.
    pub async fn top(&self, window: Duration, limit: u32) -> Result<TopSignatures> {
        let inner = &self.inner;
        let raw: Vec<redis::Value> = TOP
            .prepare()
            .key(&inner.keys.data)
            .key(&inner.keys.log)
            .arg(inner.settings.clock.arg())
            .arg(duration_ms(window).max(1))
            .arg(duration_ms(inner.settings.log_max_age))
            .arg(limit.max(1))
            .arg(inner.settings.log_max_len)
            .invoke(&inner.pool)
            .await?;
        let answer = Reply::items("errors-top", &raw);
        let complete = answer.u64(0, "complete")? == 1;
        let undecodable = answer.u64(1, "undecodable")?;
        let data = inner.keys.data.as_str();
        if answer.len() % 4 != 2 {
            return Err(Error::decode(
                "errors-top",
                format!("{} items: not 2 then 4 per signature", answer.len()),
            ));
        }
        let mut signatures = Vec::new();
        for at in (2..answer.len()).step_by(4) {
            let signature = answer.text(at, "signature")?.to_owned();
            let in_window = answer.u64(at + 1, "in_window")?;
            let state = answer.bytes(at + 2, "state")?;
            let meta = answer.bytes(at + 3, "meta")?;
            let (total, last_seen_ms) = if state.is_empty() {
                (0, 0)
            } else {
                let s = parse_state(data, &signature, state)?;
                (s.count, s.last)
            };
            let meta = if meta.is_empty() {
                SignatureMeta::default()
            } else {
                stored_json(data, &format!("signature {signature} meta"), meta)?
            };
            signatures.push(TopSignature {
                signature,
                in_window,
                total,
                last_seen_ms,
                meta,
            });
        }
        Ok(TopSignatures {
            signatures,
            complete,
            undecodable,
        })
    }

    /// Everything tracked about `signature`, or `None` when it is not tracked (never seen, or
    /// evicted as the least recently seen beyond the cap).
    pub async fn signature(&self, signature: &str) -> Result<Option<SignatureDetail>> {
        let inner = &self.inner;
        type Bytes = Option<Vec<u8>>;
        let (state, sample, meta): (Bytes, Bytes, Bytes) = inner
            .pool
            .query_keys(
                redis::cmd("HMGET")
                    .arg(&inner.keys.data)
                    .arg(signature)
                    .arg(format!("{signature} s"))
                    .arg(format!("{signature} m")),
                std::slice::from_ref(&inner.keys.data),
            )
            .await?;
        let Some(state) = state else {
            return Ok(None);
        };
        let data = inner.keys.data.as_str();
        let s = parse_state(data, signature, &state)?;
        let last_sample = sample
            .map(|j| stored_json::<ErrorRecord>(data, &format!("signature {signature} sample"), &j))
            .transpose()?
            .map(|mut r| {
                r.ts_ms = s.last;
                r.count = s.count;
                r
            });
        let meta = meta
            .map(|j| stored_json::<SignatureMeta>(data, &format!("signature {signature} meta"), &j))
            .transpose()?
            .unwrap_or_default();
        Ok(Some(SignatureDetail {
            signature: signature.to_owned(),
            count: s.count,
            first_seen_ms: s.first,
            last_seen_ms: s.last,
            resolved_at_ms: (s.resolved > 0).then_some(s.resolved),
            regressions: s.regressions,
            components: s.components,
            meta,
            last_sample,
        }))
    }

    /// The counters by kind, by component and by both.
    pub async fn counts(&self) -> Result<Counts> {
        let inner = &self.inner;
        let raw: Vec<redis::Value> = COUNTS
            .prepare()
            .key(&inner.keys.data)
            .invoke(&inner.pool)
            .await?;
        let answer = Reply::items("errors-counts", &raw);
        let other = answer.u64(0, "other")?;
        if answer.len() % 2 != 1 {
            return Err(Error::decode(
                "errors-counts",
                format!("{} items: not 1 then 2 per counter", answer.len()),
            ));
        }
        let mut all: BTreeMap<String, u64> = BTreeMap::new();
        for at in (1..answer.len()).step_by(2) {
            // A name: a damaged byte shows as U+FFFD.
            let field = String::from_utf8_lossy(answer.bytes(at, "counter field")?).into_owned();
            all.insert(field, answer.u64(at + 1, "counter")?);
        }
        let mut counts = Counts::default();
        for (field, n) in all {
            match field.split_once(' ') {
                Some((kind, component)) => {
                    // Each counter is at most 2^53 (the script checks): sums saturate.
                    let kind_n = counts.by_kind.entry(kind.to_owned()).or_default();
                    *kind_n = kind_n.saturating_add(n);
                    let component_n = counts.by_component.entry(component.to_owned()).or_default();
                    *component_n = component_n.saturating_add(n);
                    counts
                        .by_pair
                        .insert((kind.to_owned(), component.to_owned()), n);
                }
                None => counts.other = counts.other.saturating_add(n),
            }
        }
        counts.other = counts.other.saturating_add(other);
        Ok(counts)
    }

    /// The details record of `task_id` (its latest error), unless older than the task TTL or
    /// evicted. The id is cleaned as when recorded. Task records live in `max_tasks` slots; a
    /// task may use one of two (by a hash of its id): the one it holds, else a free one, else
    /// the one written longest ago, whose task is evicted.
    pub async fn task(&self, task_id: &str) -> Result<Option<ErrorRecord>> {
        let inner = &self.inner;
        let task = crate::event::clean_name(task_id);
        let (s1, s2) = task_slots(&task, inner.settings.max_tasks);
        let found: Option<(u64, Vec<u8>)> = TASK
            .prepare()
            .key(&inner.keys.data)
            .arg(inner.settings.clock.arg())
            .arg(duration_ms(inner.settings.task_ttl))
            .arg(&task)
            .arg(s1)
            .arg(s2)
            .invoke(&inner.pool)
            .await?;
        found
            .map(|(ts, j)| {
                let what = format!("task {task} details record");
                stored_json::<ErrorRecord>(inner.keys.data.as_str(), &what, &j).map(|mut r| {
                    r.ts_ms = ts;
                    r
                })
            })
            .transpose()
    }

    /// The tracked signatures, most recently seen first (at most `limit`), with their last
    /// occurrence time as the eviction order knows it (refreshed at most once a second per
    /// signature, so up to a second behind [`SignatureDetail::last_seen_ms`]).
    pub async fn signatures(&self, limit: u32) -> Result<Vec<(String, u64)>> {
        let inner = &self.inner;
        let stop = i64::from(limit.max(1)) - 1;
        let raw: Vec<(String, f64)> = inner
            .pool
            .query_keys(
                redis::cmd("ZREVRANGE")
                    .arg(&inner.keys.seen)
                    .arg(0)
                    .arg(stop)
                    .arg("WITHSCORES"),
                std::slice::from_ref(&inner.keys.seen),
            )
            .await?;
        // Scores are times in ms the record script wrote; another is named, not wrapped.
        raw.into_iter()
            .map(|(signature, score)| match whole(score) {
                Some(ms) => Ok((signature, ms)),
                None => Err(Error::corrupt(
                    inner.keys.seen.as_str(),
                    format!("signature {signature} score {score} is no time in ms"),
                )),
            })
            .collect()
    }
}
