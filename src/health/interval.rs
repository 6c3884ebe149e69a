//! Probe scheduling: how long to wait before a node's next check.
//!
//! This module owns two pure pieces of arithmetic:
//! - [`IntervalPolicy::next_interval`], the delay before the next probe given
//!   the node's health. A steady Up node follows the LISA '98 broker's
//!   adaptive rule `interval = max(rtt_now, rtt_last) * multiplier`, clamped
//!   to `[base, max]`, so a slow (overloaded) node is probed, and loaded,
//!   less often. A node in transition uses HAProxy's `fastinter`; a Down node
//!   uses `downinter`.
//! - [`Jitter`], a deterministic seeded PRNG that spreads probes: ± a fraction
//!   of each interval, and an initial offset so N nodes' first probes are not
//!   all sent in the same millisecond.
//!
//! It deliberately does not read the clock, own timers, or draw from a global
//! RNG: callers pass health, RTTs and a seed, and add the result to their own
//! `now`.

use std::fmt;
use std::time::Duration;

use crate::health::state::Health;

/// Probe-interval settings (validated once at config time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntervalPolicy {
    /// Shortest interval for a steady Up node (`--check-interval`).
    pub base: Duration,
    /// Longest interval for a steady Up node (`--check-max-interval`).
    pub max: Duration,
    /// Interval while in transition: failing but not Down, or Down and rising
    /// (HAProxy `fastinter`).
    pub fast: Duration,
    /// Interval while Down and not rising (HAProxy `downinter`).
    pub down: Duration,
    /// Factor applied to the probe RTT for a steady Up node (>= 1).
    pub multiplier: u32,
}

impl IntervalPolicy {
    /// Checks every field: all durations non-zero, `base <= max`,
    /// `multiplier >= 1`. The error names the first bad field.
    pub fn validate(&self) -> Result<(), IntervalError> {
        if self.base.is_zero() {
            return Err(IntervalError::ZeroBase);
        }
        if self.max < self.base {
            return Err(IntervalError::MaxBelowBase {
                base: self.base,
                max: self.max,
            });
        }
        if self.fast.is_zero() {
            return Err(IntervalError::ZeroFast);
        }
        if self.down.is_zero() {
            return Err(IntervalError::ZeroDown);
        }
        if self.multiplier == 0 {
            return Err(IntervalError::ZeroMultiplier);
        }
        Ok(())
    }

    /// Delay before the node's next probe.
    ///
    /// - `in_transition` (see `HealthTracker::in_transition`) or Warning:
    ///   `fast`.
    /// - Down and not rising: `down`.
    /// - Up and steady: `max(rtt_now, rtt_last) * multiplier` clamped to
    ///   `[base, max]`; `base` when neither RTT is known.
    ///
    /// Never panics: on an unvalidated policy with `max < base` the result is
    /// `base`.
    pub fn next_interval(
        &self,
        health: Health,
        in_transition: bool,
        rtt_now: Option<Duration>,
        rtt_last: Option<Duration>,
    ) -> Duration {
        if in_transition {
            return self.fast;
        }
        match health {
            // A Warning node always has failures > 0, so it is in transition
            // even if the caller said otherwise.
            Health::Warning => self.fast,
            Health::Down => self.down,
            Health::Up => match rtt_now.max(rtt_last) {
                None => self.base,
                Some(rtt) => rtt
                    .saturating_mul(self.multiplier)
                    .min(self.max)
                    .max(self.base),
            },
        }
    }
}

/// An invalid [`IntervalPolicy`] or [`Jitter`] field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntervalError {
    /// `base` (`--check-interval`) must be non-zero.
    ZeroBase,
    /// `max` (`--check-max-interval`) must be at least `base`.
    MaxBelowBase {
        /// The configured base.
        base: Duration,
        /// The rejected max.
        max: Duration,
    },
    /// `fast` must be non-zero.
    ZeroFast,
    /// `down` must be non-zero.
    ZeroDown,
    /// `multiplier` must be at least 1.
    ZeroMultiplier,
    /// The jitter fraction must be at most 1000 per mille.
    JitterFraction(u16),
}

