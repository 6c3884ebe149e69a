//! One BGP session of an announce-only speaker: the state machine of RFC 4271 §8,
//! sans-IO (quinn's shape: inputs are `on_*` calls with `now`, outputs are
//! [`Session::poll_transmit`], [`Session::poll_event`] and [`Session::poll_timeout`]).
//!
//! What it owns: the states, the OPEN exchange and its checks (peer AS, hold
//! time, capabilities), the hold and keepalive timers, the reconnect backoff,
//! the set of announced prefixes and the UPDATEs that move it to the desired
//! set, and the counters.
//!
//! What it does not do: sockets or clocks. Time is a [`Duration`] since an
//! arbitrary epoch chosen by the caller (a virtual clock in the tests). The
//! shell opens TCP when asked ([`Event::Connect`]), reports the outcome
//! ([`Session::on_connected`], [`Session::on_connect_failed`]), writes every
//! [`Session::poll_transmit`] buffer in order, and closes on [`Event::Close`]
//! *after* writing what was queued before it (the NOTIFICATION that explains
//! the close). It never accepts routes, and does not listen for the peer's
//! connection.
//!
//! # States (RFC 4271 §8.2.2)
//!
//! We always initiate (the peer is expected to be passive or to let our
//! connection win), so Connect and Active are folded into one [`StateKind::Connect`]:
//! "waiting for our TCP connection". Idle holds the reconnect timer.
//!
//! ```text
//! Idle --start / retry timer--> Connect --on_connected, send OPEN--> OpenSent
//! OpenSent --OPEN ok, send KEEPALIVE--> OpenConfirm --KEEPALIVE--> Established
//! any state --error, NOTIFICATION received, hold expiry, close--> Idle (backoff)
//! ```
//!
//! # Timers
//!
//! - Connect: [`CONNECT_TIMEOUT`] for the TCP handshake.
//! - OpenSent: the hold timer is [`OPEN_HOLD_TIME`], 4 minutes (§8.2.2).
//! - From OpenConfirm: hold time = min(ours, peer's) (§4.2); 0 means no hold
//!   timer and no keepalives; otherwise a KEEPALIVE every hold/3 (§4.4) and a
//!   hold timer reset by every KEEPALIVE or UPDATE received. Expiry sends
//!   NOTIFICATION 4/0 and goes down (§6.5).
//! - Reconnect backoff (our choice, in the spirit of §8's ConnectRetryTimer and
//!   DampPeerOscillations): the first retry after [`BACKOFF_INITIAL`], doubling
//!   on every failure up to [`BACKOFF_MAX`]; a session that stayed Established
//!   for at least [`STABLE_AFTER`] resets it to [`BACKOFF_INITIAL`].
//!
//! # Limits
//!
//! eBGP only (iBGP would need LOCAL_PREF and an empty AS_PATH). With a 4-octet
//! local AS towards a peer without the 4-octet capability, AS_PATH carries
//! AS_TRANS and no AS4_PATH is sent (RFC 6793 §4.2.2 asks for one). IPv6
//! prefixes are announced only when an IPv6 next hop is configured and the peer
//! negotiated IPv6 unicast; IPv4 when the peer negotiated IPv4 unicast or sent no
//! multiprotocol capability at all (RFC 4760 §8).

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

mod config;
mod routes;

pub use config::{Config, ConfigError};

use super::wire::{
    self, code, Message, Notification, Open, WireError, AFI_IPV4, AFI_IPV6, SAFI_UNICAST,
};
use crate::bgp::prefix::Prefix;

/// How long the TCP handshake may take before the attempt counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The hold timer while waiting for the peer's OPEN (RFC 4271 §8.2.2: 4 minutes).
pub const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);
/// The first reconnect delay.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// The longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How long a session must stay Established for the backoff to reset.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

/// What the shell must do or may report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Open a TCP connection to the peer, then call [`Session::on_connected`]
    /// or [`Session::on_connect_failed`].
    Connect,
    /// Close the TCP connection, after writing the bytes already polled.
    Close,
    /// The session reached Established.
    Established,
    /// The session (or the attempt) ended; a reconnect is scheduled.
    Down {
        /// Why.
        reason: DownReason,
    },
}

/// Why a session went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// The TCP connection could not be opened (§8.2.2 event 18).
    ConnectFailed,
    /// The TCP connection took longer than [`CONNECT_TIMEOUT`].
    ConnectTimeout,
    /// The peer closed the connection.
    PeerClosed,
    /// Nothing arrived within the hold time; NOTIFICATION 4/0 was sent.
    HoldTimerExpired,
    /// The peer sent a NOTIFICATION.
    NotificationReceived {
        /// Error code.
        code: u8,
        /// Error subcode.
        subcode: u8,
    },
    /// We sent a NOTIFICATION: malformed input, bad peer AS, unexpected message.
    NotificationSent {
        /// Error code.
        code: u8,
        /// Error subcode.
        subcode: u8,
    },
}

/// The state, without its data (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    /// Not started, or waiting to reconnect.
    Idle,
    /// Waiting for our TCP connection (Connect and Active folded).
    Connect,
    /// OPEN sent, waiting for the peer's.
    OpenSent,
    /// OPENs exchanged, waiting for the peer's KEEPALIVE.
    OpenConfirm,
    /// Up: UPDATEs flow.
    Established,
}

