//! The scale-out component: one TCP connection per `--bgp-peer` driving a
//! [`crate::bgp::session::Session`], the BFD sessions of the peers that asked for them,
//! and the announce decision ([`super::announce::Policy`]) fed from the pool.
//!
//! What it owns: the sockets (non-blocking connect, write buffering, reads handed to
//! the session), the monotonic clock the sans-IO cores see (a [`Duration`] since the
//! component was built), the announced /32s on `lo` in proxy mode (added at start,
//! removed at exit, with the failover component's netlink code), tearing a BGP
//! session down when its BFD session goes Down, and the `show bgp` snapshot.
//!
//! What it does not do: parse BGP or BFD, or decide when to announce; the cores do.
//! It reads the pool and the `enable`/`disable` switch through exactly two functions,
//! [`usable_nodes`] and [`enabled`], so that a per-service plane changes them only.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use log::{info, warn, Level};
use mio::event::Event as MioEvent;
use mio::{Interest, Registry, Token};

use super::announce::{Desired, Policy, Reason};
use super::bfd_link::BfdLink;
use super::config::ScaleoutConfig;
use super::peer::{flush, state_name, Peer};
use super::status::{BfdStatus, BgpStatus, PeerStatus};
use crate::bfd::{Event as BfdEvent, State as BfdState};
use crate::bgp::session::{Config as SessionConfig, Session, StateKind};
use crate::ha::config::Vip;
use crate::ha::vip::{Change, Netlink};
use crate::notify::Alert;
use crate::plane::{Component, Plane};

/// Token offset of the BFD receive socket; peer `i` uses `PEER_TOKENS + i`.
const BFD_TOKEN: usize = 0;
const PEER_TOKENS: usize = 1;