impl fmt::Display for IntervalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntervalError::ZeroBase => f.write_str("check-interval: must be greater than zero"),
            IntervalError::MaxBelowBase { base, max } => write!(
                f,
                "check-max-interval: must be at least check-interval ({base:?}), got {max:?}"
            ),
            IntervalError::ZeroFast => f.write_str("fast interval: must be greater than zero"),
            IntervalError::ZeroDown => f.write_str("down interval: must be greater than zero"),
            IntervalError::ZeroMultiplier => f.write_str("multiplier: must be at least 1"),
            IntervalError::JitterFraction(v) => {
                write!(f, "jitter: must be at most 1000 per mille, got {v}")
            }
        }
    }
}

impl std::error::Error for IntervalError {}

/// Deterministic probe jitter for one node: a splitmix64 stream seeded with
/// `seed ^ node_index`.
///
/// Same `(seed, node_index)` gives the same sequence, so a run can be
/// replayed; different distributors should use different seeds.
#[derive(Clone, Debug)]
pub struct Jitter {
    seed: u64,
    state: u64,
    permille: u16,
}

impl Jitter {
    /// Default spread: ± 10 % (100 per mille).
    pub const DEFAULT_PERMILLE: u16 = 100;

    /// Jitter of ± 10 % for node `node_index` under `seed`.
    pub fn new(seed: u64, node_index: u64) -> Self {
        Jitter {
            seed,
            state: seed ^ node_index,
            permille: Self::DEFAULT_PERMILLE,
        }
    }
    /// Jitter of ± `permille`/1000 of each interval; `permille` must be
    /// `<= 1000`.
    #[cfg(test)]
    pub fn with_fraction(seed: u64, node_index: u64, permille: u16) -> Result<Self, IntervalError> {
        if permille > 1000 {
            return Err(IntervalError::JitterFraction(permille));
        }
        Ok(Jitter {
            permille,
            ..Jitter::new(seed, node_index)
        })
    }

    /// `interval` moved by a uniform draw in `[-f, +f] * interval`
    /// (inclusive, nanosecond resolution); advances the stream.
    pub fn jitter(&mut self, interval: Duration) -> Duration {
        let nanos = interval.as_nanos();
        let spread = nanos * u128::from(self.permille) / 1000;
        // Uniform in [0, 2 * spread]: the 64-bit draw is used as a fraction
        // of the width (multiply-shift, no modulo). Durations are below 2^94
        // ns, so every intermediate fits in u128.
        let width = 2 * spread + 1;
        let draw = mul_frac(width, self.next_u64());
        nanos_to_duration(nanos - spread + draw)
    }

    /// Delay before node `node_index`'s first probe, in `[0, interval)`.
    ///
    /// The N nodes are evenly spaced over one interval, all rotated by one
    /// seed-derived offset, so no two of them share a slot (given
    /// `interval >= n_nodes` ns) and two distributors with different seeds do
    /// not probe in step. Does not advance the stream. Returns zero for a zero
    /// interval or `n_nodes == 0`.
    pub fn initial_offset(&self, interval: Duration, node_index: u64, n_nodes: u64) -> Duration {
        let total = interval.as_nanos();
        if total == 0 || n_nodes == 0 {
            return Duration::ZERO;
        }
        // floor(i * total / n) without the 2^158-bit product: i < n.
        let (i, n) = (u128::from(node_index % n_nodes), u128::from(n_nodes));
        let slot = total / n * i + total % n * i / n;
        let mut seed_state = self.seed;
        let rotation = mul_frac(total, splitmix64(&mut seed_state));
        nanos_to_duration((slot + rotation) % total)
    }

    fn next_u64(&mut self) -> u64 {
        splitmix64(&mut self.state)
    }
}

/// `floor(n * x / 2^64)`: maps a uniform `x` onto `[0, n)` for `n > 0`.
/// Computed in two halves so it is exact for any `n` below 2^96 (durations
/// stay below 2^94 ns) and saturates beyond.
fn mul_frac(n: u128, x: u64) -> u128 {
    let x = u128::from(x);
    let hi = n >> 64;
    let lo = n & u128::from(u64::MAX);
    hi.saturating_mul(x).saturating_add((lo * x) >> 64)
}

