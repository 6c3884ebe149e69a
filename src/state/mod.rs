//! The state file (`--state-file PATH`): runtime changes that survive a restart.
//!
//! What it holds: the control commands that turn the configuration into the running
//! state — nodes added or removed, weights, admin states, the scheduler, distribution
//! switched off — one canonical command per line (the grammar `fulcrum ctl` speaks, so
//! an operator can read it, and [`crate::control::command::parse`], which is fuzzed,
//! reads it back). It is rewritten, atomically (temporary file, fsync, rename, fsync of
//! the directory), whenever that difference changes.
//!
//! At start, and after a configuration reload, the commands are run on top of the
//! configuration. One that no longer fits it (a `set state` for a node the file has
//! since removed, an `add node` for a node the file now lists) is refused by the same
//! checks as at the control socket, logged, and skipped: the configuration file wins.
//! A missing state file is normal; an unreadable or corrupt one is logged and ignored,
//! and fulcrum starts from the configuration alone. It never refuses to start for it.
//!
//! This file is the format and the file IO; [`StateKeeper`] is the control-plane
//! component that loads it at start and keeps it up to date.

mod keeper;

pub use keeper::StateKeeper;

use std::io::{self, Write};
use std::path::Path;

use crate::control::command::{self, Command, Scoped};
use crate::ha::sync::{diff, NodeState};
use crate::pool::{AdminState, NodeSpec};
use crate::scheduler::SchedulerKind;

/// First line of every state file.
const HEADER: &str = "# fulcrum state: runtime changes applied on top of the configuration at start; written by fulcrum";

/// Largest state file read.
const MAX_LEN: u64 = 4 << 20;

/// The running state, as far as the state file records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running<'a> {
    /// The nodes now (removed ones left out).
    pub nodes: &'a [NodeState],
    /// The scheduler now.
    pub scheduler: SchedulerKind,
    /// Distribution on.
    pub enabled: bool,
}

/// The commands that turn the configured nodes and scheduler of `service` into
/// `running` (its nodes).
pub fn changes(
    service: &str,
    configured: &[NodeSpec],
    scheduler: SchedulerKind,
    running: &Running<'_>,
) -> Vec<Scoped> {
    let base: Vec<NodeState> = configured
        .iter()
        .map(|n| NodeState {
            service: service.to_owned(),
            addr: n.addr,
            weight: n.weight,
            backup: n.backup,
            admin: AdminState::Ready,
        })
        .collect();
    let mut out = diff(running.nodes, &base);
    if running.scheduler != scheduler {
        out.push(Scoped::new(
            Some(service),
            Command::SetScheduler(running.scheduler),
        ));
    }
    if !running.enabled {
        out.push(Scoped::new(Some(service), Command::Disable));
    }
    out
}

/// The file's text for `cmds`.
pub fn render(cmds: &[Scoped]) -> String {
    let mut s = String::from(HEADER);
    s.push('\n');
    for c in cmds {
        s.push_str(&c.to_string());
        s.push('\n');
    }
    s
}

/// Reads a state file's text: every non-comment line must be a command that changes
/// state; the first that is not makes the whole file invalid (it was not written by
/// fulcrum, or was cut short), with the line number.
pub fn parse(text: &str) -> Result<Vec<Scoped>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cmd = command::parse_scoped(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        if !is_state(&cmd) {
            return Err(format!("line {}: \"{line}\" is not a state change", i + 1));
        }
        out.push(cmd);
    }
    Ok(out)
}

/// What failover syncs (the node set), plus the switches that stay per distributor.
fn is_state(cmd: &Scoped) -> bool {
    crate::ha::sync::is_synced(cmd)
        || matches!(
            cmd.cmd,
            Command::SetScheduler(_) | Command::Disable | Command::Enable
        )
}

/// Loads the state file at `path`: `Ok(None)` when there is none yet.
pub fn load(path: &Path) -> Result<Option<Vec<Scoped>>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if meta.len() > MAX_LEN {
        return Err(format!(
            "{} bytes, more than a state file holds",
            meta.len()
        ));
    }
    let text = std::fs::read(path).map_err(|e| e.to_string())?;
    let text = String::from_utf8(text).map_err(|_| "not UTF-8".to_string())?;
    parse(&text).map(Some)
}

