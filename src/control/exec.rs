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

use crate::control::command::{
    self, apply, Command, Effect, NodeEntry, NodeTable, RolloutCommand, Scoped,
};
use crate::control::render;
use crate::control::snapshot::{
    CheckSnapshot, DirectSnapshot, NodeSnapshot, ServiceSnapshot, StatsSnapshot,
};
use crate::duration::format_duration;
use crate::plane::Plane;
use crate::pool::{AdminState, NodeSpec};

pub use crate::control::reply::Reply;

/// What a command turned into.
#[derive(Debug)]
pub enum Outcome {
    /// Answer now.
    Reply(Reply),
    /// `wait drained`: answer when the node has no flows, or at the deadline.
    Wait {
        /// The node's service (index in the plane).
        service: usize,
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

/// State of the executor: nodes being removed, and the last nodes removed (each with
/// its service's index).
#[derive(Debug, Default)]
pub struct Executor {
    removing: Vec<(usize, SocketAddr, Instant)>,
    removed: std::collections::VecDeque<(usize, SocketAddr)>,
}

/// Which services a command acts on.
enum Target {
    /// One service (its index).
    One(usize),
    /// Every running service (`disable`, `enable`, `set scheduler` without a service).
    All,
}

impl Executor {
    fn table(&self, plane: &Plane, svc: usize) -> NodeTable {
        let service = &plane.services[svc];
        let mut t = NodeTable::new(
            service.shared.scheduler_kind(),
            service.shared.enabled.load(Ordering::Relaxed),
        );
        for n in service.shared.pool.snapshot().0.iter() {
            t.commit(&Effect::Added(NodeEntry {
                addr: n.addr(),
                weight: n.weight(),
                backup: n.is_backup(),
                admin: n.admin(),
                removing: self
                    .removing
                    .iter()
                    .any(|(s, a, _)| *s == svc && *a == n.addr()),
            }));
        }
        t
    }

    /// The services `cmd` acts on: the one it names, or the one that has its node.
    fn target(&self, plane: &Plane, cmd: &Scoped) -> Result<Target, String> {
        if let Some(name) = &cmd.service {
            return plane
                .service_index(name)
                .map(Target::One)
                .ok_or_else(|| format!("no such service {name:?} (see show services)"));
        }
        let addr = match &cmd.cmd {
            Command::AddNode { addr, .. }
            | Command::RemoveNode { addr }
            | Command::SetWeight { addr, .. }
            | Command::SetState { addr, .. }
            | Command::WaitDrained { addr, .. }
            | Command::ScheduleMaint { addr, .. }
            | Command::CancelMaint { addr } => *addr,
            _ => return Ok(Target::All),
        };
        let live: Vec<usize> = plane.live().map(|(i, _)| i).collect();
        if let [only] = live[..] {
            return Ok(Target::One(only));
        }
        let adding = matches!(cmd.cmd, Command::AddNode { .. });
        let holders: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| {
                plane.services[i].shared.pool.find(addr).is_some() || self.was_removed(i, addr)
            })
            .collect();
        match holders[..] {
            [one] if !adding => Ok(Target::One(one)),
            [] if !adding => Err(command::ApplyError::NoSuchNode(addr).to_string()),
            _ => {
                let names: Vec<&str> = if adding {
                    live.iter().map(|&i| plane.services[i].name()).collect()
                } else {
                    holders.iter().map(|&i| plane.services[i].name()).collect()
                };
                Err(format!(
                    "{} services ({}): name one, as SERVICE/{addr}",
                    if adding {
                        "several"
                    } else {
                        "node is in several"
                    },
                    names.join(", ")
                ))
            }
        }
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
        let cmd = match command::parse_scoped(line) {
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
        cmd: &Scoped,
        who: &str,
        local: bool,
        now: Instant,
    ) -> Outcome {
        match &cmd.cmd {
            Command::ShowServices { json } => {
                let list = services(plane);
                return Outcome::Reply(Reply::ok(if *json {
                    render::services_json(&list)
                } else {
                    render::services_table(&list)
                }));
            }
            Command::ShowNodes { json } => {
                let only = match &cmd.service {
                    Some(_) => match self.target(plane, cmd) {
                        Ok(Target::One(i)) => Some(i),
                        Ok(Target::All) => None,
                        Err(e) => return Outcome::Reply(Reply::error(e)),
                    },
                    None => None,
                };
                let list = nodes_of(plane, now, only);
                return Outcome::Reply(Reply::ok(if *json {
                    render::nodes_json(&list)
                } else {
                    render::nodes_table(&list)
                }));
            }
            Command::ShowStats { json } => {
                return Outcome::Reply(Reply::ok(stats_reply(plane, now, *json)))
            }
            Command::ShowConfig { json } => return Outcome::Reply(Reply::ok(config(plane, *json))),
            Command::ShowBgp { json } => {
                return Outcome::Reply(match &plane.bgp {
                    Some(b) if *json => Reply::ok(b.json(now)),
                    Some(b) => Reply::ok(b.text(now)),
                    None => Reply::error("BGP is not configured (no --bgp-peer)"),
                })
            }
            Command::Help => return Outcome::Reply(Reply::ok(command::HELP.trim_end())),
            // Not a node change: never forwarded to the failover peer nor kept in the
            // state file.
            Command::Rollout(RolloutCommand::Task(spec)) => {
                return Outcome::Reply(crate::control::task::start(plane, spec, who))
            }
            Command::Rollout(RolloutCommand::TaskStatus { json }) => {
                return Outcome::Reply(Reply::ok(crate::control::task::status_reply(
                    plane, now, *json,
                )))
            }
            Command::Rollout(r) => {
                return Outcome::Reply(crate::control::rollout::run(plane, r, who, now))
            }
            _ => {}
        }
        let targets: Vec<usize> = match self.target(plane, cmd) {
            Ok(Target::One(i)) => vec![i],
            Ok(Target::All) => plane.live().map(|(i, _)| i).collect(),
            Err(e) => return Outcome::Reply(Reply::error(e)),
        };
        if let (Command::ScheduleMaint { .. } | Command::CancelMaint { .. }, [svc]) =
            (&cmd.cmd, &targets[..])
        {
            return Outcome::Reply(crate::control::rollout::window(plane, *svc, &cmd.cmd, who));
        }
        let several = targets.len() > 1;
        let mut replies = Vec::with_capacity(targets.len());
        for svc in targets {
            let scoped = Scoped::new(Some(plane.services[svc].name()), cmd.cmd.clone());
            match self.run_on(plane, svc, &scoped, who, local, now) {
                Outcome::Reply(r) if !r.ok => return Outcome::Reply(r),
                Outcome::Reply(r) if several => {
                    replies.push(format!("{}: {}", plane.services[svc].name(), r.body))
                }
                Outcome::Reply(r) => replies.push(r.body),
                wait => return wait,
            }
        }
        Outcome::Reply(Reply::ok(replies.join("\n")))
    }

    /// Runs a command on one service; `cmd` names it.
    fn run_on(
        &mut self,
        plane: &mut Plane,
        svc: usize,
        cmd: &Scoped,
        who: &str,
        local: bool,
        now: Instant,
    ) -> Outcome {
        let table = self.table(plane, svc);
        // A node that was removed is drained: the removal waited for (or cut) its flows.
        if let Command::WaitDrained { addr, .. } = cmd.cmd {
            if table.get(addr).is_none() && self.was_removed(svc, addr) {
                return Outcome::Reply(Reply::ok(drained_removed(addr)));
            }
        }
        let effect = match apply(&table, &cmd.cmd) {
            Ok(e) => e,
            Err(e) => return Outcome::Reply(Reply::error(e)),
        };
        if let Command::WaitDrained { addr, timeout } = cmd.cmd {
            let t = timeout.unwrap_or(command::DEFAULT_WAIT);
            return Outcome::Wait {
                service: svc,
                addr,
                deadline: now + t,
            };
        }
        let reply = match self.carry_out(plane, svc, &effect, now) {
            Ok(msg) => {
                info!(target: "fulcrum::control", "{who}: {cmd} -> {msg}");
                if local {
                    plane.admin_log.push(cmd.clone());
                }
                Reply::ok(msg)
            }
            Err(e) => Reply::error(e),
        };
        Outcome::Reply(reply)
    }

    fn carry_out(
        &mut self,
        plane: &mut Plane,
        svc: usize,
        effect: &Effect,
        now: Instant,
    ) -> Result<String, String> {
        let service = &mut plane.services[svc];
        let shared = &service.shared;
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
                self.removed.retain(|r| *r != (svc, e.addr));
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
                let deadline = now + service.cfg.remove_deadline;
                let wait = service.cfg.remove_deadline;
                service.info.entry(*addr).or_default().removing = true;
                self.removing.push((svc, *addr, deadline));
                Ok(format!(
                    "node {addr} draining: removed when idle ({} active) or in {}",
                    node.active(),
                    format_duration(wait)
                ))
            }
            Effect::RemovalCancelled(addr) => {
                let node = find(*addr)?;
                self.removing.retain(|(s, a, _)| (*s, a) != (svc, addr));
                if let Some(i) = service.info.get_mut(addr) {
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
                // Back in service: flows cut earlier (a rollout's drain timeout, a
                // maintenance window's opening) must not cut the new ones.
                if *new == AdminState::Ready {
                    node.clear_cut();
                }
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
        let removed = &mut self.removed;
        self.removing.retain(|(svc, addr, deadline)| {
            let Some(service) = plane.services.get_mut(*svc) else {
                return false;
            };
            let Some(node) = service.shared.pool.find(*addr) else {
                return false;
            };
            let idle = node.active() == 0;
            if idle || now >= *deadline {
                if !idle {
                    node.cut();
                }
                let _ = service.shared.pool.remove(*addr);
                service.info.remove(addr);
                removed.retain(|r| *r != (*svc, *addr));
                if removed.len() >= REMEMBER_REMOVED {
                    removed.pop_front();
                }
                removed.push_back((*svc, *addr));
                info!(target: "fulcrum::control", "service {} node {addr} removed{}", service.shared.name, if idle { " (idle)" } else { " at its deadline; remaining flows cut" });
                false
            } else {
                true
            }
        });
    }

    /// Whether `addr` left service `svc` through `remove node` (among the last
    /// [`REMEMBER_REMOVED`] removals) and was not added again since.
    pub fn was_removed(&self, svc: usize, addr: SocketAddr) -> bool {
        self.removed.contains(&(svc, addr))
    }

    /// The soonest removal deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.removing.iter().map(|(_, _, d)| *d).min()
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
    if plane.process.cut_now.load(Ordering::Relaxed) {
        "stopping"
    } else if plane.process.shutdown.load(Ordering::Relaxed) || plane.stop_requested {
        "draining"
    } else {
        "serving"
    }
}

/// Per-node snapshots of every running service, in service then pool order.
pub fn nodes(plane: &Plane, now: Instant) -> Vec<NodeSnapshot> {
    nodes_of(plane, now, None)
}

/// Per-node snapshots of service `only`, or of every running service.
pub fn nodes_of(plane: &Plane, now: Instant, only: Option<usize>) -> Vec<NodeSnapshot> {
    let mut out = Vec::new();
    for (i, svc) in plane.live() {
        if only.is_some_and(|o| o != i) {
            continue;
        }
        let first = out.len();
        service_nodes(svc, now, &mut out);
        let wall = crate::time::wall_ms();
        for w in plane.rollout.windows.iter().filter(|w| w.service == i) {
            if let Some(n) = out[first..].iter_mut().find(|n| n.addr == w.addr) {
                n.window = Some(w.describe(wall));
            }
        }
    }
    out
}

/// One service's nodes, appended to `out`.
fn service_nodes(svc: &crate::plane::Service, now: Instant, out: &mut Vec<NodeSnapshot>) {
    let name = &svc.shared.name;
    out.extend(svc.shared.pool.snapshot().0.iter().map(|n| {
        let c = &n.counters;
        let info = svc.info.get(&n.addr());
        NodeSnapshot {
            service: std::sync::Arc::clone(name),
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
            window: None,
        }
    }));
}

/// One line per running service.
pub fn services(plane: &Plane) -> Vec<ServiceSnapshot> {
    plane
        .live()
        .map(|(_, svc)| {
            let sh = &svc.shared;
            let (nodes, _) = sh.pool.snapshot();
            let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            ServiceSnapshot {
                name: std::sync::Arc::clone(&sh.name),
                listen: svc.cfg.listen.clone(),
                mode: match svc.cfg.mode {
                    crate::config::ForwardMode::Proxy => "proxy",
                    crate::config::ForwardMode::Direct(_) => "direct",
                },
                scheduler: sh.scheduler_kind().to_string(),
                nodes_up: nodes.iter().filter(|n| n.eligible()).count() as u64,
                nodes_total: nodes.len() as u64,
                active: ld(&sh.stats.active),
                total: ld(&sh.stats.total),
                bytes_in: ld(&sh.stats.bytes_in),
                bytes_out: ld(&sh.stats.bytes_out),
                no_node: ld(&sh.stats.no_node),
                enabled: sh.enabled.load(Ordering::Relaxed),
            }
        })
        .collect()
}

/// Distributor-wide snapshot: every service's counters added up (a service removed by
/// a reload still counts, so totals never go down).
pub fn stats(plane: &Plane, now: Instant) -> StatsSnapshot {
    let sum = |f: fn(&crate::pool::Stats) -> &std::sync::atomic::AtomicU64| {
        plane
            .services
            .iter()
            .map(|s| f(&s.shared.stats).load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let ha = plane.ha.as_ref();
    let first = plane.first();
    let mut schedulers: Vec<String> = Vec::new();
    for (_, s) in plane.live() {
        let k = s.shared.scheduler_kind().to_string();
        if !schedulers.contains(&k) {
            schedulers.push(k);
        }
    }
    StatsSnapshot {
        uptime_s: now.saturating_duration_since(plane.started).as_secs(),
        workers: plane.cfg.workers as u32,
        scheduler: schedulers.join(","),
        enabled: plane
            .live()
            .any(|(_, s)| s.shared.enabled.load(Ordering::Relaxed)),
        state: lifecycle(plane).to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        active: sum(|s| &s.active),
        total: sum(|s| &s.total),
        bytes_in: sum(|s| &s.bytes_in),
        bytes_out: sum(|s| &s.bytes_out),
        refused_disabled: sum(|s| &s.refused_disabled),
        refused_maxconn: sum(|s| &s.refused_maxconn),
        refused_per_source: sum(|s| &s.refused_per_source),
        no_node: sum(|s| &s.no_node),
        connect_failures: sum(|s| &s.connect_failures),
        accept_errors: sum(|s| &s.accept_errors),
        agent_accepted: first.stats.agent_accepted.load(Ordering::Relaxed),
        agent_rejected: first.stats.agent_rejected.load(Ordering::Relaxed),
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
            workers: d.worker_values(),
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
    let mut out = render::prometheus(&stats(plane, now), &services(plane), &nodes(plane, now));
    if let Some(b) = &plane.bgp {
        b.prometheus(&mut out);
    }
    if plane.cfg.health.agent.is_some() {
        crate::control::task::prometheus(&plane.rollout.tasks, &mut out);
    }
    out
}

/// `show config`: the running configuration — what a restart with the same flags would
/// rebuild, with the runtime changes (node set, weights, scheduler, enable/disable) in.
/// Secrets are never shown: only whether they are set.
fn config(plane: &Plane, json: bool) -> String {
    let live: Vec<&crate::plane::Service> = plane.live().map(|(_, s)| s).collect();
    let fields = match live[..] {
        [one] => service_config(one),
        _ => vec![(
            "services",
            render::ConfigValue::List(
                live.iter()
                    .map(|s| {
                        let mut f = vec![("name", render::ConfigValue::Str(s.name().to_owned()))];
                        f.extend(service_config(s));
                        render::ConfigValue::Object(f)
                    })
                    .collect(),
            ),
        )],
    };
    if json {
        render::config_json(&fields)
    } else {
        render::config_text(&fields)
    }
}

/// One service's running configuration, with the process's global keys.
fn service_config(svc: &crate::plane::Service) -> Vec<(&'static str, render::ConfigValue)> {
    use render::ConfigValue as V;
    let c = &svc.cfg;
    let h = &c.health;
    let dur = |d: std::time::Duration| V::Str(format_duration(d));
    let opt_str = |s: Option<String>| s.map_or(V::Null, V::Str);
    let addrs = |a: &[SocketAddr]| V::List(a.iter().map(|a| V::Str(a.to_string())).collect());
    let check = match &h.kind {
        crate::health::config::CheckKind::None => "none".to_string(),
        crate::health::config::CheckKind::Tcp => "tcp".to_string(),
        crate::health::config::CheckKind::Http { path } => format!("http:{path}"),
    };
    let backends = svc
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
        ("scheduler", V::Str(svc.shared.scheduler_kind().to_string())),
        ("hash_seed", V::Num(c.hash_seed)),
        (
            "enabled",
            V::Bool(svc.shared.enabled.load(Ordering::Relaxed)),
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
        (
            "hook",
            V::List(
                c.hooks
                    .hooks
                    .iter()
                    .map(|h| V::Str(format!("{}={}", h.name, h.command)))
                    .collect(),
            ),
        ),
        ("hook_timeout", dur(c.hooks.timeout)),
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
    fields
}