/// splitmix64 (Steele, Lea, Flood 2014): one step of the generator.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn nanos_to_duration(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    // The remainder is below 10^9, so it always fits in u32.
    let sub = u32::try_from(nanos % NANOS_PER_SEC).unwrap_or(0);
    Duration::new(secs, sub)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn policy() -> IntervalPolicy {
        IntervalPolicy {
            base: ms(1000),
            max: ms(10_000),
            fast: ms(200),
            down: ms(5000),
            multiplier: 100,
        }
    }

    #[test]
    fn validate_names_the_field() {
        assert_eq!(policy().validate(), Ok(()));
        let p = IntervalPolicy {
            base: Duration::ZERO,
            ..policy()
        };
        assert_eq!(p.validate(), Err(IntervalError::ZeroBase));
        let p = IntervalPolicy {
            max: ms(999),
            ..policy()
        };
        assert_eq!(
            p.validate(),
            Err(IntervalError::MaxBelowBase {
                base: ms(1000),
                max: ms(999)
            })
        );
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("check-max-interval:"));
        let p = IntervalPolicy {
            fast: Duration::ZERO,
            ..policy()
        };
        assert_eq!(p.validate(), Err(IntervalError::ZeroFast));
        let p = IntervalPolicy {
            down: Duration::ZERO,
            ..policy()
        };
        assert_eq!(p.validate(), Err(IntervalError::ZeroDown));
        let p = IntervalPolicy {
            multiplier: 0,
            ..policy()
        };
        assert_eq!(p.validate(), Err(IntervalError::ZeroMultiplier));
    }

    #[test]
    fn up_steady_follows_rtt_times_multiplier() {
        let p = policy();
        // 30 ms * 100 = 3 s, inside [1 s, 10 s].
        assert_eq!(
            p.next_interval(Health::Up, false, Some(ms(30)), Some(ms(20))),
            ms(3000)
        );
        assert_eq!(
            p.next_interval(Health::Up, false, Some(ms(20)), Some(ms(30))),
            ms(3000)
        );
        // One RTT unknown: use the other.
        assert_eq!(
            p.next_interval(Health::Up, false, None, Some(ms(40))),
            ms(4000)
        );
        assert_eq!(
            p.next_interval(Health::Up, false, Some(ms(50)), None),
            ms(5000)
        );
        // Both unknown: base.
        assert_eq!(p.next_interval(Health::Up, false, None, None), ms(1000));
    }

    #[test]
    fn up_steady_is_clamped_both_ends() {
        let p = policy();
        assert_eq!(
            p.next_interval(Health::Up, false, Some(Duration::from_micros(50)), None),
            ms(1000)
        );
        assert_eq!(
            p.next_interval(Health::Up, false, Some(Duration::ZERO), None),
            ms(1000)
        );
        assert_eq!(
            p.next_interval(Health::Up, false, Some(ms(500)), None),
            ms(10_000)
        );
        // Overflow of rtt * multiplier saturates, then clamps.
        let p = IntervalPolicy {
            multiplier: u32::MAX,
            ..policy()
        };
        assert_eq!(
            p.next_interval(Health::Up, false, Some(Duration::MAX), None),
            ms(10_000)
        );
        // Multiplier 1: the RTT itself.
        let p = IntervalPolicy {
            multiplier: 1,
            ..policy()
        };
        assert_eq!(
            p.next_interval(Health::Up, false, Some(ms(2500)), None),
            ms(2500)
        );
        // Unvalidated max < base: no panic, base wins.
        let p = IntervalPolicy {
            max: ms(1),
            ..policy()
        };
        assert_eq!(
            p.next_interval(Health::Up, false, Some(ms(500)), None),
            ms(1000)
        );
    }

    #[test]
    fn transition_and_down_intervals() {
        let p = policy();
        let rtt = Some(ms(30));
        assert_eq!(p.next_interval(Health::Up, true, rtt, rtt), ms(200));
        assert_eq!(p.next_interval(Health::Warning, true, rtt, rtt), ms(200));
        assert_eq!(p.next_interval(Health::Warning, false, rtt, rtt), ms(200));
        assert_eq!(p.next_interval(Health::Down, true, rtt, rtt), ms(200));
        assert_eq!(p.next_interval(Health::Down, false, rtt, rtt), ms(5000));
    }

    fn draws(seed: u64, node: u64, n: usize) -> Vec<Duration> {
        let mut j = Jitter::new(seed, node);
        (0..n).map(|_| j.jitter(ms(1000))).collect()
    }

    #[test]
    fn jitter_is_deterministic_by_seed() {
        assert_eq!(draws(7, 3, 64), draws(7, 3, 64));
        assert_ne!(draws(7, 3, 64), draws(8, 3, 64));
        assert_ne!(draws(7, 3, 64), draws(7, 4, 64));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let mut j = Jitter::new(0xDEAD_BEEF, 1);
        let (lo, hi) = (ms(900), ms(1100));
        let (mut min, mut max) = (Duration::MAX, Duration::ZERO);
        for _ in 0..10_000 {
            let d = j.jitter(ms(1000));
            assert!(d >= lo && d <= hi, "{d:?} out of bounds");
            min = min.min(d);
            max = max.max(d);
        }
        // The draws actually spread over most of the range.
        assert!(min < ms(910) && max > ms(1090), "min {min:?} max {max:?}");

        let mut j = match Jitter::with_fraction(1, 2, 250) {
            Ok(j) => j,
            Err(e) => panic!("{e}"),
        };
        for _ in 0..10_000 {
            let d = j.jitter(ms(400));
            assert!(d >= ms(300) && d <= ms(500), "{d:?} out of bounds");
        }
    }

    #[test]
    fn jitter_edge_cases() {
        let mut j = Jitter::new(1, 1);
        assert_eq!(j.jitter(Duration::ZERO), Duration::ZERO);
        assert_eq!(j.jitter(Duration::from_nanos(1)), Duration::from_nanos(1));
        let d = j.jitter(Duration::MAX);
        assert!(d >= Duration::MAX - Duration::MAX / 10 - Duration::from_secs(1));
        let mut z = match Jitter::with_fraction(1, 1, 0) {
            Ok(j) => j,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(z.jitter(ms(1234)), ms(1234));
        assert!(Jitter::with_fraction(1, 1, 1000).is_ok());
        assert_eq!(
            Jitter::with_fraction(1, 1, 1001).err(),
            Some(IntervalError::JitterFraction(1001))
        );
    }

    #[test]
    fn initial_offsets_are_distinct_and_in_range() {
        let interval = ms(2000);
        for seed in [0, 1, 42, u64::MAX] {
            let n = 100u64;
            let mut offs: Vec<Duration> = (0..n)
                .map(|i| Jitter::new(seed, i).initial_offset(interval, i, n))
                .collect();
            assert!(offs.iter().all(|d| *d < interval));
            offs.sort();
            offs.dedup();
            assert_eq!(offs.len(), n as usize);
            // Evenly spaced: each neighbour at least interval / n apart
            // (up to one ns of rounding).
            for w in offs.windows(2) {
                assert!(w[1] - w[0] >= ms(20) - Duration::from_nanos(1));
            }
        }
        // Same seed, same answer; different seed, rotated.
        let a = Jitter::new(5, 0).initial_offset(interval, 0, 4);
        assert_eq!(a, Jitter::new(5, 0).initial_offset(interval, 0, 4));
        assert_ne!(a, Jitter::new(6, 0).initial_offset(interval, 0, 4));
        // Degenerate inputs.
        let j = Jitter::new(5, 0);
        assert_eq!(j.initial_offset(Duration::ZERO, 3, 4), Duration::ZERO);
        assert_eq!(j.initial_offset(interval, 3, 0), Duration::ZERO);
        assert!(j.initial_offset(interval, 9, 4) < interval);
        assert!(j.initial_offset(Duration::MAX, 3, 4) < Duration::MAX);
        assert!(j.initial_offset(Duration::MAX, u64::MAX - 1, u64::MAX) < Duration::MAX);
        // Exact slots: 3 nodes over 3 ns with the rotation removed.
        let slots: Vec<u128> = (0..3)
            .map(|i| {
                let base = j.initial_offset(Duration::from_nanos(3), 0, 3).as_nanos();
                (j.initial_offset(Duration::from_nanos(3), i, 3).as_nanos() + 3 - base) % 3
            })
            .collect();
        assert_eq!(slots, vec![0, 1, 2]);
    }
}
