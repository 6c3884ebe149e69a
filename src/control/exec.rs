//! Executes control commands against the live distributor and builds its snapshots.
//!
//! Shared by the Unix-socket and HTTP front ends (and by failover state sync): parse →
//! pure [`apply`] on a [`NodeTable`] mirror of the pool (validation, effect) → carry the
//! effect out on the pool and the workers' shared flags → log it once at info with who
//! asked. `remove node` drains first and finishes in [`Executor::tick`]: removed once
//! idle, or after `--deadline` with its remaining flows cut.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use log::info;

use crate::control::command::{self, apply, Command, Effect, NodeEntry, NodeTable};
use crate::control::render;
use crate::control::snapshot::{CheckSnapshot, DirectSnapshot, NodeSnapshot, StatsSnapshot};
use crate::duration::format_duration;
use crate::plane::Plane;
use crate::pool::{AdminState, NodeSpec};

/// A command's answer: body lines, and whether it was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Refused (`error: …`) or not.
    pub ok: bool,
    /// Text, without a trailing blank line.
    pub body: String,
}

impl Reply {
    /// A success with this text.
    pub fn ok(body: impl Into<String>) -> Reply {
        Reply {
            ok: true,
            body: body.into(),
        }
    }
    /// A refusal.
    pub fn error(msg: impl std::fmt::Display) -> Reply {
        Reply {
            ok: false,
            body: format!("error: {msg}"),
        }
    }
}

/// What a command turned into.
#[derive(Debug)]
pub enum Outcome {
    /// Answer now.
    Reply(Reply),
    /// `wait drained`: answer when the node has no flows, or at the deadline.
    Wait {
        /// The node.
        addr: SocketAddr,
        /// Give up then.
        deadline: Instant,
    },
}

/// How many removed addresses [`Executor`] remembers, so that `wait drained` on a node
/// that has already left answers "drained" rather than "no such node". Oldest forgotten
/// first; a forgotten address is reported as unknown.
pub const REMEMBER_REMOVED: usize = 256;

/// State of the executor: nodes being removed, and the last nodes removed.
#[derive(Debug, Default)]
pub struct Executor {
    removing: Vec<(SocketAddr, Instant)>,
    removed: std::collections::VecDeque<SocketAddr>,
}

impl Executor {
    fn table(&self, plane: &Plane) -> NodeTable {
        let mut t = NodeTable::new(
            plane.shared.scheduler_kind(),
            plane.shared.enabled.load(Ordering::Relaxed),
        );
        for n in plane.shared.pool.snapshot().0.iter() {
            t.commit(&Effect::Added(NodeEntry {
                addr: n.addr(),
                weight: n.weight(),
                backup: n.is_backup(),
                admin: n.admin(),
                removing: self.removing.iter().any(|(a, _)| *a == n.addr()),
            }));
        }
        t
    }

    /// Parses and runs one command line from `who`. `local`: it came from an operator
    /// here (not from the failover peer), so it is forwarded to the peer.
    pub fn execute(
        &mut self,
        plane: &mut Plane,
        line: &str,
        who: &str,
        local: bool,
        now: Instant,
    ) -> Outcome {
        let cmd = match command::parse(line) {
            Ok(c) => c,
            Err(command::ParseError::Empty) => return Outcome::Reply(Reply::ok("")),
            Err(e) => return Outcome::Reply(Reply::error(e)),
        };
        self.run(plane, &cmd, who, local, now)
    }

