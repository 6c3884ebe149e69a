//! The health-check driver: a control-plane [`Component`] that runs active probes inside
//! the event loop, counts passive failures reported by the workers, receives node-agent
//! heartbeats, and applies the resulting state to the pool.
//!
//! Decisions are made by the sans-IO parts ([`HealthTracker`], [`IntervalPolicy`](crate::health::interval::IntervalPolicy),
//! [`Jitter`], [`wire::Receiver`], [`Liveness`]); this file only does IO and timing:
//! non-blocking connects (never a blocking probe, never a stall at start-up when a node is
//! unreachable), one small buffer per probe in flight, one UDP socket for agents.
//! Every state change becomes one alert (log line + notify command).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc::Receiver as ObsReceiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, Level};
use mio::event::Event;
use mio::net::{TcpStream, UdpSocket};
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::health::config::{CheckKind, HealthConfig};
use crate::health::http::{build_request, parse_status};
use crate::health::interval::Jitter;
use crate::health::state::{FailReason, Health, HealthTracker, Reason, Transition};
use crate::notify::Alert;
use crate::plane::{Component, Plane};
use crate::pool::Node;
use crate::runtime::Observation;
use crate::time::wall_ms;
use crate::wire::heartbeat::{self as wire, AgentState, Liveness};

/// Longest HTTP response head read from a check (the status line must fit).
const MAX_HEAD: usize = 512;
const AGENT_TOKEN: usize = 0;

#[derive(Debug)]
enum ProbeState {
    Connecting,
    Sending { req: Vec<u8>, written: usize },
    Reading { head: Vec<u8> },
}

#[derive(Debug)]
struct Probe {
    node: SocketAddr,
    stream: TcpStream,
    started: Instant,
    deadline: Instant,
    state: ProbeState,
}

/// What the agent of one node last said.
#[derive(Debug)]
struct AgentView {
    liveness: Liveness,
    state: Option<AgentState>,
    missing: bool,
    weight_pct: Option<u8>,
}

#[derive(Debug)]
struct NodeCheck {
    node: Arc<Node>,
    tracker: HealthTracker,
    jitter: Jitter,
    next_at: Instant,
    probe: Option<usize>,
    rtt_last: Option<Duration>,
    /// When the node last came up (slow start ramps from here).
    up_since: Option<Instant>,
    agent: Option<AgentView>,
}

/// The health-check component.
pub struct Checker {
    cfg: HealthConfig,
    checks: HashMap<SocketAddr, NodeCheck>,
    probes: Slab<Probe>,
    generation: u64,
    origin: Instant,
    observations: ObsReceiver<Observation>,
    agent_sock: Option<UdpSocket>,
    agent_rx: wire::Receiver,
    last_reject_log: Option<Instant>,
    base: usize,
    buf: Vec<u8>,
    /// The service whose nodes it checks (index in the plane).
    service: usize,
    /// The last agent report (of `Plane::agent_inbox`) applied.
    agent_seen: u64,
}

/// Agent reports kept in the plane's inbox (every checker reads them in the turn they
/// arrive; the rest is a margin).
const INBOX_KEEP: usize = 1024;

impl Checker {
    /// A checker of the nodes of service `service` (index in the plane); `observations`
    /// carries the workers' passive failures for that service. `agent_socket`: this one
    /// binds the node agents' UDP socket (one checker per process does) and hands every
    /// authenticated heartbeat to the others through the plane.
    pub fn new(
        cfg: HealthConfig,
        service: usize,
        agent_socket: bool,
        observations: ObsReceiver<Observation>,
    ) -> io::Result<Self> {
        let agent_sock = match &cfg.agent {
            Some(a) if agent_socket => Some(UdpSocket::bind(a.listen).map_err(|e| {
                io::Error::new(e.kind(), format!("--agent-listen {}: {e}", a.listen))
            })?),
            _ => None,
        };
        Ok(Checker {
            cfg,
            checks: HashMap::new(),
            probes: Slab::new(),
            generation: 0,
            origin: Instant::now(),
            observations,
            agent_sock,
            agent_rx: wire::Receiver::default(),
            last_reject_log: None,
            base: 0,
            buf: vec![0; 2048],
            service,
            agent_seen: 0,
        })
    }

