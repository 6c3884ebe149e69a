//! One run of a declared command: a child process, its captured output, its deadline.
//! Used by the distributor's hooks ([`crate::rollout`]) and the agent's tasks
//! ([`crate::agent`]).
//!
//! What it owns: starting `/bin/sh -c COMMAND` in a process group of its own with the
//! caller's environment variables set, stdin closed and stdout and stderr on one pipe;
//! reading that pipe without blocking and keeping its last bytes (a bound the caller
//! gives); noticing the exit with `try_wait`; and killing the whole process group at the
//! deadline. The caller's loop calls [`ChildRun::poll`] on its ticks, so a run never
//! blocks it.
//!
//! The exit is what ends a run, not the end of the output: a command that restarts a
//! daemon in the background leaves that daemon holding the pipe's write end, and
//! waiting for end-of-file would wait for the daemon. What the command wrote before it
//! exited is read once more after the exit, then the pipe is closed.
//!
//! What it does not do: decide anything, or find a command from a name: only commands
//! an operator declared reach it (`--hook`, the agent's `--task`).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::{pipe2, Pid};

/// Bytes read from the pipe per [`ChildRun::poll`] at most, so a command that writes
/// without pause cannot hold the caller's loop.
const READ_BUDGET: usize = 256 * 1024;

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

/// A command that runs.
#[derive(Debug)]
pub struct ChildRun {
    child: Child,
    out: Option<File>,
    tail: Vec<u8>,
    tail_max: usize,
    started: Instant,
    deadline: Instant,
    timeout: Duration,
}

impl ChildRun {
    /// Starts `command` with the variables `env`, to be killed `timeout` after `now`,
    /// keeping the last `tail_max` bytes of its output.
    pub fn spawn(
        command: &str,
        env: &[(&str, &str)],
        timeout: Duration,
        now: Instant,
        tail_max: usize,
    ) -> io::Result<ChildRun> {
        let (rd, wr) = pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        fcntl(rd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(io::Error::from)?;
        let wr2 = wr.try_clone()?;
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::from(wr))
            .stderr(Stdio::from(wr2))
            // Its own group, so the timeout kills what it started too.
            .process_group(0)
            .spawn()?;
        Ok(ChildRun {
            child,
            out: Some(File::from(rd)),
            tail: Vec::new(),
            tail_max,
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

    /// The output so far (its last `tail_max` bytes).
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
                self.push(format!("\nfulcrum: cannot wait for the command: {e}\n").as_bytes());
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
        if self.tail.len() > self.tail_max {
            let cut = self.tail.len() - self.tail_max;
            self.tail.drain(..cut);
        }
    }
}

impl Drop for ChildRun {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// Polls `r` until it ends (10 s at most): how it ended, and its output.
#[cfg(test)]
pub(crate) fn run_to_end(mut r: ChildRun) -> (Ended, String) {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(e) = r.poll(Instant::now()) {
            return (e, r.output());
        }
        assert!(Instant::now() < end, "the command did not end");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAIL: usize = 4096;

    fn run(cmd: &str, timeout: Duration) -> (Ended, String) {
        let env = [("FULCRUM_NODE", "127.0.0.1:8080"), ("FULCRUM_TASK", "t")];
        run_to_end(ChildRun::spawn(cmd, &env, timeout, Instant::now(), TAIL).unwrap())
    }

    #[test]
    fn runs_with_the_environment_and_captures_both_streams() {
        let (e, out) = run(
            "echo $FULCRUM_NODE $FULCRUM_TASK; echo oops >&2",
            Duration::from_secs(5),
        );
        assert_eq!(e, Ended::Ok);
        assert_eq!(out, "127.0.0.1:8080 t\noops\n");
    }

    #[test]
    fn a_failure_keeps_the_tail() {
        let (e, out) = run(
            "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done; exit 3",
            Duration::from_secs(5),
        );
        assert!(
            matches!(&e, Ended::Failed(st) if st.code() == Some(3)),
            "{e:?}"
        );
        assert_eq!(out.len(), TAIL);
        assert!(out.ends_with("line 1999\n"), "{out}");
    }

    #[test]
    fn the_timeout_kills_the_process_group() {
        let dir = std::env::temp_dir().join(format!("fulcrum-child-{}", std::process::id()));
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