    /// Runs a parsed command.
    pub fn run(
        &mut self,
        plane: &mut Plane,
        cmd: &Command,
        who: &str,
        local: bool,
        now: Instant,
    ) -> Outcome {
        let table = self.table(plane);
        // A node that was removed is drained: the removal waited for (or cut) its flows.
        if let Command::WaitDrained { addr, .. } = cmd {
            if table.get(*addr).is_none() && self.was_removed(*addr) {
                return Outcome::Reply(Reply::ok(drained_removed(*addr)));
            }
        }
        let effect = match apply(&table, cmd) {
            Ok(e) => e,
            Err(e) => return Outcome::Reply(Reply::error(e)),
        };
        let reply = match cmd {
            Command::ShowNodes { json } => {
                let nodes = nodes(plane, now);
                Reply::ok(if *json {
                    render::nodes_json(&nodes)
                } else {
                    render::nodes_table(&nodes)
                })
            }
            Command::ShowStats { json } => Reply::ok(stats_reply(plane, now, *json)),
            Command::ShowConfig { json } => Reply::ok(config(plane, *json)),
            Command::ShowBgp { json } => match &plane.bgp {
                Some(b) if *json => Reply::ok(b.json(now)),
                Some(b) => Reply::ok(b.text(now)),
                None => Reply::error("BGP is not configured (no --bgp-peer)"),
            },
            Command::Help => Reply::ok(command::HELP.trim_end()),
            Command::WaitDrained { addr, timeout } => {
                let t = timeout.unwrap_or(command::DEFAULT_WAIT);
                return Outcome::Wait {
                    addr: *addr,
                    deadline: now + t,
                };
            }
            _ => match self.carry_out(plane, &effect, now) {
                Ok(msg) => {
                    info!(target: "fulcrum::control", "{who}: {cmd} -> {msg}");
                    if local {
                        plane.admin_log.push(cmd.clone());
                    }
                    Reply::ok(msg)
                }
                Err(e) => Reply::error(e),
            },
        };
        Outcome::Reply(reply)
    }

    fn carry_out(
        &mut self,
        plane: &mut Plane,
        effect: &Effect,
        now: Instant,
    ) -> Result<String, String> {
        let shared = &plane.shared;
        let find = |addr: std::net::SocketAddr| {
            shared
                .pool
                .find(addr)
                .ok_or_else(|| command::ApplyError::NoSuchNode(addr).to_string())
        };
        match effect {
            Effect::None => Ok("ok".into()),
            Effect::Added(e) => {
                let spec = NodeSpec {
                    addr: e.addr,
                    weight: e.weight,
                    backup: e.backup,
                    maxconn: 0,
                    agent: false,
                };
                shared.pool.add(spec).map_err(|e| e.to_string())?;
                self.removed.retain(|a| *a != e.addr);
                Ok(format!(
                    "node {} added (weight {}{})",
                    e.addr,
                    e.weight,
                    if e.backup { ", backup" } else { "" }
                ))
            }
            Effect::Removing(addr) => {
                let node = find(*addr)?;
                node.set_admin(AdminState::Drain);
                plane.info.entry(*addr).or_default().removing = true;
                let deadline = now + plane.cfg.remove_deadline;
                self.removing.push((*addr, deadline));
                Ok(format!(
                    "node {addr} draining: removed when idle ({} active) or in {}",
                    node.active(),
                    format_duration(plane.cfg.remove_deadline)
                ))
            }
            Effect::RemovalCancelled(addr) => {
                let node = find(*addr)?;
                self.removing.retain(|(a, _)| a != addr);
                if let Some(i) = plane.info.get_mut(addr) {
                    i.removing = false;
                }
                node.set_admin(AdminState::Ready);
                Ok(format!("node {addr} removal cancelled: ready"))
            }
            Effect::WeightSet { addr, old, new } => {
                let node = find(*addr)?;
                node.set_weight(*new);
                shared.pool.bump();
                Ok(format!("node {addr} weight {old} -> {new}"))
            }
            Effect::StateSet { addr, old, new } => {
                let node = find(*addr)?;
                node.set_admin(*new);
                Ok(format!("node {addr} state {old} -> {new}"))
            }
            Effect::Enabled(on) => {
                shared.enabled.store(*on, Ordering::Relaxed);
                Ok(if *on {
                    "distribution enabled"
                } else {
                    "distribution disabled: new connections are refused"
                }
                .into())
            }
            Effect::SchedulerSet(k) => {
                let old = shared.scheduler_kind();
                shared.set_scheduler_kind(*k);
                Ok(format!("scheduler {old} -> {k}"))
            }
        }
    }