    fn t(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.origin)
    }

    /// Takes the service's check settings when a reload changed them: every node's
    /// check restarts with the new settings from the health it has now (no node flips
    /// because its settings changed). The agent socket stays as it was at start.
    fn adopt(&mut self, plane: &mut Plane, registry: &Registry) {
        let Some(svc) = plane.services.get(self.service) else {
            return;
        };
        let mut want = svc.cfg.health.clone();
        want.agent = self.cfg.agent.clone();
        if want == self.cfg {
            return;
        }
        debug!(target: "fulcrum::health", "service {}: new check settings", svc.name());
        self.cfg = want;
        let probes: Vec<usize> = self.probes.iter().map(|(k, _)| k).collect();
        for k in probes {
            self.drop_probe(registry, k);
        }
        self.checks.clear();
        // The next sync builds every node's check again.
        self.generation = u64::MAX;
    }

    /// Adds checks for new nodes, drops those of removed ones.
    fn sync(&mut self, plane: &mut Plane, registry: &Registry, now: Instant) {
        let g = plane.services[self.service].shared.pool.generation();
        if g == self.generation {
            return;
        }
        self.generation = g;
        let (nodes, _) = plane.services[self.service].shared.pool.snapshot();
        let n = nodes.len() as u64;
        let interval = self.cfg.policy.base;
        for (i, node) in nodes.iter().enumerate() {
            let addr = node.addr();
            if self.checks.contains_key(&addr) {
                continue;
            }
            let jitter = Jitter::new(self.cfg.seed, i as u64);
            let first = now + jitter.initial_offset(interval, i as u64, n);
            let expects_agent = node.spec().agent;
            let agent = match (&self.cfg.agent, expects_agent) {
                (Some(a), true) => {
                    let mut l = Liveness::new(a.interval, a.misses);
                    l.arm(self.t(now));
                    Some(AgentView {
                        liveness: l,
                        state: None,
                        missing: false,
                        weight_pct: None,
                    })
                }
                _ => None,
            };
            // Thresholds were validated with the configuration.
            let tracker = match HealthTracker::new(self.cfg.thresholds, node.health()) {
                Ok(t) => t,
                Err(_) => continue,
            };
            self.checks.insert(
                addr,
                NodeCheck {
                    node: Arc::clone(node),
                    tracker,
                    jitter,
                    next_at: first,
                    probe: None,
                    rtt_last: None,
                    up_since: None,
                    agent,
                },
            );
        }
        let live: Vec<SocketAddr> = nodes.iter().map(|n| n.addr()).collect();
        let gone: Vec<SocketAddr> = self
            .checks
            .keys()
            .filter(|a| !live.contains(a))
            .copied()
            .collect();
        for addr in gone {
            if let Some(c) = self.checks.remove(&addr) {
                if let Some(p) = c.probe {
                    self.drop_probe(registry, p);
                }
                self.agent_rx.forget(&addr.to_string());
            }
            plane.services[self.service].info.remove(&addr);
        }
    }

    fn drop_probe(&mut self, registry: &Registry, key: usize) {
        if let Some(mut p) = self.probes.try_remove(key) {
            let _ = registry.deregister(&mut p.stream);
        }
    }

    fn start_probe(
        &mut self,
        plane: &mut Plane,
        registry: &Registry,
        addr: SocketAddr,
        now: Instant,
    ) {
        let entry = self.probes.vacant_entry();
        let key = entry.key();
        let mut stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(_) => {
                // Could not even start (descriptor exhaustion, no route): a failure now.
                self.finish(plane, addr, Err(FailReason::ConnectError), now, now);
                return;
            }
        };
        if registry
            .register(
                &mut stream,
                Token(self.base + 1 + key),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            self.finish(plane, addr, Err(FailReason::ConnectError), now, now);
            return;
        }
        entry.insert(Probe {
            node: addr,
            stream,
            started: now,
            deadline: now + self.cfg.timeout,
            state: ProbeState::Connecting,
        });
        if let Some(c) = self.checks.get_mut(&addr) {
            c.probe = Some(key);
        }
    }

    /// Advances a probe on readiness; returns its outcome once known.
    fn advance(&mut self, key: usize, ev: &Event) -> Option<Result<(), FailReason>> {
        let host = self.cfg.host.clone();
        let kind = self.cfg.kind.clone();
        let send_proxy = self.cfg.send_proxy;
        let p = self.probes.get_mut(key)?;
        loop {
            match &mut p.state {
                ProbeState::Connecting => {
                    match p.stream.take_error() {
                        Ok(Some(e)) | Err(e) => {
                            return Some(Err(if e.kind() == io::ErrorKind::ConnectionRefused {
                                FailReason::ConnectRefused
                            } else {
                                FailReason::ConnectError
                            }))
                        }
                        Ok(None) => {}
                    }
                    if !ev.is_writable() && p.stream.peer_addr().is_err() {
                        return None; // not connected yet
                    }
                    match &kind {
                        CheckKind::Http { path } => {
                            let host = host.clone().unwrap_or_else(|| p.node.ip().to_string());
                            let mut req = Vec::with_capacity(96 + path.len());
                            if let Some(v) = send_proxy {
                                crate::wire::proxy_protocol::local(v, &mut req);
                            }
                            build_request(path, &host, &mut req);
                            p.state = ProbeState::Sending { req, written: 0 };
                        }
                        _ => return Some(Ok(())),
                    }
                }
                ProbeState::Sending { req, written } => {
                    match p.stream.write(&req[*written..]) {
                        Ok(n) => *written += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => return Some(Err(FailReason::BadResponse)),
                    }
                    if *written == req.len() {
                        p.state = ProbeState::Reading {
                            head: Vec::with_capacity(MAX_HEAD),
                        };
                    }
                }
                ProbeState::Reading { head } => {
                    let mut chunk = [0u8; MAX_HEAD];
                    let room = MAX_HEAD - head.len();
                    match p.stream.read(&mut chunk[..room.max(1)]) {
                        Ok(0) => {
                            return Some(match parse_status(head) {
                                Ok(Some(code)) => self
                                    .cfg
                                    .statuses
                                    .contains(code)
                                    .then_some(())
                                    .ok_or(FailReason::BadStatus(code)),
                                _ => Err(FailReason::BadResponse),
                            })
                        }
                        Ok(n) => head.extend_from_slice(&chunk[..n.min(room)]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => return Some(Err(FailReason::BadResponse)),
                    }
                    match parse_status(head) {
                        Ok(Some(code)) if self.cfg.statuses.contains(code) => return Some(Ok(())),
                        Ok(Some(code)) => return Some(Err(FailReason::BadStatus(code))),
                        Ok(None) if head.len() < MAX_HEAD => {}
                        _ => return Some(Err(FailReason::BadResponse)),
                    }
                }
            }
        }
    }

    /// Records a probe outcome — the one place checks end.
    fn finish(
        &mut self,
        plane: &mut Plane,
        addr: SocketAddr,
        outcome: Result<(), FailReason>,
        started: Instant,
        now: Instant,
    ) {
        let t = self.t(now);
        let Some(c) = self.checks.get_mut(&addr) else {
            return;
        };
        c.probe = None;
        let rtt = outcome
            .is_ok()
            .then(|| now.saturating_duration_since(started));
        let transition = match &outcome {
            Ok(()) => c.tracker.on_success(t),
            Err(r) => c.tracker.on_failure(t, *r),
        };
        let interval = self.cfg.policy.next_interval(
            c.tracker.health(),
            c.tracker.in_transition(),
            rtt,
            c.rtt_last,
        );
        if rtt.is_some() {
            c.rtt_last = rtt;
        }
        c.next_at = now + c.jitter.jitter(interval);
        let detail = match &outcome {
            Ok(()) => match &self.cfg.kind {
                CheckKind::Http { .. } => "http ok".to_string(),
                _ => "tcp ok".to_string(),
            },
            Err(r) => r.to_string(),
        };
        plane.services[self.service]
            .info
            .entry(addr)
            .or_default()
            .last_check = Some((outcome.is_ok(), detail, now, rtt));
        if let Some(tr) = transition {
            apply_transition(plane, self.service, c, &tr, now, self.cfg.slow_start);
        }
    }

    fn on_observations(&mut self, plane: &mut Plane, now: Instant) {
        let t = self.t(now);
        while let Ok(o) = self.observations.try_recv() {
            let Observation::ConnectFailed { node, why } = o;
            if self.cfg.kind == CheckKind::None {
                continue;
            }
            let Some(c) = self.checks.get_mut(&node) else {
                continue;
            };
            debug!(target: "fulcrum::health", "node={node} passive failure ({why})");
            if let Some(tr) = c.tracker.on_passive_failure(t, why) {
                apply_transition(plane, self.service, c, &tr, now, self.cfg.slow_start);
                // Probe it soon (fast interval) rather than at its steady pace.
                let fast = now + self.cfg.policy.fast;
                if c.next_at > fast {
                    c.next_at = fast;
                }
            }
        }
    }

    fn on_agent_datagrams(&mut self, plane: &mut Plane, now: Instant) {
        let Some(sock) = self.agent_sock.as_ref() else {
            return;
        };
        let Some(acfg) = self.cfg.agent.as_ref() else {
            return;
        };
        let wall_ms = wall_ms();
        for _ in 0..256 {
            let (n, from) = match sock.recv_from(&mut self.buf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let hb = match wire::parse(&self.buf[..n], acfg.key.bytes()) {
                Ok(hb) => hb,
                Err(e) => {
                    // Not authenticated: the node id is only what the sender claims.
                    let claimed = wire::Packet::new_checked(&self.buf[..n])
                        .ok()
                        .and_then(|p| std::str::from_utf8(p.node_id()).ok().map(str::to_owned))
                        .map_or_else(|| "unknown".to_owned(), |id| format!("{id}(claimed)"));
                    reject(
                        plane,
                        &mut self.last_reject_log,
                        now,
                        from,
                        &claimed,
                        &e.to_string(),
                    );
                    continue;
                }
            };
            let Ok(addr) = hb.node_id.parse::<SocketAddr>() else {
                reject(
                    plane,
                    &mut self.last_reject_log,
                    now,
                    from,
                    &hb.node_id,
                    "node id is not a node address",
                );
                continue;
            };
            // Any running service may list the node; each applies the report itself.
            let listed = |agent: bool| {
                plane.live().any(|(_, svc)| {
                    svc.shared
                        .pool
                        .find(addr)
                        .is_some_and(|n| !agent || n.spec().agent)
                })
            };
            let why = if !listed(false) {
                Some("no such node")
            } else if !listed(true) {
                Some("no agent expected for node (its --backend lacks ,agent)")
            } else {
                None
            };
            if let Some(why) = why {
                reject(
                    plane,
                    &mut self.last_reject_log,
                    now,
                    from,
                    &hb.node_id,
                    why,
                );
                continue;
            }
            if let Err(r) = self.agent_rx.accept(&hb, wall_ms) {
                reject(
                    plane,
                    &mut self.last_reject_log,
                    now,
                    from,
                    &hb.node_id,
                    &r.to_string(),
                );
                continue;
            }
            plane
                .first()
                .stats
                .agent_accepted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let inbox = &mut plane.agent_inbox;
            inbox.agents.insert(addr, from);
            inbox.last_seq += 1;
            inbox.reports.push_back(crate::plane::AgentReport {
                seq: inbox.last_seq,
                addr,
                state: hb.state,
                weight_pct: hb.weight_pct,
                load_per_cpu_milli: hb.load_per_cpu_milli,
                task: hb.report,
            });
            while inbox.reports.len() > INBOX_KEEP {
                inbox.reports.pop_front();
            }
        }
        self.take_reports(plane, now);
    }

    /// Applies the agent reports that arrived since the last call to this service's
    /// nodes that expect an agent.
    fn take_reports(&mut self, plane: &mut Plane, now: Instant) {
        if plane.agent_inbox.last_seq <= self.agent_seen {
            return;
        }
        let t = self.t(now);
        let fresh: Vec<crate::plane::AgentReport> = plane
            .agent_inbox
            .reports
            .iter()
            .filter(|r| r.seq > self.agent_seen)
            .cloned()
            .collect();
        self.agent_seen = plane.agent_inbox.last_seq;
        for r in fresh {
            let Some(c) = self.checks.get_mut(&r.addr) else {
                continue;
            };
            let Some(view) = c.agent.as_mut() else {
                continue;
            };
            view.liveness.on_heartbeat(t);
            view.weight_pct = r.weight_pct;
            let was_missing = std::mem::replace(&mut view.missing, false);
            if view.state != Some(r.state) || was_missing {
                let old = if was_missing {
                    "missing".to_string()
                } else {
                    view.state.map_or("none".into(), |s| s.to_string())
                };
                view.state = Some(r.state);
                agent_changed(
                    self.service,
                    plane,
                    c,
                    &old,
                    &r.state.to_string(),
                    format!(
                        "agent reported {} (load/cpu {:.2})",
                        r.state,
                        f64::from(r.load_per_cpu_milli) / 1000.0
                    ),
                );
            }
            update_weight(c, now, self.cfg.slow_start);
        }
    }

    fn check_agents(&mut self, plane: &mut Plane, now: Instant) {
        let t = self.t(now);
        for c in self.checks.values_mut() {
            let Some(view) = c.agent.as_mut() else {
                continue;
            };
            if !view.missing && view.liveness.is_missing(t) {
                view.missing = true;
                let old = view.state.map_or("none".into(), |s| s.to_string());
                agent_changed(
                    self.service,
                    plane,
                    c,
                    &old,
                    "missing",
                    "agent heartbeats stopped".into(),
                );
            }
        }
    }
}

fn reject(
    plane: &mut Plane,
    last: &mut Option<Instant>,
    now: Instant,
    from: SocketAddr,
    node: &str,
    why: &str,
) {
    plane
        .first()
        .stats
        .agent_rejected
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if last.is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1)) {
        *last = Some(now);
        log::warn!(target: "fulcrum::agent", "rejected heartbeat from {from} node={}: {why} (further rejections this second not logged)", node.escape_debug());
    }
}

