//! One BFD session in asynchronous mode: the state machine of RFC 5880 §6.2 and
//! the timers of §6.8.2–§6.8.4 and §6.8.7, sans-IO (quinn's shape, like
//! [`crate::bgp::session`]): inputs are [`Session::on_packet`] (or
//! [`Session::on_datagram`] for raw bytes), [`Session::on_timeout`],
//! [`Session::admin_down`] and [`Session::admin_up`]; outputs are
//! [`Session::poll_transmit`], [`Session::poll_event`] and
//! [`Session::poll_timeout`].
//!
//! What it owns: the local and remote state variables of §6.8.1, the
//! three-way handshake, the detection timer, the transmit schedule with its
//! jitter, answering a Poll with a Final, the Poll sequence for our own
//! parameter change on reaching Up, and the counters.
//!
//! What it does not do: sockets, clocks or demultiplexing. Time is a
//! [`Duration`] since an arbitrary epoch chosen by the caller; randomness is
//! the [`Config::seed`]. The caller picks this session for a datagram (by
//! your-discriminator, or by addresses when it is zero, RFC 5880 §6.8.6), checks
//! TTL 255 and the ports (RFC 5881 §4–§5), and sends whatever
//! [`Session::poll_transmit`] returns, after every input and at every
//! [`Session::poll_timeout`].
//!
//! # States (RFC 5880 §6.2, §6.8.6)
//!
//! ```text
//! Down --peer Down--> Init --peer Init or Up--> Up
//! Down --peer Init--> Up
//! Init, Up --detection time expired (diag 1)--> Down
//! Up --peer Down (diag 3)--> Down;   Init, Up --peer AdminDown (diag 3)--> Down
//! any --admin_down (diag 7)--> AdminDown --admin_up--> Down
//! ```
//!
//! # Limits
//!
//! Asynchronous mode only: no demand mode (§6.6; a packet with the D bit is
//! dropped and counted, so a peer insisting on demand mode never comes up), no
//! echo function (§6.4; we advertise a required min echo RX of 0), no
//! authentication (refused by [`super::wire`]). Parameters are fixed at
//! construction, so the only Poll sequence we start is the one §6.8.3 requires
//! when the advertised desired min TX drops from the 1 s floor to the configured
//! value on reaching Up; the lower rate applies at once (a decrease needs no
//! wait, §6.8.3). In AdminDown we keep sending AdminDown at the slow rate
//! instead of stopping after a detection time (§6.8.16 allows either).

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use super::wire::{self, ControlPacket, Diag, State, WireError};

#[cfg(test)]
mod tests;

/// The slowest rate allowed while the session is not Up: RFC 5880 §6.8.3 asks
/// for a desired min TX of at least one second then.
pub const SLOW_TX: Duration = Duration::from_secs(1);

/// The largest interval the 32-bit µs wire fields can carry.
pub const MAX_INTERVAL: Duration = Duration::from_micros(u32::MAX as u64);

/// What the caller chooses for one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Our discriminator (bfd.LocalDiscr): non-zero and unique among our
    /// sessions (RFC 5880 §6.8.1); the caller allocates it.
    pub local_discriminator: u32,
    /// How fast we would like to send once Up (bfd.DesiredMinTxInterval).
    pub desired_min_tx: Duration,
    /// How fast we can receive (bfd.RequiredMinRxInterval); non-zero, because a
    /// session that asks for no packets detects nothing.
    pub required_min_rx: Duration,
    /// Our detect multiplier (bfd.DetectMult), non-zero.
    pub detect_mult: u8,
    /// Seed of the transmit jitter (§6.8.7); any value, 0 included.
    pub seed: u64,
}

