//! What a configuration reload (SIGHUP with `--config`) changes in place, decided
//! without IO: the difference between the configuration the process runs and the one
//! just read, as control commands plus the names of settings that only a restart (or a
//! `--listeners-from` hand-over) can change.
//!
//! The rule: what the file changed is applied; what an operator changed at run time
//! (`ctl set state`, `set weight` on a node the file did not touch) stays. So the diff
//! is between the old and the new *file*, not between the file and the running pool.
//!
//! Applied in place: nodes added (`add node`), nodes removed (`remove node`: drained,
//! then gone), weights, the scheduler. A node whose `backup`, `maxconn` or `agent`
//! option changed is reported for a restart: the control grammar cannot change those
//! on a live node.

use log::{info, warn};

use std::sync::atomic::Ordering;

use crate::config::{Reloader, ServeConfig};
use crate::control::command::{Command, Scoped};
use crate::plane::{Plane, Service, ServiceChange};
use crate::pool::NodeSpec;

/// The control-socket command that reloads, as SIGHUP does (Unix socket only).
pub const RELOAD: &str = "reload";

/// [`reload`] with the plane's own reloader.
pub fn reload_plane(plane: &mut Plane) -> Result<String, String> {
    let mut r = plane.reloader.take();
    let result = reload(plane, r.as_mut());
    plane.reloader = r;
    result
}

