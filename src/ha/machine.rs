//! The failover election: a sans-IO primary/backup state machine with
//! VRRPv3 timing (RFC 5798 §6.4, adapted).
//!
//! What it owns: the role (init/backup/master/fault), the master-down,
//! advert and gratuitous-ARP timers, the epoch (term) and the decision to
//! take or give up the VIP.
//!
//! What it does not do: I/O, clocks or randomness of its own. Time comes in
//! as `now` (a monotonic [`Duration`] since any fixed origin), randomness as
//! a seed. Inputs are `start`, `on_advert`, `on_link`, `set_priority`,
//! `shutdown` and `on_timeout`; outputs are drained with
//! [`Machine::poll_action`] after every input, and the next deadline is read
//! with [`Machine::poll_timeout`] (quinn's `handle_*`/`poll_*` shape). It
//! neither authenticates nor de-duplicates adverts: see
//! [`crate::wire::advert`], whose [`crate::wire::advert::ReplayGuard`] must run first.
//!
//! # Timing (RFC 5798 §6.1)
//! - `Skew_Time = ((256 − priority) × Master_Adver_Interval) / 256`
//! - `Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time`
//!
//! `Master_Adver_Interval` is learned from the master's adverts and reset to
//! the local advert interval on every (re)start.
//!
//! # Transitions
//! Every role change queues [`Action::RoleChanged`] first, then its effects.
//! ```text
//! from    input                                     to      effects, in order
//! Init    start (link up / down)                    Backup  arm Master_Down_Timer (+ jitter)
//!                                                   Fault
//! Backup  Master_Down_Timer fires                   Master  AcquireVip, SendAdvert, SendGarp
//!                                                           (garp_count − 1 more, garp_spacing
//!                                                           apart), then SendAdvert every interval
//! Backup  advert, priority ≥ ours or preempt off    Backup  timer = Master_Down_Interval
//! Backup  advert, priority < ours and preempt on    Backup  none (the timer will fire)
//! Backup  resign (priority 0)                       Backup  timer = Skew_Time
//! Master  advert, higher (priority, node_id)        Backup  ReleaseVip, arm timer
//! Master  advert, lower (priority, node_id)         Master  SendAdvert, GARP train unless one runs
//! Master  resign from another node                  Master  SendAdvert
//! Backup  link down                                 Fault   none
//! Master  link down                                 Fault   ReleaseVip
//! Fault   link up                                   Backup  arm timer (+ jitter)
//! Master  shutdown                                  Init    ReleaseVip, SendResign
//! Backup  shutdown                                  Init    none
//! Fault
//! ```
//! A master that hears a *lower* advert stays master (split brain): it
//! re-advertises at once and repeats its gratuitous ARPs so neighbours point
//! back at it, and moves its epoch above the other master's.
//!
//! # Epoch correction (an extension to RFC 5798)
//! The epoch orders terms for state sync, so the master must end up with the
//! highest one in the group. After a healed partition the loser may step
//! down before the winner ever heard its newer term, and a restarted node
//! starts again from 0. So a backup that follows a master whose advert
//! carries an epoch *below* its own answers with one advert carrying its
//! epoch and a priority below the master's (`min(own, master − 1)`), so that
//! it can never make the master step down. To the master that is a lower
//! advert: it moves its epoch above and re-announces. Bounded by one reply
//! per stale master advert; a master at priority 1 cannot be corrected.

use core::fmt;
use std::collections::VecDeque;
use std::time::Duration;

use crate::wire::advert::{self as wire, Kind};

/// Shortest advert interval (one centisecond, the wire's unit).
pub const MIN_ADVERT_INTERVAL: Duration = Duration::from_millis(10);
/// Longest advert interval (`u16::MAX` centiseconds).
pub const MAX_ADVERT_INTERVAL: Duration = Duration::from_millis(655_350);
/// Most gratuitous ARPs sent per announcement.
pub const MAX_GARP_COUNT: u32 = 100;

/// The node's part in the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Not started, or shut down.
    Init,
    /// Watching the master; takes over when it goes quiet.
    Backup,
    /// Holds the VIP and advertises.
    Master,
    /// Link down: holds nothing, sends nothing.
    Fault,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Init => "init",
            Role::Backup => "backup",
            Role::Master => "master",
            Role::Fault => "fault",
        })
    }
}

/// Why the role changed (for logs and the notify command).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoleReason {
    /// `start` was called.
    Started,
    /// Master_Down_Timer fired: no advert good enough in time, or a resign.
    MasterDown,
    /// As master, heard an advert with a higher (priority, node_id).
    Outranked,
    /// The link went down.
    LinkDown,
    /// The link came back.
    LinkUp,
    /// `shutdown` was called.
    Shutdown,
}

impl fmt::Display for RoleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RoleReason::Started => "started",
            RoleReason::MasterDown => "master-down",
            RoleReason::Outranked => "outranked",
            RoleReason::LinkDown => "link-down",
            RoleReason::LinkUp => "link-up",
            RoleReason::Shutdown => "shutdown",
        })
    }
}

