//! [`Series`]: a gauge or counter series, its writes (one script call each) and its queries.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use coordkit_core::redis;
use coordkit_core::time::duration_ms;
use coordkit_core::wire;
use coordkit_core::{Clock, GroupCommit, Invocation, Key, KeyKind, Lifetime, Pool, Registration};

use crate::aggregate::{Aggregate, check_quantiles};
use crate::config::{MAX_SAMPLES_LIMIT, SeriesConfig};
use crate::error::{MetricsError, Result, check_timestamp, check_value};
use crate::sample::{
    RollupBucket, Sample, SampleWindow, parse_f64, parse_rollup, parse_u64, stored_f64, stored_u64,
    value_text,
};
use crate::scripts::{QUERY, READ_HASH, RECORD, RECORD_ONE};
use crate::series_id::SeriesId;

mod sealed {
    pub trait Sealed {}
}

/// What a series' values mean: [`GaugeKind`] or [`CounterKind`]. Sealed.
pub trait Kind: sealed::Sealed + Send + Sync + 'static {
    /// The kind's name, also the prefix of its key suffixes.
    const NAME: &'static str;
    /// Whether values are increments added to a running total.
    const COUNTER: bool;
}

/// Gauge samples: any finite value, recorded as is.
#[derive(Debug, Clone, Copy)]
pub struct GaugeKind;

/// Counter increments: finite values `>= 0`, also added to the counter's total.
#[derive(Debug, Clone, Copy)]
pub struct CounterKind;

impl sealed::Sealed for GaugeKind {}
impl sealed::Sealed for CounterKind {}

impl Kind for GaugeKind {
    const NAME: &'static str = "gauge";
    const COUNTER: bool = false;
}

impl Kind for CounterKind {
    const NAME: &'static str = "counter";
    const COUNTER: bool = true;
}

/// A gauge: samples of a value that goes up and down (loss, queue depth, temperature).
pub type Gauge = Series<GaugeKind>;

/// A counter: increments (tokens used, requests served), with a total and a rate.
pub type Counter = Series<CounterKind>;

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Written {
    /// How many samples the series holds after the write and its trimming (at most
    /// `max_samples`).
    pub retained: u64,
    /// The scripts' clock when the write happened, in ms.
    pub now_ms: u64,
    /// A counter's total after the write; `None` for a gauge.
    pub total: Option<f64>,
}

/// One time series (a metric name plus labels) of kind `K`. Cheap to clone.
///
/// Built by [`Metrics::gauge`](crate::Metrics::gauge) or
/// [`Metrics::counter`](crate::Metrics::counter). Its keys share the hash tag
/// `{metric:<name,labels>}`: `…:<kind>` (the samples), `…:<kind>-meta`, `…:<kind>-rollups`.
pub struct Series<K: Kind> {
    inner: Arc<Inner>,
    kind: PhantomData<K>,
}

impl<K: Kind> Clone for Series<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            kind: PhantomData,
        }
    }
}

impl<K: Kind> std::fmt::Debug for Series<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(K::NAME)
            .field("id", &self.inner.id)
            .field("samples", &self.inner.samples)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    pool: Pool,
    clock: Clock,
    id: SeriesId,
    config: SeriesConfig,
    channel: String,
    samples: Key,
    meta: Key,
    rollups: Key,
    /// The arguments every write repeats (ARGV[2..=3] or ARGV[2..=12] of record.lua).
    fixed_args: Vec<String>,
    /// A gauge without age limit, rollups or alerts: one key, and single samples go to
    /// record_one.lua.
    plain: bool,
    /// ARGV[2..=3] of record_one.lua (a plain gauge's single samples): the list entries a trim
    /// keeps, and the length above which it trims.
    one_sample_args: [String; 2],
    /// Concurrent writes of this handle go in one pipeline (each its own call and answer).
    writes: Writes,
    /// The series' entry in the namespace's index of series.
    registration: Registration,
    /// The same for single samples of a plain gauge (record_one.lua: a pipeline holds calls of
    /// one script, so that a NOSCRIPT answer reloads the right one).
    one_sample_writes: GroupCommit<Invocation<'static>, coordkit_core::Result<redis::Value>>,
}