/// A node as alerts name it: `SERVICE/ADDR`, or `ADDR` in the one service of flags.
fn subject(service: &str, addr: SocketAddr) -> String {
    if service == crate::config::DEFAULT_SERVICE {
        addr.to_string()
    } else {
        format!("{service}/{addr}")
    }
}

/// Applies the agent's verdict to the node and raises an alert.
fn agent_changed(
    svc: usize,
    plane: &mut Plane,
    c: &mut NodeCheck,
    old: &str,
    new: &str,
    reason: String,
) {
    let ok = new == "ready";
    c.node.set_agent_ok(ok);
    let service = &mut plane.services[svc];
    service.info.entry(c.node.addr()).or_default().agent = Some(new.to_string());
    let subject = subject(service.name(), c.node.addr());
    plane.notifier.alert(Alert {
        event: "agent",
        subject,
        old: old.to_string(),
        new: new.to_string(),
        reason,
        level: if ok { Level::Info } else { Level::Warn },
    });
}

/// Applies a health transition: pool state, slow start, alert.
fn apply_transition(
    plane: &mut Plane,
    svc: usize,
    c: &mut NodeCheck,
    tr: &Transition,
    now: Instant,
    slow_start: Duration,
) {
    c.node.set_health(tr.to);
    if tr.to == Health::Up && tr.from == Health::Down && !slow_start.is_zero() {
        c.up_since = Some(now);
    }
    update_weight(c, now, slow_start);
    let level = match tr.to {
        Health::Down => Level::Error,
        Health::Warning => Level::Warn,
        Health::Up => Level::Info,
    };
    let reason = match &tr.reason {
        Reason::Recovered => format!(
            "{} consecutive successful checks",
            c.tracker.consecutive_successes().max(1)
        ),
        Reason::Failed(r) => format!(
            "{r}, {} consecutive failures",
            c.tracker.consecutive_failures()
        ),
    };
    let subject = subject(plane.services[svc].name(), c.node.addr());
    plane.notifier.alert(Alert {
        event: "health",
        subject,
        old: tr.from.to_string(),
        new: tr.to.to_string(),
        reason,
        level,
    });
}

