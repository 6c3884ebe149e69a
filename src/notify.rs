//! Alerts: one log line per state change, and the operator's `--notify` command.
//!
//! The command runs through `/bin/sh -c` with the event in environment variables
//! (`FULCRUM_EVENT`, `FULCRUM_SUBJECT`, `FULCRUM_NODE`, `FULCRUM_OLD_STATE`,
//! `FULCRUM_NEW_STATE`, `FULCRUM_REASON`). It never blocks the event loop: children are
//! reaped with `try_wait` on each tick and killed after `--notify-timeout`; a failure or
//! a timeout is logged. At most [`MAX_RUNNING`] run at once; further alerts are logged
//! but their command is skipped (and that is logged too).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use log::{error, info, warn, Level};

/// Most notify commands running at once.
pub const MAX_RUNNING: usize = 32;

/// One state change worth telling the operator about.
#[derive(Debug, Clone)]
pub struct Alert {
    /// What kind of state changed: `health`, `agent`, `role`, `admin`, `bgp`.
    pub event: &'static str,
    /// The node address, or `distributor` for role changes.
    pub subject: String,
    /// State before.
    pub old: String,
    /// State after.
    pub new: String,
    /// Why.
    pub reason: String,
    /// Log level of the line (error = operator must act, warn = degraded, info = recovery).
    pub level: Level,
}

struct Running {
    child: Child,
    deadline: Instant,
    what: String,
}

/// Logs alerts and runs the notify command.
pub struct Notifier {
    cmd: Option<String>,
    timeout: Duration,
    running: Vec<Running>,
    /// Alerts raised so far (for stats and tests).
    pub raised: u64,
}

impl Notifier {
    /// A notifier running `cmd` (if any), killing it after `timeout`.
    pub fn new(cmd: Option<String>, timeout: Duration) -> Self {
        Notifier {
            cmd,
            timeout,
            running: Vec::new(),
            raised: 0,
        }
    }

    /// Logs the alert and starts the notify command for it.
    pub fn alert(&mut self, a: Alert) {
        self.raised += 1;
        log::log!(target: "fulcrum::alert", a.level,
            "{} {}: {} -> {} ({})", a.event, a.subject, a.old, a.new, a.reason);
        let Some(cmd) = self.cmd.as_deref() else {
            return;
        };
        if self.running.len() >= MAX_RUNNING {
            warn!(target: "fulcrum::alert", "notify command skipped for {} {}: {} still running",
                a.event, a.subject, self.running.len());
            return;
        }
        let node = if a.event == "role" || a.event == "bgp" {
            ""
        } else {
            a.subject.as_str()
        };
        let spawned = Command::new("/bin/sh")
            .arg("-c")
            .arg(cmd)
            .env("FULCRUM_EVENT", a.event)
            .env("FULCRUM_SUBJECT", &a.subject)
            .env("FULCRUM_NODE", node)
            .env("FULCRUM_OLD_STATE", &a.old)
            .env("FULCRUM_NEW_STATE", &a.new)
            .env("FULCRUM_REASON", &a.reason)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn();
        match spawned {
            Ok(child) => self.running.push(Running {
                child,
                deadline: Instant::now() + self.timeout,
                what: format!("{} {} {}->{}", a.event, a.subject, a.old, a.new),
            }),
            Err(e) => error!(target: "fulcrum::alert", "notify command could not start: {e}"),
        }
    }

    /// Reaps finished commands, kills overdue ones. Call on every tick.
    pub fn reap(&mut self, now: Instant) {
        self.running.retain_mut(|r| match r.child.try_wait() {
            Ok(Some(st)) if st.success() => false,
            Ok(Some(st)) => {
                warn!(target: "fulcrum::alert", "notify command for {} failed: {st}", r.what);
                false
            }
            Ok(None) if now >= r.deadline => {
                let _ = r.child.kill();
                let _ = r.child.wait();
                warn!(target: "fulcrum::alert", "notify command for {} killed after timeout", r.what);
                false
            }
            Ok(None) => true,
            Err(e) => {
                warn!(target: "fulcrum::alert", "notify command for {}: {e}", r.what);
                false
            }
        });
    }
    /// Commands still running.
    #[cfg(test)]
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// The next time [`Notifier::reap`] must run (a child may be overdue then).
    pub fn deadline(&self) -> Option<Instant> {
        // Reap often while children run so their exit is noticed promptly.
        (!self.running.is_empty()).then(|| Instant::now() + Duration::from_millis(100))
    }

    /// Waits (bounded) for running commands at shutdown.
    pub fn finish(&mut self, limit: Duration) {
        let end = Instant::now() + limit;
        while !self.running.is_empty() && Instant::now() < end {
            self.reap(Instant::now());
            std::thread::sleep(Duration::from_millis(20));
        }
        let n = self.running.len();
        self.reap(end + self.timeout);
        if n > 0 {
            info!(target: "fulcrum::alert", "{n} notify commands cut at shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> Alert {
        Alert {
            event: "health",
            subject: "127.0.0.1:9".into(),
            old: "up".into(),
            new: "down".into(),
            reason: "connect refused".into(),
            level: Level::Error,
        }
    }

    #[test]
    fn runs_command_with_env_and_reaps() {
        let dir = std::env::temp_dir().join(format!("fulcrum-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let out = dir.join("out");
        let cmd = format!(
            "echo \"$FULCRUM_EVENT $FULCRUM_NODE $FULCRUM_OLD_STATE $FULCRUM_NEW_STATE $FULCRUM_REASON\" > {}",
            out.display()
        );
        let mut n = Notifier::new(Some(cmd), Duration::from_secs(5));
        n.alert(alert());
        n.finish(Duration::from_secs(5));
        assert_eq!(n.running(), 0);
        let got = std::fs::read_to_string(&out).unwrap();
        assert_eq!(got.trim(), "health 127.0.0.1:9 up down connect refused");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn slow_command_is_killed_after_timeout() {
        let mut n = Notifier::new(Some("sleep 30".into()), Duration::from_millis(50));
        n.alert(alert());
        assert_eq!(n.running(), 1);
        std::thread::sleep(Duration::from_millis(80));
        n.reap(Instant::now());
        assert_eq!(n.running(), 0);
    }

    #[test]
    fn no_command_only_logs() {
        let mut n = Notifier::new(None, Duration::from_secs(1));
        n.alert(alert());
        assert_eq!((n.raised, n.running()), (1, 0));
    }
}
