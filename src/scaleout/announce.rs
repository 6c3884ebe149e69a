//! When to announce: the pure decision behind health-driven route injection.
//!
//! What it owns: the rule "announce while the service has at least `min_healthy`
//! usable nodes, withdraw below", the hold-down against a flapping pool, the
//! operator's `disable`/`enable`, and the stages of a planned stop (graceful-shutdown
//! community, then withdraw, then drain). Time comes in as a [`Duration`] since an
//! epoch the caller chooses.
//!
//! # Hold-down
//!
//! A withdrawal for health is immediate: traffic must stop reaching a distributor
//! that cannot serve it. Announcing again waits until the pool has had enough
//! usable nodes for `hold_down` without interruption; any dip below restarts that
//! wait. A pool that flaps every second therefore costs the routers one withdrawal,
//! not one per flap. The first announcement after start and the one after `enable`
//! are not held down: nothing flapped.
//!
//! What it does not do: count the nodes (the driver reads the pool), or speak BGP.

use std::time::Duration;

/// What the routes should be now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desired {
    /// Announce every prefix.
    Announce,
    /// Announce every prefix with the GRACEFUL_SHUTDOWN community (RFC 8326).
    AnnounceGraceful,
    /// Withdraw every prefix.
    Withdraw,
}

/// Why the routes are withdrawn (or announced), for the operator view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Announced: enough usable nodes.
    Healthy,
    /// Fewer usable nodes than required.
    Unhealthy,
    /// Enough nodes again, waiting out the hold-down.
    HoldDown,
    /// `disable` on the control interface.
    Disabled,
    /// `bgp withdraw` on the control socket.
    Withdrawn,
    /// Stopping: graceful-shutdown community, then withdrawn.
    Stopping,
}

impl Reason {
    /// One word for `show bgp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Healthy => "healthy",
            Reason::Unhealthy => "unhealthy",
            Reason::HoldDown => "hold-down",
            Reason::Disabled => "disabled",
            Reason::Withdrawn => "bgp withdraw",
            Reason::Stopping => "stopping",
        }
    }
}

/// The announce decision for one service.
#[derive(Debug, Clone)]
pub struct Policy {
    min_healthy: usize,
    hold_down: Duration,
    shutdown_delay: Duration,
    /// Health allows announcing (after the hold-down).
    healthy: bool,
    /// Since when the pool has had enough nodes while `healthy` is false.
    ok_since: Option<Duration>,
    /// When the stop began.
    stopping_since: Option<Duration>,
    enabled: bool,
}

impl Policy {
    /// A policy that announces as soon as the pool is healthy.
    pub fn new(min_healthy: usize, hold_down: Duration, shutdown_delay: Duration) -> Policy {
        Policy {
            min_healthy,
            hold_down,
            shutdown_delay,
            // Start-up is not a flap: the first announcement is not held down.
            healthy: true,
            ok_since: None,
            stopping_since: None,
            enabled: true,
        }
    }

    /// Feeds the current pool, the `enable`/`disable` switch and `bgp withdraw`;
    /// returns what the routes should be.
    pub fn update(
        &mut self,
        usable: usize,
        enabled: bool,
        withdrawn: bool,
        now: Duration,
    ) -> (Desired, Reason) {
        if enabled && !self.enabled {
            // `enable` is an operator's decision, not a recovering pool.
            self.healthy = usable >= self.min_healthy;
            self.ok_since = None;
        }
        self.enabled = enabled;
        let enough = usable >= self.min_healthy;
        if !enough {
            self.healthy = false;
            self.ok_since = None;
        } else if !self.healthy {
            let since = *self.ok_since.get_or_insert(now);
            if now.saturating_sub(since) >= self.hold_down {
                self.healthy = true;
                self.ok_since = None;
            }
        }
        if withdrawn {
            return (Desired::Withdraw, Reason::Withdrawn);
        }
        if let Some(t) = self.stopping_since {
            let withdraw_at = t.saturating_add(self.shutdown_delay / 2);
            if now < withdraw_at && self.healthy && enabled {
                return (Desired::AnnounceGraceful, Reason::Stopping);
            }
            return (Desired::Withdraw, Reason::Stopping);
        }
        match (enabled, self.healthy, enough) {
            (false, _, _) => (Desired::Withdraw, Reason::Disabled),
            (true, true, _) => (Desired::Announce, Reason::Healthy),
            (true, false, true) => (Desired::Withdraw, Reason::HoldDown),
            (true, false, false) => (Desired::Withdraw, Reason::Unhealthy),
        }
    }