/// Monotonic counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// UPDATEs received and ignored (we accept no routes).
    pub updates_received: u64,
    /// NOTIFICATIONs sent.
    pub notifications_sent: u64,
    /// NOTIFICATIONs received.
    pub notifications_received: u64,
    /// Messages that failed to parse or were refused (bad peer AS, unexpected
    /// in the state), each answered with a NOTIFICATION.
    pub messages_malformed: u64,
    /// Transitions to Established.
    pub established_transitions: u64,
}

/// What the OPEN exchange settled (RFC 4271 §4.2, RFC 6793, RFC 4760).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Negotiated {
    /// Zero: no hold timer, no keepalives.
    hold: Duration,
    four_octet_as: bool,
    ipv4: bool,
    ipv6: bool,
}

impl Negotiated {
    fn allows(&self, p: &Prefix) -> bool {
        if p.is_ipv4() {
            self.ipv4
        } else {
            self.ipv6
        }
    }
}

/// The hold and keepalive deadlines of a connected session; `None` when the
/// negotiated hold time is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timers {
    hold_at: Option<Duration>,
    keepalive_at: Option<Duration>,
}

impl Timers {
    fn new(now: Duration, hold: Duration) -> Timers {
        if hold.is_zero() {
            return Timers {
                hold_at: None,
                keepalive_at: None,
            };
        }
        Timers {
            hold_at: Some(now.saturating_add(hold)),
            keepalive_at: Some(now.saturating_add(hold / 3)),
        }
    }
}

/// Each state carries only the data valid in it. Deadlines are computed with
/// `saturating_add`, so no `now` from the caller can make them overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle {
        retry_at: Option<Duration>,
    },
    Connect {
        deadline: Duration,
    },
    OpenSent {
        hold_at: Duration,
    },
    OpenConfirm {
        neg: Negotiated,
        timers: Timers,
    },
    Established {
        neg: Negotiated,
        timers: Timers,
        since: Duration,
    },
}

/// One announce-only BGP session to one peer.
#[derive(Debug)]
pub struct Session {
    config: Config,
    state: State,
    rx: Vec<u8>,
    tx: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    desired: BTreeSet<Prefix>,
    announced: BTreeSet<Prefix>,
    graceful: bool,
    backoff: Duration,
    counters: Counters,
}

impl Session {
    /// A session in Idle, not started.
    pub fn new(config: Config) -> Result<Session, ConfigError> {
        if config.router_id.is_unspecified() {
            return Err(ConfigError::RouterIdZero);
        }
        if config.local_as == 0 || config.peer_as == 0 {
            return Err(ConfigError::AsZero);
        }
        if config.local_as == config.peer_as {
            return Err(ConfigError::Ibgp(config.local_as));
        }
        if config.hold_time == 1 || config.hold_time == 2 {
            return Err(ConfigError::HoldTime(config.hold_time));
        }
        Ok(Session {
            config,
            state: State::Idle { retry_at: None },
            rx: Vec::new(),
            tx: VecDeque::new(),
            events: VecDeque::new(),
            desired: BTreeSet::new(),
            announced: BTreeSet::new(),
            graceful: false,
            backoff: BACKOFF_INITIAL,
            counters: Counters::default(),
        })
    }