/// Static settings of one node, validated by [`Config::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Unique in the group; derive it from the node's IPv4 address. Breaks
    /// priority ties between masters (higher wins, as RFC 5798 §6.4.3).
    pub node_id: u32,
    /// 1..=254 (255 and 0 are reserved by RFC 5798 §5.2.4).
    pub priority: u8,
    /// Between own adverts as master; a multiple of 10 ms within
    /// [`MIN_ADVERT_INTERVAL`]..=[`MAX_ADVERT_INTERVAL`].
    pub advert_interval: Duration,
    /// A backup with a higher priority than the master takes over (RFC 5798
    /// Preempt_Mode). Off: any live master is kept.
    pub preempt: bool,
    /// The group; adverts of other groups are ignored.
    pub group_id: u16,
    /// Gratuitous ARPs per announcement, at most [`MAX_GARP_COUNT`].
    pub garp_count: u32,
    /// Between two gratuitous ARPs of one announcement.
    pub garp_spacing: Duration,
}

impl Config {
    /// Defaults: priority 100 (RFC 5798), 100 ms adverts, preempt on,
    /// group 1, 5 gratuitous ARPs 100 ms apart.
    pub fn new(node_id: u32) -> Config {
        Config {
            node_id,
            priority: 100,
            advert_interval: Duration::from_millis(100),
            preempt: true,
            group_id: 1,
            garp_count: 5,
            garp_spacing: Duration::from_millis(100),
        }
    }

    /// Checks every field; the error names the field and the value.
    pub fn validate(&self) -> Result<(), TimingError> {
        check_priority(self.priority)?;
        let interval = self.advert_interval;
        if interval < MIN_ADVERT_INTERVAL
            || interval > MAX_ADVERT_INTERVAL
            || interval.as_nanos() % 10_000_000 != 0
        {
            return Err(TimingError::AdvertInterval(interval));
        }
        if self.garp_count > MAX_GARP_COUNT {
            return Err(TimingError::GarpCount(self.garp_count));
        }
        Ok(())
    }
}

fn check_priority(priority: u8) -> Result<(), TimingError> {
    if (1..=254).contains(&priority) {
        Ok(())
    } else {
        Err(TimingError::Priority(priority))
    }
}

/// A configuration value out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimingError {
    /// Priority outside 1..=254.
    Priority(u8),
    /// Advert interval not a multiple of 10 ms within the limits.
    AdvertInterval(Duration),
    /// More gratuitous ARPs than [`MAX_GARP_COUNT`].
    GarpCount(u32),
}

impl fmt::Display for TimingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimingError::Priority(p) => write!(f, "priority={p} out of range 1..=254"),
            TimingError::AdvertInterval(d) => write!(
                f,
                "advert_interval={d:?} must be a multiple of 10ms within 10ms..=655.35s"
            ),
            TimingError::GarpCount(n) => {
                write!(f, "garp_count={n} exceeds {MAX_GARP_COUNT}")
            }
        }
    }
}

impl std::error::Error for TimingError {}

/// What the machine needs from an authenticated, non-replayed advert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAdvert {
    /// The sender.
    pub node_id: u32,
    /// The sender's priority; 0 is a resign (RFC 5798 §6.4.3 shutdown).
    pub priority: u8,
    /// The sender's epoch.
    pub epoch: u64,
    /// The sender's advert interval (clamped to the valid range on use).
    pub advert_interval: Duration,
}

/// An effect for the shell to carry out, in the order returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send a [`Kind::Advert`] datagram (see [`Machine::wire_advert`]).
    SendAdvert {
        /// Priority to put in it.
        priority: u8,
        /// Epoch to put in it.
        epoch: u64,
    },
    /// Send a [`Kind::Resign`] (priority 0) datagram.
    SendResign {
        /// Epoch to put in it.
        epoch: u64,
    },
    /// Add the VIP to the interface.
    AcquireVip,
    /// Remove the VIP from the interface.
    ReleaseVip,
    /// Send one request-form gratuitous ARP for the VIP.
    SendGarp,
    /// The role changed; queued before the transition's other effects.
    RoleChanged {
        /// Role before.
        from: Role,
        /// Role after.
        to: Role,
        /// Why.
        reason: RoleReason,
    },
}

/// RFC 5798 §6.1 Skew_Time: `((256 − priority) × interval) / 256`.
pub fn skew_time(priority: u8, master_adver_interval: Duration) -> Duration {
    let nanos = master_adver_interval.as_nanos() * (256 - u128::from(priority)) / 256;
    nanos_to_duration(nanos)
}

/// RFC 5798 §6.1 Master_Down_Interval: `3 × interval + Skew_Time`.
pub fn master_down_interval(priority: u8, master_adver_interval: Duration) -> Duration {
    let nanos = master_adver_interval.as_nanos() * 3
        + skew_time(priority, master_adver_interval).as_nanos();
    nanos_to_duration(nanos)
}

