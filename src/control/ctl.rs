//! `fulcrum ctl`: the control interface's client.
//!
//! Sends one command line to the distributor's control socket and prints the reply.
//! Exit codes (scripts rely on them; documented in docs/control.md):
//! [`EXIT_OK`] 0 done, [`EXIT_REFUSED`] 1 the distributor refused the command
//! (`error: …`), 2 a usage error of `ctl` itself (clap's code), [`EXIT_UNREACHABLE`] 3
//! the distributor cannot be reached or did not reply in time.
//!
//! `rollout start …` also takes its options as flags (`--hook NAME | --task NAME
//! --service S --batch N --min-ready N --healthy-timeout DUR --drain-timeout DUR`),
//! translated to the socket grammar, and `--wait` (also on `rollout resume`): `ctl`
//! then polls `rollout status` until the rollout ends and exits 0 when it is done, 1
//! when it failed or was aborted (or still runs after `--wait-timeout`). `task NAME
//! [--service S] [--when-idle] [NODE…|all] [--wait]` works the same way with `task
//! status`.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use crate::duration::format_duration;

/// The command was carried out.
pub const EXIT_OK: u8 = 0;
/// The distributor answered `error: …`.
pub const EXIT_REFUSED: u8 = 1;
/// No answer: the socket cannot be reached, or no reply came in time.
pub const EXIT_UNREACHABLE: u8 = 3;

/// Extra time on top of a `wait drained` timeout before `ctl` stops waiting for the
/// reply: the distributor answers at its deadline, on its next loop turn.
const WAIT_MARGIN: Duration = Duration::from_secs(5);

/// `fulcrum ctl` flags.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The distributor's control socket (its --control).
    #[arg(long, default_value = "/run/fulcrum.sock")]
    pub socket: PathBuf,
    /// Give up waiting for the reply after this long; `wait drained … DURATION` waits at
    /// least its own DURATION plus a few seconds.
    #[arg(long, default_value = "120s", value_parser = |s: &str| crate::duration::parse_duration(s).map_err(|e| e.to_string()))]
    pub timeout: Duration,
    /// With `rollout start|resume … --wait`: stop waiting (exit 1) after this long.
    #[arg(long, default_value = "1h", value_parser = |s: &str| crate::duration::parse_duration(s).map_err(|e| e.to_string()))]
    pub wait_timeout: Duration,
    /// The command, e.g. `show nodes --json`, `set state 10.0.0.5:80 drain`, `help`.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Why no reply was read.
#[derive(Debug)]
pub enum CtlError {
    /// The path exists but is not a Unix socket.
    NotSocket(PathBuf),
    /// Connecting failed (no such file, nothing listening, permission).
    Connect(PathBuf, std::io::Error),
    /// Connected, but the reply did not arrive within this long.
    NoReply(Duration),
    /// The connection broke while sending or reading.
    Io(std::io::Error),
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtlError::NotSocket(p) => write!(
                f,
                "{} is not a socket (give --socket the distributor's --control path)",
                p.display()
            ),
            CtlError::Connect(p, e) => {
                write!(f, "cannot reach the distributor at {}: ", p.display())?;
                match e.kind() {
                    std::io::ErrorKind::NotFound => {
                        f.write_str("no such file (is it running with --control?)")
                    }
                    std::io::ErrorKind::ConnectionRefused => f.write_str(
                        "nothing listens on it (a stale socket: the distributor is not running)",
                    ),
                    std::io::ErrorKind::PermissionDenied => {
                        f.write_str("permission denied (the socket is 0600: run as its owner)")
                    }
                    _ => write!(f, "{e}"),
                }
            }
            CtlError::NoReply(t) => write!(
                f,
                "no reply within {} (raise --timeout; the command may still complete)",
                format_duration(*t)
            ),
            CtlError::Io(e) => write!(f, "connection to the distributor broke: {e}"),
        }
    }
}

impl std::error::Error for CtlError {}

