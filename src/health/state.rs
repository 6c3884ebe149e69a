//! Per-node health hysteresis: the rise/warn/fall state machine.
//!
//! This module owns the decision "is this node up, warning or down?" from a
//! stream of check outcomes. It follows HAProxy's `rise`/`fall` counters and
//! adds the LISA '98 distributor's intermediate *warning* level: a node that
//! has failed `warn` consecutive checks is skipped by the schedulers (Warning)
//! before it is declared dead at `fall` (Down).
//!
//! Semantics, from each state:
//! - **Up**: each failure increments the consecutive-failure count; reaching
//!   `warn` moves to Warning, reaching `fall` moves to Down (directly from Up
//!   when `warn == fall`, which means "no warning level").
//! - **Warning**: one success resets the failure count and returns the node
//!   to Up at once (a warning node was never declared dead, so it does not
//!   have to earn `rise` successes); failures continue toward `fall`.
//! - **Down**: `rise` consecutive successes return the node to Up; any failure
//!   resets the success count.
//!
//! Passive failures ([`HealthTracker::on_passive_failure`], HAProxy's
//! `observe layer4`) count exactly like failed probes, so a node refusing the
//! proxy's connections is demoted before the next probe is due.
//!
//! It deliberately does not run probes, schedule them (see
//! `crate::health::interval`), log, or touch the node pool: callers feed it
//! outcomes with the current monotonic time and act on the returned
//! [`Transition`]. Admin state (ready/drain/maint) is a separate axis kept
//! elsewhere.

use std::fmt;
use std::time::Duration;

/// Health of a node as decided by checks (the pool's health axis).
pub use crate::pool::HealthState as Health;

/// Why a check (or an observed connection) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailReason {
    /// The probe's TCP connect was refused (RST).
    ConnectRefused,
    /// The probe's TCP connect did not complete in time.
    ConnectTimeout,
    /// The probe's TCP connect failed for another reason (unreachable, ...).
    ConnectError,
    /// Connected, but the check (e.g. the HTTP response) did not complete in
    /// time.
    CheckTimeout,
    /// The HTTP check got a status code outside the expected set.
    BadStatus(u16),
    /// The HTTP check got a response that could not be parsed.
    BadResponse,
    /// A proxied client connection to the node failed (passive check): refused, timed
    /// out, reset, unreachable or error.
    PassiveConnectFailure(&'static str),
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::ConnectRefused => f.write_str("connection refused"),
            FailReason::ConnectTimeout => f.write_str("connect timeout"),
            FailReason::ConnectError => f.write_str("connect error"),
            FailReason::CheckTimeout => f.write_str("check timeout"),
            FailReason::BadStatus(code) => write!(f, "unexpected status {code}"),
            FailReason::BadResponse => f.write_str("malformed response"),
            FailReason::PassiveConnectFailure(why) => write!(f, "client connection {why}"),
        }
    }
}

/// What caused a [`Transition`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Enough successes (one from Warning, `rise` from Down).
    Recovered,
    /// The failure that crossed the `warn` or `fall` threshold.
    Failed(FailReason),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Recovered => f.write_str("check passed"),
            Reason::Failed(r) => r.fmt(f),
        }
    }
}

/// A change of [`Health`], returned by the tracker when it happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// State before the event.
    pub from: Health,
    /// State after the event.
    pub to: Health,
    /// Monotonic time of the event that caused it.
    pub at: Duration,
    /// The event that caused it.
    pub reason: Reason,
}

/// Rise/warn/fall thresholds, in consecutive check outcomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive successes for a Down node to become Up (>= 1).
    pub rise: u32,
    /// Consecutive failures for an Up node to become Warning
    /// (1 ..= `fall`; equal to `fall` means no warning level).
    pub warn: u32,
    /// Consecutive failures for a node to become Down (>= 1).
    pub fall: u32,
}

impl Thresholds {
    /// HAProxy's defaults (`rise 2`, `fall 3`) with a warning after 1 failure.
    pub const DEFAULT: Thresholds = Thresholds {
        rise: 2,
        warn: 1,
        fall: 3,
    };

    /// Checks `rise >= 1`, `fall >= 1` and `1 <= warn <= fall`.
    pub fn validate(&self) -> Result<(), ThresholdsError> {
        if self.rise == 0 {
            return Err(ThresholdsError::Rise(self.rise));
        }
        if self.fall == 0 {
            return Err(ThresholdsError::Fall(self.fall));
        }
        if self.warn == 0 || self.warn > self.fall {
            return Err(ThresholdsError::Warn {
                warn: self.warn,
                fall: self.fall,
            });
        }
        Ok(())
    }

