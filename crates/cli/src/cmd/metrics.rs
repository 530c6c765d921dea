//! `coordkit metrics …`: a series' latest samples, aggregates and percentiles.

use std::time::Duration;

use coordkit_metrics::{Histogram, Kind, Metrics, SampleWindow, Series};
use serde_json::{Value, json};

use super::listing::names_report;
use super::{Ctx, any_exists};
use crate::app::{MetricsCommand, SeriesArg, SeriesKind};
use crate::fail::{Fail, Outcome};
use crate::out::{Report, fields, or_dash, table};
use crate::time::{age, timestamp};

pub(crate) async fn run(ctx: &Ctx, command: &MetricsCommand) -> Outcome {
    let metrics = Metrics::builder(&ctx.pool, &ctx.keyspace).build()?;
    match command {
        MetricsCommand::Ls => {
            ctx.read(|| async {
                let listing = metrics.list().await?;
                Ok(names_report("series", ctx.namespace(), &listing))
            })
            .await
        }
        MetricsCommand::Tail { series, limit } => {
            let (name, labels) = parse_series(&series.series)?;
            let labels: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            match series.kind {
                SeriesKind::Gauge => {
                    let s = open(ctx, metrics.gauge(&name, &labels)?, series).await?;
                    ctx.read(|| tail(&s, *limit, None)).await
                }
                SeriesKind::Counter => {
                    let s = open(ctx, metrics.counter(&name, &labels)?, series).await?;
                    ctx.read(|| async {
                        let total = s.total().await?;
                        tail(&s, *limit, Some(total)).await
                    })
                    .await
                }
                SeriesKind::Histogram => Err(Fail::usage(
                    "a histogram keeps no samples, only bucket counts: use `metrics agg --kind histogram`",
                )),
            }
        }
        MetricsCommand::Agg {
            series,
            window,
            percentiles,
        } => {
            let (name, labels) = parse_series(&series.series)?;
            let labels: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let explicit_window = window.is_some();
            let window = window.unwrap_or(DEFAULT_WINDOW);
            match series.kind {
                SeriesKind::Gauge => {
                    let s = open(ctx, metrics.gauge(&name, &labels)?, series).await?;
                    ctx.read(|| aggregate(&s, window, percentiles)).await
                }
                SeriesKind::Counter => {
                    let s = open(ctx, metrics.counter(&name, &labels)?, series).await?;
                    ctx.read(|| aggregate(&s, window, percentiles)).await
                }
                SeriesKind::Histogram => {
                    if explicit_window {
                        return Err(Fail::usage(
                            "a histogram has no window: it aggregates every observation (drop --window)",
                        ));
                    }
                    let h = metrics.histogram(&name, &labels)?;
                    if !any_exists(&ctx.pool, std::slice::from_ref(h.key())).await? {
                        return Err(Fail::failed(format!(
                            "unknown histogram series {:?} in namespace {:?}: it holds no observations",
                            series.series,
                            ctx.namespace()
                        )));
                    }
                    ctx.read(|| histogram(&h, percentiles)).await
                }
            }
        }
    }
}

/// The window of `agg` when none is given.
const DEFAULT_WINDOW: Duration = Duration::from_secs(300);

/// `name` or `name{label=value,…}`.
pub(crate) fn parse_series(text: &str) -> Outcome<(String, Vec<(String, String)>)> {
    let bad = |why: &str| {
        Fail::usage(format!(
            "{text:?} is not a series ({why}): write name or name{{label=value,…}}"
        ))
    };
    let Some((name, rest)) = text.split_once('{') else {
        return Ok((text.to_owned(), Vec::new()));
    };
    let inner = rest
        .strip_suffix('}')
        .ok_or_else(|| bad("the labels do not end with `}`"))?;
    let mut labels = Vec::new();
    for pair in inner.split(',').filter(|p| !p.is_empty()) {
        let (label, value) = pair
            .split_once('=')
            .ok_or_else(|| bad("a label has no `=`"))?;
        labels.push((label.trim().to_owned(), value.trim().to_owned()));
    }
    Ok((name.to_owned(), labels))
}

async fn open<K: Kind>(ctx: &Ctx, series: Series<K>, arg: &SeriesArg) -> Outcome<Series<K>> {
    if !any_exists(&ctx.pool, std::slice::from_ref(series.samples_key())).await? {
        return Err(Fail::failed(format!(
            "unknown {} series {:?} in namespace {:?}: it holds no samples (is it a {}?)",
            K::NAME,
            arg.series,
            ctx.namespace(),
            if K::NAME == "gauge" {
                "counter"
            } else {
                "gauge"
            }
        )));
    }
    Ok(series)
}