/// Writes `text` to `path` atomically: a temporary file beside it, fsync, rename over,
/// fsync of the directory. A crash leaves the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(addr: &str, weight: u32) -> NodeSpec {
        NodeSpec {
            addr: addr.parse().unwrap(),
            weight,
            backup: false,
            maxconn: 0,
            agent: false,
        }
    }

    fn node(addr: &str, weight: u32, admin: AdminState) -> NodeState {
        NodeState {
            service: "default".into(),
            addr: addr.parse().unwrap(),
            weight,
            backup: false,
            admin,
        }
    }

    #[test]
    fn unchanged_state_writes_no_command() {
        let cfg = [spec("10.0.0.1:80", 1)];
        let nodes = [node("10.0.0.1:80", 1, AdminState::Ready)];
        let r = Running {
            nodes: &nodes,
            scheduler: SchedulerKind::Rr,
            enabled: true,
        };
        assert!(changes("default", &cfg, SchedulerKind::Rr, &r).is_empty());
    }

    #[test]
    fn runtime_changes_round_trip_through_the_file() {
        let cfg = [spec("10.0.0.1:80", 1), spec("10.0.0.2:80", 1)];
        let nodes = [
            node("10.0.0.1:80", 5, AdminState::Drain),
            node("10.0.0.3:80", 2, AdminState::Ready),
        ];
        let r = Running {
            nodes: &nodes,
            scheduler: SchedulerKind::Wlc,
            enabled: false,
        };
        let cmds = changes("default", &cfg, SchedulerKind::Rr, &r);
        let text = render(&cmds);
        assert_eq!(
            text.lines().skip(1).collect::<Vec<_>>(),
            [
                "set weight 10.0.0.1:80 5",
                "set state 10.0.0.1:80 drain",
                "add node 10.0.0.3:80 weight 2",
                "remove node 10.0.0.2:80",
                "set scheduler wlc",
                "disable",
            ]
        );
        assert_eq!(render(&parse(&text).unwrap()), text);
    }

    #[test]
    fn a_named_service_is_written_into_every_line() {
        let cfg = [spec("10.0.0.1:80", 1)];
        let nodes = [NodeState {
            service: "web".into(),
            ..node("10.0.0.1:80", 3, AdminState::Maint)
        }];
        let r = Running {
            nodes: &nodes,
            scheduler: SchedulerKind::Lc,
            enabled: false,
        };
        let text = render(&changes("web", &cfg, SchedulerKind::Rr, &r));
        assert_eq!(
            text.lines().skip(1).collect::<Vec<_>>(),
            [
                "set weight web/10.0.0.1:80 3",
                "set state web/10.0.0.1:80 maint",
                "set scheduler web lc",
                "disable web",
            ]
        );
        let back = parse(&text).unwrap();
        assert!(back.iter().all(|c| c.service.as_deref() == Some("web")));
        assert_eq!(render(&back), text);
    }

    #[test]
    fn a_corrupt_file_names_its_line() {
        assert!(parse("# x\nset weight 10.0.0.1:80 5\n").is_ok());
        let e = parse("set weight 10.0.0.1:80 5\nset weight 10.0.0.1:80\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        let e = parse("show nodes\n").unwrap_err();
        assert!(e.contains("not a state change"), "{e}");
        assert!(parse("\u{0}\u{1}garbage").is_err());
    }

    #[test]
    fn written_atomically_and_missing_is_none() {
        let dir = std::env::temp_dir().join(format!("fulcrum-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("state");
        assert_eq!(load(&p), Ok(None));
        write_atomic(&p, "# h\ndisable\n").unwrap();
        assert_eq!(load(&p), Ok(Some(vec![Command::Disable.into()])));
        write_atomic(&p, "# h\nenable\n").unwrap();
        assert_eq!(load(&p), Ok(Some(vec![Command::Enable.into()])));
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