    /// Whether a distinct warning level exists (`warn < fall`).
    pub fn has_warning(&self) -> bool {
        self.warn < self.fall
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds::DEFAULT
    }
}

/// An invalid [`Thresholds`] field, with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdsError {
    /// `rise` must be at least 1.
    Rise(u32),
    /// `fall` must be at least 1.
    Fall(u32),
    /// `warn` must be in `1..=fall`.
    Warn {
        /// The rejected value.
        warn: u32,
        /// The `fall` it was checked against.
        fall: u32,
    },
}

impl fmt::Display for ThresholdsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThresholdsError::Rise(v) => write!(f, "rise: must be at least 1, got {v}"),
            ThresholdsError::Fall(v) => write!(f, "fall: must be at least 1, got {v}"),
            ThresholdsError::Warn { warn, fall } => {
                write!(f, "warn: must be between 1 and fall ({fall}), got {warn}")
            }
        }
    }
}

impl std::error::Error for ThresholdsError {}

/// Hysteresis state for one node.
#[derive(Clone, Debug)]
pub struct HealthTracker {
    thresholds: Thresholds,
    health: Health,
    failures: u32,
    successes: u32,
}

impl HealthTracker {
    /// Creates a tracker in state `initial`, after validating `thresholds`.
    ///
    /// Counters start consistent with `initial`: Up and Down start at zero
    /// (a Down node needs `rise` successes), Warning starts as if `warn`
    /// failures had been seen (capped at `fall - 1`, so the next failure
    /// brings it down even when `warn == fall`).
    pub fn new(thresholds: Thresholds, initial: Health) -> Result<Self, ThresholdsError> {
        thresholds.validate()?;
        let failures = match initial {
            Health::Warning => thresholds.warn.min(thresholds.fall - 1),
            Health::Up | Health::Down => 0,
        };
        Ok(HealthTracker {
            thresholds,
            health: initial,
            failures,
            successes: 0,
        })
    }