/// Why a [`Config`] is refused; names the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// `local_discriminator` is 0 (RFC 5880 §6.8.1: MUST be non-zero).
    ZeroDiscriminator,
    /// `detect_mult` is 0 (§6.8.1: MUST be non-zero).
    ZeroDetectMult,
    /// `desired_min_tx` is zero (§6.8.1: MUST be non-zero) or above [`MAX_INTERVAL`].
    DesiredMinTx(Duration),
    /// `required_min_rx` is zero or above [`MAX_INTERVAL`].
    RequiredMinRx(Duration),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroDiscriminator => f.write_str("BFD local discriminator must not be 0"),
            ConfigError::ZeroDetectMult => f.write_str("BFD detect multiplier must not be 0"),
            ConfigError::DesiredMinTx(d) => {
                write!(
                    f,
                    "BFD desired min TX {d:?} must be in 1 µs..={MAX_INTERVAL:?}"
                )
            }
            ConfigError::RequiredMinRx(d) => {
                write!(
                    f,
                    "BFD required min RX {d:?} must be in 1 µs..={MAX_INTERVAL:?}"
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// What the session reports to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The session reached Up: the path to the peer works.
    Up,
    /// The session left Up (to Down or AdminDown).
    Down {
        /// Why (RFC 5880 §4.1): 1 detection time expired, 3 the neighbor
        /// signalled down, 7 administratively down.
        diag: Diag,
    },
}

/// Packets dropped by the session, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Refused by [`wire::parse`] for anything but authentication.
    pub malformed: u64,
    /// The A bit was set (authentication is not supported).
    pub authentication: u64,
    /// Your-discriminator is non-zero and not ours (RFC 5880 §6.8.6).
    pub wrong_discriminator: u64,
    /// The D bit was set (demand mode is not supported).
    pub demand: u64,
    /// Received while we are AdminDown (§6.8.6: discarded after the remote
    /// variables are updated).
    pub admin_down: u64,
}

/// Monotonic counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets that passed every check and drove the state machine.
    pub received: u64,
    /// Packets handed out by [`Session::poll_transmit`].
    pub sent: u64,
    /// Packets dropped, by reason (not included in `received`).
    pub dropped: Dropped,
    /// Changes of the local state, any to any.
    pub transitions: u64,
}

/// One BFD session with one peer, asynchronous mode.
#[derive(Debug)]
pub struct Session {
    config: Config,
    state: State,
    local_diag: Diag,
    /// bfd.RemoteDiscr: 0 until heard, and again after a detection time of silence.
    remote_discr: u32,
    remote_state: State,
    /// bfd.RemoteMinRxInterval: 1 µs until heard (§6.8.1).
    remote_min_rx: Duration,
    remote_desired_min_tx: Duration,
    remote_detect_mult: u8,
    /// When the detection time runs out; `None` until a packet arrives.
    detect_at: Option<Duration>,
    /// When the next periodic packet is due.
    next_tx: Duration,
    last_tx: Option<Duration>,
    /// Our Poll sequence is running: periodic packets carry P until a Final.
    polling: bool,
    /// A received Poll awaits its Final.
    final_due: bool,
    rng: u64,
    events: VecDeque<Event>,
    counters: Counters,
}

impl Session {
    /// A session in Down that sends its first packet at the first
    /// [`Session::poll_transmit`].
    pub fn new(config: Config) -> Result<Session, ConfigError> {
        if config.local_discriminator == 0 {
            return Err(ConfigError::ZeroDiscriminator);
        }
        if config.detect_mult == 0 {
            return Err(ConfigError::ZeroDetectMult);
        }
        let valid = |d: Duration| !d.is_zero() && d <= MAX_INTERVAL;
        if !valid(config.desired_min_tx) {
            return Err(ConfigError::DesiredMinTx(config.desired_min_tx));
        }
        if !valid(config.required_min_rx) {
            return Err(ConfigError::RequiredMinRx(config.required_min_rx));
        }
        Ok(Session {
            config,
            state: State::Down,
            local_diag: Diag::None,
            remote_discr: 0,
            remote_state: State::Down,
            remote_min_rx: Duration::from_micros(1),
            remote_desired_min_tx: Duration::ZERO,
            remote_detect_mult: 0,
            detect_at: None,
            next_tx: Duration::ZERO,
            last_tx: None,
            polling: false,
            final_due: false,
            // xorshift64 must not start at 0.
            rng: if config.seed == 0 {
                0x9e37_79b9_7f4a_7c15
            } else {
                config.seed
            },
            events: VecDeque::new(),
            counters: Counters::default(),
        })
    }

    /// The local state (bfd.SessionState).
    pub fn state(&self) -> State {
        self.state
    }

    /// The peer's last reported state (bfd.RemoteSessionState).
    pub fn remote_state(&self) -> State {
        self.remote_state
    }