    /// Begins a planned stop at `now`; returns how long the process should keep
    /// accepting (the whole shutdown delay). Idempotent.
    pub fn stop(&mut self, now: Duration) -> Duration {
        let t = *self.stopping_since.get_or_insert(now);
        t.saturating_add(self.shutdown_delay).saturating_sub(now)
    }

    /// When [`Policy::update`] may answer differently without new input.
    pub fn deadline(&self) -> Option<Duration> {
        let hold = self
            .ok_since
            .filter(|_| !self.healthy)
            .map(|s| s.saturating_add(self.hold_down));
        let stop = self
            .stopping_since
            .map(|t| t.saturating_add(self.shutdown_delay / 2));
        match (hold, stop) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn policy() -> Policy {
        Policy::new(2, ms(5000), ms(2000))
    }

    #[test]
    fn scaleout_announces_at_start_when_healthy() {
        let mut p = policy();
        assert_eq!(
            p.update(2, true, false, ms(0)),
            (Desired::Announce, Reason::Healthy)
        );
        assert_eq!(p.deadline(), None);
    }

    #[test]
    fn scaleout_starts_withdrawn_below_min_healthy() {
        let mut p = policy();
        assert_eq!(
            p.update(1, true, false, ms(0)),
            (Desired::Withdraw, Reason::Unhealthy)
        );
    }

    #[test]
    fn scaleout_withdraws_at_once_and_reannounces_after_hold_down() {
        let mut p = policy();
        p.update(3, true, false, ms(0));
        assert_eq!(p.update(1, true, false, ms(100)).0, Desired::Withdraw);
        assert_eq!(
            p.update(2, true, false, ms(200)),
            (Desired::Withdraw, Reason::HoldDown)
        );
        assert_eq!(p.deadline(), Some(ms(5200)));
        assert_eq!(p.update(2, true, false, ms(5199)).0, Desired::Withdraw);
        assert_eq!(
            p.update(2, true, false, ms(5200)),
            (Desired::Announce, Reason::Healthy)
        );
        assert_eq!(p.deadline(), None);
    }

    #[test]
    fn scaleout_flapping_pool_restarts_the_hold_down() {
        let mut p = policy();
        p.update(2, true, false, ms(0));
        let mut announcements = 0;
        let mut last = Desired::Announce;
        // Healthy 1 s, unhealthy 1 s, for 20 s: one withdrawal, no re-announcement.
        for i in 1..=200u64 {
            let usable = if (i / 10) % 2 == 0 { 2 } else { 1 };
            let (d, _) = p.update(usable, true, false, ms(i * 100));
            if d != last && d == Desired::Announce {
                announcements += 1;
            }
            last = d;
        }
        assert_eq!(announcements, 0);
        assert_eq!(last, Desired::Withdraw);
    }

    #[test]
    fn scaleout_disable_withdraws_enable_reannounces_without_hold_down() {
        let mut p = policy();
        p.update(2, true, false, ms(0));
        assert_eq!(
            p.update(2, false, false, ms(10)),
            (Desired::Withdraw, Reason::Disabled)
        );
        assert_eq!(
            p.update(2, true, false, ms(20)),
            (Desired::Announce, Reason::Healthy)
        );
        // Disabled while unhealthy, enabled while still unhealthy: withdrawn.
        p.update(0, false, false, ms(30));
        assert_eq!(
            p.update(0, true, false, ms(40)),
            (Desired::Withdraw, Reason::Unhealthy)
        );
    }

    #[test]
    fn scaleout_operator_withdraw_wins_until_undone() {
        let mut p = policy();
        p.update(2, true, false, ms(0));
        assert_eq!(
            p.update(2, true, true, ms(10)),
            (Desired::Withdraw, Reason::Withdrawn)
        );
        assert_eq!(
            p.update(2, true, false, ms(20)),
            (Desired::Announce, Reason::Healthy)
        );
    }

    #[test]
    fn scaleout_stop_is_graceful_then_withdrawn() {
        let mut p = policy();
        p.update(2, true, false, ms(0));
        assert_eq!(p.stop(ms(1000)), ms(2000));
        assert_eq!(p.stop(ms(1500)), ms(1500));
        assert_eq!(
            p.update(2, true, false, ms(1000)),
            (Desired::AnnounceGraceful, Reason::Stopping)
        );
        assert_eq!(p.deadline(), Some(ms(2000)));
        assert_eq!(
            p.update(2, true, false, ms(2000)),
            (Desired::Withdraw, Reason::Stopping)
        );
        // Unhealthy while stopping: no graceful re-announcement.
        let mut q = policy();
        q.update(0, true, false, ms(0));
        q.stop(ms(0));
        assert_eq!(q.update(0, true, false, ms(1)).0, Desired::Withdraw);
    }
}