/// Records a series in the index unless its handle already did (a lock and a clock read):
/// before every write. Series keep their keys until cleared: no deadline.
pub(crate) async fn registered(registration: &Registration, pool: &Pool) -> Result<()> {
    if registration.is_due(Lifetime::Forever) {
        // Boxed: rare (once per handle and refresh period), keeps the writes' futures small.
        Box::pin(registration.ensure(pool, Lifetime::Forever)).await?;
    }
    Ok(())
}

/// Writes of one script, pipelined when concurrent.
type Writes = GroupCommit<Invocation<'static>, coordkit_core::Result<(u64, u64, String)>>;

/// record_one.lua's answer as (retained, now_ms): a full series (`max_samples` retained)
/// answers its clock alone, any other `{retained, now_ms, ""}`.
fn one_sample_answer(reply: redis::Value, max_samples: u32) -> coordkit_core::Result<(u64, u64)> {
    let script = RECORD_ONE.name();
    match reply {
        redis::Value::Int(_) => Ok((u64::from(max_samples), wire::uint(script, "now", &reply)?)),
        other => {
            let answer = wire::Reply::array(script, &other)?;
            Ok((answer.u64(0, "retained")?, answer.u64(1, "now")?))
        }
    }
}

/// How many write pipelines may be on the wire at once per series handle.
const WRITES_IN_FLIGHT: usize = 4;
/// The most writes one pipeline carries.
const MAX_WRITE_PIPELINE: usize = 128;

pub(crate) struct SeriesParts {
    pub(crate) pool: Pool,
    pub(crate) clock: Clock,
    pub(crate) id: SeriesId,
    pub(crate) config: SeriesConfig,
    pub(crate) channel: String,
    pub(crate) keys: coordkit_core::InstanceKeys,
    pub(crate) registration: Registration,
}

impl<K: Kind> Series<K> {
    pub(crate) fn new(parts: SeriesParts) -> Self {
        let SeriesParts {
            pool,
            clock,
            id,
            config,
            channel,
            keys,
            registration,
        } = parts;
        let rollup = config.rollup;
        let alert = config.alert;
        let plain = !K::COUNTER && config.max_age_ms == 0 && rollup.is_none() && alert.is_none();
        let mut fixed_args = vec![config.max_samples.to_string()];
        if plain {
            fixed_args.push(String::new());
        } else {
            fixed_args.extend([
                "+".to_owned(),
                config.max_age_ms.to_string(),
                K::NAME.to_owned(),
                rollup.map_or(0, |r| r.resolution_ms).to_string(),
                rollup.map_or(0, |r| r.keep).to_string(),
                alert
                    .and_then(|a| a.above)
                    .map(value_text)
                    .unwrap_or_default(),
                alert
                    .and_then(|a| a.below)
                    .map(value_text)
                    .unwrap_or_default(),
                alert.map_or(0, |a| a.interval_ms).to_string(),
                channel.clone(),
                id.encoded().to_owned(),
            ]);
        }
        let max = u64::from(config.max_samples);
        let one_sample_args = [(2 * max).to_string(), (2 * (max + max / 16)).to_string()];
        let writes = GroupCommit::pipelined(&pool, WRITES_IN_FLIGHT, MAX_WRITE_PIPELINE);
        let one_sample_writes = GroupCommit::pipelined(&pool, WRITES_IN_FLIGHT, MAX_WRITE_PIPELINE);
        Self {
            inner: Arc::new(Inner {
                // Typed: a key of another type is named even when Redis does not say which.
                samples: keys.typed_key(K::NAME, KeyKind::List),
                meta: keys.typed_key(&format!("{}-meta", K::NAME), KeyKind::Hash),
                rollups: keys.typed_key(&format!("{}-rollups", K::NAME), KeyKind::Hash),
                pool,
                clock,
                id,
                config,
                channel,
                fixed_args,
                plain,
                one_sample_args,
                writes,
                one_sample_writes,
                registration,
            }),
            kind: PhantomData,
        }
    }

    /// The series' name and labels.
    pub fn id(&self) -> &SeriesId {
        &self.inner.id
    }