    /// Why the local state last changed (bfd.LocalDiag).
    pub fn local_diag(&self) -> Diag {
        self.local_diag
    }

    /// Our discriminator (bfd.LocalDiscr), for demultiplexing.
    pub fn local_discriminator(&self) -> u32 {
        self.config.local_discriminator
    }

    /// The peer's discriminator, 0 if not known (bfd.RemoteDiscr).
    pub fn remote_discriminator(&self) -> u32 {
        self.remote_discr
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The desired min TX we advertise and apply: the configured one when Up,
    /// at least [`SLOW_TX`] otherwise (RFC 5880 §6.8.3).
    pub fn desired_min_tx(&self) -> Duration {
        if self.state == State::Up {
            self.config.desired_min_tx
        } else {
            self.config.desired_min_tx.max(SLOW_TX)
        }
    }

    /// The agreed transmit interval before jitter: the larger of our desired
    /// min TX and the peer's required min RX (RFC 5880 §6.8.2, §6.8.7).
    pub fn tx_interval(&self) -> Duration {
        self.desired_min_tx().max(self.remote_min_rx)
    }

    /// The detection time in asynchronous mode: the peer's detect multiplier
    /// times the larger of our required min RX and the peer's desired min TX
    /// (RFC 5880 §6.8.4). Zero until the peer is heard.
    pub fn detection_time(&self) -> Duration {
        self.config
            .required_min_rx
            .max(self.remote_desired_min_tx)
            .saturating_mul(u32::from(self.remote_detect_mult))
    }

    /// A datagram for this session: parsed, then [`Session::on_packet`]; a
    /// refused one is dropped and counted by reason.
    pub fn on_datagram(&mut self, bytes: &[u8], now: Duration) {
        match wire::parse(bytes) {
            Ok(packet) => self.on_packet(&packet, now),
            Err(WireError::AuthenticationUnsupported) => self.counters.dropped.authentication += 1,
            Err(_) => self.counters.dropped.malformed += 1,
        }
    }

    /// A parsed control packet for this session (RFC 5880 §6.8.6, from the
    /// discriminator check on; the packet-only checks were done by
    /// [`wire::parse`]).
    pub fn on_packet(&mut self, p: &ControlPacket, now: Duration) {
        if p.your_discriminator != 0 && p.your_discriminator != self.config.local_discriminator {
            self.counters.dropped.wrong_discriminator += 1;
            return;
        }
        if p.demand {
            self.counters.dropped.demand += 1;
            return;
        }
        let interval_before = self.tx_interval();
        self.remote_discr = p.my_discriminator;
        self.remote_state = p.state;
        self.remote_min_rx = Duration::from_micros(u64::from(p.required_min_rx_us));
        self.remote_desired_min_tx = Duration::from_micros(u64::from(p.desired_min_tx_us));
        self.remote_detect_mult = p.detect_mult;
        // §6.5: a Final ends our Poll sequence; a Poll is answered with a Final
        // "without respect to the transmission timer" (§6.8.7).
        if p.final_ {
            self.polling = false;
        }
        if p.poll {
            self.final_due = true;
        }
        // §6.8.4: every received packet restarts the detection timer.
        self.detect_at = Some(now.saturating_add(self.detection_time()));
        self.reschedule_if_faster(interval_before);

        if self.state == State::AdminDown {
            self.counters.dropped.admin_down += 1;
            return;
        }
        self.counters.received += 1;
        // §6.8.6, the state machine of §6.2.
        match (self.state, p.state) {
            (State::Down | State::AdminDown, State::AdminDown) => {}
            (_, State::AdminDown) => self.go(State::Down, Diag::NeighborSignaledSessionDown, now),
            (State::Down, State::Down) => self.go(State::Init, Diag::None, now),
            (State::Down, State::Init) => self.go(State::Up, Diag::None, now),
            (State::Init, State::Init | State::Up) => self.go(State::Up, Diag::None, now),
            (State::Up, State::Down) => {
                self.go(State::Down, Diag::NeighborSignaledSessionDown, now)
            }
            _ => {}
        }
    }

    /// Call at (or after) [`Session::poll_timeout`]: the detection timer.
    pub fn on_timeout(&mut self, now: Duration) {
        if let Some(at) = self.detect_at {
            if now >= at {
                self.detect_at = None;
                // §6.8.1: bfd.RemoteDiscr is reset after a detection time of silence.
                self.remote_discr = 0;
                if matches!(self.state, State::Init | State::Up) {
                    self.go(State::Down, Diag::ControlDetectionTimeExpired, now);
                }
            }
        }
    }

    /// Holds the session down (RFC 5880 §6.8.16): the peer is told AdminDown,
    /// diag 7, and received packets are ignored.
    pub fn admin_down(&mut self, now: Duration) {
        if self.state != State::AdminDown {
            self.detect_at = None;
            self.go(State::AdminDown, Diag::AdministrativelyDown, now);
        }
    }

    /// Releases [`Session::admin_down`]: back to Down, to start the handshake again.
    pub fn admin_up(&mut self, now: Duration) {
        if self.state == State::AdminDown {
            self.go(State::Down, Diag::None, now);
        }
    }

    /// The earliest time at which [`Session::on_timeout`] or
    /// [`Session::poll_transmit`] has something to do; `None` when nothing is
    /// scheduled. A pending Final is due at once: call `poll_transmit` after
    /// every input.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let tx = (!self.remote_min_rx.is_zero()).then_some(self.next_tx);
        match (tx, self.detect_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next packet to send, if one is due: a Final answering a Poll first,
    /// then the periodic packet, never more often than the jittered interval
    /// (RFC 5880 §6.8.7), and none while the peer's required min RX is zero.
    pub fn poll_transmit(&mut self, now: Duration) -> Option<ControlPacket> {
        if self.final_due {
            self.final_due = false;
            self.counters.sent += 1;
            // §6.8.7: P and F are never both set.
            return Some(ControlPacket {
                final_: true,
                ..self.packet(false)
            });
        }
        if self.remote_min_rx.is_zero() || now < self.next_tx {
            return None;
        }
        let interval = self.jittered(self.tx_interval());
        self.next_tx = now.saturating_add(interval);
        self.last_tx = Some(now);
        self.counters.sent += 1;
        Some(self.packet(self.polling))
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn packet(&self, poll: bool) -> ControlPacket {
        ControlPacket {
            diag: self.local_diag,
            state: self.state,
            poll,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: self.config.detect_mult,
            my_discriminator: self.config.local_discriminator,
            your_discriminator: self.remote_discr,
            desired_min_tx_us: micros(self.desired_min_tx()),
            required_min_rx_us: micros(self.config.required_min_rx),
            required_min_echo_rx_us: 0,
        }
    }

    fn go(&mut self, to: State, diag: Diag, now: Duration) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        self.local_diag = diag;
        self.counters.transitions += 1;
        if from == State::Up {
            self.polling = false;
            self.events.push_back(Event::Down { diag });
        }
        if to == State::Up {
            self.events.push_back(Event::Up);
            // §6.8.3: a change of the advertised desired min TX starts a Poll sequence.
            if self.config.desired_min_tx < SLOW_TX {
                self.polling = true;
            }
        }
        // Tell the peer at once (and answer its handshake without waiting a second).
        self.next_tx = now;
    }

    /// When the agreed interval shrinks (the peer lowered its required min RX,
    /// or we reached Up), the next packet is due no later than one new interval
    /// after the last one, rather than at the old, slower deadline.
    fn reschedule_if_faster(&mut self, before: Duration) {
        let after = self.tx_interval();
        if after < before {
            if let Some(last) = self.last_tx {
                let sooner = last.saturating_add(self.jittered(after));
                self.next_tx = self.next_tx.min(sooner);
            }
        }
    }

    /// The interval reduced by a random 0–25 %, or 10–25 % when our detect
    /// multiplier is 1 (RFC 5880 §6.8.7: 75–100 %, resp. 75–90 %, of it).
    fn jittered(&mut self, interval: Duration) -> Duration {
        // xorshift64 (Marsaglia): reproducible from the seed, no global RNG.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        let (low, high) = if self.config.detect_mult == 1 {
            (750, 900)
        } else {
            (750, 1000)
        };
        let permille = low + x % (high - low + 1);
        let nanos = interval.as_nanos().saturating_mul(u128::from(permille)) / 1000;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// A duration in whole µs for the wire, saturating at `u32::MAX`.
fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}
