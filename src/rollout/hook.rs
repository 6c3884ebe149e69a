//! One run of a declared hook: a child process, its captured output, its deadline.
//!
//! What it owns: starting `/bin/sh -c COMMAND` in a process group of its own with
//! `FULCRUM_NODE`, `FULCRUM_SERVICE`, `FULCRUM_HOOK` and `FULCRUM_ROLLOUT` set, stdin
//! closed and stdout and stderr on one pipe; reading that pipe without blocking and
//! keeping the last [`MAX_OUTPUT_TAIL`] bytes; noticing the exit with `try_wait`; and
//! killing the whole process group at the deadline. The control loop calls
//! [`HookRun::poll`] on its ticks, so a hook never blocks it.
//!
//! The exit is what ends a run, not the end of the output: a hook that restarts a
//! daemon in the background leaves that daemon holding the pipe's write end, and
//! waiting for end-of-file would wait for the daemon. What the hook wrote before it
//! exited is read once more after the exit, then the pipe is closed.
//!
//! What it does not do: decide anything (the planner does), or find the command from a
//! name (the driver looks it up in the declared [`HookConfig`](super::config::HookConfig)).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::{pipe2, Pid};

pub use super::machine::MAX_OUTPUT_TAIL;

/// Bytes read from the pipe per [`HookRun::poll`] at most, so a hook that writes
/// without pause cannot hold the control loop.
const READ_BUDGET: usize = 256 * 1024;

/// What a hook's environment says about the run.
#[derive(Debug, Clone, Copy)]
pub struct HookEnv<'a> {
    /// `FULCRUM_NODE`: the node's address.
    pub node: &'a str,
    /// `FULCRUM_SERVICE`: the service's name.
    pub service: &'a str,
    /// `FULCRUM_HOOK`: the hook's name.
    pub hook: &'a str,
    /// `FULCRUM_ROLLOUT`: the rollout's id.
    pub rollout: u64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Exit status 0.
    Ok,
    /// Another exit status, or a signal.
    Failed(ExitStatus),
    /// Killed at the deadline.
    TimedOut(Duration),
}

/// A hook that runs.
#[derive(Debug)]
pub struct HookRun {
    child: Child,
    out: Option<File>,
    tail: Vec<u8>,
    started: Instant,
    deadline: Instant,
    timeout: Duration,
}

impl HookRun {
    /// Starts `command` with `env`, to be killed `timeout` after `now`.
    pub fn spawn(
        command: &str,
        env: HookEnv<'_>,
        timeout: Duration,
        now: Instant,
    ) -> io::Result<HookRun> {
        let (rd, wr) = pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        fcntl(rd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(io::Error::from)?;
        let wr2 = wr.try_clone()?;
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .env("FULCRUM_NODE", env.node)
            .env("FULCRUM_SERVICE", env.service)
            .env("FULCRUM_HOOK", env.hook)
            .env("FULCRUM_ROLLOUT", env.rollout.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(wr))
            .stderr(Stdio::from(wr2))
            // Its own group, so the timeout kills what it started too.
            .process_group(0)
            .spawn()?;
        Ok(HookRun {
            child,
            out: Some(File::from(rd)),
            tail: Vec::new(),
            started: now,
            deadline: now + timeout,
            timeout,
        })
    }

    /// When the run must be over.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// How long it has run at `now`.
    pub fn elapsed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    /// The output so far (its last [`MAX_OUTPUT_TAIL`] bytes).
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.tail).into_owned()
    }

    /// Reads the output, checks the exit and the deadline; `Some` once the run is over
    /// (the process group is killed first when over time).
    pub fn poll(&mut self, now: Instant) -> Option<Ended> {
        self.read();
        match self.child.try_wait() {
            Ok(Some(st)) => {
                self.read();
                self.out = None;
                Some(if st.success() {
                    Ended::Ok
                } else {
                    Ended::Failed(st)
                })
            }
            Ok(None) if now >= self.deadline => {
                self.kill();
                Some(Ended::TimedOut(self.timeout))
            }
            Ok(None) => None,
            Err(e) => {
                self.kill();
                self.push(format!("\nfulcrum: cannot wait for the hook: {e}\n").as_bytes());
                Some(Ended::Failed(ExitStatus::from_raw(1 << 8)))
            }
        }
    }

    /// Kills the process group and reaps the shell.
    pub fn kill(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.read();
        self.out = None;
    }

    fn read(&mut self) {
        let Some(f) = self.out.as_mut() else { return };
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        let mut eof = false;
        while got.len() < READ_BUDGET {
            match f.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => got.extend_from_slice(buf.get(..n).unwrap_or(&[])),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if eof {
            self.out = None;
        }
        self.push(&got);
    }

    fn push(&mut self, bytes: &[u8]) {
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > MAX_OUTPUT_TAIL {
            let cut = self.tail.len() - MAX_OUTPUT_TAIL;
            self.tail.drain(..cut);
        }
    }
}

