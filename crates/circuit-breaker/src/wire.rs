//! The script's arguments and answers: the rules packed as big-endian doubles, the codes
//! shared with `lua/breaker.lua`, and the answers decoded through [`coordkit_core::wire`]
//! with every number bounded (an answer that does not decode is
//! [`Error::Decode`](coordkit_core::Error::Decode) naming the field; bad stored data is the
//! script's own error, naming the key).

use std::time::Duration;

use coordkit_core::time::duration_ms;
use coordkit_core::wire::{Reply, pack_f64_be, uint};
use coordkit_core::{Error, Result, redis::Value};

use crate::config::{BreakerConfig, OpenDuration, Window};
use crate::state::{
    AcquireAnswer, Outcome, PermitKind, RecordAnswer, RecordStatus, Snapshot, State,
};

/// The script's name in decode errors.
const SCRIPT: &str = "circuit-breaker";

/// The numbers shared with `lua/breaker.lua`: the same names stand at the top of the script.
pub(crate) mod code {
    /// State codes (`s` field, answers): closed.
    pub(crate) const CLOSED: u64 = 0;
    /// Open.
    pub(crate) const OPEN: u64 = 1;
    /// Half-open.
    pub(crate) const HALF_OPEN: u64 = 2;
    /// Forced open.
    pub(crate) const FORCED_OPEN: u64 = 3;
    /// Disabled.
    pub(crate) const DISABLED: u64 = 4;
    /// Metrics-only.
    pub(crate) const METRICS_ONLY: u64 = 5;
    /// Room for the state codes in a packed answer: `epoch * STATE_CODES + state`.
    pub(crate) const STATE_CODES: u64 = 8;

    /// Record statuses: counted.
    pub(crate) const RECORDED: u64 = 0;
    /// Another epoch's permit.
    pub(crate) const STALE: u64 = 1;
    /// An ignored outcome.
    pub(crate) const IGNORED: u64 = 2;
    /// A state that counts nothing.
    pub(crate) const NOT_COUNTED: u64 = 3;
    /// Room for the statuses in a record's answer: `(epoch * STATUS_CODES + status) *
    /// STATE_CODES + state`.
    pub(crate) const STATUS_CODES: u64 = 4;

    /// Permit kinds (an acquire's answer, a record's argument): none (rejected).
    pub(crate) const KIND_NONE: u64 = 0;
    /// A call while closed.
    pub(crate) const KIND_NORMAL: u64 = 1;
    /// A half-open probe.
    pub(crate) const KIND_PROBE: u64 = 2;
    /// A call while metrics-only.
    pub(crate) const KIND_METRICS_ONLY: u64 = 3;
    /// A call while disabled.
    pub(crate) const KIND_BYPASS: u64 = 4;

    /// Outcomes (a record's argument): success.
    pub(crate) const SUCCESS: u64 = 0;
    /// Failure.
    pub(crate) const FAILURE: u64 = 1;
    /// Ignored.
    pub(crate) const OUTCOME_IGNORED: u64 = 2;

    /// Window kinds (the rules): the last N calls.
    pub(crate) const WINDOW_COUNT: u64 = 0;
    /// The last T ms in buckets.
    pub(crate) const WINDOW_TIME: u64 = 1;
}

/// ARGV[3..=5]: the rules (16 big-endian doubles, in the script's order: the record's hot
/// path unpacks the first 8), the channel prefix and the name.
pub(crate) fn script_config_args(
    c: &BreakerConfig,
    channel_prefix: &str,
    name: &str,
) -> Vec<Vec<u8>> {
    let (wsize, bucket_ms) = c.window_args();
    let wkind = match c.window {
        Window::Count(_) => code::WINDOW_COUNT,
        Window::Time { .. } => code::WINDOW_TIME,
    };
    let (open_base, open_factor, open_max) = c.open_ms();
    let rules = [
        wkind as f64,
        wsize as f64,
        f64::from(c.minimum_calls),
        c.failure_rate,
        c.slow_call_rate,
        duration_ms(c.slow_call_duration) as f64,
        f64::from(c.consecutive_failures.unwrap_or(0)),
        duration_ms(c.idle_expiry) as f64,
        bucket_ms as f64,
        open_base as f64,
        open_factor,
        open_max as f64,
        f64::from(c.half_open_permits),
        f64::from(c.half_open_successes),
        duration_ms(c.permit_lease) as f64,
        c.half_open_max_wait.map(duration_ms).unwrap_or(0) as f64,
    ];
    vec![
        pack_f64_be(&rules),
        channel_prefix.as_bytes().to_vec(),
        name.as_bytes().to_vec(),
    ]
}

