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

use crate::config::{Reloader, ServeConfig};
use crate::control::command::Command;
use crate::plane::Plane;
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

/// Reloads the configuration into a running process: reads it again, queues the
/// commands of the [`plan`] for the control component (which runs them as local
/// changes, so a failover peer follows), and records the new node list and scheduler
/// as the running configuration. Returns a one-line summary, or why nothing changed
/// (no file, or a file that fails validation: the process keeps the old one).
pub fn reload(plane: &mut Plane, reloader: Option<&mut Reloader>) -> Result<String, String> {
    let Some(read) = reloader else {
        return Err(
            "configuration from flags only, nothing to re-read (change flags \
                    without a drop with --listeners-from, or run from --config FILE)"
                .into(),
        );
    };
    let new = read()?;
    let p = plan(&plane.cfg, &new);
    for c in &p.commands {
        info!(target: "fulcrum::serve", "reload: {c}");
    }
    for what in &p.restart_needed {
        warn!(target: "fulcrum::serve", "reload: {what} changed in the file; it takes effect at the next start");
    }
    let summary = format!(
        "reloaded: {} applied, {} waiting for a restart{}",
        crate::words::plural(p.commands.len() as u64, "change"),
        p.restart_needed.len(),
        if p.restart_needed.is_empty() {
            String::new()
        } else {
            format!(" ({})", p.restart_needed.join(", "))
        }
    );
    plane
        .queued_admin
        .extend(p.commands.into_iter().map(|c| ("reload", c)));
    plane.cfg.backends = new.backends;
    plane.cfg.scheduler = new.scheduler;
    Ok(summary)
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
    let restart: [(&str, bool); 17] = [
        ("listen", old.listen != new.listen),
        ("mode/interface", old.mode != new.mode),
        ("hash-seed", old.hash_seed != new.hash_seed),
        ("workers", old.workers != new.workers),
        (
            "connect-timeout",
            old.connect_timeout != new.connect_timeout,
        ),
        ("idle-timeout", old.idle_timeout != new.idle_timeout),
        ("max-conns", old.max_conns != new.max_conns),
        (
            "max-conns-per-source",
            old.max_conns_per_source != new.max_conns_per_source,
        ),
        ("retries", old.retries != new.retries),
        ("backlog", old.backlog != new.backlog),
        ("splice", old.splice != new.splice),
        ("send-proxy", old.send_proxy != new.send_proxy),
        ("check settings", old.health != new.health),
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
                "check settings"
            ]
        );
    }
}
