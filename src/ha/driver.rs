//! The failover component: the IO shell around the election machine.
//!
//! What it owns: one non-blocking UDP socket (mio) on `--ha-port` for adverts and state
//! sync, the [`Machine`], the [`ReplayGuard`], the netlink socket that adds and removes
//! the VIPs ([`crate::ha::vip`]), the AF_PACKET socket for gratuitous ARP and, for IPv6
//! VIPs, unsolicited neighbour advertisements ([`crate::ha::garp`]) and the state-sync reassembly ([`crate::ha::sync`]).
//!
//! Per datagram: source address among the `--peer`s (as keepalived checks its unicast
//! peers; cheap, before any hashing) → [`wire::parse`] (MAC first) → [`ReplayGuard::accept`] → state sync or
//! [`Machine::peer_advert`] → [`Machine::on_advert`]. Anything refused is counted in
//! [`HaInfo::rejected`] and logged at most once per second; nothing read from the
//! network can panic here. The machine's actions are carried out in the order it
//! returns them: acquire = add every VIP, then the gratuitous ARPs it schedules;
//! release = remove every VIP. Every role change raises a `role` alert.
//!
//! Life cycle: at construction a VIP left on the interface by a crashed run is removed
//! (we start as backup); the machine starts on the first tick. On the first SIGTERM the
//! component resigns at once — VIP removed, then a priority-0 advert so the backup
//! takes over within Skew_Time — rather than holding the VIP while connections drain
//! (as keepalived does on stop); `on_shutdown` does the same if that has not happened.
//!
//! Time: the machine runs on [`Duration`]s since this component was built; sequence
//! numbers come from the wall clock in nanoseconds (kept strictly increasing), so they
//! keep growing across restarts and the peer's replay guard accepts a restarted node.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{debug, error, info, warn, Level};
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};

use crate::control::command::Scoped;
use crate::direct::DirectShared;
use crate::ha::config::HaConfig;
use crate::ha::garp::GarpSender;
use crate::ha::machine::{self, Action, Machine, Role, RoleReason};
use crate::ha::sync::{self, Assembler, Message};
use crate::ha::vip::{self, Change, Netlink};
use crate::notify::Alert;
use crate::plane::{Component, HaInfo, Plane};
use crate::wire::advert::{self as wire, Kind, ReplayGuard};

/// Datagrams read per loop turn at most (the rest wait for the next turn).
const MAX_READS_PER_TURN: usize = 256;
/// Shortest and longest interval between two link-state reads.
const LINK_CHECK_MIN: Duration = Duration::from_millis(50);
const LINK_CHECK_MAX: Duration = Duration::from_secs(1);
/// Rate limit of the warnings about refused datagrams and failed sends.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// At most one line per [`LOG_EVERY`]; counts what it held back.
#[derive(Debug, Default)]
struct RateLog {
    last: Option<Instant>,
    held: u64,
}

impl RateLog {
    /// `Some(held back since the last line)` when a line may be written now.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < LOG_EVERY => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

/// Why a datagram was refused.
#[derive(Debug)]
enum Refused {
    /// The source address is not one of the configured peers.
    UnknownSource,
    /// Parse, MAC or replay check.
    Wire(wire::WireError),
    /// An authenticated state-sync payload that does not decode.
    Sync(sync::SyncError),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::UnknownSource => f.write_str("source is not a configured --peer"),
            Refused::Wire(e) => e.fmt(f),
            Refused::Sync(e) => e.fmt(f),
        }
    }
}

/// Refusals by class since the last report line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct RefusedCounts {
    unknown_source: u64,
    bad_mac: u64,
    replayed: u64,
    malformed: u64,
    bad_sync: u64,
}

impl RefusedCounts {
    fn count(&mut self, why: &Refused) {
        let slot = match why {
            Refused::UnknownSource => &mut self.unknown_source,
            Refused::Wire(wire::WireError::BadMac) => &mut self.bad_mac,
            Refused::Wire(wire::WireError::Replayed { .. }) => &mut self.replayed,
            Refused::Wire(_) => &mut self.malformed,
            Refused::Sync(_) => &mut self.bad_sync,
        };
        *slot = slot.saturating_add(1);
    }
}

/// Who makes this node the VIP's owner on the wire.
enum VipHolder {
    /// Proxy mode: the VIP is a local address (added and removed through netlink).
    Local,
    /// Direct mode: the VIP must never be local; the data plane answers ARP for it
    /// while this node is master, and stays silent otherwise.
    DataPlane(Arc<DirectShared>),
}