/// Usable nodes (those that may take a new flow now) of the healthiest running service:
/// the announced addresses stay while any service can serve on them (with several
/// services, one pool going down must not take the others' routes away). The one place
/// the driver reads the pools.
pub fn usable_nodes(plane: &Plane) -> usize {
    plane
        .live()
        .map(|(_, s)| {
            s.shared
                .pool
                .snapshot()
                .0
                .iter()
                .filter(|n| n.eligible())
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Distribution is switched on (`enable`/`disable`) for any running service. The one
/// place the driver reads the switch.
pub fn enabled(plane: &Plane) -> bool {
    plane
        .live()
        .any(|(_, s)| s.shared.enabled.load(Ordering::Relaxed))
}

/// The operator withdrew the routes with `bgp withdraw` (the distributor still serves).
pub fn operator_withdrawn(plane: &Plane) -> bool {
    plane.bgp_withdrawn
}

/// The scale-out component.
pub struct ScaleoutDriver {
    cfg: ScaleoutConfig,
    epoch: Instant,
    peers: Vec<Peer>,
    bfd: Option<BfdLink>,
    policy: Policy,
    desired: Option<Desired>,
    router_id: Ipv4Addr,
    /// /32s added to `lo` (proxy mode), removed at exit.
    on_lo: Vec<Vip>,
    netlink: Option<Netlink>,
    stop_until: Option<Instant>,
    /// First token of the range [`Component::register`] gave.
    base: usize,
    /// The sessions were started (on the first tick).
    started: bool,
}

/// The local IPv4 address the kernel would use towards `peer` (a connected UDP socket
/// sends nothing).
fn local_ipv4_towards(peer: SocketAddr) -> io::Result<Ipv4Addr> {
    let s = UdpSocket::bind("0.0.0.0:0")?;
    s.connect(peer)?;
    match s.local_addr()?.ip() {
        IpAddr::V4(a) if !a.is_unspecified() => Ok(a),
        other => Err(io::Error::other(format!(
            "no local IPv4 address towards {peer} ({other})"
        ))),
    }
}

fn bfd_state_name(s: BfdState) -> &'static str {
    match s {
        BfdState::AdminDown => "admindown",
        BfdState::Down => "down",
        BfdState::Init => "init",
        BfdState::Up => "up",
    }
}

impl ScaleoutDriver {
    /// Builds the sessions (finding each one's local address), opens the BFD sockets
    /// and, with `own_addresses` (proxy mode), adds every announced /32 to `lo`.
    pub fn new(cfg: &ScaleoutConfig, own_addresses: bool) -> io::Result<ScaleoutDriver> {
        let mut locals = Vec::new();
        for p in &cfg.peers {
            let local = local_ipv4_towards(p.addr)
                .map_err(|e| io::Error::new(e.kind(), format!("--bgp-peer {}: {e}", p.addr)))?;
            locals.push(local);
        }
        let router_id = match (cfg.router_id, locals.first()) {
            (Some(id), _) => id,
            (None, Some(l)) => *l,
            (None, None) => return Err(io::Error::other("no BGP peer")),
        };
        let seed = u64::from(std::process::id()) ^ u64::from(u32::from(router_id)) << 16;
        let bfd_addrs: Vec<Ipv4Addr> = cfg
            .peers
            .iter()
            .filter(|p| p.bfd)
            .filter_map(|p| match p.addr.ip() {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            })
            .collect();
        let bfd = if bfd_addrs.is_empty() {
            None
        } else {
            Some(BfdLink::open(
                &bfd_addrs,
                cfg.bfd_interval,
                cfg.bfd_multiplier,
                seed,
            )?)
        };
        let mut peers = Vec::new();
        let mut bfd_index = 0;
        for (p, local) in cfg.peers.iter().zip(locals) {
            let session = Session::new(SessionConfig {
                local_as: cfg.local_as,
                peer_as: p.asn,
                router_id,
                hold_time: p.hold,
                next_hop_v4: local,
                next_hop_v6: None,
            })
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("--bgp-peer {}: {e}", p.addr),
                )
            })?;
            let bfd = p.bfd.then(|| {
                bfd_index += 1;
                bfd_index - 1
            });
            peers.push(Peer {
                spec: *p,
                session,
                conn: None,
                established_at: None,
                last_error: None,
                bfd,
                bfd_downs: 0,
                closing_because: None,
            });
        }
        let mut driver = ScaleoutDriver {
            cfg: cfg.clone(),
            epoch: Instant::now(),
            peers,
            bfd,
            policy: Policy::new(cfg.min_healthy, cfg.hold_down, cfg.shutdown_delay),
            desired: None,
            router_id,
            on_lo: Vec::new(),
            netlink: None,
            stop_until: None,
            base: 0,
            started: false,
        };
        if own_addresses {
            driver.add_to_lo()?;
        }
        info!(target: "fulcrum::bgp", "{} router_id={router_id}", cfg.summary());
        Ok(driver)
    }

    /// Proxy mode: the distributor owns each announced host address, so the listeners
    /// can bind it and the kernel accepts the routed traffic.
    fn add_to_lo(&mut self) -> io::Result<()> {
        let lo = pnet::datalink::interfaces()
            .into_iter()
            .find(|i| i.is_loopback())
            .ok_or_else(|| io::Error::other("no loopback interface"))?;
        let mut nl = Netlink::open(lo.index)
            .map_err(|e| io::Error::new(e.kind(), format!("netlink: {e}")))?;
        for p in &self.cfg.announce {
            let (IpAddr::V4(addr), 32) = (p.addr(), p.prefix_len()) else {
                info!(target: "fulcrum::bgp", "{p}: not a /32, not added to lo (route it to this host yourself)");
                continue;
            };
            let vip = Vip {
                addr: addr.into(),
                prefix: 32,
            };
            match nl.add(vip) {
                Ok(Change::Done) => {
                    info!(target: "fulcrum::bgp", "added {vip} to lo");
                    self.on_lo.push(vip);
                }
                Ok(Change::Unchanged) => {
                    // Most likely left by a previous run that was killed: ours now.
                    info!(target: "fulcrum::bgp", "{vip} was already on lo; removed at exit");
                    self.on_lo.push(vip);
                }
                Err(e) => {
                    // Leave lo as it was: the process is not starting.
                    for added in self.on_lo.drain(..) {
                        let _ = nl.remove(added);
                    }
                    return Err(io::Error::new(
                        e.kind(),
                        format!("--announce {p}: adding it to lo: {e}"),
                    ));
                }
            }
        }
        self.netlink = Some(nl);
        Ok(())
    }

    fn now(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.epoch)
    }

    /// The instant `d` after the epoch; a deadline too far to represent is none.
    fn instant(&self, d: Duration) -> Option<Instant> {
        self.epoch.checked_add(d)
    }

    fn apply_desired(&mut self, plane: &mut Plane, d: Desired, reason: Reason) {
        if self.desired == Some(d) {
            return;
        }
        let before = self.desired.replace(d);
        for p in &mut self.peers {
            match d {
                Desired::Announce => {
                    // Prefixes were validated as IPv4: set_routes cannot refuse them.
                    let _ = p.session.set_routes(self.cfg.announce.clone());
                }
                Desired::AnnounceGraceful => {
                    let _ = p.session.set_routes(self.cfg.announce.clone());
                    p.session.graceful_shutdown();
                }
                Desired::Withdraw => p.session.withdraw_all(),
            }
        }
        let what = match d {
            Desired::Announce => "announced",
            Desired::AnnounceGraceful => "announced with GRACEFUL_SHUTDOWN (RFC 8326)",
            Desired::Withdraw => "withdrawn",
        };
        info!(target: "fulcrum::bgp", "routes {what} ({})", reason.as_str());
        let name = |d: Option<Desired>| match d {
            None => "none",
            Some(Desired::Withdraw) => "withdrawn",
            Some(_) => "announced",
        };
        if name(before) != name(Some(d)) {
            plane.notifier.alert(Alert {
                event: "bgp",
                subject: "routes".into(),
                old: name(before).into(),
                new: name(Some(d)).into(),
                reason: reason.as_str().into(),
                // Losing traffic for health is what an operator must look at.
                level: match reason {
                    Reason::Unhealthy => Level::Warn,
                    _ => Level::Info,
                },
            });
        }
    }

    /// BFD: timers, events (Down tears the BGP session down), transmissions.
    fn drive_bfd(&mut self, now: Duration) {
        let Some(link) = self.bfd.as_mut() else {
            return;
        };
        link.on_timeout(now);
        for p in &mut self.peers {
            let Some(b) = p.bfd.and_then(|b| link.peers.get_mut(b)) else {
                continue;
            };
            while let Some(ev) = b.session.poll_event() {
                match ev {
                    BfdEvent::Up => {
                        info!(target: "fulcrum::bfd", "peer {}: BFD up (detection {} ms)", b.addr, b.session.detection_time().as_millis())
                    }
                    BfdEvent::Down { diag } => {
                        p.bfd_downs += 1;
                        warn!(target: "fulcrum::bfd", "peer {}: BFD down ({diag:?}): closing the BGP session", b.addr);
                        if p.session.state() != StateKind::Idle {
                            p.closing_because = Some(format!("BFD down ({diag:?})"));
                            p.session.on_closed(now);
                        }
                    }
                }
            }
        }
        link.transmit(now);
    }

    fn refresh_status(&self, plane: &mut Plane, usable: usize, reason: &'static str) {
        let link = self.bfd.as_ref();
        let peers = self
            .peers
            .iter()
            .map(|p| {
                let c = p.session.counters();
                let bfd = p.bfd.and_then(|b| link?.peers.get(b)).map(|b| {
                    let bc = b.session.counters();
                    let d = &bc.dropped;
                    BfdStatus {
                        state: bfd_state_name(b.session.state()).into(),
                        detection: b.session.detection_time(),
                        received: bc.received,
                        sent: bc.sent,
                        dropped: d.malformed
                            + d.authentication
                            + d.wrong_discriminator
                            + d.demand
                            + d.admin_down,
                        downs: p.bfd_downs,
                    }
                });
                PeerStatus {
                    addr: p.spec.addr.to_string(),
                    asn: p.spec.asn,
                    state: state_name(p.session.state()),
                    established_at: p.established_at,
                    hold_s: p.session.hold_time().map_or(p.spec.hold, |h| {
                        u16::try_from(h.as_secs()).unwrap_or(u16::MAX)
                    }),
                    prefixes: p.session.announced().len(),
                    last_error: p.last_error.clone(),
                    established: c.established_transitions,
                    notifications_sent: c.notifications_sent,
                    notifications_received: c.notifications_received,
                    malformed: c.messages_malformed,
                    updates_received: c.updates_received,
                    bfd,
                }
            })
            .collect();
        plane.bgp = Some(BgpStatus {
            local_as: self.cfg.local_as,
            router_id: self.router_id.to_string(),
            prefixes: self.cfg.announce.iter().map(|p| p.to_string()).collect(),
            announcing: self.desired.is_some_and(|d| d != Desired::Withdraw),
            reason,
            usable,
            min_healthy: self.cfg.min_healthy,
            peers,
            bfd_malformed: link.map_or(0, |l| l.counters.malformed),
            bfd_unknown: link.map_or(0, |l| l.counters.unknown),
            bfd_ttl: link.map_or(0, |l| l.counters.ttl),
        });
    }
}