/// How long to wait for the reply to `line`: `timeout`, or longer for a `wait drained`
/// whose own timeout (60 s when omitted) is longer.
pub fn reply_timeout(line: &str, timeout: Duration) -> Duration {
    match crate::control::command::parse_scoped(line).map(|s| s.cmd) {
        Ok(crate::control::command::Command::WaitDrained { timeout: t, .. }) => {
            let own = t.unwrap_or(crate::control::command::DEFAULT_WAIT);
            timeout.max(own.saturating_add(WAIT_MARGIN))
        }
        _ => timeout,
    }
}

/// Sends `line`, returns the reply body (without the terminating empty line).
pub fn request(socket: &Path, line: &str, timeout: Duration) -> Result<String, CtlError> {
    let mut s = UnixStream::connect(socket).map_err(|e| match std::fs::metadata(socket) {
        Ok(m) if !m.file_type().is_socket() => CtlError::NotSocket(socket.to_owned()),
        _ => CtlError::Connect(socket.to_owned(), e),
    })?;
    s.set_read_timeout(Some(timeout)).map_err(CtlError::Io)?;
    s.write_all(line.as_bytes()).map_err(CtlError::Io)?;
    s.write_all(b"\n").map_err(CtlError::Io)?;
    let mut r = BufReader::new(s);
    let mut body = String::new();
    loop {
        let mut l = String::new();
        match r.read_line(&mut l) {
            Ok(0) => {
                return Err(CtlError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed before the reply ended",
                )))
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(CtlError::NoReply(timeout))
            }
            Err(e) => return Err(CtlError::Io(e)),
        }
        if l == "\n" {
            break;
        }
        body.push_str(&l);
    }
    Ok(body)
}

/// The flags `rollout start` takes as `--NAME VALUE`, sent as `NAME VALUE`.
const ROLLOUT_FLAGS: [&str; 8] = [
    "--hook",
    "--task",
    "--when-idle",
    "--service",
    "--batch",
    "--min-ready",
    "--healthy-timeout",
    "--drain-timeout",
];

/// How often `--wait` asks for the rollout's status.
const WAIT_POLL: Duration = Duration::from_millis(250);

/// The line to send for `ctl`'s command words, and whether `--wait` was given (only
/// `rollout …` commands take it; elsewhere it is left for the distributor to refuse).
pub fn translate(words: &[String]) -> (String, bool) {
    if !matches!(words.first().map(String::as_str), Some("rollout" | "task")) {
        return (words.join(" "), false);
    }
    let mut wait = false;
    let mut out: Vec<&str> = Vec::with_capacity(words.len());
    for w in words {
        match w.as_str() {
            "--wait" => wait = true,
            f if ROLLOUT_FLAGS.contains(&f) => out.push(&f[2..]),
            other => out.push(other),
        }
    }
    (out.join(" "), wait)
}

/// A top-level number field of a JSON object, e.g. `"id":12`.
fn json_number(json: &str, key: &str) -> Option<u64> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = json
        .get(at..)?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A string field of a JSON object whose value holds no escapes, e.g. `"state":"done"`.
fn json_word<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let at = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let rest = json.get(at..)?;
    rest.get(..rest.find('"')?)
}

/// `--wait`: polls `WHAT status --json` (`rollout` or `task`) until rollout or job
/// `id` (the latest when `None`) ends; prints the final status. Exit 0 done, 1
/// failed/aborted/still running.
fn wait_for(a: &CtlArgs, what: &str, id: Option<u64>) -> u8 {
    let end = std::time::Instant::now() + a.wait_timeout;
    let (json_cmd, text_cmd) = (format!("{what} status --json"), format!("{what} status"));
    loop {
        let json = match request(&a.socket, &json_cmd, a.timeout) {
            Ok(j) => j,
            Err(e) => {
                eprintln!("fulcrum ctl: {e}");
                return EXIT_UNREACHABLE;
            }
        };
        let same = id.is_none() || json_number(&json, "id") == id;
        let state = json_word(&json, "state").unwrap_or("");
        let over = same && matches!(state, "done" | "failed" | "aborted" | "interrupted");
        let late = std::time::Instant::now() >= end;
        if over || late {
            let text = request(&a.socket, &text_cmd, a.timeout).unwrap_or_default();
            if state == "done" && over {
                print!("{text}");
                return EXIT_OK;
            }
            eprint!("{text}");
            if !over {
                eprintln!(
                    "fulcrum ctl: still {state} after {} (--wait-timeout)",
                    format_duration(a.wait_timeout)
                );
            }
            return EXIT_REFUSED;
        }
        std::thread::sleep(WAIT_POLL);
    }
}

