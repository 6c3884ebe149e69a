//! One run of a declared hook on the distributor: the environment a hook sees, and
//! the text a failed run leaves in `rollout status`.
//!
//! The process itself (its own process group, the captured output, the deadline) is a
//! [`ChildRun`]; this module only says what a hook's run looks like: `/bin/sh -c
//! COMMAND` with `FULCRUM_NODE`, `FULCRUM_SERVICE`, `FULCRUM_HOOK` and
//! `FULCRUM_ROLLOUT` set, and the last [`MAX_OUTPUT_TAIL`] bytes of its output kept.
//!
//! What it does not do: decide anything (the planner does), or find the command from a
//! name (the driver looks it up in the declared [`HookConfig`](super::config::HookConfig)).

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

pub use super::machine::MAX_OUTPUT_TAIL;
pub use crate::sys::child::{ChildRun, Ended};

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

/// Starts `command` as the hook run `env` describes, to be killed `timeout` after `now`.
pub fn spawn(
    command: &str,
    env: HookEnv<'_>,
    timeout: Duration,
    now: Instant,
) -> io::Result<ChildRun> {
    let rollout = env.rollout.to_string();
    let vars = [
        ("FULCRUM_NODE", env.node),
        ("FULCRUM_SERVICE", env.service),
        ("FULCRUM_HOOK", env.hook),
        ("FULCRUM_ROLLOUT", rollout.as_str()),
    ];
    ChildRun::spawn(command, &vars, timeout, now, MAX_OUTPUT_TAIL)
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
    with_last_line(output, &how)
}

/// `output` followed by `line` on a line of its own (the text a failed hook or agent
/// task leaves in the status).
pub fn with_last_line(output: &str, line: &str) -> String {
    if output.is_empty() || output.ends_with('\n') {
        format!("{output}{line}")
    } else {
        format!("{output}\n{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cmd: &str, timeout: Duration) -> (Ended, String) {
        let env = HookEnv {
            node: "127.0.0.1:8080",
            service: "web",
            hook: "deploy",
            rollout: 7,
        };
        crate::sys::child::run_to_end(spawn(cmd, env, timeout, Instant::now()).unwrap())
    }

    #[test]
    fn a_hook_sees_its_environment() {
        let (e, out) = run(
            "echo $FULCRUM_NODE $FULCRUM_SERVICE $FULCRUM_HOOK $FULCRUM_ROLLOUT",
            Duration::from_secs(5),
        );
        assert_eq!(e, Ended::Ok);
        assert_eq!(out, "127.0.0.1:8080 web deploy 7\n");
    }

    #[test]
    fn failure_text_says_how_it_ended() {
        let (e, _) = run("exit 3", Duration::from_secs(5));
        assert_eq!(failure_text("", &e), "exit status 3");
        assert_eq!(failure_text("no disk\n", &e), "no disk\n");
        let t = Ended::TimedOut(Duration::from_millis(200));
        assert_eq!(
            failure_text("started\n", &t),
            "started\nkilled after 200ms (--hook-timeout)"
        );
    }
}