/// The failover [`Component`].
pub struct HaDriver {
    holder: VipHolder,
    cfg: HaConfig,
    machine: Machine,
    node_id: u32,
    socket: UdpSocket,
    netlink: Netlink,
    garp: GarpSender,
    guard: ReplayGuard,
    assembler: Assembler,
    origin: Instant,
    last_seq: u64,
    out: Vec<u8>,
    buf: Vec<u8>,
    started: bool,
    resigned: bool,
    more_to_read: bool,
    rejected: u64,
    refused: RefusedCounts,
    reject_log: RateLog,
    send_log: RateLog,
    link_log: RateLog,
    next_link_check: Instant,
    next_full: Option<Instant>,
    full_id: u64,
    maint_parts: crate::rollout::replica::Parts,
}

impl HaDriver {
    /// Looks up the interface, derives the node id from its own IPv4 address, opens
    /// the sockets and removes a VIP left over by a previous run.
    /// `direct`: the direct-mode data plane's switches, in direct mode.
    pub fn new(cfg: &HaConfig, direct: Option<Arc<DirectShared>>) -> io::Result<HaDriver> {
        let iface = pnet::datalink::interfaces()
            .into_iter()
            .find(|i| i.name == cfg.interface)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("--interface {}: no such interface", cfg.interface),
                )
            })?;
        let mac = iface.mac.ok_or_else(|| {
            io::Error::other(format!(
                "--interface {}: has no MAC address (gratuitous ARP needs Ethernet)",
                cfg.interface
            ))
        })?;
        let vips: Vec<Ipv4Addr> = cfg
            .vips
            .iter()
            .filter_map(|v| match v.addr {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            })
            .collect();
        let own = vip::own_ipv4(&iface, &vips);
        let node_ip = *own.first().ok_or_else(|| {
            io::Error::other(format!(
                "--interface {}: no IPv4 address of its own (the node id derives from it)",
                cfg.interface
            ))
        })?;
        let node_id = u32::from(node_ip);
        let mut netlink = Netlink::open(iface.index)
            .map_err(|e| io::Error::new(e.kind(), format!("netlink: {e}")))?;
        let holder = match direct {
            Some(d) => {
                // Start silent: a backup must not answer ARP for the VIP.
                d.control.answer_arp.store(false, Ordering::Release);
                VipHolder::DataPlane(d)
            }
            None => VipHolder::Local,
        };
        let local_vips: &[_] = if matches!(holder, VipHolder::Local) {
            &cfg.vips
        } else {
            &[]
        };
        for v in local_vips {
            match netlink.remove(*v) {
                Ok(Change::Done) => warn!(target: "fulcrum::ha",
                    "removed vip={v} left on {} by a previous run (starting as backup)", cfg.interface),
                Ok(Change::Unchanged) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot remove vip={v} from {}: {e}", cfg.interface),
                    ))
                }
            }
        }
        let garp = GarpSender::open(iface.index, mac).map_err(|e| {
            let hint = if e.kind() == io::ErrorKind::PermissionDenied {
                "; gratuitous ARP needs CAP_NET_RAW: run as root or \
                 setcap cap_net_admin,cap_net_raw=+ep $(command -v fulcrum)"
            } else {
                ""
            };
            io::Error::new(e.kind(), format!("AF_PACKET socket: {e}{hint}"))
        })?;
        let bind = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, cfg.port));
        let socket = UdpSocket::bind(bind)
            .map_err(|e| io::Error::new(e.kind(), format!("--ha-port {}: {e}", cfg.port)))?;
        let mconfig = machine::Config {
            priority: cfg.priority,
            advert_interval: cfg.advert_interval,
            preempt: cfg.preempt,
            group_id: cfg.group,
            ..machine::Config::new(node_id)
        };
        let machine = Machine::new(mconfig, u64::from(node_id) ^ wall_ns())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        info!(target: "fulcrum::ha", "{} node_id={node_ip} mac={mac}", cfg.summary());
        let now = Instant::now();
        Ok(HaDriver {
            holder,
            cfg: cfg.clone(),
            machine,
            node_id,
            socket,
            netlink,
            garp,
            guard: ReplayGuard::new(),
            assembler: Assembler::default(),
            origin: now,
            last_seq: 0,
            out: Vec::with_capacity(wire::MAX_LEN),
            // One byte more than the largest valid datagram, so a longer one is seen
            // as such (TrailingBytes) instead of silently cut to a valid length.
            buf: vec![0; wire::MAX_LEN + 1],
            started: false,
            resigned: false,
            more_to_read: false,
            rejected: 0,
            refused: RefusedCounts::default(),
            reject_log: RateLog::default(),
            send_log: RateLog::default(),
            link_log: RateLog::default(),
            next_link_check: now,
            next_full: None,
            maint_parts: Default::default(),
            full_id: 0,
        })
    }

    fn since_origin(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.origin)
    }

    fn instant(&self, d: Duration) -> Instant {
        self.origin.checked_add(d).unwrap_or(self.origin)
    }

    fn next_seq(&mut self) -> u64 {
        self.last_seq = wall_ns().max(self.last_seq.saturating_add(1));
        self.last_seq
    }

    fn link_check_interval(&self) -> Duration {
        self.cfg
            .advert_interval
            .clamp(LINK_CHECK_MIN, LINK_CHECK_MAX)
    }

    /// Carries out the machine's actions, in order.
    fn run_actions(&mut self, plane: &mut Plane, now: Instant) {
        // Bounded: every input queues a handful of actions.
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::SendAdvert { .. } | Action::SendResign { .. } => {
                    let seq = self.next_seq();
                    if let Some(advert) = self.machine.wire_advert(&action, seq) {
                        self.send(&advert, now);
                    }
                }
                Action::AcquireVip if self.answer_arp(true) => {}
                Action::ReleaseVip if self.answer_arp(false) => {}
                Action::AcquireVip => {
                    for v in self.cfg.vips.clone() {
                        match self.netlink.add(v) {
                            Ok(c) => info!(target: "fulcrum::ha", "vip={v} added to {}{}",
                                self.cfg.interface,
                                if c == Change::Unchanged { " (already present)" } else { "" }),
                            Err(e) => error!(target: "fulcrum::ha",
                                "cannot add vip={v} to {}: {e}", self.cfg.interface),
                        }
                    }
                }
                Action::ReleaseVip => {
                    for v in self.cfg.vips.clone() {
                        match self.netlink.remove(v) {
                            Ok(Change::Done) => info!(target: "fulcrum::ha",
                                "vip={v} removed from {}", self.cfg.interface),
                            Ok(Change::Unchanged) => {}
                            Err(e) => error!(target: "fulcrum::ha",
                                "cannot remove vip={v} from {}: {e}", self.cfg.interface),
                        }
                    }
                }
                Action::SendGarp => {
                    for v in &self.cfg.vips {
                        if let Err(e) = self.garp.send(v.addr) {
                            if let Some(held) = self.send_log.allow(now) {
                                warn!(target: "fulcrum::ha",
                                    "gratuitous ARP for vip={} failed: {e} ({held} more failures held back)", v.addr);
                            }
                        }
                    }
                    debug!(target: "fulcrum::ha", "gratuitous ARP sent for {} vip(s)", self.cfg.vips.len());
                }
                Action::RoleChanged { from, to, reason } => {
                    self.role_changed(plane, now, from, to, reason);
                }
            }
        }
    }

    /// Direct mode: switches the data plane's ARP answering for the VIP; returns false in
    /// proxy mode (the VIP is then a local address).
    fn answer_arp(&self, on: bool) -> bool {
        let VipHolder::DataPlane(d) = &self.holder else {
            return false;
        };
        d.control.answer_arp.store(on, Ordering::Release);
        info!(target: "fulcrum::ha", "data plane {} ARP for the VIP on {}",
            if on { "answers" } else { "stopped answering" }, self.cfg.interface);
        true
    }

    fn role_changed(
        &mut self,
        plane: &mut Plane,
        now: Instant,
        from: Role,
        to: Role,
        reason: RoleReason,
    ) {
        info!(target: "fulcrum::ha", "role {from} -> {to} reason={reason} epoch={} priority={}",
            self.machine.epoch(), self.machine.priority());
        let level = match (to, reason) {
            (Role::Fault, _) => Level::Error,
            (Role::Master, _) | (Role::Backup, RoleReason::Outranked) => Level::Warn,
            _ => Level::Info,
        };
        plane.notifier.alert(Alert {
            event: "role",
            subject: "distributor".into(),
            old: from.to_string(),
            new: to.to_string(),
            reason: reason.to_string(),
            level,
        });
        match to {
            // A new master publishes its node set at once (then every second).
            Role::Master => self.next_full = Some(now),
            Role::Backup if !self.resigned => {
                self.next_full = None;
                // Ask the master for its node set now rather than within a second.
                self.send_sync(&sync::encode_request(), now);
            }
            _ => self.next_full = None,
        }
    }

    /// Emits and sends one datagram to every peer.
    fn send(&mut self, advert: &wire::Advert<'_>, now: Instant) {
        if let Err(e) = wire::emit(advert, self.cfg.key.bytes(), &mut self.out) {
            error!(target: "fulcrum::ha", "cannot build datagram: {e}");
            return;
        }
        for peer in &self.cfg.peers {
            if let Err(e) = self.socket.send_to(&self.out, *peer) {
                if let Some(held) = self.send_log.allow(now) {
                    warn!(target: "fulcrum::ha",
                        "send to peer={peer} failed: {e} ({held} more failures held back)");
                }
            }
        }
    }

    fn send_sync(&mut self, payload: &[u8], now: Instant) {
        let seq = self.next_seq();
        let action = Action::SendAdvert {
            priority: self.machine.priority(),
            epoch: self.machine.epoch(),
        };
        if let Some(advert) = self.machine.wire_advert(&action, seq) {
            let advert = wire::Advert {
                kind: Kind::StateSync,
                payload,
                ..advert
            };
            self.send(&advert, now);
        }
    }

    fn send_full_snapshot(&mut self, plane: &Plane, now: Instant) {
        self.full_id = self.full_id.wrapping_add(1);
        let states = all_states(plane);
        for part in sync::encode_full(self.full_id, &states) {
            self.send_sync(&part, now);
        }
        // The rollout, the task jobs and the windows ride along, so the backup shows
        // them and can take them over.
        let age = |origin: Option<Instant>, at: Duration| {
            let elapsed = origin.map_or(Duration::ZERO, |o| now.saturating_duration_since(o));
            elapsed
                .saturating_sub(at)
                .as_millis()
                .min(u128::from(u64::MAX)) as u64
        };
        let board = &plane.rollout;
        let report_origin = board.report.as_ref().map(|r| r.origin);
        let replica = board.replica(
            |at| age(report_origin, at),
            |at| age(board.jobs_origin, at),
            |i| plane.services.get(i).map(|s| s.name().to_owned()),
        );
        for part in crate::rollout::replica::encode(self.full_id, &replica, wire::MAX_PAYLOAD_LEN) {
            self.send_sync(&part, now);
        }
    }

    fn reject(&mut self, now: Instant, from: SocketAddr, why: Refused) {
        self.rejected = self.rejected.saturating_add(1);
        self.refused.count(&why);
        if self.reject_log.allow(now).is_some() {
            let r = std::mem::take(&mut self.refused);
            warn!(target: "fulcrum::ha",
                "datagram from {from} refused: {why}; since the last report: unknown_source={} bad_mac={} replayed={} malformed={} bad_sync={} (rejected={} total)",
                r.unknown_source, r.bad_mac, r.replayed, r.malformed, r.bad_sync, self.rejected);
        }
    }

    /// Reads datagrams until the socket is empty or the per-turn bound is reached.
    fn read_all(&mut self, plane: &mut Plane, now: Instant) {
        self.more_to_read = true;
        // Taken out of self for the loop so a datagram can borrow it (no copy).
        let mut buf = std::mem::take(&mut self.buf);
        for _ in 0..MAX_READS_PER_TURN {
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let bytes = buf.get(..n).unwrap_or(&[]);
                    self.on_datagram(plane, now, from, bytes);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.more_to_read = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // ICMP errors queued on the socket (e.g. ECONNREFUSED): not ours to fix.
                Err(e) => debug!(target: "fulcrum::ha", "recv: {e}"),
            }
        }
        self.buf = buf;
    }

    fn on_datagram(&mut self, plane: &mut Plane, now: Instant, from: SocketAddr, bytes: &[u8]) {
        // Addresses can be forged on a shared segment, so this is a filter, not the
        // authentication (the MAC is); it keeps strangers' datagrams away from HMAC.
        if !self.cfg.peers.iter().any(|p| p.ip() == from.ip()) {
            return self.reject(now, from, Refused::UnknownSource);
        }
        let advert = match wire::parse(bytes, self.cfg.key.bytes()) {
            Ok(a) => a,
            Err(e) => return self.reject(now, from, Refused::Wire(e)),
        };
        if let Err(e) = self.guard.accept(&advert) {
            return self.reject(now, from, Refused::Wire(e));
        }
        if advert.group_id != self.cfg.group || advert.node_id == self.node_id {
            return;
        }
        if advert.kind == Kind::StateSync {
            return self.on_sync(plane, now, from, &advert);
        }
        if let Some(peer) = self.machine.peer_advert(&advert) {
            trace_advert(&advert, from);
            self.machine.on_advert(self.since_origin(now), &peer);
            self.run_actions(plane, now);
        }
    }

    fn on_sync(
        &mut self,
        plane: &mut Plane,
        now: Instant,
        from: SocketAddr,
        advert: &wire::Advert<'_>,
    ) {
        let msg = match sync::decode(advert.payload) {
            Ok(m) => m,
            Err(e) => return self.reject(now, from, Refused::Sync(e)),
        };
        let role = self.machine.role();
        if let Message::Request = msg {
            if role == Role::Master {
                self.next_full = Some(now);
            }
            return;
        }
        // Only a backup follows, and only a master whose term is not older than the
        // newest it knows (a stale ex-master's late datagram changes nothing).
        if role != Role::Backup || advert.epoch < self.machine.epoch() {
            debug!(target: "fulcrum::ha", "state sync from {from} ignored (role={role} epoch={} ours={})",
                advert.epoch, self.machine.epoch());
            return;
        }
        if let Message::Maint {
            id,
            part,
            total,
            lines,
        } = msg
        {
            let Some(lines) = self.maint_parts.push(id, part, total, lines) else {
                return;
            };
            match crate::rollout::replica::decode(lines.iter().map(String::as_str)) {
                Ok(r) => {
                    plane.rollout.replica = Some(r);
                    plane.rollout.replica_seq += 1;
                }
                Err(e) => self.reject(
                    now,
                    from,
                    Refused::Sync(sync::SyncError { line: 0, reason: e }),
                ),
            }
            return;
        }
        let mut current = all_states(plane);
        let cmds = match msg {
            Message::Delta(cmds) => cmds,
            Message::Full {
                id,
                part,
                total,
                lines,
            } => {
                let Some(lines) = self.assembler.push(advert.node_id, id, part, total, lines)
                else {
                    return;
                };
                match sync::snapshot_states(&lines) {
                    Ok(desired) => sync::diff(&desired, &current),
                    Err(e) => return self.reject(now, from, Refused::Sync(e)),
                }
            }
            Message::Request | Message::Maint { .. } => return,
        };
        let mut queued = 0;
        for cmd in cmds {
            if sync::changes(&cmd, &current) && !plane.remote_admin.contains(&cmd) {
                sync::apply_to(&mut current, &cmd);
                info!(target: "fulcrum::ha", "state sync from {from}: {cmd}");
                plane.remote_admin.push(cmd);
                queued += 1;
            }
        }
        if queued > 0 {
            debug!(target: "fulcrum::ha", "state sync: {queued} change(s) queued");
        }
    }

    fn check_link(&mut self, plane: &mut Plane, now: Instant) {
        if now < self.next_link_check {
            return;
        }
        self.next_link_check = now + self.link_check_interval();
        match self.netlink.link_up() {
            Ok(up) => {
                self.machine.on_link(self.since_origin(now), up);
                self.run_actions(plane, now);
            }
            Err(e) => {
                if let Some(held) = self.link_log.allow(now) {
                    warn!(target: "fulcrum::ha",
                        "cannot read the link state of {}: {e} ({held} more held back)", self.cfg.interface);
                }
            }
        }
    }

    /// Releases the VIPs and resigns (once).
    fn resign(&mut self, plane: &mut Plane) {
        if self.resigned {
            return;
        }
        self.resigned = true;
        let now = Instant::now();
        self.machine.shutdown(self.since_origin(now));
        self.run_actions(plane, now);
        self.next_full = None;
        self.publish(plane);
    }

    fn publish(&self, plane: &mut Plane) {
        plane.ha = Some(HaInfo {
            role: self.machine.role().to_string(),
            epoch: self.machine.epoch(),
            takeovers: self.machine.takeovers(),
            peer_last: self.machine.last_peer_advert().map(|d| self.instant(d)),
            rejected: self.rejected,
        });
    }
}