    /// Its retention, rollups and alerts.
    pub fn config(&self) -> &SeriesConfig {
        &self.inner.config
    }

    /// The channel its threshold alerts are published on; [`alerts`](Self::alerts) subscribes
    /// to this series' alerts, typed.
    pub fn alert_channel(&self) -> &str {
        &self.inner.channel
    }

    /// The pool it writes through.
    pub(crate) fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The key holding its samples (for inspection: `MEMORY USAGE`, `TYPE`).
    pub fn samples_key(&self) -> &Key {
        &self.inner.samples
    }

    /// Writes samples `(timestamp or now, value)` in one script call.
    async fn write(&self, samples: &[(Option<u64>, f64)]) -> Result<Written> {
        let what = if K::COUNTER { "increment" } else { "value" };
        if samples.is_empty() {
            return Err(MetricsError::InvalidSample {
                what: "batch",
                input: "[]".into(),
                reason: "holds no sample",
            });
        }
        for &(ts, value) in samples {
            check_value(what, value, K::COUNTER)?;
            if let Some(ts) = ts {
                check_timestamp(ts)?;
            }
        }
        let inner = &*self.inner;
        registered(&inner.registration, &inner.pool).await?;
        if let ([(ts, value)], true) = (samples, inner.plain) {
            let mut call = RECORD_ONE.prepare();
            call.key(&inner.samples)
                .arg(inner.clock.arg())
                .arg(&inner.one_sample_args[..])
                .arg(ts.map(|t| t.to_string()).unwrap_or_default())
                .arg(value_text(*value));
            let reply = inner
                .one_sample_writes
                .submit(&inner.samples, call)
                .await??;
            let (retained, now_ms) = one_sample_answer(reply, inner.config.max_samples)?;
            return Ok(Written {
                retained,
                now_ms,
                total: None,
            });
        }
        let mut call = RECORD.prepare();
        call.key(&inner.samples);
        if !inner.plain {
            call.key(&inner.meta).key(&inner.rollups);
        }
        call.arg(inner.clock.arg());
        for arg in &inner.fixed_args {
            call.arg(arg);
        }
        for &(ts, value) in samples {
            call.arg(ts.map(|t| t.to_string()).unwrap_or_default())
                .arg(value_text(value));
        }
        let (retained, now_ms, total) = inner.writes.submit(&inner.samples, call).await??;
        Ok(Written {
            retained,
            now_ms,
            total: if K::COUNTER {
                Some(parse_f64("the counter's total", &total)?)
            } else {
                None
            },
        })
    }

    async fn query(
        &self,
        window: SampleWindow,
        aggregate: bool,
        quantiles: &[f64],
    ) -> Result<Vec<String>> {
        let inner = &*self.inner;
        let (selector, a, b) = match window {
            // No series holds more than MAX_SAMPLES_LIMIT samples.
            SampleWindow::Last(n) => (
                "last",
                u64::try_from(n)
                    .unwrap_or(u64::MAX)
                    .min(u64::from(MAX_SAMPLES_LIMIT)),
                0,
            ),
            SampleWindow::Recent(d) => ("recent", duration_ms(d), 0),
            SampleWindow::Range { from_ms, to_ms } => ("range", from_ms, to_ms),
        };
        let mut call = QUERY.prepare();
        call.key(&inner.samples)
            .arg(inner.clock.arg())
            .arg(inner.config.max_samples)
            .arg(inner.config.max_age_ms)
            .arg(selector)
            .arg(a)
            .arg(b)
            .arg(if aggregate { "aggregate" } else { "samples" });
        for &q in quantiles {
            call.arg(value_text(q));
        }
        // Bytes, not text: a stored sample that is not UTF-8 is corrupt data of the key, which
        // the decoding names, not an answer the client cannot read.
        let reply: Vec<Vec<u8>> = call.invoke(&inner.pool).await?;
        Ok(reply.into_iter().map(lossy).collect())
    }