/// Effective weight = configured weight × slow-start ramp × agent percentage.
fn update_weight(c: &mut NodeCheck, now: Instant, slow_start: Duration) {
    let w = u64::from(c.node.weight());
    let mut eff = w;
    if let Some(since) = c.up_since {
        let el = now.saturating_duration_since(since);
        if el >= slow_start || slow_start.is_zero() {
            c.up_since = None;
        } else {
            eff = (w * el.as_millis() as u64 / slow_start.as_millis().max(1) as u64).max(1);
        }
    }
    if let Some(pct) = c.agent.as_ref().and_then(|a| a.weight_pct) {
        eff = (eff * u64::from(pct) / 100).max(u64::from(pct > 0));
    }
    c.node
        .set_effective_weight(eff.min(u64::from(u32::MAX)) as u32);
}

impl Component for Checker {
    fn register(&mut self, registry: &Registry, base: usize) -> io::Result<()> {
        self.base = base;
        if let Some(s) = self.agent_sock.as_mut() {
            registry.register(s, Token(base + AGENT_TOKEN), Interest::READABLE)?;
        }
        Ok(())
    }

    fn on_event(&mut self, plane: &mut Plane, registry: &Registry, offset: usize, ev: &Event) {
        let now = Instant::now();
        if offset == AGENT_TOKEN {
            // Know every node before judging a heartbeat (one may arrive before the
            // first tick, or right after `add node`).
            self.sync(plane, registry, now);
            self.on_agent_datagrams(plane, now);
            return;
        }
        let key = offset - 1;
        if let Some(outcome) = self.advance(key, ev) {
            if let Some((addr, started)) = self.probes.get(key).map(|p| (p.node, p.started)) {
                self.drop_probe(registry, key);
                self.finish(plane, addr, outcome, started, now);
            }
        }
    }