async fn tail<K: Kind>(series: &Series<K>, limit: u64, total: Option<f64>) -> Outcome<Report> {
    let samples = series.latest(limit as usize).await?;
    let mut human = table(
        &["at", "value"],
        samples
            .iter()
            .map(|s| vec![timestamp(s.ts_ms), s.value.to_string()]),
    );
    if let Some(total) = total {
        human.push_str(&format!("total {total}\n"));
    }
    let mut json = json!({
        "series": series.id().encoded(),
        "name": series.id().name(),
        "labels": series.id().labels(),
        "kind": K::NAME,
        "samples": samples.iter().map(|s| json!({"ts_ms": s.ts_ms, "value": s.value})).collect::<Vec<_>>(),
    });
    if let (Some(total), Value::Object(map)) = (total, &mut json) {
        map.insert("total".to_owned(), json!(total));
    }
    Ok(Report { human, json })
}

async fn aggregate<K: Kind>(
    series: &Series<K>,
    window: Duration,
    percentiles: &[f64],
) -> Outcome<Report> {
    let a = series
        .aggregate(SampleWindow::Recent(window), percentiles)
        .await?;
    let mut rows = vec![
        ("series", series.id().encoded().to_owned()),
        ("window", age(window)),
        ("count", a.count.to_string()),
        ("sum", a.sum.to_string()),
        ("min", or_dash(a.min)),
        ("max", or_dash(a.max)),
        ("avg", or_dash(a.avg())),
    ];
    let labels: Vec<String> = a
        .quantiles
        .iter()
        .map(|(q, _)| format!("p{}", q * 100.0))
        .collect();
    for ((_, p), label) in a.quantiles.iter().zip(&labels) {
        rows.push((label.as_str(), p.to_string()));
    }
    Ok(Report {
        human: fields(rows),
        json: json!({
            "series": series.id().encoded(),
            "name": series.id().name(),
            "labels": series.id().labels(),
            "kind": K::NAME,
            "window_ms": window.as_millis() as u64,
            "count": a.count,
            "sum": a.sum,
            "min": a.min,
            "max": a.max,
            "avg": a.avg(),
            "percentiles": a.quantiles.iter().map(|(q, p)| json!({"q": q, "value": p})).collect::<Vec<_>>(),
        }),
    })
}

/// A histogram's observations: exact count, sum, min, max; percentiles estimated from its
/// buckets.
async fn histogram(h: &Histogram, percentiles: &[f64]) -> Outcome<Report> {
    let snapshot = h.snapshot().await?;
    let estimates: Vec<(f64, Option<f64>)> = percentiles
        .iter()
        .map(|&q| (q, snapshot.quantile(q)))
        .collect();
    let mut rows = vec![
        ("series", h.id().encoded().to_owned()),
        ("count", snapshot.count.to_string()),
        ("sum", snapshot.sum.to_string()),
        ("min", or_dash(snapshot.min)),
        ("max", or_dash(snapshot.max)),
        ("avg", or_dash(snapshot.avg())),
    ];
    let labels: Vec<String> = estimates
        .iter()
        .map(|(q, _)| format!("p{} (estimated)", q * 100.0))
        .collect();
    for ((_, p), label) in estimates.iter().zip(&labels) {
        rows.push((label.as_str(), or_dash(*p)));
    }
    Ok(Report {
        human: fields(rows),
        json: json!({
            "series": h.id().encoded(),
            "name": h.id().name(),
            "labels": h.id().labels(),
            "kind": "histogram",
            "window_ms": Value::Null,
            "count": snapshot.count,
            "sum": snapshot.sum,
            "min": snapshot.min,
            "max": snapshot.max,
            "avg": snapshot.avg(),
            "percentiles": estimates.iter().map(|(q, p)| json!({"q": q, "value": p})).collect::<Vec<_>>(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_parse_with_and_without_labels() {
        assert_eq!(parse_series("loss").unwrap(), ("loss".to_owned(), vec![]));
        assert_eq!(
            parse_series("loss{run=r42,host=a}").unwrap(),
            (
                "loss".to_owned(),
                vec![
                    ("run".to_owned(), "r42".to_owned()),
                    ("host".to_owned(), "a".to_owned())
                ]
            )
        );
        assert_eq!(parse_series("loss{run}").unwrap_err().code, 2);
        assert_eq!(parse_series("loss{run=a").unwrap_err().code, 2);
    }
}