    /// The samples a window selects, in recording order. A selected sample that does not
    /// decode (a timestamp not a whole number in `0..=2^53`, a value not a finite number) fails
    /// the query with [`coordkit_core::Error::Corrupt`] naming the samples key.
    pub async fn samples(&self, window: SampleWindow) -> Result<Vec<Sample>> {
        let key = &self.inner.samples;
        let reply = self.query(window, false, &[]).await?;
        let pairs = reply.get(1..).unwrap_or_default();
        if pairs.len() % 2 != 0 {
            return Err(
                coordkit_core::Error::decode("the samples", "an odd number of fields").into(),
            );
        }
        pairs
            .chunks_exact(2)
            .map(|pair| {
                let ts_ms = stored_u64(key, "a sample's timestamp", &pair[0])?;
                Ok(Sample {
                    ts_ms,
                    value: stored_f64(key, "a sample's value", &pair[1], false)?,
                })
            })
            .collect()
    }

    /// The `n` most recently recorded samples, oldest first.
    pub async fn latest(&self, n: usize) -> Result<Vec<Sample>> {
        self.samples(SampleWindow::Last(n)).await
    }

    /// The samples with `from_ms <= ts <= to_ms`, in recording order.
    pub async fn range(&self, from_ms: u64, to_ms: u64) -> Result<Vec<Sample>> {
        self.samples(SampleWindow::Range { from_ms, to_ms }).await
    }

    /// Count, sum, min, max and the nearest-rank percentiles `quantiles` (each in `[0, 1]`) of
    /// a window, computed by the server in one call (see [`Aggregate`] for the definitions).
    pub async fn aggregate(&self, window: SampleWindow, quantiles: &[f64]) -> Result<Aggregate> {
        check_quantiles(quantiles)?;
        let reply = self.query(window, true, quantiles).await?;
        decode_aggregate(&reply, quantiles)
    }

    /// The mean of the `n` most recently recorded samples (a moving average by count), if any.
    pub async fn moving_average(&self, n: usize) -> Result<Option<f64>> {
        Ok(self.aggregate(SampleWindow::Last(n), &[]).await?.avg())
    }

    /// The rollup buckets starting within `from_ms..=to_ms`, oldest first (empty without
    /// rollups). They outlive the raw samples: use them for long windows. A bucket that does
    /// not decode fails the call with [`coordkit_core::Error::Corrupt`] naming the rollups key.
    pub async fn rollups(&self, from_ms: u64, to_ms: u64) -> Result<Vec<RollupBucket>> {
        let key = &self.inner.rollups;
        let fields = read_hash(&self.inner.pool, key).await?;
        let mut buckets = fields
            .iter()
            .map(|(start, text)| parse_rollup(key, start, text))
            .filter(|b| {
                b.as_ref()
                    .map_or(true, |b| (from_ms..=to_ms).contains(&b.start_ms))
            })
            .collect::<coordkit_core::Result<Vec<_>>>()?;
        buckets.sort_by_key(|b| b.start_ms);
        Ok(buckets)
    }

    /// Deletes the series' samples, rollups and state, and forgets it in the namespace's
    /// index of series (its next write records it again).
    pub async fn clear(&self) -> Result<()> {
        let inner = &*self.inner;
        let _: u64 = inner
            .pool
            .query(
                coordkit_core::redis::cmd("DEL")
                    .arg(&inner.samples)
                    .arg(&inner.meta)
                    .arg(&inner.rollups),
            )
            .await?;
        inner.registration.forget(&inner.pool).await?;
        Ok(())
    }
}

impl Series<GaugeKind> {
    /// Records `value` at the scripts' clock (the server's time). One round trip.
    pub async fn record(&self, value: f64) -> Result<Written> {
        self.write(&[(None, value)]).await
    }

    /// Records `value` at `ts_ms`. One round trip.
    pub async fn record_at(&self, ts_ms: u64, value: f64) -> Result<Written> {
        self.write(&[(Some(ts_ms), value)]).await
    }

    /// Records several values at the scripts' clock, in order, in one round trip.
    pub async fn record_batch(&self, values: &[f64]) -> Result<Written> {
        let samples: Vec<_> = values.iter().map(|&v| (None, v)).collect();
        self.write(&samples).await
    }