fn trace_advert(advert: &wire::Advert<'_>, from: SocketAddr) {
    log::trace!(target: "fulcrum::ha", "advert from {from}: kind={:?} node_id={} priority={} epoch={} seq={}",
        advert.kind, IpAddr::V4(Ipv4Addr::from(advert.node_id)), advert.priority, advert.epoch, advert.sequence);
}

/// Nanoseconds since the Unix epoch (0 if the clock is before it).
fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Component for HaDriver {
    fn register(&mut self, registry: &Registry, base: usize) -> io::Result<()> {
        registry.register(&mut self.socket, Token(base), Interest::READABLE)
    }

    fn on_event(
        &mut self,
        plane: &mut Plane,
        _registry: &Registry,
        _offset: usize,
        _ev: &mio::event::Event,
    ) {
        if self.started && !self.resigned {
            self.read_all(plane, Instant::now());
        }
    }

    fn on_tick(&mut self, plane: &mut Plane, _registry: &Registry, now: Instant) {
        if self.resigned {
            return;
        }
        if plane.process.shutdown.load(Ordering::Acquire) {
            info!(target: "fulcrum::ha", "shutting down: releasing the VIP and resigning");
            self.resign(plane);
            return;
        }
        if !self.started {
            self.started = true;
            self.machine.start(self.since_origin(now));
            self.run_actions(plane, now);
            // Datagrams that arrived before the start.
            self.read_all(plane, now);
        }
        if self.more_to_read {
            self.read_all(plane, now);
        }
        self.check_link(plane, now);
        self.machine.on_timeout(self.since_origin(now));
        self.run_actions(plane, now);
        if self.machine.role() == Role::Master && self.next_full.is_some_and(|t| now >= t) {
            self.send_full_snapshot(plane, now);
            self.next_full = Some(now + sync::FULL_SNAPSHOT_INTERVAL);
        }
        self.publish(plane);
    }

    fn deadline(&self) -> Option<Instant> {
        if self.resigned {
            return None;
        }
        if !self.started || self.more_to_read {
            return Some(Instant::now());
        }
        let machine = self.machine.poll_timeout().map(|d| self.instant(d));
        [machine, Some(self.next_link_check), self.next_full]
            .into_iter()
            .flatten()
            .min()
    }

    fn on_admin(&mut self, _plane: &mut Plane, cmds: &[Scoped]) {
        if self.resigned || self.machine.role() != Role::Master {
            return;
        }
        let now = Instant::now();
        for payload in sync::encode_delta(cmds) {
            self.send_sync(&payload, now);
        }
    }

    fn on_shutdown(&mut self, plane: &mut Plane) {
        self.resign(plane);
    }
}