    /// Finishes removals: idle nodes leave the pool; overdue ones have their flows cut.
    pub fn tick(&mut self, plane: &mut Plane, now: Instant) {
        let pool = &plane.shared.pool;
        let removed = &mut self.removed;
        self.removing.retain(|(addr, deadline)| {
            let Some(node) = pool.find(*addr) else { return false };
            let idle = node.active() == 0;
            if idle || now >= *deadline {
                if !idle {
                    node.cut();
                }
                let _ = pool.remove(*addr);
                plane.info.remove(addr);
                removed.retain(|a| a != addr);
                if removed.len() >= REMEMBER_REMOVED {
                    removed.pop_front();
                }
                removed.push_back(*addr);
                info!(target: "fulcrum::control", "node {addr} removed{}", if idle { " (idle)" } else { " at its deadline; remaining flows cut" });
                false
            } else {
                true
            }
        });
    }

    /// Whether `addr` left the pool through `remove node` (among the last
    /// [`REMEMBER_REMOVED`] removals) and was not added again since.
    pub fn was_removed(&self, addr: SocketAddr) -> bool {
        self.removed.contains(&addr)
    }

    /// The soonest removal deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.removing.iter().map(|(_, d)| *d).min()
    }
}

/// A node's last check as a snapshot relative to `now`.
fn check_snapshot(info: &crate::plane::NodeInfo, now: Instant) -> Option<CheckSnapshot> {
    info.last_check
        .as_ref()
        .map(|(ok, detail, at, rtt)| CheckSnapshot {
            ok: *ok,
            detail: detail.clone(),
            age_ms: now.saturating_duration_since(*at).as_millis() as u64,
            rtt_us: rtt.map(|r| r.as_micros() as u64),
        })
}

/// The reply of `wait drained` for a node that has left the pool.
pub fn drained_removed(addr: SocketAddr) -> String {
    format!("node {addr} drained (removed)")
}

/// The distributor's life-cycle state: `serving`, `draining` (a SIGTERM/SIGINT or
/// `shutdown` stopped accepting; open flows finish) or `stopping` (the drain time is
/// over: what is left is cut).
pub fn lifecycle(plane: &Plane) -> &'static str {
    if plane.shared.cut_now.load(Ordering::Relaxed) {
        "stopping"
    } else if plane.shared.shutdown.load(Ordering::Relaxed) || plane.stop_requested {
        "draining"
    } else {
        "serving"
    }
}

/// Per-node snapshots, in pool order.
pub fn nodes(plane: &Plane, now: Instant) -> Vec<NodeSnapshot> {
    plane
        .shared
        .pool
        .snapshot()
        .0
        .iter()
        .map(|n| {
            let c = &n.counters;
            let info = plane.info.get(&n.addr());
            NodeSnapshot {
                addr: n.addr(),
                weight: n.weight(),
                effective_weight: n.effective_weight(),
                backup: n.is_backup(),
                maxconn: n.spec().maxconn,
                admin: n.admin(),
                health: n.health(),
                active: n.active(),
                total: c.total.load(Ordering::Relaxed),
                bytes_in: c.bytes_in.load(Ordering::Relaxed),
                bytes_out: c.bytes_out.load(Ordering::Relaxed),
                connect_failures: c.connect_failures.load(Ordering::Relaxed),
                last_check: info.and_then(|i| check_snapshot(i, now)),
                agent: info.and_then(|i| i.agent.clone()),
                agent_ok: n.agent_ok(),
                removing: info.is_some_and(|i| i.removing),
            }
        })
        .collect()
}