    /// Current health.
    pub fn health(&self) -> Health {
        self.health
    }
    /// The thresholds this tracker applies.
    #[cfg(test)]
    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// Consecutive failures since the last success (saturating).
    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }

    /// Consecutive successes since the last failure (saturating).
    pub fn consecutive_successes(&self) -> u32 {
        self.successes
    }

    /// Whether the node is between states: failing but not yet Down, or Down
    /// and rising. Probe schedulers use the fast interval while this holds.
    pub fn in_transition(&self) -> bool {
        match self.health {
            Health::Up | Health::Warning => self.failures > 0,
            Health::Down => self.successes > 0,
        }
    }

    /// Records a passed check at `now`; returns the transition if any.
    pub fn on_success(&mut self, now: Duration) -> Option<Transition> {
        self.failures = 0;
        self.successes = self.successes.saturating_add(1);
        let to = match self.health {
            Health::Up => return None,
            Health::Warning => Health::Up,
            Health::Down if self.successes >= self.thresholds.rise => Health::Up,
            Health::Down => return None,
        };
        Some(self.move_to(to, now, Reason::Recovered))
    }

    /// Records a failed check at `now`; returns the transition if any.
    pub fn on_failure(&mut self, now: Duration, reason: FailReason) -> Option<Transition> {
        self.successes = 0;
        self.failures = self.failures.saturating_add(1);
        let to = if self.failures >= self.thresholds.fall {
            Health::Down
        } else if self.failures >= self.thresholds.warn {
            Health::Warning
        } else {
            Health::Up
        };
        // A Down node stays Down on failures; only Up -> Warning/Down and
        // Warning -> Down are possible here.
        if self.health == Health::Down || to == self.health {
            return None;
        }
        Some(self.move_to(to, now, Reason::Failed(reason)))
    }

    /// Records a failed proxied connection to the node at `now` (HAProxy
    /// `observe layer4`); counts exactly like a failed probe.
    pub fn on_passive_failure(&mut self, now: Duration, why: &'static str) -> Option<Transition> {
        self.on_failure(now, FailReason::PassiveConnectFailure(why))
    }

    fn move_to(&mut self, to: Health, at: Duration, reason: Reason) -> Transition {
        let from = self.health;
        self.health = to;
        Transition {
            from,
            to,
            at,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn th(rise: u32, warn: u32, fall: u32) -> Thresholds {
        Thresholds { rise, warn, fall }
    }

    fn tracker(rise: u32, warn: u32, fall: u32, initial: Health) -> HealthTracker {
        match HealthTracker::new(th(rise, warn, fall), initial) {
            Ok(t) => t,
            Err(e) => panic!("valid thresholds rejected: {e}"),
        }
    }

    #[test]
    fn display_is_lowercase() {
        assert_eq!(Health::Up.to_string(), "up");
        assert_eq!(Health::Warning.to_string(), "warning");
        assert_eq!(Health::Down.to_string(), "down");
        assert_eq!(
            FailReason::BadStatus(503).to_string(),
            "unexpected status 503"
        );
    }

    #[test]
    fn validate_names_the_field() {
        assert_eq!(th(0, 1, 3).validate(), Err(ThresholdsError::Rise(0)));
        assert_eq!(th(2, 1, 0).validate(), Err(ThresholdsError::Fall(0)));
        assert_eq!(
            th(2, 0, 3).validate(),
            Err(ThresholdsError::Warn { warn: 0, fall: 3 })
        );
        assert_eq!(
            th(2, 4, 3).validate(),
            Err(ThresholdsError::Warn { warn: 4, fall: 3 })
        );
        assert!(th(2, 4, 3)
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("warn:"));
        assert!(th(0, 1, 1)
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("rise:"));
        assert!(th(1, 1, 0)
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("fall:"));
        assert_eq!(th(1, 1, 1).validate(), Ok(()));
        assert_eq!(th(2, 3, 3).validate(), Ok(()));
        assert_eq!(Thresholds::default().validate(), Ok(()));
        assert!(HealthTracker::new(th(0, 1, 1), Health::Up).is_err());
    }

    #[test]
    fn up_warning_down_with_timestamps() {
        let mut t = tracker(2, 2, 4, Health::Up);
        assert_eq!(t.on_failure(ms(1000), FailReason::ConnectTimeout), None);
        assert_eq!(t.health(), Health::Up);
        assert!(t.in_transition());
        assert_eq!(
            t.on_failure(ms(1500), FailReason::ConnectRefused),
            Some(Transition {
                from: Health::Up,
                to: Health::Warning,
                at: ms(1500),
                reason: Reason::Failed(FailReason::ConnectRefused),
            })
        );
        assert_eq!(t.on_failure(ms(2000), FailReason::CheckTimeout), None);
        assert_eq!(t.consecutive_failures(), 3);
        assert_eq!(
            t.on_failure(ms(2500), FailReason::BadStatus(500)),
            Some(Transition {
                from: Health::Warning,
                to: Health::Down,
                at: ms(2500),
                reason: Reason::Failed(FailReason::BadStatus(500)),
            })
        );
        assert!(!t.in_transition());
        // Further failures keep it Down silently.
        assert_eq!(t.on_failure(ms(3000), FailReason::ConnectRefused), None);
        assert_eq!(t.health(), Health::Down);
        assert_eq!(t.consecutive_failures(), 5);
    }

    #[test]
    fn down_rises_after_rise_successes() {
        let mut t = tracker(3, 1, 2, Health::Down);
        assert_eq!(t.on_success(ms(10)), None);
        assert!(t.in_transition());
        assert_eq!(t.on_success(ms(20)), None);
        assert_eq!(t.consecutive_successes(), 2);
        assert_eq!(
            t.on_success(ms(30)),
            Some(Transition {
                from: Health::Down,
                to: Health::Up,
                at: ms(30),
                reason: Reason::Recovered,
            })
        );
        assert_eq!(t.on_success(ms(40)), None);
        assert_eq!(t.health(), Health::Up);
    }

    #[test]
    fn failure_resets_rise_progress() {
        let mut t = tracker(2, 1, 2, Health::Down);
        assert_eq!(t.on_success(ms(10)), None);
        assert_eq!(t.on_failure(ms(20), FailReason::ConnectRefused), None);
        assert_eq!(t.consecutive_successes(), 0);
        assert!(!t.in_transition());
        assert_eq!(t.on_success(ms(30)), None);
        assert!(t.on_success(ms(40)).is_some());
        assert_eq!(t.health(), Health::Up);
    }

    #[test]
    fn success_resets_failures_before_warn() {
        let mut t = tracker(2, 2, 3, Health::Up);
        assert_eq!(t.on_failure(ms(1), FailReason::ConnectRefused), None);
        assert_eq!(t.on_success(ms(2)), None);
        assert_eq!(t.consecutive_failures(), 0);
        assert!(!t.in_transition());
        assert_eq!(t.on_failure(ms(3), FailReason::ConnectRefused), None);
        assert_eq!(t.health(), Health::Up);
    }

    #[test]
    fn warning_recovers_on_first_success() {
        let mut t = tracker(5, 1, 3, Health::Up);
        let tr = t.on_failure(ms(100), FailReason::ConnectTimeout);
        assert_eq!(tr.map(|x| x.to), Some(Health::Warning));
        assert_eq!(
            t.on_success(ms(200)),
            Some(Transition {
                from: Health::Warning,
                to: Health::Up,
                at: ms(200),
                reason: Reason::Recovered,
            })
        );
        assert_eq!(t.consecutive_failures(), 0);
        // The count starts again from zero.
        assert_eq!(
            t.on_failure(ms(300), FailReason::ConnectTimeout)
                .map(|x| x.to),
            Some(Health::Warning)
        );
        assert_eq!(t.on_failure(ms(400), FailReason::ConnectTimeout), None);
        assert_eq!(
            t.on_failure(ms(500), FailReason::ConnectTimeout)
                .map(|x| x.to),
            Some(Health::Down)
        );
    }

    #[test]
    fn warn_equal_fall_goes_straight_down() {
        let mut t = tracker(1, 3, 3, Health::Up);
        assert!(!t.thresholds().has_warning());
        assert_eq!(t.on_failure(ms(1), FailReason::ConnectRefused), None);
        assert_eq!(t.on_failure(ms(2), FailReason::ConnectRefused), None);
        assert_eq!(
            t.on_failure(ms(3), FailReason::ConnectRefused),
            Some(Transition {
                from: Health::Up,
                to: Health::Down,
                at: ms(3),
                reason: Reason::Failed(FailReason::ConnectRefused),
            })
        );
        assert_eq!(t.on_success(ms(4)).map(|x| x.to), Some(Health::Up));
    }

    #[test]
    fn fall_one_is_immediate() {
        let mut t = tracker(1, 1, 1, Health::Up);
        assert_eq!(
            t.on_failure(ms(1), FailReason::ConnectRefused)
                .map(|x| x.to),
            Some(Health::Down)
        );
        assert_eq!(t.on_success(ms(2)).map(|x| x.to), Some(Health::Up));
    }

    #[test]
    fn passive_failures_count_like_probes() {
        let mut t = tracker(2, 1, 2, Health::Up);
        assert_eq!(
            t.on_passive_failure(ms(7), "refused"),
            Some(Transition {
                from: Health::Up,
                to: Health::Warning,
                at: ms(7),
                reason: Reason::Failed(FailReason::PassiveConnectFailure("refused")),
            })
        );
        assert_eq!(
            FailReason::PassiveConnectFailure("timed out").to_string(),
            "client connection timed out"
        );
        assert_eq!(
            t.on_passive_failure(ms(8), "reset").map(|x| x.to),
            Some(Health::Down)
        );
    }

    #[test]
    fn initial_warning_is_one_step_from_either_side() {
        let mut t = tracker(2, 2, 3, Health::Warning);
        assert_eq!(t.consecutive_failures(), 2);
        assert!(t.in_transition());
        assert_eq!(
            t.on_failure(ms(1), FailReason::ConnectRefused)
                .map(|x| x.to),
            Some(Health::Down)
        );

        let mut t = tracker(2, 3, 3, Health::Warning);
        assert_eq!(t.consecutive_failures(), 2);
        assert_eq!(
            t.on_failure(ms(1), FailReason::ConnectRefused)
                .map(|x| x.to),
            Some(Health::Down)
        );

        let mut t = tracker(2, 1, 1, Health::Warning);
        assert_eq!(t.on_success(ms(1)).map(|x| x.to), Some(Health::Up));
    }

    #[test]
    fn counters_saturate() {
        let mut t = tracker(1, 1, 1, Health::Down);
        t.failures = u32::MAX;
        assert_eq!(t.on_failure(ms(1), FailReason::ConnectRefused), None);
        assert_eq!(t.consecutive_failures(), u32::MAX);
        t.successes = u32::MAX;
        t.health = Health::Up;
        assert_eq!(t.on_success(ms(2)), None);
        assert_eq!(t.consecutive_successes(), u32::MAX);
    }
}
