//! The script's arguments and answers: the rules packed as big-endian doubles, and the
//! answers decoded with every number bounded (an answer that does not decode is
//! [`Error::Decode`]; bad stored data is the script's own error, naming the key).

use coordkit_core::{Error, Result, redis::Value};

use crate::config::{BreakerConfig, ms};
use crate::state::{
    AcquireAnswer, Outcome, PermitKind, RecordAnswer, RecordStatus, Snapshot, State,
};

/// ARGV[3..=5]: the rules (16 big-endian doubles, in the script's order: the record's hot
/// path unpacks the first 8), the channel prefix and the name.
pub(crate) fn script_config_args(
    c: &BreakerConfig,
    channel_prefix: &str,
    name: &str,
) -> Vec<Vec<u8>> {
    let (wkind, wsize, bucket_ms) = c.window_args();
    let (open_base, open_factor, open_max) = c.open_ms();
    let rules = [
        if wkind == "c" { 0.0 } else { 1.0 },
        wsize as f64,
        f64::from(c.minimum_calls),
        c.failure_rate,
        c.slow_call_rate,
        ms(c.slow_call_duration) as f64,
        f64::from(c.consecutive_failures.unwrap_or(0)),
        ms(c.idle_expiry) as f64,
        bucket_ms as f64,
        open_base as f64,
        open_factor,
        open_max as f64,
        f64::from(c.half_open_permits),
        f64::from(c.half_open_successes),
        ms(c.permit_lease) as f64,
        c.half_open_max_wait.map(ms).unwrap_or(0) as f64,
    ];
    vec![
        pack(&rules),
        channel_prefix.as_bytes().to_vec(),
        name.as_bytes().to_vec(),
    ]
}

/// Numbers as big-endian doubles, for Lua's `struct.unpack('>d…')`.
fn pack(numbers: &[f64]) -> Vec<u8> {
    numbers.iter().flat_map(|n| n.to_be_bytes()).collect()
}

/// The record script's packed numbers: epoch, permit kind, outcome, duration.
pub(crate) fn pack_report(
    epoch: u64,
    kind: PermitKind,
    outcome: Outcome,
    duration_ms: u64,
) -> Vec<u8> {
    let kind = match kind {
        PermitKind::Probe => 1.0,
        PermitKind::MetricsOnly => 2.0,
        PermitKind::Bypass => 3.0,
        PermitKind::Normal | PermitKind::Unrecorded => 0.0,
    };
    let outcome = match outcome {
        Outcome::Success => 0.0,
        Outcome::Failure => 1.0,
        Outcome::Ignored => 2.0,
    };
    pack(&[epoch as f64, kind, outcome, duration_ms as f64])
}

pub(crate) fn int(v: Option<&Value>) -> Result<u64> {
    match v {
        Some(Value::Int(n)) => u64::try_from(*n).map_err(|_| corrupt("a number of at least 0")),
        _ => Err(corrupt("a number")),
    }
}

pub(crate) fn state(v: Option<&Value>) -> Result<State> {
    match v {
        Some(Value::Int(n)) => State::from_code(*n).ok_or_else(|| corrupt("a state")),
        _ => Err(corrupt("a state")),
    }
}

/// An answer of the script this version cannot read (bad stored data is an error of the
/// script itself, naming the key).
fn corrupt(expected: &str) -> Error {
    Error::decode(
        "the breaker script's answer",
        format!("expected {expected}"),
    )
}

/// An acquire's answer: `epoch * 8 + state` when admitted without a change, else
/// `{ admitted, state, epoch, retry after ms, permit kind }`.
pub(crate) fn decode_acquire(v: &Value) -> Result<AcquireAnswer> {
    match v {
        Value::Int(n) if *n >= 8 => {
            let state = State::from_code(n % 8).ok_or_else(|| corrupt("a state"))?;
            let kind = match state {
                State::Closed => PermitKind::Normal,
                State::Disabled => PermitKind::Bypass,
                State::MetricsOnly => PermitKind::MetricsOnly,
                _ => return Err(corrupt("an admitting state")),
            };
            Ok(AcquireAnswer {
                admitted: true,
                state,
                epoch: u64::try_from(n / 8).map_err(|_| corrupt("an epoch"))?,
                retry_after_ms: 0,
                kind: Some(kind),
            })
        }
        Value::Array(v) => {
            let kind = match v.get(4) {
                Some(Value::Int(0)) => None,
                Some(Value::Int(code)) => {
                    Some(PermitKind::from_code(*code).ok_or_else(|| corrupt("a permit kind"))?)
                }
                _ => return Err(corrupt("a permit kind")),
            };
            Ok(AcquireAnswer {
                admitted: int(v.first())? == 1,
                state: state(v.get(1))?,
                epoch: int(v.get(2))?,
                retry_after_ms: int(v.get(3))?,
                kind,
            })
        }
        _ => Err(corrupt("an acquire answer")),
    }
}

/// A record's answer: `(epoch * 4 + status) * 8 + state`, and when that leaves it open,
/// `{ that, open ms left }`.
pub(crate) fn decode_record(v: &Value) -> Result<(RecordAnswer, Option<u64>)> {
    let answer = |v: Option<&Value>| match v {
        Some(Value::Int(n)) if *n >= 32 => Ok(RecordAnswer {
            status: RecordStatus::from_code((n / 8) % 4).ok_or_else(|| corrupt("a status"))?,
            state: State::from_code(n % 8).ok_or_else(|| corrupt("a state"))?,
            epoch: u64::try_from(n / 32).map_err(|_| corrupt("an epoch"))?,
        }),
        _ => Err(corrupt("a record answer")),
    };
    match v {
        Value::Array(v) if v.len() == 2 => Ok((answer(v.first())?, Some(int(v.get(1))?))),
        v => Ok((answer(Some(v))?, None)),
    }
}

/// A snapshot and the server's time it was taken at.
pub(crate) fn decode_snapshot(v: &[Value]) -> Result<(Snapshot, u64)> {
    let snapshot = Snapshot {
        state: state(v.first())?,
        epoch: int(v.get(1))?,
        calls: int(v.get(2))?,
        failures: int(v.get(3))?,
        slow_calls: int(v.get(4))?,
        consecutive_failures: int(v.get(5))?,
        opened_at_ms: int(v.get(6))?,
        open_until_ms: int(v.get(7))?,
        half_open_successes: int(v.get(8))?,
        probes_in_flight: int(v.get(9))?,
        reopenings: int(v.get(10))?,
    };
    Ok((snapshot, int(v.get(11))?))
}
