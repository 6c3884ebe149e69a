//! `fulcrum ctl`: the control interface's client.
//!
//! Sends one command line to the distributor's control socket and prints the reply.
//! Exit codes (scripts rely on them; documented in docs/control.md):
//! [`EXIT_OK`] 0 done, [`EXIT_REFUSED`] 1 the distributor refused the command
//! (`error: …`), 2 a usage error of `ctl` itself (clap's code), [`EXIT_UNREACHABLE`] 3
//! the distributor cannot be reached or did not reply in time.

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

/// Runs `fulcrum ctl`; returns the process exit code.
pub fn run(a: CtlArgs) -> u8 {
    let line = a.command.join(" ");
    match request(&a.socket, &line, reply_timeout(&line, a.timeout)) {
        Ok(body) if body.starts_with("error:") => {
            eprint!("{body}");
            EXIT_REFUSED
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