/// The rules [`script_config_args`] packed, back as a configuration (the store policy and
/// the clock, which the script does not take, at their defaults); `None` when `bytes` are not
/// 16 doubles of rules in range.
pub(crate) fn decode_rules(bytes: &[u8]) -> Option<BreakerConfig> {
    let r = coordkit_core::wire::unpack_f64_be(bytes)?;
    if r.len() != 16 || r.iter().any(|x| !x.is_finite() || *x < 0.0) {
        return None;
    }
    let whole = |x: f64| (x.fract() == 0.0 && x <= 2f64.powi(53)).then_some(x as u64);
    let small = |x: f64| whole(x).and_then(|n| u32::try_from(n).ok());
    let ms = |x: f64| whole(x).map(Duration::from_millis);
    let wsize = small(r[1])?;
    let window = match whole(r[0])? {
        code::WINDOW_COUNT => Window::Count(wsize),
        code::WINDOW_TIME => Window::Time {
            length: Duration::from_millis(whole(r[8])?.checked_mul(u64::from(wsize))?),
            buckets: wsize,
        },
        _ => return None,
    };
    let (base, factor, max) = (ms(r[9])?, r[10], ms(r[11])?);
    let open = if factor == 1.0 && base == max {
        OpenDuration::Fixed(base)
    } else {
        OpenDuration::Exponential { base, factor, max }
    };
    BreakerConfig::builder()
        .window(window)
        .minimum_calls(small(r[2])?)
        .failure_rate(r[3])
        .slow_call_rate(r[4])
        .slow_call_duration(ms(r[5])?)
        .consecutive_failures(Some(small(r[6])?).filter(|&n| n > 0))
        .idle_expiry(ms(r[7])?)
        .open_duration(open)
        .half_open_permits(small(r[12])?)
        .half_open_successes(small(r[13])?)
        .permit_lease(ms(r[14])?)
        .half_open_max_wait(Some(ms(r[15])?).filter(|d| !d.is_zero()))
        .build()
        .ok()
}

/// The record script's packed numbers: epoch, permit kind, outcome, duration.
pub(crate) fn pack_report(
    epoch: u64,
    kind: PermitKind,
    outcome: Outcome,
    duration_ms: u64,
) -> Vec<u8> {
    let outcome = match outcome {
        Outcome::Success => code::SUCCESS,
        Outcome::Failure => code::FAILURE,
        Outcome::Ignored => code::OUTCOME_IGNORED,
    };
    pack_f64_be(&[
        epoch as f64,
        kind.code() as f64,
        outcome as f64,
        duration_ms as f64,
    ])
}

/// `epoch * STATE_CODES + state`, as the acquire's hot path answers (`None` past `u64`).
pub(crate) fn pack_state(state: State, epoch: u64) -> Option<u64> {
    epoch
        .checked_mul(code::STATE_CODES)
        .map(|e| e + state.code())
}

/// The state and epoch of [`pack_state`]'s number (`None` for a state code out of range).
pub(crate) fn unpack_state(packed: u64) -> (Option<State>, u64) {
    (
        State::from_code(packed % code::STATE_CODES),
        packed / code::STATE_CODES,
    )
}

fn bad(field: &str, reason: impl std::fmt::Display) -> Error {
    Error::decode(format!("the `{SCRIPT}` script's {field}"), reason)
}

fn state_of(n: u64, field: &str) -> Result<State> {
    State::from_code(n).ok_or_else(|| bad(field, format_args!("no state has code {n}")))
}

/// An acquire's answer: `epoch * STATE_CODES + state` when admitted without a change, else
/// `{ admitted, state, epoch, retry after ms, permit kind }`.
pub(crate) fn decode_acquire(v: &Value) -> Result<AcquireAnswer> {
    if let Value::Int(_) = v {
        let packed = uint(SCRIPT, "acquire answer", v)?;
        let (state, epoch) = unpack_state(packed);
        let kind = match state {
            Some(State::Closed) => PermitKind::Normal,
            Some(State::Disabled) => PermitKind::Bypass,
            Some(State::MetricsOnly) => PermitKind::MetricsOnly,
            _ => {
                return Err(bad(
                    "acquire answer",
                    format_args!("{packed} admits no call"),
                ));
            }
        };
        return Ok(AcquireAnswer {
            admitted: true,
            state: state.unwrap_or(State::Closed),
            epoch,
            retry_after_ms: 0,
            kind: Some(kind),
        });
    }
    let reply = Reply::array(SCRIPT, v)?;
    let kind = match reply.u64(4, "permit kind")? {
        code::KIND_NONE => None,
        n => Some(
            PermitKind::from_code(n)
                .ok_or_else(|| bad("permit kind", format_args!("no kind has code {n}")))?,
        ),
    };
    Ok(AcquireAnswer {
        admitted: reply.u64(0, "admitted")? == 1,
        state: state_of(reply.u64(1, "state")?, "state")?,
        epoch: reply.u64(2, "epoch")?,
        retry_after_ms: reply.u64(3, "retry after")?,
        kind,
    })
}