/// The synced state of every running service's nodes.
fn all_states(plane: &Plane) -> Vec<sync::NodeState> {
    let mut out = Vec::new();
    for (_, s) in plane.live() {
        sync::pool_states(s.name(), &s.shared.pool, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_log_allows_one_line_per_second_and_counts_the_rest() {
        let mut log = RateLog::default();
        let t = Instant::now();
        assert_eq!(log.allow(t), Some(0));
        assert_eq!(log.allow(t + Duration::from_millis(10)), None);
        assert_eq!(log.allow(t + Duration::from_millis(999)), None);
        assert_eq!(log.allow(t + Duration::from_millis(1000)), Some(2));
        assert_eq!(log.allow(t + Duration::from_millis(1001)), None);
    }

    #[test]
    fn refusals_are_counted_by_class() {
        let mut c = RefusedCounts::default();
        c.count(&Refused::UnknownSource);
        c.count(&Refused::Wire(wire::WireError::BadMac));
        c.count(&Refused::Wire(wire::WireError::Truncated));
        c.count(&Refused::Wire(wire::WireError::Replayed {
            node_id: 1,
            sequence: 1,
            highest: 2,
        }));
        c.count(&Refused::Sync(sync::decode(b"").unwrap_err()));
        c.count(&Refused::Wire(wire::WireError::BadMac));
        assert_eq!(
            c,
            RefusedCounts {
                unknown_source: 1,
                bad_mac: 2,
                replayed: 1,
                malformed: 1,
                bad_sync: 1
            }
        );
    }

    #[test]
    fn wall_clock_sequence_is_nanoseconds_since_epoch() {
        // 2020-01-01 in ns: any machine running these tests is past it.
        assert!(wall_ns() > 1_577_836_800_000_000_000);
    }
}
