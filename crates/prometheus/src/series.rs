//! [`Series`]: a family whose rows keep the order they were read in, so that a page lists the
//! same series in the same order at every scrape (prometheus-client's `Family` keeps a hash
//! map), and whose values are set once, as a scrape reads them.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// The labels of a series: fixed names, bounded values (instance names, fixed states).
pub(crate) type Labels = Vec<(&'static str, String)>;

/// A value as read.
#[derive(Debug, Clone, Copy)]
enum Value {
    Int(u64),
    Float(f64),
}

/// The rows of one metric family, in order.
#[derive(Debug)]
pub(crate) struct Series {
    kind: MetricType,
    rows: Vec<(Labels, Value)>,
}

impl Series {
    pub(crate) fn gauge() -> Self {
        Self {
            kind: MetricType::Gauge,
            rows: Vec::new(),
        }
    }

    pub(crate) fn counter() -> Self {
        Self {
            kind: MetricType::Counter,
            rows: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, labels: Labels, value: u64) {
        self.rows.push((labels, Value::Int(value)));
    }

    pub(crate) fn push_f64(&mut self, labels: Labels, value: f64) {
        self.rows.push((labels, Value::Float(value)));
    }
}

impl EncodeMetric for Series {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        for (labels, value) in &self.rows {
            let mut row = encoder.encode_family(labels)?;
            match (self.kind, value) {
                (MetricType::Counter, Value::Int(n)) => {
                    row.encode_counter::<NoLabelSet, _, u64>(n, None)?
                }
                (MetricType::Counter, Value::Float(x)) => {
                    row.encode_counter::<NoLabelSet, _, f64>(x, None)?
                }
                (_, Value::Int(n)) => row.encode_gauge(n)?,
                (_, Value::Float(x)) => row.encode_gauge(x)?,
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        self.kind
    }

    fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}