impl ScaleoutDriver {
    /// Removes the /32s this process added to `lo`.
    fn release_addresses(&mut self) {
        if let Some(nl) = self.netlink.as_mut() {
            for vip in self.on_lo.drain(..) {
                match nl.remove(vip) {
                    Ok(_) => info!(target: "fulcrum::bgp", "removed {vip} from lo"),
                    Err(e) => warn!(target: "fulcrum::bgp", "removing {vip} from lo: {e}"),
                }
            }
        }
    }
}

impl Drop for ScaleoutDriver {
    /// A start that fails after this component was built (a listener that cannot
    /// bind) never reaches `on_shutdown`: release the addresses here too.
    fn drop(&mut self) {
        self.release_addresses();
    }
}

impl Component for ScaleoutDriver {
    fn register(&mut self, registry: &Registry, base: usize) -> io::Result<()> {
        self.base = base;
        if let Some(link) = self.bfd.as_mut() {
            registry.register(link.rx(), Token(base + BFD_TOKEN), Interest::READABLE)?;
        }
        Ok(())
    }

    fn on_event(&mut self, _plane: &mut Plane, _registry: &Registry, offset: usize, ev: &MioEvent) {
        let now = self.now(Instant::now());
        if offset == BFD_TOKEN {
            if let Some(link) = self.bfd.as_mut() {
                link.on_readable(now);
            }
        } else if let Some(p) = offset
            .checked_sub(PEER_TOKENS)
            .and_then(|i| self.peers.get_mut(i))
        {
            p.on_event(ev, now);
        }
    }