    fn on_tick(&mut self, plane: &mut Plane, registry: &Registry, now: Instant) {
        self.adopt(plane, registry);
        self.sync(plane, registry, now);
        self.on_observations(plane, now);
        // Timed-out probes.
        let expired: Vec<(usize, SocketAddr, bool, Instant)> = self
            .probes
            .iter()
            .filter(|(_, p)| now >= p.deadline)
            .map(|(k, p)| {
                (
                    k,
                    p.node,
                    matches!(p.state, ProbeState::Connecting),
                    p.started,
                )
            })
            .collect();
        for (key, addr, connecting, started) in expired {
            self.drop_probe(registry, key);
            let r = if connecting {
                FailReason::ConnectTimeout
            } else {
                FailReason::CheckTimeout
            };
            self.finish(plane, addr, Err(r), started, now);
        }
        if self.cfg.kind != CheckKind::None {
            let due: Vec<SocketAddr> = self
                .checks
                .iter()
                .filter(|(_, c)| c.probe.is_none() && now >= c.next_at)
                .map(|(a, _)| *a)
                .collect();
            for addr in due {
                self.start_probe(plane, registry, addr, now);
            }
        }
        self.take_reports(plane, now);
        self.check_agents(plane, now);
        if self.cfg.slow_start > Duration::ZERO {
            for c in self.checks.values_mut().filter(|c| c.up_since.is_some()) {
                update_weight(c, now, self.cfg.slow_start);
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let probes = self.probes.iter().map(|(_, p)| p.deadline).min();
        let checks = if self.cfg.kind == CheckKind::None {
            None
        } else {
            self.checks
                .values()
                .filter(|c| c.probe.is_none())
                .map(|c| c.next_at)
                .min()
        };
        let agents = self.checks.values().filter_map(|c| {
            let a = c.agent.as_ref()?;
            if a.missing {
                return None;
            }
            a.liveness.deadline().map(|d| self.origin + d)
        });
        let ramp = self
            .checks
            .values()
            .any(|c| c.up_since.is_some())
            .then(|| Instant::now() + Duration::from_millis(100));
        // Passive observations arrive through the plane's waker, so no polling for them.
        probes
            .into_iter()
            .chain(checks)
            .chain(agents)
            .chain(ramp)
            .min()
            .or(Some(Instant::now() + Duration::from_secs(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::state::Thresholds;
    use crate::pool::NodeSpec;

    fn check(weight: u32, agent_pct: Option<u8>) -> NodeCheck {
        let node = Arc::new(Node::new(NodeSpec {
            addr: "127.0.0.1:1".parse().unwrap(),
            weight,
            backup: false,
            maxconn: 0,
            agent: agent_pct.is_some(),
        }));
        NodeCheck {
            node,
            tracker: HealthTracker::new(Thresholds::DEFAULT, Health::Up).unwrap(),
            jitter: Jitter::new(0, 0),
            next_at: Instant::now(),
            probe: None,
            rtt_last: None,
            up_since: None,
            agent: agent_pct.map(|p| AgentView {
                liveness: Liveness::new(Duration::from_secs(1), 3),
                state: Some(AgentState::Ready),
                missing: false,
                weight_pct: Some(p),
            }),
        }
    }

    #[test]
    fn slow_start_ramps_weight_linearly_then_stops() {
        let ss = Duration::from_secs(10);
        let mut c = check(100, None);
        let t0 = Instant::now();
        c.up_since = Some(t0);
        update_weight(&mut c, t0, ss);
        assert_eq!(c.node.effective_weight(), 1, "never 0 while ramping");
        update_weight(&mut c, t0 + Duration::from_secs(5), ss);
        assert_eq!(c.node.effective_weight(), 50);
        update_weight(&mut c, t0 + Duration::from_secs(10), ss);
        assert_eq!(c.node.effective_weight(), 100);
        assert!(c.up_since.is_none(), "ramp over");
    }

    #[test]
    fn agent_percentage_scales_but_never_exceeds_weight() {
        let mut c = check(10, Some(50));
        update_weight(&mut c, Instant::now(), Duration::ZERO);
        assert_eq!(c.node.effective_weight(), 5);
        let mut c = check(10, Some(100));
        update_weight(&mut c, Instant::now(), Duration::ZERO);
        assert_eq!(c.node.effective_weight(), 10);
        let mut c = check(1, Some(10));
        update_weight(&mut c, Instant::now(), Duration::ZERO);
        assert_eq!(
            c.node.effective_weight(),
            1,
            "a positive percentage keeps the node usable"
        );
        let mut c = check(10, Some(0));
        update_weight(&mut c, Instant::now(), Duration::ZERO);
        assert_eq!(c.node.effective_weight(), 0);
    }
}