    /// Records samples with their own timestamps, in order, in one round trip.
    pub async fn record_samples(&self, samples: &[Sample]) -> Result<Written> {
        let samples: Vec<_> = samples.iter().map(|s| (Some(s.ts_ms), s.value)).collect();
        self.write(&samples).await
    }

    /// Writes samples whose timestamps are optional (`None` = the scripts' clock).
    pub async fn record_mixed(&self, samples: &[(Option<u64>, f64)]) -> Result<Written> {
        self.write(samples).await
    }
}

impl Series<CounterKind> {
    /// Adds `by` (finite, `>= 0`) at the scripts' clock; returns the write, with the new total.
    pub async fn increment(&self, by: f64) -> Result<Written> {
        self.write(&[(None, by)]).await
    }

    /// Adds `by` at `ts_ms`.
    pub async fn increment_at(&self, ts_ms: u64, by: f64) -> Result<Written> {
        self.write(&[(Some(ts_ms), by)]).await
    }

    /// Adds several increments at the scripts' clock, in one round trip.
    pub async fn increment_batch(&self, increments: &[f64]) -> Result<Written> {
        let samples: Vec<_> = increments.iter().map(|&v| (None, v)).collect();
        self.write(&samples).await
    }

    /// Writes increments whose timestamps are optional (`None` = the scripts' clock).
    pub async fn increment_mixed(&self, samples: &[(Option<u64>, f64)]) -> Result<Written> {
        self.write(samples).await
    }

    /// The sum of every increment ever recorded (not trimmed by retention).
    pub async fn total(&self) -> Result<f64> {
        let fields = read_hash(&self.inner.pool, &self.inner.meta).await?;
        match fields.iter().find(|(field, _)| field == "total") {
            Some((_, text)) => Ok(stored_f64(&self.inner.meta, "total", text, true)?),
            None => Ok(0.0),
        }
    }

    /// The rate per second over the last `window`: the sum of the increments recorded with
    /// `now - window < ts <= now`, divided by the window in seconds (0 for an empty window).
    pub async fn rate(&self, window: Duration) -> Result<f64> {
        let sum = self.aggregate(SampleWindow::Recent(window), &[]).await?.sum;
        Ok(rate_per_second(sum, window))
    }
}

/// The rate of `sum` over `window`, per second.
pub fn rate_per_second(sum: f64, window: Duration) -> f64 {
    let ms = duration_ms(window);
    if ms == 0 {
        0.0
    } else {
        sum * 1000.0 / ms as f64
    }
}

fn decode_aggregate(reply: &[String], quantiles: &[f64]) -> Result<Aggregate> {
    let count = match reply.get(1) {
        Some(text) => parse_u64("the aggregate's count", text)?,
        None => return Err(coordkit_core::Error::decode("the aggregate", "no count").into()),
    };
    if count == 0 {
        return Ok(Aggregate::empty());
    }
    if reply.len() != 5 + quantiles.len() {
        return Err(coordkit_core::Error::decode(
            "the aggregate",
            format!("{} fields for {} quantiles", reply.len(), quantiles.len()),
        )
        .into());
    }
    let mut quantile_values = Vec::with_capacity(quantiles.len());
    for (q, text) in quantiles.iter().zip(&reply[5..]) {
        quantile_values.push((*q, parse_f64("a percentile", text)?));
    }
    Ok(Aggregate {
        count,
        sum: parse_f64("the aggregate's sum", &reply[2])?,
        min: Some(parse_f64("the aggregate's min", &reply[3])?),
        max: Some(parse_f64("the aggregate's max", &reply[4])?),
        quantiles: quantile_values,
    })
}

/// A hash's fields and values (bytes that are not UTF-8 replaced: the caller's decoding then
/// names the key).
pub(crate) async fn read_hash(pool: &Pool, key: &Key) -> Result<Vec<(String, String)>> {
    let flat: Vec<Vec<u8>> = READ_HASH.prepare().key(key).invoke(pool).await?;
    let mut flat = flat.into_iter().map(lossy);
    let mut pairs = Vec::new();
    while let (Some(field), Some(value)) = (flat.next(), flat.next()) {
        pairs.push((field, value));
    }
    Ok(pairs)
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