fn nanos_to_duration(nanos: u128) -> Duration {
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GarpTrain {
    remaining: u32,
    next_at: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Init,
    Backup {
        master_down_at: Duration,
    },
    Master {
        next_advert_at: Duration,
        garp: Option<GarpTrain>,
    },
    Fault,
}

/// One node's failover state machine.
#[derive(Debug, Clone)]
pub struct Machine {
    config: Config,
    priority: u8,
    state: State,
    epoch: u64,
    takeovers: u64,
    master_adver_interval: Duration,
    last_peer_advert: Option<Duration>,
    link_up: bool,
    actions: VecDeque<Action>,
    rng: u64,
}

impl Machine {
    /// A machine in [`Role::Init`] with the link assumed up.
    ///
    /// `seed` only spreads the first master-down deadline after start or link
    /// up by less than one priority step of skew (`interval / 256`): it breaks
    /// exact ties between equal-priority nodes started together and never
    /// reorders different priorities.
    pub fn new(config: Config, seed: u64) -> Result<Machine, TimingError> {
        config.validate()?;
        Ok(Machine {
            priority: config.priority,
            master_adver_interval: config.advert_interval,
            config,
            state: State::Init,
            epoch: 0,
            takeovers: 0,
            last_peer_advert: None,
            link_up: true,
            actions: VecDeque::new(),
            rng: seed,
        })
    }

    /// The current role.
    pub fn role(&self) -> Role {
        match self.state {
            State::Init => Role::Init,
            State::Backup { .. } => Role::Backup,
            State::Master { .. } => Role::Master,
            State::Fault => Role::Fault,
        }
    }

    /// The current priority.
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// The highest epoch seen or owned: a master's own term, otherwise the
    /// newest term heard. A master always advertises an epoch above every
    /// epoch it has heard from another master.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// How many times this node became master.
    pub fn takeovers(&self) -> u64 {
        self.takeovers
    }

    /// When the last advert from another node of the group arrived.
    pub fn last_peer_advert(&self) -> Option<Duration> {
        self.last_peer_advert
    }

    /// The Master_Down_Interval in force (with the learned interval).
    pub fn master_down_interval(&self) -> Duration {
        master_down_interval(self.priority, self.master_adver_interval)
    }

    /// Starts the machine: [`Role::Backup`] with the master-down timer armed
    /// (RFC 5798 §6.4.1; there is no priority-255 owner that starts as
    /// master), or [`Role::Fault`] if the link is down. Ignored unless in
    /// [`Role::Init`].
    pub fn start(&mut self, now: Duration) {
        if self.state != State::Init {
            return;
        }
        if self.link_up {
            self.enter_backup(now, RoleReason::Started);
        } else {
            self.change(Role::Fault, RoleReason::LinkDown);
            self.state = State::Fault;
        }
    }

    /// Feeds an advert from the group (see [`Machine::peer_advert`]).
    pub fn on_advert(&mut self, now: Duration, advert: &PeerAdvert) {
        if advert.node_id == self.config.node_id {
            return;
        }
        self.last_peer_advert = Some(now);
        match self.state {
            State::Backup { .. } => self.backup_on_advert(now, advert),
            State::Master { .. } => self.master_on_advert(now, advert),
            State::Init | State::Fault => self.epoch = self.epoch.max(advert.epoch),
        }
    }

    // RFC 5798 §6.4.2, "If an ADVERTISEMENT is received".
    fn backup_on_advert(&mut self, now: Duration, advert: &PeerAdvert) {
        let stale = advert.epoch < self.epoch;
        self.epoch = self.epoch.max(advert.epoch);
        if advert.priority == 0 {
            let at = now.saturating_add(skew_time(self.priority, self.master_adver_interval));
            self.state = State::Backup { master_down_at: at };
            return;
        }
        if self.config.preempt && advert.priority < self.priority {
            // Preempting a lower-priority master: let the timer fire.
            return;
        }
        if stale && advert.priority > 1 {
            // Epoch correction: see the module doc.
            self.actions.push_back(Action::SendAdvert {
                priority: self.priority.min(advert.priority - 1),
                epoch: self.epoch,
            });
        }
        self.master_adver_interval = clamp_interval(advert.advert_interval);
        let at = now.saturating_add(self.master_down_interval());
        self.state = State::Backup { master_down_at: at };
    }

    // RFC 5798 §6.4.3, "If an ADVERTISEMENT is received", plus the split-brain
    // re-announcement.
    fn master_on_advert(&mut self, now: Duration, advert: &PeerAdvert) {
        if advert.priority == 0 {
            self.send_advert_now(now);
            return;
        }
        let theirs = (advert.priority, advert.node_id);
        if theirs > (self.priority, self.config.node_id) {
            self.epoch = self.epoch.max(advert.epoch);
            self.master_adver_interval = clamp_interval(advert.advert_interval);
            self.change(Role::Backup, RoleReason::Outranked);
            self.actions.push_back(Action::ReleaseVip);
            let at = now.saturating_add(self.master_down_interval());
            self.state = State::Backup { master_down_at: at };
            return;
        }
        // Another master that we outrank: keep our term the newest, win the
        // neighbours back (a half-dead old master still answers ARP).
        if advert.epoch >= self.epoch {
            self.epoch = advert.epoch.saturating_add(1);
        }
        self.send_advert_now(now);
        if let State::Master { garp: None, .. } = self.state {
            self.start_garp(now);
        }
    }

    /// Reports the link state; down moves to [`Role::Fault`] (releasing the
    /// VIP), up moves from fault to [`Role::Backup`]. Repeats are ignored.
    pub fn on_link(&mut self, now: Duration, up: bool) {
        if up == self.link_up {
            return;
        }
        self.link_up = up;
        match (self.state, up) {
            (State::Backup { .. }, false) => {
                self.change(Role::Fault, RoleReason::LinkDown);
                self.state = State::Fault;
            }
            (State::Master { .. }, false) => {
                self.change(Role::Fault, RoleReason::LinkDown);
                self.actions.push_back(Action::ReleaseVip);
                self.state = State::Fault;
            }
            (State::Fault, true) => self.enter_backup(now, RoleReason::LinkUp),
            _ => {}
        }
    }
    /// Changes the priority at run time (1..=254). A master advertises the
    /// new value at once; preempting backups then act on it.
    #[cfg(test)]
    pub fn set_priority(&mut self, now: Duration, priority: u8) -> Result<(), TimingError> {
        check_priority(priority)?;
        if priority != self.priority {
            self.priority = priority;
            if let State::Master { .. } = self.state {
                self.send_advert_now(now);
            }
        }
        Ok(())
    }

    /// Stops the machine (RFC 5798 §6.4.3 Shutdown): a master releases the
    /// VIP, then sends a priority-0 resign. Ends in [`Role::Init`];
    /// `start` may follow. (`now` is unused, kept for a uniform input API.)
    pub fn shutdown(&mut self, _now: Duration) {
        match self.state {
            State::Init => return,
            State::Master { .. } => {
                self.change(Role::Init, RoleReason::Shutdown);
                // VIP first: the resign makes a backup take over within Skew_Time,
                // and the two must not hold the address at once.
                self.actions.push_back(Action::ReleaseVip);
                self.actions
                    .push_back(Action::SendResign { epoch: self.epoch });
            }
            State::Backup { .. } | State::Fault => self.change(Role::Init, RoleReason::Shutdown),
        }
        self.state = State::Init;
    }

    /// Runs every timer due at `now`. Spurious or early calls do nothing;
    /// a late call fires each timer once (no bursts) and keeps the advert phase.
    pub fn on_timeout(&mut self, now: Duration) {
        match self.state {
            State::Backup { master_down_at } if now >= master_down_at => {
                self.become_master(now);
            }
            State::Master {
                next_advert_at,
                garp,
            } => {
                let mut next = next_advert_at;
                if now >= next_advert_at {
                    self.actions.push_back(self.advert_action());
                    next = next_advert_at.saturating_add(self.config.advert_interval);
                    if next <= now {
                        next = now.saturating_add(self.config.advert_interval);
                    }
                }
                self.state = State::Master {
                    next_advert_at: next,
                    garp,
                };
                self.fire_garps(now);
            }
            _ => {}
        }
    }

    /// The next effect to carry out; call until `None` after every input.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next absolute deadline for [`Machine::on_timeout`], if any.
    pub fn poll_timeout(&self) -> Option<Duration> {
        match self.state {
            State::Backup { master_down_at } => Some(master_down_at),
            State::Master {
                next_advert_at,
                garp,
            } => Some(match garp {
                Some(train) => next_advert_at.min(train.next_at),
                None => next_advert_at,
            }),
            State::Init | State::Fault => None,
        }
    }

    /// Filters a parsed datagram for [`Machine::on_advert`]: `None` for
    /// another group, our own node id (looped back) or [`Kind::StateSync`].
    pub fn peer_advert(&self, advert: &wire::Advert<'_>) -> Option<PeerAdvert> {
        if advert.group_id != self.config.group_id
            || advert.node_id == self.config.node_id
            || advert.kind == Kind::StateSync
        {
            return None;
        }
        Some(PeerAdvert {
            node_id: advert.node_id,
            priority: advert.priority,
            epoch: advert.epoch,
            advert_interval: advert.advert_interval(),
        })
    }

    /// The datagram for a [`Action::SendAdvert`] or [`Action::SendResign`]
    /// (empty payload; set one with struct update), `None` for other actions.
    pub fn wire_advert<'p>(&self, action: &Action, sequence: u64) -> Option<wire::Advert<'p>> {
        let (kind, priority, epoch) = match *action {
            Action::SendAdvert { priority, epoch } => (Kind::Advert, priority, epoch),
            Action::SendResign { epoch } => (Kind::Resign, 0, epoch),
            _ => return None,
        };
        Some(wire::Advert {
            kind,
            priority,
            group_id: self.config.group_id,
            advert_interval_cs: wire::interval_to_cs(self.config.advert_interval),
            node_id: self.config.node_id,
            epoch,
            sequence,
            payload: &[],
        })
    }

    fn change(&mut self, to: Role, reason: RoleReason) {
        let from = self.role();
        self.actions
            .push_back(Action::RoleChanged { from, to, reason });
    }

    fn enter_backup(&mut self, now: Duration, reason: RoleReason) {
        self.change(Role::Backup, reason);
        // RFC 5798 §6.4.1: Master_Adver_Interval starts as our own interval.
        self.master_adver_interval = self.config.advert_interval;
        let at = now
            .saturating_add(self.master_down_interval())
            .saturating_add(self.jitter());
        self.state = State::Backup { master_down_at: at };
    }

    // RFC 5798 §6.4.2 "If the Master_Down_Timer fires".
    fn become_master(&mut self, now: Duration) {
        self.change(Role::Master, RoleReason::MasterDown);
        self.epoch = self.epoch.saturating_add(1);
        self.takeovers = self.takeovers.saturating_add(1);
        self.actions.push_back(Action::AcquireVip);
        self.state = State::Master {
            next_advert_at: now,
            garp: None,
        };
        self.send_advert_now(now);
        self.start_garp(now);
    }

    fn advert_action(&self) -> Action {
        Action::SendAdvert {
            priority: self.priority,
            epoch: self.epoch,
        }
    }

    fn send_advert_now(&mut self, now: Duration) {
        if let State::Master { garp, .. } = self.state {
            self.actions.push_back(self.advert_action());
            self.state = State::Master {
                next_advert_at: now.saturating_add(self.config.advert_interval),
                garp,
            };
        }
    }

    fn start_garp(&mut self, now: Duration) {
        if let State::Master { next_advert_at, .. } = self.state {
            let garp = (self.config.garp_count > 0).then_some(GarpTrain {
                remaining: self.config.garp_count,
                next_at: now,
            });
            self.state = State::Master {
                next_advert_at,
                garp,
            };
            self.fire_garps(now);
        }
    }

    // The first gratuitous ARP goes out with the takeover (clients switch on
    // it); the rest follow garp_spacing apart. Bounded by garp_count.
    fn fire_garps(&mut self, now: Duration) {
        if let State::Master {
            next_advert_at,
            garp: Some(mut train),
        } = self.state
        {
            while train.remaining > 0 && train.next_at <= now {
                self.actions.push_back(Action::SendGarp);
                train.remaining -= 1;
                train.next_at = now.saturating_add(self.config.garp_spacing);
            }
            self.state = State::Master {
                next_advert_at,
                garp: (train.remaining > 0).then_some(train),
            };
        }
    }

    // Less than one priority step of skew (interval / 256): see `new`.
    fn jitter(&mut self) -> Duration {
        let span = self.master_adver_interval.as_nanos() / 256;
        let span = u64::try_from(span).unwrap_or(u64::MAX);
        if span == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(splitmix64(&mut self.rng) % span)
    }
}

fn clamp_interval(interval: Duration) -> Duration {
    interval.clamp(MIN_ADVERT_INTERVAL, MAX_ADVERT_INTERVAL)
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn drain(m: &mut Machine) -> Vec<Action> {
        std::iter::from_fn(|| m.poll_action()).collect()
    }

    fn machine(node_id: u32, priority: u8, preempt: bool) -> Machine {
        let config = Config {
            priority,
            preempt,
            ..Config::new(node_id)
        };
        Machine::new(config, 7).unwrap()
    }

    fn peer(node_id: u32, priority: u8, epoch: u64) -> PeerAdvert {
        PeerAdvert {
            node_id,
            priority,
            epoch,
            advert_interval: ms(100),
        }
    }

    fn changed(from: Role, to: Role, reason: RoleReason) -> Action {
        Action::RoleChanged { from, to, reason }
    }

    /// Starts at 0 and runs the down timer: master at ~MDI with epoch 1.
    fn master(node_id: u32, priority: u8) -> (Machine, Duration) {
        let mut m = machine(node_id, priority, true);
        m.start(Duration::ZERO);
        let at = m.poll_timeout().unwrap();
        m.on_timeout(at);
        assert_eq!(m.role(), Role::Master);
        drain(&mut m);
        (m, at)
    }

    #[test]
    fn timing_formulas_match_rfc5798() {
        assert_eq!(skew_time(100, ms(1000)), Duration::from_micros(609_375));
        assert_eq!(
            master_down_interval(100, ms(1000)),
            Duration::from_micros(3_609_375)
        );
        assert_eq!(skew_time(254, ms(100)), Duration::from_nanos(781_250));
        assert_eq!(
            master_down_interval(1, Duration::MAX),
            Duration::from_nanos(u64::MAX)
        );
    }

    #[test]
    fn config_rejects_out_of_range_values() {
        let base = Config::new(1);
        assert_eq!(base.validate(), Ok(()));
        for (config, err) in [
            (
                Config {
                    priority: 0,
                    ..base.clone()
                },
                TimingError::Priority(0),
            ),
            (
                Config {
                    priority: 255,
                    ..base.clone()
                },
                TimingError::Priority(255),
            ),
            (
                Config {
                    advert_interval: ms(5),
                    ..base.clone()
                },
                TimingError::AdvertInterval(ms(5)),
            ),
            (
                Config {
                    advert_interval: ms(105),
                    ..base.clone()
                },
                TimingError::AdvertInterval(ms(105)),
            ),
            (
                Config {
                    advert_interval: ms(655_360),
                    ..base.clone()
                },
                TimingError::AdvertInterval(ms(655_360)),
            ),
            (
                Config {
                    garp_count: 101,
                    ..base.clone()
                },
                TimingError::GarpCount(101),
            ),
        ] {
            assert_eq!(Machine::new(config, 0).err(), Some(err));
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn start_arms_master_down_with_bounded_jitter() {
        for seed in 0..50 {
            let mut m = Machine::new(Config::new(1), seed).unwrap();
            assert_eq!(m.poll_timeout(), None);
            m.start(ms(1000));
            assert_eq!(m.role(), Role::Backup);
            assert_eq!(
                drain(&mut m),
                [changed(Role::Init, Role::Backup, RoleReason::Started)]
            );
            let mdi = master_down_interval(100, ms(100));
            let at = m.poll_timeout().unwrap();
            assert!(at >= ms(1000) + mdi && at < ms(1000) + mdi + ms(100) / 256);
            m.start(ms(1001));
            assert!(drain(&mut m).is_empty());
        }
    }

    #[test]
    fn down_timer_takes_over_with_vip_advert_and_spaced_garps() {
        let mut m = machine(1, 100, true);
        m.start(Duration::ZERO);
        drain(&mut m);
        let at = m.poll_timeout().unwrap();
        m.on_timeout(at - MS);
        assert!(drain(&mut m).is_empty());
        m.on_timeout(at);
        assert_eq!(
            drain(&mut m),
            [
                changed(Role::Backup, Role::Master, RoleReason::MasterDown),
                Action::AcquireVip,
                Action::SendAdvert {
                    priority: 100,
                    epoch: 1
                },
                Action::SendGarp,
            ]
        );
        assert_eq!((m.epoch(), m.takeovers()), (1, 1));
        let (mut garps, mut adverts, mut t) = (1, 1, at);
        while t < at + ms(2000) {
            t = m.poll_timeout().unwrap();
            m.on_timeout(t);
            for action in drain(&mut m) {
                match action {
                    Action::SendGarp => garps += 1,
                    Action::SendAdvert { .. } => adverts += 1,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert_eq!(garps, 5);
        assert_eq!(adverts, 21);
    }

    #[test]
    fn backup_advert_rules() {
        let mut m = machine(1, 100, true);
        m.start(Duration::ZERO);
        let mdi = m.master_down_interval();
        // Higher priority resets the timer and teaches the interval.
        m.on_advert(
            ms(200),
            &PeerAdvert {
                advert_interval: ms(1000),
                ..peer(2, 150, 4)
            },
        );
        assert_eq!(
            m.poll_timeout(),
            Some(ms(200) + master_down_interval(100, ms(1000)))
        );
        assert_eq!((m.epoch(), m.last_peer_advert()), (4, Some(ms(200))));
        // Equal priority also resets (RFC 5798: greater than or equal).
        m.on_advert(ms(300), &peer(2, 100, 4));
        assert_eq!(m.poll_timeout(), Some(ms(300) + mdi));
        // Lower priority with preempt: ignored, the timer keeps running.
        m.on_advert(ms(400), &peer(2, 50, 4));
        assert_eq!(m.poll_timeout(), Some(ms(300) + mdi));
        // Resign: take over after Skew_Time.
        m.on_advert(ms(500), &peer(2, 0, 4));
        assert_eq!(m.poll_timeout(), Some(ms(500) + skew_time(100, ms(100))));
        // Own node id (looped back) is ignored.
        m.on_advert(ms(600), &peer(1, 200, 9));
        assert_eq!(m.epoch(), 4);
        assert!(drain(&mut m)
            .iter()
            .all(|a| matches!(a, Action::RoleChanged { .. })));
    }

    #[test]
    fn backup_corrects_a_master_with_a_stale_epoch() {
        let mut m = machine(1, 100, true);
        m.start(Duration::ZERO);
        m.on_advert(ms(100), &peer(2, 150, 6));
        drain(&mut m);
        m.on_advert(ms(200), &peer(3, 200, 2));
        assert_eq!(
            drain(&mut m),
            [Action::SendAdvert {
                priority: 100,
                epoch: 6
            }]
        );
        m.on_advert(ms(300), &peer(3, 200, 7));
        assert!(drain(&mut m).is_empty());
        // A master we outrank (preempt off) hears a priority below its own.
        let mut m = machine(9, 200, false);
        m.start(Duration::ZERO);
        m.on_advert(ms(100), &peer(2, 150, 6));
        drain(&mut m);
        m.on_advert(ms(200), &peer(3, 100, 2));
        assert_eq!(
            drain(&mut m),
            [Action::SendAdvert {
                priority: 99,
                epoch: 6
            }]
        );
        m.on_advert(ms(300), &peer(3, 1, 2));
        assert!(drain(&mut m).is_empty());
        // A lower master about to be preempted is not answered.
        let mut m = machine(9, 200, true);
        m.start(Duration::ZERO);
        m.on_advert(ms(100), &peer(2, 250, 6));
        m.on_advert(ms(200), &peer(3, 100, 2));
        assert_eq!(drain(&mut m).len(), 1);
    }

    #[test]
    fn backup_without_preempt_follows_lower_master() {
        let mut m = machine(1, 200, false);
        m.start(Duration::ZERO);
        m.on_advert(ms(400), &peer(2, 50, 1));
        assert_eq!(m.poll_timeout(), Some(ms(400) + m.master_down_interval()));
    }

    #[test]
    fn master_steps_down_for_higher_priority_or_tie_on_node_id() {
        for outranking in [peer(2, 150, 0), peer(2, 100, 0)] {
            let (mut m, at) = master(1, 100);
            m.on_advert(at + MS, &outranking);
            assert_eq!(
                drain(&mut m),
                [
                    changed(Role::Master, Role::Backup, RoleReason::Outranked),
                    Action::ReleaseVip
                ]
            );
            assert_eq!(m.poll_timeout(), Some(at + MS + m.master_down_interval()));
            assert_eq!(m.epoch(), 1);
        }
    }

    #[test]
    fn master_reannounces_over_lower_master_and_bumps_epoch() {
        let (mut m, at) = master(5, 100);
        while m.poll_timeout().unwrap() <= at + ms(600) {
            m.on_timeout(m.poll_timeout().unwrap());
        }
        drain(&mut m);
        m.on_advert(at + ms(600), &peer(2, 100, 7));
        assert_eq!(m.role(), Role::Master);
        assert_eq!(m.epoch(), 8);
        assert_eq!(
            drain(&mut m),
            [
                Action::SendAdvert {
                    priority: 100,
                    epoch: 8
                },
                Action::SendGarp
            ]
        );
        // While that train runs, another lower advert only re-advertises.
        m.on_advert(at + ms(650), &peer(2, 90, 3));
        assert_eq!(
            drain(&mut m),
            [Action::SendAdvert {
                priority: 100,
                epoch: 8
            }]
        );
        assert_eq!(m.poll_timeout(), Some(at + ms(700)));
    }

    #[test]
    fn master_answers_a_resign_with_an_advert() {
        let (mut m, at) = master(5, 100);
        m.on_advert(at + ms(1), &peer(2, 0, 1));
        assert_eq!(
            drain(&mut m),
            [Action::SendAdvert {
                priority: 100,
                epoch: 1
            }]
        );
    }

    #[test]
    fn link_down_faults_and_link_up_returns_to_backup() {
        let (mut m, at) = master(1, 100);
        m.on_link(at, false);
        m.on_link(at, false);
        assert_eq!(
            drain(&mut m),
            [
                changed(Role::Master, Role::Fault, RoleReason::LinkDown),
                Action::ReleaseVip
            ]
        );
        assert_eq!(m.poll_timeout(), None);
        m.on_advert(at + MS, &peer(2, 200, 9));
        assert_eq!((m.role(), m.epoch()), (Role::Fault, 9));
        m.on_link(at + ms(10), true);
        assert_eq!(
            drain(&mut m),
            [changed(Role::Fault, Role::Backup, RoleReason::LinkUp)]
        );
        assert!(m.poll_timeout().unwrap() >= at + ms(10) + m.master_down_interval());
        m.on_timeout(m.poll_timeout().unwrap());
        assert_eq!(m.epoch(), 10);
    }

    #[test]
    fn start_with_link_down_is_fault() {
        let mut m = machine(1, 100, true);
        m.on_link(Duration::ZERO, false);
        assert!(drain(&mut m).is_empty());
        m.start(Duration::ZERO);
        assert_eq!(
            drain(&mut m),
            [changed(Role::Init, Role::Fault, RoleReason::LinkDown)]
        );
    }

    #[test]
    fn shutdown_resigns_releases_and_can_restart() {
        let (mut m, at) = master(1, 100);
        m.shutdown(at);
        assert_eq!(
            drain(&mut m),
            [
                changed(Role::Master, Role::Init, RoleReason::Shutdown),
                Action::ReleaseVip,
                Action::SendResign { epoch: 1 },
            ]
        );
        m.shutdown(at);
        m.on_timeout(at + ms(10_000));
        m.on_advert(at, &peer(2, 200, 1));
        assert!(drain(&mut m).is_empty());
        m.start(at + MS);
        assert_eq!(m.role(), Role::Backup);
        m.shutdown(at + ms(2));
        assert_eq!(
            drain(&mut m),
            [
                changed(Role::Init, Role::Backup, RoleReason::Started),
                changed(Role::Backup, Role::Init, RoleReason::Shutdown),
            ]
        );
    }

    #[test]
    fn set_priority_validates_and_master_readvertises() {
        let (mut m, at) = master(1, 100);
        assert_eq!(m.set_priority(at, 0), Err(TimingError::Priority(0)));
        assert_eq!(m.set_priority(at, 255), Err(TimingError::Priority(255)));
        assert_eq!(m.set_priority(at, 100), Ok(()));
        assert!(drain(&mut m).is_empty());
        assert_eq!(m.set_priority(at, 20), Ok(()));
        assert_eq!(
            drain(&mut m),
            [Action::SendAdvert {
                priority: 20,
                epoch: 1
            }]
        );
        assert_eq!(m.priority(), 20);
    }

    #[test]
    fn late_timeout_does_not_burst() {
        let (mut m, at) = master(1, 100);
        m.on_timeout(at + ms(10_000));
        let actions = drain(&mut m);
        assert_eq!(
            actions
                .iter()
                .filter(|a| matches!(a, Action::SendAdvert { .. }))
                .count(),
            1
        );
        assert_eq!(
            actions.iter().filter(|a| **a == Action::SendGarp).count(),
            1
        );
        assert!(m.poll_timeout().unwrap() > at + ms(10_000));
    }

    #[test]
    fn zero_spacing_and_zero_count_garps() {
        let config = Config {
            garp_spacing: Duration::ZERO,
            ..Config::new(1)
        };
        let mut m = Machine::new(config, 0).unwrap();
        m.start(Duration::ZERO);
        m.on_timeout(ms(10_000));
        assert_eq!(
            drain(&mut m)
                .iter()
                .filter(|a| **a == Action::SendGarp)
                .count(),
            5
        );
        let config = Config {
            garp_count: 0,
            ..Config::new(1)
        };
        let mut m = Machine::new(config, 0).unwrap();
        m.start(Duration::ZERO);
        m.on_timeout(ms(10_000));
        assert!(!drain(&mut m).contains(&Action::SendGarp));
        assert_eq!(m.poll_timeout(), Some(ms(10_100)));
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        let mut m = machine(1, 254, true);
        m.start(Duration::MAX);
        m.on_advert(
            Duration::MAX,
            &PeerAdvert {
                advert_interval: Duration::MAX,
                ..peer(2, 255, u64::MAX)
            },
        );
        m.on_advert(
            Duration::MAX,
            &PeerAdvert {
                advert_interval: Duration::ZERO,
                ..peer(2, 0, 0)
            },
        );
        m.on_timeout(Duration::MAX);
        assert_eq!(m.role(), Role::Master);
        assert_eq!(m.epoch(), u64::MAX);
        m.on_advert(Duration::ZERO, &peer(3, 1, u64::MAX));
        m.on_timeout(Duration::MAX);
        m.on_timeout(Duration::ZERO);
        m.on_link(Duration::ZERO, false);
        m.on_link(Duration::MAX, true);
        m.shutdown(Duration::ZERO);
        assert!(drain(&mut m).len() > 5);
    }

    #[test]
    fn peer_advert_filters_and_wire_advert_round_trips() {
        let (m, _) = master(1, 100);
        let action = Action::SendAdvert {
            priority: 100,
            epoch: 1,
        };
        let advert = m.wire_advert(&action, 42).unwrap();
        let mut buf = Vec::new();
        wire::emit(&advert, b"k", &mut buf).unwrap();
        let parsed = wire::parse(&buf, b"k").unwrap();
        assert_eq!(parsed.advert_interval(), ms(100));
        // Our own advert is filtered; a peer's is converted.
        assert_eq!(m.peer_advert(&parsed), None);
        let from_peer = wire::Advert {
            node_id: 2,
            ..parsed
        };
        assert_eq!(m.peer_advert(&from_peer), Some(peer(2, 100, 1)));
        let other_group = wire::Advert {
            group_id: 9,
            ..from_peer
        };
        assert_eq!(m.peer_advert(&other_group), None);
        let sync = wire::Advert {
            kind: Kind::StateSync,
            ..from_peer
        };
        assert_eq!(m.peer_advert(&sync), None);
        let resign = m.wire_advert(&Action::SendResign { epoch: 3 }, 43).unwrap();
        assert_eq!((resign.kind, resign.priority), (Kind::Resign, 0));
        wire::emit(&resign, b"k", &mut buf).unwrap();
        assert_eq!(m.wire_advert(&Action::SendGarp, 44), None);
        assert_eq!(Role::Master.to_string(), "master");
        assert_eq!(RoleReason::MasterDown.to_string(), "master-down");
    }
}
