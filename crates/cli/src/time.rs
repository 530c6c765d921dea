//! Durations and timestamps as an operator types and reads them.

use std::time::Duration;

/// Parses `500ms`, `90s`, `15m`, `1h`, `7d` (a bare number is seconds).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (like 500ms, 90s, 15m, 1h, 7d)"))?;
    let ms_per_unit: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use ms, s, m, h or d)"
            ));
        }
    };
    let ms = n
        .checked_mul(ms_per_unit)
        .filter(|ms| *ms <= 365 * 86_400_000)
        .ok_or_else(|| format!("{text:?} is longer than a year"))?;
    if ms == 0 {
        return Err("a duration must be longer than 0".to_owned());
    }
    Ok(Duration::from_millis(ms))
}

/// Parses a fraction in `[0, 1]` (a percentile such as 0.95).
pub(crate) fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(q) if (0.0..=1.0).contains(&q) => Ok(q),
        _ => Err(format!(
            "{text:?} is not a fraction between 0 and 1 (write 0.95 for p95)"
        )),
    }
}

/// A timestamp in ms since the epoch as `2026-12-06 00:48:27.123Z` (UTC).
pub(crate) fn timestamp(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// A timestamp, or `-` for none (0 or absent).
pub(crate) fn timestamp_or_dash(ms: Option<u64>) -> String {
    match ms {
        Some(ms) if ms > 0 => timestamp(ms),
        _ => "-".to_owned(),
    }
}

/// A duration as an operator reads it: `850ms`, `12.3s`, `4m05s`, `2h10m`, `3d04h`.
pub(crate) fn age(d: Duration) -> String {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let s = ms / 1_000;
    if ms < 1_000 {
        format!("{ms}ms")
    } else if s < 60 {
        format!("{:.1}s", ms as f64 / 1_000.0)
    } else if s < 3_600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3_600, (s % 3_600) / 60)
    } else {
        format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3_600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_refuse_the_rest() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["", "h", "5x", "0s", "-1s", "99999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fractions_and_formats() {
        assert_eq!(parse_fraction("0.95"), Ok(0.95));
        assert!(parse_fraction("95").is_err());
        assert_eq!(timestamp(0), "1970-01-01 00:00:00.000Z");
        assert_eq!(timestamp_or_dash(None), "-");
        assert_eq!(age(Duration::from_millis(850)), "850ms");
        assert_eq!(age(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(age(Duration::from_secs(245)), "4m05s");
        assert_eq!(age(Duration::from_secs(7_800)), "2h10m");
    }
}
