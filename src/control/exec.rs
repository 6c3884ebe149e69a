//! Executes control commands against the live distributor and builds its snapshots.
//!
//! Shared by the Unix-socket and HTTP front ends (and by failover state sync): parse →
//! pure [`apply`] on a [`NodeTable`] mirror of the pool (validation, effect) → carry the
//! effect out on the pool and the workers' shared flags → log it once at info with who
//! asked. `remove node` drains first and finishes in [`Executor::tick`]: removed once
//! idle, or after `--deadline` with its remaining flows cut.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use log::info;

use crate::control::command::{self, apply, Command, Effect, NodeEntry, NodeTable};
use crate::control::render;
use crate::control::snapshot::{CheckSnapshot, NodeSnapshot, StatsSnapshot};
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

/// State of the executor: nodes being removed.
#[derive(Debug, Default)]
pub struct Executor {
    removing: Vec<(SocketAddr, Instant)>,
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
        let effect = match apply(&self.table(plane), cmd) {
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
            Command::Help => Reply::ok(command::HELP.trim_end()),
            Command::WaitDrained { addr, timeout } => {
                let t = timeout.unwrap_or(std::time::Duration::from_secs(60));
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
                .ok_or_else(|| format!("no node {addr}"))
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
        self.removing.retain(|(addr, deadline)| {
            let Some(node) = pool.find(*addr) else { return false };
            let idle = node.active() == 0;
            if idle || now >= *deadline {
                if !idle {
                    node.cut();
                }
                let _ = pool.remove(*addr);
                plane.info.remove(addr);
                info!(target: "fulcrum::control", "node {addr} removed{}", if idle { " (idle)" } else { " at its deadline; remaining flows cut" });
                false
            } else {
                true
            }
        });
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
    }
}

/// `show stats` in text or JSON; in direct mode with the data plane's counters added.
pub fn stats_reply(plane: &Plane, now: Instant, json: bool) -> String {
    let s = stats(plane, now);
    let mut out = if json {
        render::stats_json(&s)
    } else {
        render::stats_text(&s)
    };
    if let Some(direct) = &plane.direct {
        let fields = direct.stats.fields();
        if json {
            out.pop(); // the closing brace
            for (k, v) in fields {
                let _ = write!(out, ",\"{k}\":{v}");
            }
            out.push('}');
        } else {
            for (k, v) in fields {
                let _ = writeln!(out, "{k}: {v}");
            }
        }
    }
    out
}

/// `/metrics`: Prometheus text, with direct mode's families in that mode.
pub fn metrics(plane: &Plane, now: Instant) -> String {
    let mut out = render::prometheus(&stats(plane, now), &nodes(plane, now));
    if let Some(direct) = &plane.direct {
        direct.stats.prometheus(&mut out);
    }
    out
}

/// `show config`: the running configuration.
fn config(plane: &Plane, json: bool) -> String {
    let c = &plane.cfg;
    let listen: Vec<String> = c.listen.iter().map(|a| a.to_string()).collect();
    let check = match &c.health.kind {
        crate::health::config::CheckKind::None => "none".to_string(),
        crate::health::config::CheckKind::Tcp => "tcp".to_string(),
        crate::health::config::CheckKind::Http { path } => format!("http:{path}"),
    };
    let fields: Vec<(&str, String)> = vec![
        ("listen", listen.join(",")),
        ("scheduler", plane.shared.scheduler_kind().to_string()),
        ("workers", c.workers.to_string()),
        ("max_conns", c.max_conns.to_string()),
        (
            "max_conns_per_source",
            c.max_conns_per_source.unwrap_or(0).to_string(),
        ),
        ("connect_timeout", format_duration(c.connect_timeout)),
        ("idle_timeout", format_duration(c.idle_timeout)),
        ("retries", c.retries.to_string()),
        ("drain_timeout", format_duration(c.drain_timeout)),
        ("deadline", format_duration(c.remove_deadline)),
        ("splice", c.splice.to_string()),
        (
            "send_proxy",
            c.send_proxy.map_or("off", |v| v.as_str()).to_owned(),
        ),
        ("check", check),
        ("check_interval", format_duration(c.health.policy.base)),
        ("check_max_interval", format_duration(c.health.policy.max)),
        ("check_timeout", format_duration(c.health.timeout)),
        ("rise", c.health.thresholds.rise.to_string()),
        ("warn", c.health.thresholds.warn.to_string()),
        ("fall", c.health.thresholds.fall.to_string()),
        ("slow_start", format_duration(c.health.slow_start)),
        ("notify", c.notify.clone().unwrap_or_else(|| "none".into())),
    ];
    let mut out = String::new();
    if json {
        out.push('{');
        for (i, (k, v)) in fields.iter().enumerate() {
            let _ = write!(
                out,
                "{}\"{k}\":\"{}\"",
                if i > 0 { "," } else { "" },
                render::json_escape(v)
            );
        }
        out.push('}');
    } else {
        for (k, v) in &fields {
            let _ = writeln!(out, "{k}: {v}");
        }
        out.pop();
    }
    out
}