/// Distributor-wide snapshot.
pub fn stats(plane: &Plane, now: Instant) -> StatsSnapshot {
    let s = &plane.shared.stats;
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let ha = plane.ha.as_ref();
    StatsSnapshot {
        uptime_s: now.saturating_duration_since(plane.started).as_secs(),
        workers: plane.cfg.workers as u32,
        scheduler: plane.shared.scheduler_kind().to_string(),
        enabled: plane.shared.enabled.load(Ordering::Relaxed),
        state: lifecycle(plane).to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        active: ld(&s.active),
        total: ld(&s.total),
        bytes_in: ld(&s.bytes_in),
        bytes_out: ld(&s.bytes_out),
        refused_disabled: ld(&s.refused_disabled),
        refused_maxconn: ld(&s.refused_maxconn),
        refused_per_source: ld(&s.refused_per_source),
        no_node: ld(&s.no_node),
        connect_failures: ld(&s.connect_failures),
        accept_errors: ld(&s.accept_errors),
        agent_accepted: ld(&s.agent_accepted),
        agent_rejected: ld(&s.agent_rejected),
        ha_role: ha.map(|h| h.role.clone()),
        ha_epoch: ha.map(|h| h.epoch),
        ha_takeovers: ha.map(|h| h.takeovers),
        ha_peer_last_ms: ha
            .and_then(|h| h.peer_last)
            .map(|t| now.saturating_duration_since(t).as_millis() as u64),
        ha_rejected: ha.map(|h| h.rejected),
        direct: plane.direct.as_ref().map(|d| DirectSnapshot {
            counters: d.stats.counters(),
            drops: d.stats.drops_by_reason(),
        }),
    }
}

/// `show stats` in text or JSON (in direct mode with the data plane's counters).
pub fn stats_reply(plane: &Plane, now: Instant, json: bool) -> String {
    let s = stats(plane, now);
    if json {
        render::stats_json(&s)
    } else {
        render::stats_text(&s)
    }
}

/// `/metrics`: Prometheus text (with direct mode's families in that mode).
pub fn metrics(plane: &Plane, now: Instant) -> String {
    let mut out = render::prometheus(&stats(plane, now), &nodes(plane, now));
    if let Some(b) = &plane.bgp {
        b.prometheus(&mut out);
    }
    out
}