    /// The current state.
    pub fn state(&self) -> StateKind {
        match self.state {
            State::Idle { .. } => StateKind::Idle,
            State::Connect { .. } => StateKind::Connect,
            State::OpenSent { .. } => StateKind::OpenSent,
            State::OpenConfirm { .. } => StateKind::OpenConfirm,
            State::Established { .. } => StateKind::Established,
        }
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The negotiated hold time, once OPENs are exchanged (RFC 4271 §4.2).
    pub fn hold_time(&self) -> Option<Duration> {
        match self.state {
            State::OpenConfirm { neg, .. } | State::Established { neg, .. } => Some(neg.hold),
            _ => None,
        }
    }

    /// The prefixes the peer currently has from us.
    pub fn announced(&self) -> &BTreeSet<Prefix> {
        &self.announced
    }

    /// Starts the session (ManualStart, §8.1.2): asks for a connection now.
    /// Does nothing once started.
    pub fn start(&mut self, now: Duration) {
        if self.state == (State::Idle { retry_at: None }) {
            self.connect(now);
        }
    }

    fn connect(&mut self, now: Duration) {
        self.state = State::Connect {
            deadline: now.saturating_add(CONNECT_TIMEOUT),
        };
        self.events.push_back(Event::Connect);
    }

    /// The TCP connection is up: send OPEN (§8.2.2, Connect state, event 16).
    pub fn on_connected(&mut self, now: Duration) {
        if !matches!(self.state, State::Connect { .. }) {
            return;
        }
        self.tx.clear();
        self.rx.clear();
        let mut families = vec![(AFI_IPV4, SAFI_UNICAST)];
        if self.config.next_hop_v6.is_some() {
            families.push((AFI_IPV6, SAFI_UNICAST));
        }
        let open = Open::new(
            self.config.local_as,
            self.config.hold_time,
            self.config.router_id,
            &families,
        );
        self.send(&Message::Open(open));
        self.state = State::OpenSent {
            hold_at: now.saturating_add(OPEN_HOLD_TIME),
        };
    }

    /// The TCP connection could not be opened (§8.2.2 event 18).
    pub fn on_connect_failed(&mut self, now: Duration) {
        if matches!(self.state, State::Connect { .. }) {
            self.down(now, DownReason::ConnectFailed, None, false);
        }
    }

    /// The peer closed the connection (or it broke).
    pub fn on_closed(&mut self, now: Duration) {
        match self.state {
            State::Idle { .. } => {}
            State::Connect { .. } => self.down(now, DownReason::ConnectFailed, None, false),
            _ => {
                // Nothing more can be written.
                self.tx.clear();
                self.down(now, DownReason::PeerClosed, None, false);
            }
        }
    }

    /// Bytes read from the connection: buffered, then every whole message handled.
    pub fn on_bytes(&mut self, bytes: &[u8], now: Duration) {
        if !self.is_connected() {
            return;
        }
        let mut buf = std::mem::take(&mut self.rx);
        buf.extend_from_slice(bytes);
        let mut used = 0;
        // Bounded: every round consumes at least a 19-byte header or stops.
        while self.is_connected() {
            match wire::parse(buf.get(used..).unwrap_or_default()) {
                Ok((message, n)) => {
                    used += n;
                    self.handle(message, now);
                }
                Err(WireError::Incomplete) => break,
                // §8.2.2 events 21/22/28 (header, OPEN, UPDATE message errors).
                Err(WireError::Malformed(n)) => self.refuse(now, n),
            }
        }
        if self.is_connected() {
            buf.drain(..used.min(buf.len()));
            self.rx = buf;
        }
    }

    fn is_connected(&self) -> bool {
        matches!(
            self.state,
            State::OpenSent { .. } | State::OpenConfirm { .. } | State::Established { .. }
        )
    }

    fn handle(&mut self, message: Message, now: Duration) {
        if let Message::Notification(n) = &message {
            // §8.2.2: a NOTIFICATION in any state drops the connection.
            self.counters.notifications_received += 1;
            let reason = DownReason::NotificationReceived {
                code: n.code,
                subcode: n.subcode,
            };
            self.down(now, reason, None, true);
            return;
        }
        match (self.state, message) {
            (State::OpenSent { .. }, Message::Open(open)) => self.on_open(&open, now),
            (State::OpenConfirm { neg, timers }, Message::Keepalive) => {
                self.state = State::Established {
                    neg,
                    timers: self.reset_hold(timers, neg, now),
                    since: now,
                };
                self.counters.established_transitions += 1;
                self.events.push_back(Event::Established);
                self.sync_routes();
            }
            (State::Established { neg, timers, since }, Message::Keepalive) => {
                self.state = State::Established {
                    neg,
                    timers: self.reset_hold(timers, neg, now),
                    since,
                };
            }
            (State::Established { neg, timers, since }, Message::Update(_)) => {
                // Announce-only: framing was checked by the parser; count and ignore.
                self.counters.updates_received += 1;
                self.state = State::Established {
                    neg,
                    timers: self.reset_hold(timers, neg, now),
                    since,
                };
            }
            (state, _) => {
                // RFC 6608 §3: unexpected message in OpenSent (1), OpenConfirm (2),
                // Established (3).
                let subcode = match state {
                    State::OpenSent { .. } => 1,
                    State::OpenConfirm { .. } => 2,
                    _ => 3,
                };
                self.refuse(now, Notification::new(code::FSM, subcode));
            }
        }
    }

    fn reset_hold(&self, timers: Timers, neg: Negotiated, now: Duration) -> Timers {
        Timers {
            hold_at: timers.hold_at.map(|_| now.saturating_add(neg.hold)),
            keepalive_at: timers.keepalive_at,
        }
    }

    /// The peer's OPEN in OpenSent (§6.2, §8.2.2 event 19).
    fn on_open(&mut self, open: &Open, now: Duration) {
        if open.asn() != self.config.peer_as {
            let data = open.my_as.to_be_bytes();
            let n = Notification {
                code: code::OPEN,
                subcode: code::BAD_PEER_AS,
                data: data.to_vec(),
            };
            self.refuse(now, n);
            return;
        }
        let hold = Duration::from_secs(u64::from(self.config.hold_time.min(open.hold_time)));
        // RFC 4760 §8: without any multiprotocol capability, IPv4 unicast is implied.
        let implied_v4 = !open.has_any_family();
        let neg = Negotiated {
            hold,
            four_octet_as: open.four_octet_as(),
            ipv4: implied_v4 || open.has_family(AFI_IPV4, SAFI_UNICAST),
            ipv6: self.config.next_hop_v6.is_some() && open.has_family(AFI_IPV6, SAFI_UNICAST),
        };
        self.send(&Message::Keepalive);
        self.state = State::OpenConfirm {
            neg,
            timers: Timers::new(now, hold),
        };
    }

    /// Sends `n` and goes down because of it (malformed or unacceptable input).
    fn refuse(&mut self, now: Duration, n: Notification) {
        self.counters.messages_malformed += 1;
        let reason = DownReason::NotificationSent {
            code: n.code,
            subcode: n.subcode,
        };
        self.down(now, reason, Some(n), true);
    }

    /// Ends the session or attempt: optionally a NOTIFICATION, optionally
    /// [`Event::Close`], then [`Event::Down`], and a reconnect after the backoff.
    fn down(
        &mut self,
        now: Duration,
        reason: DownReason,
        notify: Option<Notification>,
        close: bool,
    ) {
        if let Some(n) = notify {
            self.counters.notifications_sent += 1;
            self.send(&Message::Notification(n));
        }
        if close {
            self.events.push_back(Event::Close);
        }
        self.events.push_back(Event::Down { reason });
        if let State::Established { since, .. } = self.state {
            if now.saturating_sub(since) >= STABLE_AFTER {
                self.backoff = BACKOFF_INITIAL;
            }
        }
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        self.state = State::Idle {
            retry_at: Some(now.saturating_add(delay)),
        };
        self.rx.clear();
        self.announced.clear();
    }

    fn send(&mut self, message: &Message) {
        let mut out = Vec::new();
        wire::emit(message, &mut out);
        self.tx.push_back(out);
    }

    /// The earliest deadline, if any: call [`Session::on_timeout`] then.
    pub fn poll_timeout(&self) -> Option<Duration> {
        match self.state {
            State::Idle { retry_at } => retry_at,
            State::Connect { deadline } => Some(deadline),
            State::OpenSent { hold_at } => Some(hold_at),
            State::OpenConfirm { timers, .. } | State::Established { timers, .. } => {
                match (timers.hold_at, timers.keepalive_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }

    /// Fires every deadline at or before `now`.
    pub fn on_timeout(&mut self, now: Duration) {
        match self.state {
            State::Idle { retry_at: Some(at) } if at <= now => self.connect(now),
            State::Connect { deadline } if deadline <= now => {
                self.down(now, DownReason::ConnectTimeout, None, true);
            }
            State::OpenSent { hold_at } if hold_at <= now => self.hold_expired(now),
            State::OpenConfirm { neg, timers } => {
                if let Some(timers) = self.tick(neg, timers, now) {
                    self.state = State::OpenConfirm { neg, timers };
                }
            }
            State::Established { neg, timers, since } => {
                if let Some(timers) = self.tick(neg, timers, now) {
                    self.state = State::Established { neg, timers, since };
                }
            }
            _ => {}
        }
    }

    /// Hold and keepalive timers of a connected session; `None` if it went down.
    fn tick(&mut self, neg: Negotiated, timers: Timers, now: Duration) -> Option<Timers> {
        if timers.hold_at.is_some_and(|at| at <= now) {
            self.hold_expired(now);
            return None;
        }
        let mut timers = timers;
        if timers.keepalive_at.is_some_and(|at| at <= now) {
            self.send(&Message::Keepalive);
            timers.keepalive_at = Some(now.saturating_add(neg.hold / 3));
        }
        Some(timers)
    }

    /// §6.5: NOTIFICATION 4/0, then down.
    fn hold_expired(&mut self, now: Duration) {
        let n = Notification::new(code::HOLD_TIMER_EXPIRED, code::UNSPECIFIC);
        self.down(now, DownReason::HoldTimerExpired, Some(n), true);
    }

    /// The next bytes to write, in order.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.tx.pop_front()
    }

    /// The next event for the shell.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::wire::{Attribute, Update, GRACEFUL_SHUTDOWN, ORIGIN_IGP};
    use crate::bgp::wire::{Capability, AS_TRANS, MARKER};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const PEER_AS: u32 = 65000;
    const LOCAL_AS: u32 = 65001;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn config() -> Config {
        Config {
            local_as: LOCAL_AS,
            peer_as: PEER_AS,
            router_id: Ipv4Addr::new(192, 0, 2, 10),
            hold_time: 9,
            next_hop_v4: Ipv4Addr::new(192, 0, 2, 1),
            next_hop_v6: Some("2001:db8::1".parse().unwrap()),
        }
    }

    fn bytes(m: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        wire::emit(m, &mut out);
        out
    }

    fn peer_open(hold: u16) -> Vec<u8> {
        bytes(&Message::Open(Open::new(
            PEER_AS,
            hold,
            Ipv4Addr::new(192, 0, 2, 254),
            &[(AFI_IPV4, SAFI_UNICAST), (AFI_IPV6, SAFI_UNICAST)],
        )))
    }

    fn keepalive() -> Vec<u8> {
        bytes(&Message::Keepalive)
    }

    fn prefix(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    /// Every queued transmit, parsed.
    fn sent(session: &mut Session) -> Vec<Message> {
        std::iter::from_fn(|| session.poll_transmit())
            .map(|b| {
                let (m, n) = wire::parse(&b).unwrap();
                assert_eq!(n, b.len());
                m
            })
            .collect()
    }

    fn events(session: &mut Session) -> Vec<Event> {
        std::iter::from_fn(|| session.poll_event()).collect()
    }

    /// A session driven to Established at `t` with the peer's hold time.
    fn established(config: Config, peer_hold: u16, t: Duration) -> Session {
        let mut session = Session::new(config).unwrap();
        session.start(t);
        session.on_connected(t);
        session.on_bytes(&peer_open(peer_hold), t);
        session.on_bytes(&keepalive(), t);
        assert_eq!(session.state(), StateKind::Established);
        let _ = sent(&mut session);
        let _ = events(&mut session);
        session
    }

    #[test]
    fn bgp_session_handshake_to_established() {
        let mut session = Session::new(config()).unwrap();
        session
            .set_routes(vec![prefix("10.0.0.100/32"), prefix("2001:db8::100/128")])
            .unwrap();
        assert_eq!(session.state(), StateKind::Idle);
        assert_eq!(session.poll_timeout(), None);
        session.start(s(0));
        assert_eq!(events(&mut session), vec![Event::Connect]);
        assert_eq!(session.state(), StateKind::Connect);
        assert!(session.poll_transmit().is_none());

        session.on_connected(s(0));
        assert_eq!(session.state(), StateKind::OpenSent);
        let open = match sent(&mut session).as_slice() {
            [Message::Open(open)] => open.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(open.my_as, 65001);
        assert_eq!(open.hold_time, 9);
        assert_eq!(open.bgp_id, Ipv4Addr::new(192, 0, 2, 10));
        assert_eq!(
            open.capabilities,
            vec![
                Capability::FourOctetAs(LOCAL_AS),
                Capability::Multiprotocol { afi: 1, safi: 1 },
                Capability::Multiprotocol { afi: 2, safi: 1 },
            ]
        );
        assert_eq!(session.poll_timeout(), Some(OPEN_HOLD_TIME));

        // The peer's OPEN arrives one byte at a time.
        for b in peer_open(90) {
            session.on_bytes(&[b], s(1));
        }
        assert_eq!(session.state(), StateKind::OpenConfirm);
        assert_eq!(sent(&mut session), vec![Message::Keepalive]);

        session.on_bytes(&keepalive(), s(1));
        assert_eq!(session.state(), StateKind::Established);
        assert_eq!(events(&mut session), vec![Event::Established]);
        assert_eq!(session.counters().established_transitions, 1);
        let updates = sent(&mut session);
        assert_eq!(
            updates,
            vec![
                Message::Update(Update {
                    withdrawn: vec![],
                    attributes: vec![
                        Attribute::Origin(ORIGIN_IGP),
                        Attribute::as_path(LOCAL_AS, true),
                        Attribute::NextHop(Ipv4Addr::new(192, 0, 2, 1)),
                    ],
                    nlri: vec![prefix("10.0.0.100/32")],
                }),
                Message::Update(Update {
                    attributes: vec![
                        Attribute::Origin(ORIGIN_IGP),
                        Attribute::as_path(LOCAL_AS, true),
                        Attribute::MpReach {
                            next_hop: "2001:db8::1".parse().unwrap(),
                            link_local: None,
                            nlri: vec![prefix("2001:db8::100/128")],
                        },
                    ],
                    ..Update::default()
                }),
            ]
        );
        assert_eq!(session.announced().len(), 2);
        // A received UPDATE is counted and ignored.
        let update = bytes(&Message::Update(Update {
            withdrawn: vec![prefix("192.0.2.0/24")],
            ..Update::default()
        }));
        session.on_bytes(&update, s(2));
        assert_eq!(session.counters().updates_received, 1);
        assert_eq!(session.state(), StateKind::Established);
        assert!(sent(&mut session).is_empty());
    }

    #[test]
    fn bgp_session_four_octet_local_as_and_legacy_peer() {
        let config = Config {
            local_as: 4_200_000_001,
            ..config()
        };
        let mut session = Session::new(config).unwrap();
        session.set_routes(vec![prefix("10.0.0.100/32")]).unwrap();
        session.start(s(0));
        session.on_connected(s(0));
        match sent(&mut session).as_slice() {
            [Message::Open(open)] => {
                assert_eq!(open.my_as, AS_TRANS);
                assert_eq!(open.asn(), 4_200_000_001);
            }
            other => panic!("{other:?}"),
        }
        // A peer without capabilities: 2-octet AS_PATH, IPv4 implied, no IPv6.
        let legacy = Open {
            my_as: 65000,
            hold_time: 90,
            bgp_id: Ipv4Addr::new(192, 0, 2, 254),
            capabilities: vec![],
        };
        session.on_bytes(&bytes(&Message::Open(legacy)), s(0));
        session.on_bytes(&keepalive(), s(0));
        assert_eq!(session.state(), StateKind::Established);
        let msgs = sent(&mut session);
        let Some(Message::Update(update)) = msgs.get(1) else {
            panic!("{msgs:?}");
        };
        assert_eq!(
            update.attributes.get(1),
            Some(&Attribute::AsPath(vec![2, 1, 0x5b, 0xa0]))
        );
        session
            .set_routes(vec![prefix("2001:db8::100/128")])
            .unwrap();
        // The IPv4 prefix is withdrawn; the IPv6 one cannot be sent to this peer.
        assert_eq!(
            sent(&mut session),
            vec![Message::Update(Update {
                withdrawn: vec![prefix("10.0.0.100/32")],
                ..Update::default()
            })]
        );
        assert!(session.announced().is_empty());
    }

    #[test]
    fn bgp_session_keepalive_cadence() {
        // Ours 9 s, the peer's 90 s: 9 s negotiated, a KEEPALIVE every 3 s.
        let mut session = established(config(), 90, s(0));
        for k in 1..=6u64 {
            assert_eq!(session.poll_timeout(), Some(s(3 * k)));
            session.on_timeout(s(3 * k));
            assert_eq!(
                sent(&mut session),
                vec![Message::Keepalive],
                "at {}s",
                3 * k
            );
            // The peer's keepalives keep the hold timer from firing.
            session.on_bytes(&keepalive(), s(3 * k));
        }
        // A timeout before the deadline does nothing.
        session.on_timeout(s(19));
        assert!(sent(&mut session).is_empty());
        assert_eq!(session.state(), StateKind::Established);
    }

    #[test]
    fn bgp_session_hold_time_is_the_minimum() {
        let mut session = established(config(), 6, s(0));
        assert_eq!(session.poll_timeout(), Some(s(2)));
        session.on_timeout(s(2));
        assert_eq!(sent(&mut session), vec![Message::Keepalive]);
    }

    #[test]
    fn bgp_session_hold_time_zero_means_no_timers() {
        let session = established(config(), 0, s(0));
        assert_eq!(session.poll_timeout(), None);
    }

    #[test]
    fn bgp_session_hold_timer_expiry() {
        let mut session = established(config(), 90, s(0));
        let mut now = s(0);
        while session.state() == StateKind::Established {
            now = session.poll_timeout().unwrap();
            session.on_timeout(now);
        }
        assert_eq!(now, s(9));
        let wire: Vec<Vec<u8>> = std::iter::from_fn(|| session.poll_transmit()).collect();
        let mut notification = MARKER.to_vec();
        notification.extend_from_slice(&[0x00, 0x15, 0x03, 0x04, 0x00]);
        // Two keepalives (3 s, 6 s), then NOTIFICATION 4/0.
        assert_eq!(wire.len(), 3);
        assert_eq!(wire.last(), Some(&notification));
        assert_eq!(
            events(&mut session),
            vec![
                Event::Close,
                Event::Down {
                    reason: DownReason::HoldTimerExpired
                }
            ]
        );
        assert_eq!(session.counters().notifications_sent, 1);
        assert_eq!(session.state(), StateKind::Idle);
        assert_eq!(session.poll_timeout(), Some(s(9) + BACKOFF_INITIAL));
    }

    #[test]
    fn bgp_session_open_hold_timer_and_connect_timeout() {
        let mut session = Session::new(config()).unwrap();
        session.start(s(0));
        assert_eq!(session.poll_timeout(), Some(CONNECT_TIMEOUT));
        session.on_timeout(CONNECT_TIMEOUT);
        assert_eq!(
            events(&mut session),
            vec![
                Event::Connect,
                Event::Close,
                Event::Down {
                    reason: DownReason::ConnectTimeout
                }
            ]
        );
        let t = CONNECT_TIMEOUT + BACKOFF_INITIAL;
        session.on_timeout(t);
        session.on_connected(t);
        let _ = sent(&mut session);
        session.on_timeout(t + OPEN_HOLD_TIME);
        assert_eq!(
            sent(&mut session),
            vec![Message::Notification(Notification::new(4, 0))]
        );
    }

    #[test]
    fn bgp_session_backoff_doubles_and_caps() {
        let mut session = Session::new(config()).unwrap();
        let mut now = s(0);
        session.start(now);
        let mut delays = Vec::new();
        for _ in 0..9 {
            assert_eq!(session.state(), StateKind::Connect);
            session.on_connect_failed(now);
            let at = session.poll_timeout().unwrap();
            delays.push((at - now).as_secs());
            // Too early: nothing happens.
            session.on_timeout(at - Duration::from_millis(1));
            assert_eq!(session.state(), StateKind::Idle);
            now = at;
            session.on_timeout(now);
        }
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        let downs = events(&mut session)
            .into_iter()
            .filter(|e| {
                *e == Event::Down {
                    reason: DownReason::ConnectFailed,
                }
            })
            .count();
        assert_eq!(downs, 9);

        // A short-lived session does not reset the backoff ...
        session.on_connected(now);
        session.on_bytes(&peer_open(0), now);
        session.on_bytes(&keepalive(), now);
        session.on_closed(now + s(5));
        assert_eq!(session.poll_timeout(), Some(now + s(5) + s(60)));
        // ... one that stayed up for STABLE_AFTER does.
        now = session.poll_timeout().unwrap();
        session.on_timeout(now);
        session.on_connected(now);
        session.on_bytes(&peer_open(0), now);
        session.on_bytes(&keepalive(), now);
        let later = now + STABLE_AFTER;
        session.on_closed(later);
        assert_eq!(session.poll_timeout(), Some(later + BACKOFF_INITIAL));
        assert!(events(&mut session).contains(&Event::Down {
            reason: DownReason::PeerClosed
        }));
    }

    #[test]
    fn bgp_session_update_diff() {
        let a = prefix("10.0.0.100/32");
        let b = prefix("10.0.0.101/32");
        let v6 = prefix("2001:db8::100/128");
        let mut session = Session::new(config()).unwrap();
        session.set_routes(vec![a]).unwrap();
        // Not Established: nothing is sent yet.
        assert!(session.poll_transmit().is_none());
        let mut session = {
            let mut s2 = established(config(), 90, s(0));
            s2.set_routes(vec![a]).unwrap();
            let _ = sent(&mut s2);
            s2
        };
        let attrs = vec![
            Attribute::Origin(ORIGIN_IGP),
            Attribute::as_path(LOCAL_AS, true),
            Attribute::NextHop(Ipv4Addr::new(192, 0, 2, 1)),
        ];

        // Announce a new prefix: only it is sent.
        session.set_routes(vec![a, b]).unwrap();
        assert_eq!(
            sent(&mut session),
            vec![Message::Update(Update {
                withdrawn: vec![],
                attributes: attrs.clone(),
                nlri: vec![b],
            })]
        );
        // The same set again: nothing.
        session.set_routes(vec![b, a]).unwrap();
        assert!(sent(&mut session).is_empty());
        // Remove one, add an IPv6 one: a withdrawal and an MP_REACH.
        session.set_routes(vec![b, v6]).unwrap();
        let msgs = sent(&mut session);
        assert_eq!(msgs.len(), 2);
        assert_eq!(
            msgs.first(),
            Some(&Message::Update(Update {
                withdrawn: vec![a],
                ..Update::default()
            }))
        );
        assert!(matches!(msgs.get(1), Some(Message::Update(u))
            if matches!(u.attributes.last(), Some(Attribute::MpReach { nlri, .. }) if *nlri == vec![v6])));

        // Graceful shutdown: everything re-announced with 65535:0.
        session.graceful_shutdown();
        let msgs = sent(&mut session);
        assert_eq!(msgs.len(), 2);
        for m in &msgs {
            let Message::Update(u) = m else {
                panic!("{m:?}")
            };
            assert!(u
                .attributes
                .contains(&Attribute::Communities(vec![GRACEFUL_SHUTDOWN])));
        }

        // Withdraw all: IPv4 in withdrawn routes, IPv6 in MP_UNREACH_NLRI.
        session.withdraw_all();
        assert_eq!(
            sent(&mut session),
            vec![
                Message::Update(Update {
                    withdrawn: vec![b],
                    ..Update::default()
                }),
                Message::Update(Update {
                    attributes: vec![Attribute::MpUnreach(vec![v6])],
                    ..Update::default()
                }),
            ]
        );
        assert!(session.announced().is_empty());
    }

    #[test]
    fn bgp_session_large_route_sets_fit_in_messages() {
        let mut session = established(config(), 90, s(0));
        let v4: Vec<Prefix> = (0..2000u32)
            .map(|i| Prefix::new(Ipv4Addr::from(0x0a00_0000 + i).into(), 32).unwrap())
            .collect();
        let v6: Vec<Prefix> = (0..500u128)
            .map(|i| {
                let base: u128 = "2001:db8::".parse::<Ipv6Addr>().unwrap().into();
                Prefix::new(Ipv6Addr::from(base + i).into(), 128).unwrap()
            })
            .collect();
        session
            .set_routes(v4.iter().chain(&v6).copied().collect())
            .unwrap();
        session.graceful_shutdown();
        session.withdraw_all();
        let mut n = 0;
        while let Some(b) = session.poll_transmit() {
            assert!(b.len() <= wire::MAX_LEN, "{}", b.len());
            assert!(wire::parse(&b).is_ok());
            n += 1;
        }
        // 3 + 3 IPv4 and 3 IPv6 UPDATEs, twice (plain then graceful), then withdrawals.
        assert_eq!(n, 6 * 2 + 6);
    }

    #[test]
    fn bgp_session_notification_received_goes_down() {
        let mut session = established(config(), 90, s(0));
        let cease = bytes(&Message::Notification(Notification::new(6, 2)));
        session.on_bytes(&cease, s(1));
        assert_eq!(
            events(&mut session),
            vec![
                Event::Close,
                Event::Down {
                    reason: DownReason::NotificationReceived {
                        code: 6,
                        subcode: 2
                    }
                }
            ]
        );
        assert_eq!(session.counters().notifications_received, 1);
        assert_eq!(session.counters().notifications_sent, 0);
        assert!(session.poll_transmit().is_none());
        assert!(session.announced().is_empty());
    }

    /// Where the session is when the bad bytes arrive.
    #[derive(Clone, Copy, Debug)]
    enum At {
        OpenSent,
        OpenConfirm,
        Established,
    }

    fn at(state: At) -> Session {
        let mut session = Session::new(config()).unwrap();
        session.start(s(0));
        session.on_connected(s(0));
        if !matches!(state, At::OpenSent) {
            session.on_bytes(&peer_open(90), s(0));
        }
        if matches!(state, At::Established) {
            session.on_bytes(&keepalive(), s(0));
        }
        let _ = sent(&mut session);
        let _ = events(&mut session);
        session
    }

    /// Description, where, input, expected NOTIFICATION code and subcode.
    type Case = (&'static str, At, Vec<u8>, (u8, u8));

    fn with(bytes: &[u8], at: usize, value: u8) -> Vec<u8> {
        let mut b = bytes.to_vec();
        b[at] = value;
        b
    }

    #[test]
    fn bgp_session_malformed_input_sends_the_right_notification() {
        let open = peer_open(90);
        let other_as = bytes(&Message::Open(Open::new(
            64999,
            90,
            Ipv4Addr::new(192, 0, 2, 254),
            &[],
        )));
        let mut bad_param = open.clone();
        bad_param[29] = 1;
        let mut short_update = bytes(&Message::Update(Update {
            withdrawn: vec![prefix("10.0.0.0/8")],
            ..Update::default()
        }));
        short_update[20] = 0x09; // withdrawn length past the end
        let cases: Vec<Case> = vec![
            ("bad marker", At::OpenSent, with(&open, 0, 0), (1, 1)),
            (
                "length 18",
                At::OpenSent,
                with(&keepalive(), 17, 18),
                (1, 2),
            ),
            ("type 7", At::Established, with(&keepalive(), 18, 7), (1, 3)),
            ("version 3", At::OpenSent, with(&open, 19, 3), (2, 1)),
            ("peer AS", At::OpenSent, other_as, (2, 2)),
            (
                "identifier 0",
                At::OpenSent,
                {
                    let mut b = open.clone();
                    b[24..28].copy_from_slice(&[0; 4]);
                    b
                },
                (2, 3),
            ),
            ("optional parameter 1", At::OpenSent, bad_param, (2, 4)),
            ("hold time 2", At::OpenSent, with(&open, 23, 2), (2, 6)),
            ("attribute list", At::Established, short_update, (3, 1)),
            ("keepalive in OpenSent", At::OpenSent, keepalive(), (5, 1)),
            ("open in OpenConfirm", At::OpenConfirm, open.clone(), (5, 2)),
            ("open in Established", At::Established, open.clone(), (5, 3)),
        ];
        for (name, state, input, (code, subcode)) in cases {
            let mut session = at(state);
            session.on_bytes(&input, s(1));
            let msgs = sent(&mut session);
            let [Message::Notification(n)] = msgs.as_slice() else {
                panic!("{name}: {msgs:?}");
            };
            assert_eq!((n.code, n.subcode), (code, subcode), "{name}");
            assert_eq!(
                events(&mut session),
                vec![
                    Event::Close,
                    Event::Down {
                        reason: DownReason::NotificationSent { code, subcode }
                    }
                ],
                "{name}"
            );
            assert_eq!(session.counters().messages_malformed, 1, "{name}");
            assert_eq!(session.counters().notifications_sent, 1, "{name}");
            assert_eq!(session.state(), StateKind::Idle, "{name}");
            // Later bytes are ignored until the next connection.
            session.on_bytes(&keepalive(), s(1));
            assert!(session.poll_transmit().is_none(), "{name}");
        }
    }

    #[test]
    fn bgp_session_config_is_validated() {
        let zero_id = Config {
            router_id: Ipv4Addr::UNSPECIFIED,
            ..config()
        };
        assert_eq!(Session::new(zero_id).err(), Some(ConfigError::RouterIdZero));
        let hold = Config {
            hold_time: 2,
            ..config()
        };
        assert_eq!(Session::new(hold).err(), Some(ConfigError::HoldTime(2)));
        let ibgp = Config {
            peer_as: LOCAL_AS,
            ..config()
        };
        assert_eq!(Session::new(ibgp).err(), Some(ConfigError::Ibgp(LOCAL_AS)));
        let as0 = Config {
            local_as: 0,
            ..config()
        };
        assert_eq!(Session::new(as0).err(), Some(ConfigError::AsZero));
        let no_v6 = Config {
            next_hop_v6: None,
            ..config()
        };
        let mut session = Session::new(no_v6).unwrap();
        let v6 = prefix("2001:db8::/64");
        assert_eq!(
            session.set_routes(vec![v6]),
            Err(ConfigError::NoIpv6NextHop(v6))
        );
    }

    #[test]
    fn bgp_session_clock_near_its_end_does_not_overflow() {
        let end = Duration::MAX;
        let mut session = Session::new(config()).unwrap();
        session.start(end);
        session.on_connected(end);
        session.on_bytes(&peer_open(90), end);
        session.on_bytes(&keepalive(), end);
        assert_eq!(session.state(), StateKind::Established);
        assert_eq!(session.poll_timeout(), Some(end));
        session.on_timeout(end);
        session.on_closed(end);
        assert_eq!(session.poll_timeout(), Some(end));
    }

    #[test]
    fn bgp_session_byte_soup_never_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..3_000 {
            let state = [At::OpenSent, At::OpenConfirm, At::Established][round % 3];
            let mut session = at(state);
            let mut now = s(1);
            for _ in 0..4 {
                let len = (next() % 64) as usize;
                let mut chunk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                if next() % 2 == 0 {
                    // Behind a valid marker and length, so the body parsers run.
                    let mut framed = MARKER.to_vec();
                    framed.extend_from_slice(&((19 + chunk.len()) as u16).to_be_bytes());
                    framed.push(1 + (next() % 4) as u8);
                    framed.append(&mut chunk);
                    chunk = framed;
                }
                session.on_bytes(&chunk, now);
                now += Duration::from_millis(next() % 5_000);
                session.on_timeout(now);
                while session.poll_transmit().is_some() {}
                while session.poll_event().is_some() {}
            }
        }
    }
}