    fn on_tick(&mut self, plane: &mut Plane, registry: &Registry, at: Instant) {
        let now = self.now(at);
        if !self.started {
            // ManualStart (RFC 4271 §8.1.2) on the first turn of the loop, whose
            // deadline asked for that turn at once.
            self.started = true;
            for p in &mut self.peers {
                p.session.start(now);
            }
        }
        for p in &mut self.peers {
            if p.session.poll_timeout().is_some_and(|t| t <= now) {
                p.session.on_timeout(now);
            }
        }
        self.drive_bfd(now);
        let usable = usable_nodes(plane);
        let (desired, reason) =
            self.policy
                .update(usable, enabled(plane), operator_withdrawn(plane), now);
        self.apply_desired(plane, desired, reason);
        let epoch = self.epoch;
        for (i, p) in self.peers.iter_mut().enumerate() {
            p.pump(Token(self.base + PEER_TOKENS + i), registry, plane, epoch);
        }
        self.refresh_status(plane, usable, reason.as_str());
    }

    fn deadline(&self) -> Option<Instant> {
        if !self.started {
            return Some(self.epoch);
        }
        let sessions = self.peers.iter().filter_map(|p| p.session.poll_timeout());
        let bfd = self.bfd.as_ref().and_then(|l| l.poll_timeout());
        sessions
            .chain(bfd)
            .chain(self.policy.deadline())
            .min()
            .and_then(|d| self.instant(d))
            .into_iter()
            .chain(self.stop_until)
            .min()
    }

    fn on_stop(&mut self, _plane: &mut Plane, at: Instant) -> Option<Instant> {
        let keep = self.policy.stop(self.now(at));
        // Bounded by the flag's validation; an unrepresentable instant drains at once.
        let until = at.checked_add(keep)?;
        self.stop_until = Some(until);
        info!(target: "fulcrum::bgp", "stopping: graceful-shutdown community now, withdrawing in {} ms, draining in {} ms",
            (self.cfg.shutdown_delay / 2).as_millis(), keep.as_millis());
        Some(until)
    }

    fn on_shutdown(&mut self, _plane: &mut Plane) {
        let now = self.now(Instant::now());
        for p in &mut self.peers {
            p.session.withdraw_all();
            while let Some(bytes) = p.session.poll_transmit() {
                if let Some(c) = p.conn.as_mut() {
                    c.out.extend_from_slice(&bytes);
                }
            }
            flush(p, now);
            // Closing the connection ends the session: the router drops our routes.
            if let Some(c) = p.conn.take() {
                let _ = c.stream.shutdown(std::net::Shutdown::Both);
            }
        }
        self.release_addresses();
    }
}
