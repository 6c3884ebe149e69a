//! Human-readable durations for flags and control commands: `200ms`, `2s`, `1.5s`, `1m`, `1h`.
//!
//! One parser for the whole program, so every flag and every control command accepts the
//! same spellings. A bare number is rejected on purpose: `--idle-timeout 30` is ambiguous
//! (seconds? milliseconds?) and the error says so. Integer arithmetic throughout: no
//! float rounding, overflow is an error.

use std::fmt;
use std::time::Duration;

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    /// The rejected input, verbatim.
    pub input: String,
    /// What was wrong with it.
    pub kind: DurationErrorKind,
}

/// The reason inside a [`DurationError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationErrorKind {
    /// The input is empty.
    Empty,
    /// A bare number: the unit is mandatory so `5` is never misread.
    MissingUnit,
    /// The suffix is not one of `us`, `ms`, `s`, `m`, `h`.
    UnknownUnit(String),
    /// The numeric part is not `DIGITS` or `DIGITS.DIGITS`.
    BadNumber,
    /// Does not fit in a [`Duration`].
    TooLarge,
}

const UNITS: &str = "us, ms, s, m or h";

impl fmt::Display for DurationErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationErrorKind::Empty => f.write_str("empty"),
            DurationErrorKind::MissingUnit => {
                write!(f, "missing unit (expected {UNITS}, e.g. 200ms)")
            }
            DurationErrorKind::UnknownUnit(unit) => {
                write!(f, "unknown unit {unit:?} (expected {UNITS})")
            }
            DurationErrorKind::BadNumber => {
                f.write_str("bad number (expected digits with an optional fraction, e.g. 1.5s)")
            }
            DurationErrorKind::TooLarge => f.write_str("too large"),
        }
    }
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.input.chars().take(64).collect();
        write!(f, "bad duration {shown:?}: {}", self.kind)
    }
}

impl std::error::Error for DurationError {}

/// Parses `NUMBER UNIT` with no space: `200ms`, `2s`, `1.5s`, `1m`, `1h`, `50us`.
///
/// The number is `DIGITS` or `DIGITS.DIGITS`; fractions finer than a nanosecond are
/// truncated.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let fail = |kind| DurationError {
        input: s.to_owned(),
        kind,
    };
    if s.is_empty() {
        return Err(fail(DurationErrorKind::Empty));
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let unit_nanos: u128 = match unit {
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "" => return Err(fail(DurationErrorKind::MissingUnit)),
        other => return Err(fail(DurationErrorKind::UnknownUnit(other.to_owned()))),
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) || (number.contains('.') && !all_digits(frac)) {
        return Err(fail(DurationErrorKind::BadNumber));
    }
    let too_large = || fail(DurationErrorKind::TooLarge);
    let mut nanos: u128 = 0;
    for b in int.bytes() {
        nanos = nanos
            .checked_mul(10)
            .and_then(|n| n.checked_add(u128::from(b - b'0')))
            .ok_or_else(too_large)?;
    }
    nanos = nanos.checked_mul(unit_nanos).ok_or_else(too_large)?;
    // Only the first 13 fraction digits can matter at nanosecond precision, even for
    // hours (3.6e12 ns), and 10^13 * 3.6e12 still fits in a u128.
    let mut scale: u128 = 1;
    let mut frac_value: u128 = 0;
    for b in frac.bytes().take(13) {
        frac_value = frac_value * 10 + u128::from(b - b'0');
        scale *= 10;
    }
    nanos = nanos
        .checked_add(frac_value * unit_nanos / scale)
        .ok_or_else(too_large)?;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_large())?;
    let sub = u32::try_from(nanos % 1_000_000_000).map_err(|_| too_large())?;
    Ok(Duration::new(secs, sub))
}

/// Formats a duration so that [`parse_duration`] reads it back exactly, in the largest
/// unit that divides it: `250ms`, `2s`, `5m`, `20us`, `1500ns` → `1.5us`.
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    for (unit, scale) in [
        ("h", 3_600_000_000_000u128),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
    ] {
        if ns > 0 && ns % scale == 0 {
            return format!("{}{unit}", ns / scale);
        }
    }
    if ns % 1_000 == 0 {
        format!("{}us", ns / 1_000)
    } else {
        let frac = format!("{:03}", ns % 1_000);
        format!("{}.{}us", ns / 1_000, frac.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_units() {
        for (s, want) in [
            ("200ms", Duration::from_millis(200)),
            ("2s", Duration::from_secs(2)),
            ("1.5s", Duration::from_millis(1500)),
            ("1m", Duration::from_secs(60)),
            ("1h", Duration::from_secs(3600)),
            ("50us", Duration::from_micros(50)),
            ("0s", Duration::ZERO),
            ("0.001ms", Duration::from_nanos(1000)),
        ] {
            assert_eq!(parse_duration(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn rejects_garbage_with_reason() {
        for (s, kind) in [
            ("", DurationErrorKind::Empty),
            ("30", DurationErrorKind::MissingUnit),
            ("5 s", DurationErrorKind::UnknownUnit(" s".into())),
            ("1d", DurationErrorKind::UnknownUnit("d".into())),
            ("s", DurationErrorKind::BadNumber),
            (".5s", DurationErrorKind::BadNumber),
            ("5.s", DurationErrorKind::BadNumber),
            ("1.2.3s", DurationErrorKind::BadNumber),
            ("-1s", DurationErrorKind::UnknownUnit("-1s".into())),
            ("99999999999999999999999999h", DurationErrorKind::TooLarge),
        ] {
            assert_eq!(parse_duration(s).map_err(|e| e.kind), Err(kind), "{s:?}");
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
            Duration::from_secs(7200),
            Duration::from_micros(20),
            Duration::from_nanos(1500),
            Duration::from_millis(1500),
            Duration::ZERO,
        ] {
            let s = format_duration(d);
            assert_eq!(parse_duration(&s), Ok(d), "{s}");
        }
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }
}