/// A record's answer: `(epoch * STATUS_CODES + status) * STATE_CODES + state`, and when that
/// leaves it open, `{ that, open ms left }`.
pub(crate) fn decode_record(v: &Value) -> Result<(RecordAnswer, Option<u64>)> {
    let (packed, open_left) = match v {
        Value::Array(_) => {
            let reply = Reply::array(SCRIPT, v)?;
            (
                uint(SCRIPT, "record answer", reply.get(0, "record answer")?)?,
                Some(reply.u64(1, "open ms left")?),
            )
        }
        v => (uint(SCRIPT, "record answer", v)?, None),
    };
    let (state, rest) = unpack_state(packed);
    let status = rest % code::STATUS_CODES;
    let answer = RecordAnswer {
        status: RecordStatus::from_code(status)
            .ok_or_else(|| bad("record status", format_args!("no status has code {status}")))?,
        state: state.ok_or_else(|| bad("state", format_args!("no state in {packed}")))?,
        epoch: rest / code::STATUS_CODES,
    };
    Ok((answer, open_left))
}

/// A snapshot and the server's time it was taken at.
pub(crate) fn decode_snapshot(v: &[Value]) -> Result<(Snapshot, u64)> {
    let r = Reply::items(SCRIPT, v);
    let snapshot = Snapshot {
        state: state_of(r.u64(0, "state")?, "state")?,
        epoch: r.u64(1, "epoch")?,
        calls: r.u64(2, "calls")?,
        failures: r.u64(3, "failures")?,
        slow_calls: r.u64(4, "slow calls")?,
        consecutive_failures: r.u64(5, "consecutive failures")?,
        opened_at_ms: r.u64(6, "opened at")?,
        open_until_ms: r.u64(7, "open until")?,
        half_open_successes: r.u64(8, "half-open successes")?,
        probes_in_flight: r.u64(9, "probes in flight")?,
        reopenings: r.u64(10, "re-openings")?,
    };
    Ok((snapshot, r.u64(11, "now")?))
}

/// A force's or a clear's answer: `{ state, epoch }`.
pub(crate) fn decode_state_epoch(v: &[Value]) -> Result<(State, u64)> {
    let r = Reply::items(SCRIPT, v);
    Ok((state_of(r.u64(0, "state")?, "state")?, r.u64(1, "epoch")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_rules_decode_to_the_rules_they_came_from() {
        let rules = |c: &BreakerConfig| script_config_args(c, "ch", "b")[0].clone();
        let configs = [
            BreakerConfig::default(),
            BreakerConfig::builder()
                .window(Window::Count(20))
                .minimum_calls(4)
                .failure_rate(0.25)
                .consecutive_failures(Some(3))
                .half_open_max_wait(None)
                .build()
                .unwrap(),
            BreakerConfig::builder()
                .window(Window::Time {
                    length: Duration::from_secs(60),
                    buckets: 12,
                })
                .slow_call_rate(0.5)
                .slow_call_duration(Duration::from_millis(250))
                .open_duration(OpenDuration::Exponential {
                    base: Duration::from_secs(5),
                    factor: 2.0,
                    max: Duration::from_secs(300),
                })
                .permit_lease(Duration::from_secs(7))
                .idle_expiry(Duration::from_secs(3600))
                .build()
                .unwrap(),
        ];
        for c in &configs {
            let decoded = decode_rules(&rules(c)).expect("decodes");
            assert_eq!(rules(&decoded), rules(c), "{c:?}");
            assert_eq!(decoded.window(), c.window());
        }
        // Not rules: another length, a negative or fractional count, an unknown window kind.
        let mut bad = rules(&configs[1]);
        assert!(decode_rules(&bad[..120]).is_none());
        bad[8..16].copy_from_slice(&20.5f64.to_be_bytes());
        assert!(decode_rules(&bad).is_none());
        let mut kind = rules(&configs[1]);
        kind[..8].copy_from_slice(&7f64.to_be_bytes());
        assert!(decode_rules(&kind).is_none());
    }

    #[test]
    fn packed_answers_round_trip_and_bad_ones_name_the_field() {
        let packed = pack_state(State::MetricsOnly, 7).unwrap();
        assert_eq!(unpack_state(packed), (Some(State::MetricsOnly), 7));
        let answer = decode_acquire(&Value::Int(packed as i64)).unwrap();
        assert_eq!(answer.kind, Some(PermitKind::MetricsOnly));
        // Open admits nothing on the hot path.
        let open = pack_state(State::Open, 3).unwrap() as i64;
        let e = decode_acquire(&Value::Int(open)).unwrap_err().to_string();
        assert!(e.contains("acquire answer"), "{e}");
        // (epoch 5, stale) on half-open, with the open time left.
        let rec =
            ((5 * code::STATUS_CODES + code::STALE) * code::STATE_CODES + code::HALF_OPEN) as i64;
        let (r, left) = decode_record(&Value::Array(vec![Value::Int(rec), Value::Int(9)])).unwrap();
        assert_eq!(
            (r.epoch, r.status, r.state, left),
            (5, RecordStatus::Stale, State::HalfOpen, Some(9))
        );
        let e = decode_record(&Value::Int(6)).unwrap_err().to_string();
        assert!(
            e.contains("`circuit-breaker`") && e.contains("state"),
            "{e}"
        );
        let e = decode_state_epoch(&[Value::Int(1)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("epoch"), "{e}");
    }
}