/// Reloads the configuration into a running process: reads it again and, service by
/// service (matched by name): queues the commands of the [`plan`] for the control
/// component (which runs them as local changes, so a failover peer follows) and
/// records the new node list and scheduler as the running configuration; starts the
/// services the file added (proxy mode); stops the services it removed (their
/// listeners close at once, their connections finish). Returns a one-line summary, or
/// why nothing changed (no file, or a file that fails validation: the process keeps
/// the old one).
pub fn reload(plane: &mut Plane, reloader: Option<&mut Reloader>) -> Result<String, String> {
    let Some(read) = reloader else {
        return Err(
            "configuration from flags only, nothing to re-read (change flags \
                    without a drop with --listeners-from, or run from --config FILE)"
                .into(),
        );
    };
    let new = read()?;
    let global = site_restart(&plane.cfg, new.first());
    let added: Vec<&ServeConfig> = new
        .iter()
        .filter(|n| plane.service_index(&n.name).is_none())
        .collect();
    if !added.is_empty() && plane.starter.is_none() {
        return Err(format!(
            "the file adds service {}: adding a service while running works in proxy mode only \
             (restart to add it)",
            added[0].name
        ));
    }
    let mut applied = 0;
    let mut restart: Vec<String> = global;
    for n in &new {
        let Some(i) = plane.service_index(&n.name) else {
            continue;
        };
        let mut p = plan(&plane.services[i].cfg, n);
        let several = plane.services.len() > 1 || new.len() > 1;
        let live = match plane.starter.as_mut() {
            Some(start) => apply_live(
                start,
                plane.services.get(i),
                n,
                &mut p,
                &mut plane.listeners,
                i,
            ),
            None => false,
        };
        for c in &p.commands {
            info!(target: "fulcrum::serve", "reload: {c}");
        }
        applied += p.commands.len();
        restart.extend(p.restart_needed.into_iter().map(|what| {
            if several {
                format!("{} {what}", n.name)
            } else {
                what
            }
        }));
        let name = n.name.clone();
        plane.queued_admin.extend(
            p.commands
                .into_iter()
                .map(|c| ("reload", Scoped::new(Some(&name), c))),
        );
        let svc = &mut plane.services[i];
        svc.cfg.backends = n.backends.clone();
        svc.cfg.scheduler = n.scheduler;
        // The service's checker takes new check settings on its next tick.
        svc.cfg.health = n.health.clone();
        if live {
            svc.cfg.listen = n.listen.clone();
            svc.cfg.connect_timeout = n.connect_timeout;
            svc.cfg.idle_timeout = n.idle_timeout;
            svc.cfg.retries = n.retries;
            svc.cfg.splice = n.splice;
            svc.cfg.send_proxy = n.send_proxy;
            svc.cfg.access_log = n.access_log;
        }
    }
    // Services the file no longer has: stop accepting, let their connections finish.
    let gone: Vec<usize> = plane
        .live()
        .filter(|(_, s)| !new.iter().any(|n| n.name == s.name()))
        .map(|(i, _)| i)
        .collect();
    for &i in &gone {
        let svc = &mut plane.services[i];
        svc.removed = true;
        svc.shared.shutdown.store(true, Ordering::Release);
        let active = svc.shared.stats.active.load(Ordering::Relaxed);
        info!(target: "fulcrum::serve", "reload: service {} removed: stopped accepting; {} finish",
            svc.name(), crate::words::plural(active, "open connection"));
        plane.listeners.retain(|(s, _)| *s != i);
    }
    let mut started: u64 = 0;
    for n in added {
        let Some(start) = plane.starter.as_mut() else {
            break;
        };
        match start(ServiceChange::Start(n)) {
            Ok((shared, fds)) => {
                let i = plane.services.len();
                plane.listeners.extend(fds.into_iter().map(|f| (i, f)));
                plane.services.push(Service::new(shared, n.clone()));
                info!(target: "fulcrum::serve", "reload: service {} started on {}", n.name,
                    n.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "));
                started += 1;
            }
            Err(e) => {
                warn!(target: "fulcrum::serve", "reload: service {} not started: {e}", n.name);
                restart.push(format!("service {} (not started: {e})", n.name));
            }
        }
    }
    for what in &restart {
        warn!(target: "fulcrum::serve", "reload: {what} changed in the file; it takes effect at the next start");
    }
    let mut summary = format!(
        "reloaded: {} applied",
        crate::words::plural(applied as u64, "change")
    );
    if started > 0 || !gone.is_empty() {
        summary.push_str(&format!(
            ", {} started, {} stopped",
            crate::words::plural(started, "service"),
            gone.len()
        ));
    }
    summary.push_str(&format!(", {} waiting for a restart", restart.len()));
    if !restart.is_empty() {
        summary.push_str(&format!(" ({})", restart.join(", ")));
    }
    Ok(summary)
}

/// Settings of a running service that the proxy workers take while they run: listen
/// addresses, timeouts, retries, splice, PROXY protocol, the access log.
const LIVE: [&str; 7] = [
    "listen",
    "connect-timeout",
    "idle-timeout",
    "retries",
    "splice",
    "send-proxy",
    "access-log",
];

/// Hands the live settings of `new` to the workers of running service `svc` (index `i`)
/// when the plan says some differ; on success they leave the plan's restart list, and
/// it returns true.
fn apply_live(
    start: &mut crate::plane::ServiceStarter,
    svc: Option<&Service>,
    new: &ServeConfig,
    p: &mut Plan,
    listeners: &mut Vec<(usize, std::os::fd::OwnedFd)>,
    i: usize,
) -> bool {
    let Some(svc) = svc else {
        return false;
    };
    if !p.restart_needed.iter().any(|w| LIVE.contains(&w.as_str())) {
        return false;
    }
    let old = &svc.cfg.listen;
    let bind: Vec<std::net::SocketAddr> = new
        .listen
        .iter()
        .filter(|a| !old.contains(a))
        .copied()
        .collect();
    let close: Vec<std::net::SocketAddr> = old
        .iter()
        .filter(|a| !new.listen.contains(a))
        .copied()
        .collect();
    let change = ServiceChange::Update {
        shared: &svc.shared,
        cfg: new,
        bind: &bind,
        close: &close,
    };
    match start(change) {
        Ok((_, fds)) => {
            listeners.retain(|(s, fd)| {
                *s != i
                    || !socket2::SockRef::from(fd)
                        .local_addr()
                        .ok()
                        .and_then(|a| a.as_socket())
                        .is_some_and(|a| close.contains(&a))
            });
            listeners.extend(fds.into_iter().map(|f| (i, f)));
            p.restart_needed.retain(|w| !LIVE.contains(&w.as_str()));
            if !bind.is_empty() || !close.is_empty() {
                info!(target: "fulcrum::serve", "reload: service {}: listening on {}", svc.name(),
                    new.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "));
            }
            true
        }
        Err(e) => {
            warn!(target: "fulcrum::serve", "reload: service {}: new listen addresses or settings not applied: {e}", svc.name());
            false
        }
    }
}

/// Global settings that differ between the running process and the file's first
/// service (which carries them): they need a restart.
fn site_restart(old: &ServeConfig, new: Option<&ServeConfig>) -> Vec<String> {
    let Some(new) = new else {
        return Vec::new();
    };
    let restart: [(&str, bool); 7] = [
        ("workers", old.workers != new.workers),
        ("max-conns", old.max_conns != new.max_conns),
        (
            "control/http",
            (&old.control, old.http) != (&new.control, new.http),
        ),
        (
            "notify",
            (&old.notify, old.notify_timeout) != (&new.notify, new.notify_timeout),
        ),
        ("failover", old.ha != new.ha),
        ("bgp/bfd", old.scaleout != new.scaleout),
        // The control interface and the rollout component both hold the hooks of
        // the start: one set of commands for the life of the process.
        ("hook", old.hooks != new.hooks),
    ];
    restart
        .iter()
        .filter(|(_, differs)| *differs)
        .map(|(name, _)| (*name).to_string())
        .collect()
}

/// What a reload does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Commands to run, in order (removals first, then additions, then changes).
    pub commands: Vec<Command>,
    /// Settings that differ but take effect only at the next start.
    pub restart_needed: Vec<String>,
}

/// The plan that turns a process running `old` into one running `new`, as far as it
/// can be done in place.
pub fn plan(old: &ServeConfig, new: &ServeConfig) -> Plan {
    fn find<'a>(list: &'a [NodeSpec], n: &NodeSpec) -> Option<&'a NodeSpec> {
        list.iter().find(|m| m.addr == n.addr)
    }
    let mut p = Plan::default();
    for o in &old.backends {
        if find(&new.backends, o).is_none() {
            p.commands.push(Command::RemoveNode { addr: o.addr });
        }
    }
    for n in &new.backends {
        match find(&old.backends, n) {
            None => {
                p.commands.push(Command::AddNode {
                    addr: n.addr,
                    weight: Some(n.weight),
                    backup: n.backup,
                });
                if n.maxconn > 0 || n.agent {
                    p.restart_needed.push(format!(
                        "backend {} (maxconn/agent of an added node)",
                        n.addr
                    ));
                }
            }
            Some(o) => {
                if o.weight != n.weight {
                    p.commands.push(Command::SetWeight {
                        addr: n.addr,
                        weight: n.weight,
                    });
                }
                if (o.backup, o.maxconn, o.agent) != (n.backup, n.maxconn, n.agent) {
                    p.restart_needed
                        .push(format!("backend {} (backup/maxconn/agent)", n.addr));
                }
            }
        }
    }
    if old.scheduler != new.scheduler {
        p.commands.push(Command::SetScheduler(new.scheduler));
    }
    // Everything else: compare setting by setting and name what differs.
    let restart: [(&str, bool); 11] = [
        ("listen", old.listen != new.listen),
        ("mode/interface", old.mode != new.mode),
        ("hash-seed", old.hash_seed != new.hash_seed),
        (
            "connect-timeout",
            old.connect_timeout != new.connect_timeout,
        ),
        ("idle-timeout", old.idle_timeout != new.idle_timeout),
        (
            "max-conns-per-source",
            old.max_conns_per_source != new.max_conns_per_source,
        ),
        ("retries", old.retries != new.retries),
        ("backlog", old.backlog != new.backlog),
        ("splice", old.splice != new.splice),
        ("send-proxy", old.send_proxy != new.send_proxy),
        ("access-log", old.access_log != new.access_log),
    ];
    p.restart_needed.extend(
        restart
            .iter()
            .filter(|(_, differs)| *differs)
            .map(|(name, _)| (*name).to_string()),
    );
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TestCli, TestCommand};
    use clap::Parser;

    fn cfg(args: &[&str]) -> ServeConfig {
        let mut v = vec!["fulcrum", "serve", "--listen", "127.0.0.1:1"];
        v.extend_from_slice(args);
        let TestCommand::Serve(a) = TestCli::try_parse_from(v).unwrap().command;
        ServeConfig::from_args(*a, 20_000).unwrap()
    }

    #[test]
    fn changed_hooks_wait_for_a_restart() {
        let a = cfg(&["--backend", "127.0.0.1:2", "--hook", "deploy=true"]);
        let b = cfg(&["--backend", "127.0.0.1:2", "--hook", "deploy=false"]);
        assert_eq!(site_restart(&a, Some(&b)), vec!["hook".to_string()]);
        assert!(site_restart(&a, Some(&a)).is_empty());
    }

    #[test]
    fn same_file_changes_nothing() {
        let a = cfg(&["--backend", "127.0.0.1:2"]);
        assert_eq!(plan(&a, &a), Plan::default());
    }

    #[test]
    fn nodes_weights_and_scheduler_apply_in_place() {
        let old = cfg(&[
            "--backend",
            "127.0.0.1:2,weight=3",
            "--backend",
            "127.0.0.1:3",
        ]);
        let new = cfg(&[
            "--backend",
            "127.0.0.1:2,weight=5",
            "--backend",
            "127.0.0.1:4,backup",
            "--scheduler",
            "wlc",
        ]);
        let p = plan(&old, &new);
        let lines: Vec<String> = p.commands.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            lines,
            [
                "remove node 127.0.0.1:3",
                "set weight 127.0.0.1:2 5",
                "add node 127.0.0.1:4 weight 1 backup",
                "set scheduler wlc",
            ]
        );
        assert!(p.restart_needed.is_empty(), "{:?}", p.restart_needed);
    }

    #[test]
    fn what_cannot_change_live_is_named() {
        let old = cfg(&["--backend", "127.0.0.1:2"]);
        let new = cfg(&[
            "--backend",
            "127.0.0.1:2,maxconn=5",
            "--connect-timeout",
            "3s",
            "--check",
            "http:/health",
        ]);
        let p = plan(&old, &new);
        assert!(p.commands.is_empty(), "{:?}", p.commands);
        assert_eq!(
            p.restart_needed,
            [
                "backend 127.0.0.1:2 (backup/maxconn/agent)",
                "connect-timeout",
            ]
        );
    }
}