/// `show config`: the running configuration — what a restart with the same flags would
/// rebuild, with the runtime changes (node set, weights, scheduler, enable/disable) in.
/// Secrets are never shown: only whether they are set.
fn config(plane: &Plane, json: bool) -> String {
    use render::ConfigValue as V;
    let c = &plane.cfg;
    let h = &c.health;
    let dur = |d: std::time::Duration| V::Str(format_duration(d));
    let opt_str = |s: Option<String>| s.map_or(V::Null, V::Str);
    let addrs = |a: &[SocketAddr]| V::List(a.iter().map(|a| V::Str(a.to_string())).collect());
    let check = match &h.kind {
        crate::health::config::CheckKind::None => "none".to_string(),
        crate::health::config::CheckKind::Tcp => "tcp".to_string(),
        crate::health::config::CheckKind::Http { path } => format!("http:{path}"),
    };
    let backends = plane
        .shared
        .pool
        .snapshot()
        .0
        .iter()
        .map(|n| {
            let spec = n.spec();
            V::Object(vec![
                ("addr", V::Str(n.addr().to_string())),
                ("weight", V::Num(n.weight().into())),
                ("backup", V::Bool(n.is_backup())),
                ("maxconn", V::Num(spec.maxconn.into())),
                ("agent", V::Bool(spec.agent)),
                ("admin", V::Str(n.admin().to_string())),
            ])
        })
        .collect();
    let (mode, interface) = match &c.mode {
        crate::config::ForwardMode::Proxy => ("proxy", c.ha.as_ref().map(|h| h.interface.clone())),
        crate::config::ForwardMode::Direct(d) => ("direct", Some(d.interface.clone())),
    };
    let mut fields: Vec<(&str, V)> = vec![
        ("mode", V::Str(mode.into())),
        ("interface", opt_str(interface)),
        ("listen", addrs(&c.listen)),
        ("backends", V::List(backends)),
        (
            "scheduler",
            V::Str(plane.shared.scheduler_kind().to_string()),
        ),
        ("hash_seed", V::Num(c.hash_seed)),
        (
            "enabled",
            V::Bool(plane.shared.enabled.load(Ordering::Relaxed)),
        ),
        ("workers", V::Num(c.workers as u64)),
        ("max_conns", V::Num(c.max_conns)),
        (
            "max_conns_per_source",
            V::Num(c.max_conns_per_source.unwrap_or(0).into()),
        ),
        ("connect_timeout", dur(c.connect_timeout)),
        ("idle_timeout", dur(c.idle_timeout)),
        ("retries", V::Num(c.retries.into())),
        ("drain_timeout", dur(c.drain_timeout)),
        ("deadline", dur(c.remove_deadline)),
        ("backlog", V::Num(c.backlog.into())),
        ("splice", V::Bool(c.splice)),
        (
            "send_proxy",
            opt_str(c.send_proxy.map(|v| v.as_str().to_owned())),
        ),
        ("access_log", V::Bool(c.access_log)),
        ("check", V::Str(check)),
        ("check_interval", dur(h.policy.base)),
        ("check_max_interval", dur(h.policy.max)),
        ("check_multiplier", V::Num(h.policy.multiplier.into())),
        ("check_fast_interval", dur(h.policy.fast)),
        ("check_down_interval", dur(h.policy.down)),
        ("check_timeout", dur(h.timeout)),
        ("check_status", V::Str(h.statuses.to_string())),
        ("check_host", opt_str(h.host.clone())),
        ("check_seed", V::Num(h.seed)),
        ("rise", V::Num(h.thresholds.rise.into())),
        ("warn", V::Num(h.thresholds.warn.into())),
        ("fall", V::Num(h.thresholds.fall.into())),
        ("slow_start", dur(h.slow_start)),
        (
            "agent_listen",
            opt_str(h.agent.as_ref().map(|a| a.listen.to_string())),
        ),
    ];
    if let Some(a) = &h.agent {
        fields.push(("agent_interval", dur(a.interval)));
        fields.push(("agent_misses", V::Num(a.misses.into())));
    }
    fields.extend([
        (
            "control",
            opt_str(c.control.as_ref().map(|p| p.display().to_string())),
        ),
        ("http", opt_str(c.http.map(|a| a.to_string()))),
        ("http_token", V::Bool(c.http_token.is_some())),
        ("notify", opt_str(c.notify.clone())),
        ("notify_timeout", dur(c.notify_timeout)),
    ]);
    match &c.ha {
        None => fields.push(("vip", V::List(Vec::new()))),
        Some(ha) => fields.extend([
            (
                "vip",
                V::List(ha.vips.iter().map(|v| V::Str(v.to_string())).collect()),
            ),
            ("peer", addrs(&ha.peers)),
            ("ha_port", V::Num(ha.port.into())),
            ("priority", V::Num(ha.priority.into())),
            ("advert_interval", dur(ha.advert_interval)),
            ("preempt", V::Bool(ha.preempt)),
            ("ha_group", V::Num(ha.group.into())),
        ]),
    }
    if let Some(so) = &c.scaleout {
        let peers = so
            .peers
            .iter()
            .map(|p| {
                let bfd = if p.bfd { ",bfd" } else { "" };
                V::Str(format!("{},as={},hold={}s{bfd}", p.addr, p.asn, p.hold))
            })
            .collect();
        fields.extend([
            ("bgp_as", V::Num(so.local_as.into())),
            ("bgp_peer", V::List(peers)),
            (
                "bgp_router_id",
                opt_str(so.router_id.map(|r| r.to_string())),
            ),
            (
                "announce",
                V::List(so.announce.iter().map(|p| V::Str(p.to_string())).collect()),
            ),
            ("announce_min_healthy", V::Num(so.min_healthy as u64)),
            ("announce_hold_down", dur(so.hold_down)),
            ("bgp_shutdown_delay", dur(so.shutdown_delay)),
            ("bfd_interval", dur(so.bfd_interval)),
            ("bfd_multiplier", V::Num(so.bfd_multiplier.into())),
        ]);
    }
    if json {
        render::config_json(&fields)
    } else {
        render::config_text(&fields)
    }
}