/// Runs `fulcrum ctl`; returns the process exit code.
pub fn run(a: CtlArgs) -> u8 {
    let (line, wait) = translate(&a.command);
    match request(&a.socket, &line, reply_timeout(&line, a.timeout)) {
        Ok(body) if body.starts_with("error:") => {
            eprint!("{body}");
            EXIT_REFUSED
        }
        Ok(body) if wait => {
            print!("{body}");
            // "rollout 3 started: …" and "task job 3 started: …" name what to wait for.
            let (what, rest) = match body.strip_prefix("task job ") {
                Some(rest) => ("task", Some(rest)),
                None => ("rollout", body.strip_prefix("rollout ")),
            };
            let id = rest
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok());
            wait_for(&a, what, id)
        }
        Ok(body) => {
            print!("{body}");
            EXIT_OK
        }
        Err(e) => {
            eprintln!("fulcrum ctl: {e}");
            EXIT_UNREACHABLE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_drained_extends_the_reply_timeout() {
        let two_min = Duration::from_secs(120);
        assert_eq!(
            reply_timeout("wait drained 10.0.0.1:80 5m", two_min),
            Duration::from_secs(305)
        );
        assert_eq!(reply_timeout("wait drained 10.0.0.1:80", two_min), two_min);
        assert_eq!(
            reply_timeout("wait drained 10.0.0.1:80 1s", Duration::from_secs(1)),
            Duration::from_secs(6)
        );
        assert_eq!(reply_timeout("show nodes", two_min), two_min);
        assert_eq!(reply_timeout("bogus", two_min), two_min);
    }

    #[test]
    fn rollout_flags_become_the_grammar() {
        let w = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            translate(&w("rollout start --hook deploy --service web --batch 2 --min-ready 1 --healthy-timeout 30s --drain-timeout 1m --wait")),
            (
                "rollout start hook deploy service web batch 2 min-ready 1 healthy-timeout 30s drain-timeout 1m".to_owned(),
                true
            )
        );
        assert_eq!(
            translate(&w(
                "task rotate --service web --when-idle 10.0.0.1:80 --wait"
            )),
            (
                "task rotate service web when-idle 10.0.0.1:80".to_owned(),
                true
            )
        );
        assert_eq!(
            translate(&w("rollout start --task deploy")),
            ("rollout start task deploy".to_owned(), false)
        );
        assert_eq!(
            translate(&w("rollout status --json")),
            ("rollout status --json".to_owned(), false)
        );
        // Elsewhere nothing is rewritten.
        assert_eq!(
            translate(&w("show nodes --wait")),
            ("show nodes --wait".to_owned(), false)
        );
        let j = r#"{"id":12,"service":"web","hook":"h","state":"failed","reason":null}"#;
        assert_eq!(json_number(j, "id"), Some(12));
        assert_eq!(json_word(j, "state"), Some("failed"));
        assert_eq!(json_word(j, "nope"), None);
    }

    #[test]
    fn errors_name_the_cause() {
        let p = PathBuf::from("/x.sock");
        let e = CtlError::NoReply(Duration::from_secs(5)).to_string();
        assert!(e.starts_with("no reply within 5s"), "{e}");
        assert!(!e.contains("reach"));
        let e = CtlError::NotSocket(p.clone()).to_string();
        assert!(e.contains("/x.sock is not a socket"), "{e}");
        let e = CtlError::Connect(p, std::io::ErrorKind::NotFound.into()).to_string();
        assert!(
            e.contains("cannot reach the distributor at /x.sock: no such file"),
            "{e}"
        );
    }
}
