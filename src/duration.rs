//! Human-readable durations for flags and control commands: `200ms`, `2s`, `1.5s`, `1m`, `1h`.
//!
//! One parser for the whole program, so every flag and every control command accepts the
//! same spellings. A bare number is rejected on purpose: `--idle-timeout 30` is ambiguous
//! (seconds? milliseconds?) and the error says so.

use std::fmt;
use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    input: String,
    why: &'static str,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid duration \"{}\": {}", self.input, self.why)
    }
}

impl std::error::Error for DurationError {}

/// Parses `NUMBER UNIT` where UNIT is one of `us`, `ms`, `s`, `m`, `h`; NUMBER may have a
/// fractional part (`1.5s`). Negative, empty, unit-less and overflowing values are errors.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let err = |why| DurationError {
        input: s.to_string(),
        why,
    };
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| err("missing unit (use ms, s, m or h, e.g. 200ms, 2s)"))?;
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(err("missing number"));
    }
    let value: f64 = num.parse().map_err(|_| err("bad number"))?;
    let scale_ns: f64 = match unit {
        "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return Err(err("unknown unit (use us, ms, s, m or h)")),
    };
    let ns = value * scale_ns;
    if !ns.is_finite() || ns > u64::MAX as f64 / 2.0 {
        return Err(err("too large"));
    }
    Ok(Duration::from_nanos(ns.round() as u64))
}

/// Formats a duration the way [`parse_duration`] reads it back (`250ms`, `2s`, `1m30s` → `90s`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 && d.as_nanos() > 0 {
        format!("{}us", d.as_micros())
    } else if ms % 1000 != 0 {
        format!("{ms}ms")
    } else if ms % 60_000 == 0 && ms > 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_units() {
        assert_eq!(parse_duration("200ms").unwrap(), Duration::from_millis(200));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("50us").unwrap(), Duration::from_micros(50));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "30",
            "ms",
            "-1s",
            "1x",
            "1.2.3s",
            "s1",
            "1 s",
            "1e9h",
            "99999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        let e = parse_duration("30").unwrap_err().to_string();
        assert!(e.contains("\"30\"") && e.contains("unit"), "{e}");
    }

    #[test]
    fn format_round_trips() {
        for d in [
            Duration::from_millis(250),
            Duration::from_secs(2),
            Duration::from_secs(120),
            Duration::from_micros(20),
        ] {
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
    }
}
