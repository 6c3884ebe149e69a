//! Scheduled maintenance windows (`set state ADDR maint at TIME [for DUR]`): when a
//! node must be out of service, planned ahead, without IO.
//!
//! What it owns: one window's phases — scheduled → draining (from `lead` before it
//! opens, so the node is empty when it opens) → open (maint; flows still left are cut)
//! → over (ready again after `for DUR`; without it the node stays in maint until the
//! operator sets it ready or cancels) — and [`At`], the operator's TIME: `+DUR` from
//! now or a UTC date `YYYY-MM-DDTHH:MM:SSZ`. Time comes in as wall-clock milliseconds.
//!
//! What it does not do: change the pool (the rollout component queues the admin
//! changes), or survive a restart (the admin states it sets do, through the state file).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::duration::{format_duration, parse_duration};

/// When a window opens, as the operator wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// `+DUR`: this long after the command.
    In(Duration),
    /// `YYYY-MM-DDTHH:MM:SSZ`: seconds since the UNIX epoch.
    Utc(u64),
}

impl At {
    /// Parses `+DUR` or `YYYY-MM-DDTHH:MM:SSZ`.
    pub fn parse(s: &str) -> Result<At, String> {
        if let Some(d) = s.strip_prefix('+') {
            return parse_duration(d).map(At::In).map_err(|e| e.to_string());
        }
        parse_utc(s).map(At::Utc).ok_or_else(|| {
            "expected +DURATION (e.g. +10m) or a UTC time YYYY-MM-DDTHH:MM:SSZ".into()
        })
    }

    /// Wall-clock milliseconds of the opening, given the command's time.
    pub fn resolve(self, now_ms: u64) -> u64 {
        match self {
            At::In(d) => now_ms.saturating_add(d.as_millis().min(u128::from(u64::MAX)) as u64),
            At::Utc(s) => s.saturating_mul(1000),
        }
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::In(d) => write!(f, "+{}", format_duration(*d)),
            At::Utc(s) => f.write_str(&format_utc(*s)),
        }
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn parse_utc(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mdays = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if y < 1970
        || !(1..=12).contains(&mo)
        || d < 1
        || d > mdays[(mo - 1) as usize]
        || h > 23
        || mi > 59
        || se > 59
    {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se;
    u64::try_from(secs).ok()
}

/// `YYYY-MM-DDTHH:MM:SSZ` of seconds since the epoch.
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // civil_from_days (Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Where a window stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not yet draining.
    Scheduled,
    /// Drained ahead of the opening.
    Draining,
    /// In maint.
    Open,
}

/// What the driver must do to the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Set drain.
    Drain,
    /// Set maint and cut what is left.
    Maint,
    /// Set ready: the window is over (or cancelled after it began).
    Ready,
}

/// One node's window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The service (index in the plane).
    pub service: usize,
    /// The node.
    pub addr: SocketAddr,
    /// When it opens, wall-clock ms.
    pub opens_ms: u64,
    /// How long it stays open; `None`: until the operator puts the node back.
    pub length: Option<Duration>,
    /// How long before the opening the node is drained.
    pub lead: Duration,
    /// Where it stands.
    pub phase: Phase,
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

impl Window {
    /// The next step due at `now_ms`, and whether the window is over after it.
    pub fn poll(&mut self, now_ms: u64) -> Option<(Step, bool)> {
        match self.phase {
            Phase::Scheduled if now_ms >= self.opens_ms.saturating_sub(ms(self.lead)) => {
                self.phase = Phase::Draining;
                Some((Step::Drain, false))
            }
            Phase::Draining if now_ms >= self.opens_ms => {
                self.phase = Phase::Open;
                Some((Step::Maint, false))
            }
            Phase::Open => match self.length {
                Some(l) if now_ms >= self.opens_ms.saturating_add(ms(l)) => {
                    Some((Step::Ready, true))
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// What cancelling it asks for: ready again if it already took the node out.
    pub fn cancel(&self) -> Option<Step> {
        (self.phase != Phase::Scheduled).then_some(Step::Ready)
    }

    /// A few words for `show nodes`.
    pub fn describe(&self, now_ms: u64) -> String {
        let secs = |ms: u64| format!("{:.1}s", ms as f64 / 1000.0);
        let length = self.length.map_or_else(
            || "until set ready".to_owned(),
            |l| format!("for {}", format_duration(l)),
        );
        match self.phase {
            Phase::Open => match self.length {
                Some(l) => format!(
                    "maint window open, {} left",
                    secs(self.opens_ms.saturating_add(ms(l)).saturating_sub(now_ms))
                ),
                None => "maint window open until set ready".to_owned(),
            },
            _ => format!(
                "maint window in {} {length}",
                secs(self.opens_ms.saturating_sub(now_ms))
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_and_print_back() {
        assert_eq!(At::parse("+3s"), Ok(At::In(Duration::from_secs(3))));
        let t = At::parse("2026-11-29T18:00:00Z").unwrap();
        assert_eq!(t, At::Utc(1_795_975_200));
        assert_eq!(t.to_string(), "2026-11-29T18:00:00Z");
        assert_eq!(
            At::parse("2024-02-29T23:59:59Z").unwrap().to_string(),
            "2024-02-29T23:59:59Z"
        );
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        for bad in [
            "3s",
            "+3",
            "2026-11-29 18:00:00Z",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-29T24:00:00Z",
            "2026-11-29T18:00:00",
            "+é",
        ] {
            assert!(At::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(At::In(Duration::from_secs(3)).resolve(1000), 4000);
    }

    #[test]
    fn drains_ahead_opens_and_closes() {
        let mut w = Window {
            service: 0,
            addr: "127.0.0.1:80".parse().unwrap(),
            opens_ms: 10_000,
            length: Some(Duration::from_secs(3)),
            lead: Duration::from_secs(2),
            phase: Phase::Scheduled,
        };
        assert_eq!(w.cancel(), None);
        assert_eq!(w.poll(7_999), None);
        assert_eq!(w.describe(7_000), "maint window in 3.0s for 3s");
        assert_eq!(w.poll(8_000), Some((Step::Drain, false)));
        assert_eq!(w.poll(9_999), None);
        assert_eq!(w.cancel(), Some(Step::Ready));
        assert_eq!(w.poll(10_000), Some((Step::Maint, false)));
        assert_eq!(w.describe(11_000), "maint window open, 2.0s left");
        assert_eq!(w.poll(12_999), None);
        assert_eq!(w.poll(13_000), Some((Step::Ready, true)));
        // Without a length it stays open.
        w.length = None;
        assert_eq!(w.poll(1_000_000), None);
        // A window already due drains, then opens, on consecutive polls.
        let mut late = Window {
            phase: Phase::Scheduled,
            length: Some(Duration::from_secs(1)),
            ..w
        };
        assert_eq!(late.poll(50_000), Some((Step::Drain, false)));
        assert_eq!(late.poll(50_000), Some((Step::Maint, false)));
        assert_eq!(late.poll(50_000), Some((Step::Ready, true)));
    }
}