impl Drop for HookRun {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// The failure text the planner quotes: the output, with a last line saying how the
/// run ended when the output does not end with a line of its own or it was a signal
/// or the timeout.
pub fn failure_text(output: &str, ended: &Ended) -> String {
    let how = match ended {
        Ended::Ok => return output.to_owned(),
        Ended::TimedOut(t) => format!(
            "killed after {} (--hook-timeout)",
            crate::duration::format_duration(*t)
        ),
        Ended::Failed(st) => match (st.code(), st.signal()) {
            (Some(c), _) if output.trim().is_empty() => format!("exit status {c}"),
            (Some(_), _) => return output.to_owned(),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => format!("{st}"),
        },
    };
    if output.is_empty() || output.ends_with('\n') {
        format!("{output}{how}")
    } else {
        format!("{output}\n{how}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HookEnv<'static> {
        HookEnv {
            node: "127.0.0.1:8080",
            service: "web",
            hook: "deploy",
            rollout: 7,
        }
    }

    fn run(cmd: &str, timeout: Duration) -> (Ended, String) {
        let mut r = HookRun::spawn(cmd, env(), timeout, Instant::now()).unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = r.poll(Instant::now()) {
                return (e, r.output());
            }
            assert!(Instant::now() < end, "the hook did not end");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn runs_with_the_environment_and_captures_both_streams() {
        let (e, out) = run(
            "echo $FULCRUM_NODE $FULCRUM_SERVICE $FULCRUM_HOOK $FULCRUM_ROLLOUT; echo oops >&2",
            Duration::from_secs(5),
        );
        assert_eq!(e, Ended::Ok);
        assert_eq!(out, "127.0.0.1:8080 web deploy 7\noops\n");
    }

    #[test]
    fn a_failure_keeps_the_tail_and_says_how_it_ended() {
        let (e, out) = run(
            "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done; exit 3",
            Duration::from_secs(5),
        );
        assert!(
            matches!(&e, Ended::Failed(st) if st.code() == Some(3)),
            "{e:?}"
        );
        assert_eq!(out.len(), MAX_OUTPUT_TAIL);
        assert!(out.ends_with("line 1999\n"), "{out}");
        assert_eq!(failure_text("", &e), "exit status 3");
        assert_eq!(failure_text("no disk\n", &e), "no disk\n");
    }

    #[test]
    fn the_timeout_kills_the_process_group() {
        let dir = std::env::temp_dir().join(format!("fulcrum-hook-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let marker = dir.join("marker");
        // A grandchild that would write the marker after the timeout.
        let cmd = format!(
            "(sleep 1; touch {}) & echo started; sleep 30",
            marker.display()
        );
        let t0 = Instant::now();
        let (e, out) = run(&cmd, Duration::from_millis(200));
        assert_eq!(e, Ended::TimedOut(Duration::from_millis(200)));
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert_eq!(out, "started\n");
        std::thread::sleep(Duration::from_millis(1300));
        assert!(!marker.exists(), "the grandchild survived the timeout");
        assert_eq!(
            failure_text(&out, &e),
            "started\nkilled after 200ms (--hook-timeout)"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_background_daemon_holding_the_pipe_does_not_hold_the_run() {
        let t0 = Instant::now();
        let (e, out) = run("sleep 5 & echo done", Duration::from_secs(20));
        assert_eq!(e, Ended::Ok);
        assert_eq!(out, "done\n");
        assert!(t0.elapsed() < Duration::from_secs(3));
    }
}
