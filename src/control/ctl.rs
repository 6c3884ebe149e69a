//! `fulcrum ctl`: the control interface's client.
//!
//! Sends one command line to the distributor's control socket and prints the reply.
//! Exit codes: 0 done, 1 the distributor refused the command (`error: …`), 2 the
//! distributor cannot be reached.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// `fulcrum ctl` flags.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The distributor's control socket (its --control).
    #[arg(long, default_value = "/run/fulcrum.sock")]
    pub socket: PathBuf,
    /// Give up waiting for the reply after this long (`wait drained` may take a while).
    #[arg(long, default_value = "120s", value_parser = |s: &str| crate::duration::parse_duration(s).map_err(|e| e.to_string()))]
    pub timeout: Duration,
    /// The command, e.g. `show nodes --json`, `set state 10.0.0.5:80 drain`, `help`.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Sends `line`, returns the reply body (without the terminating empty line).
pub fn request(socket: &std::path::Path, line: &str, timeout: Duration) -> std::io::Result<String> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(line.as_bytes())?;
    s.write_all(b"\n")?;
    let mut r = BufReader::new(s);
    let mut body = String::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before the reply ended",
            ));
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
    match request(&a.socket, &line, a.timeout) {
        Ok(body) if body.starts_with("error:") => {
            eprint!("{body}");
            1
        }
        Ok(body) => {
            print!("{body}");
            0
        }
        Err(e) => {
            eprintln!(
                "fulcrum ctl: cannot reach the distributor at {}: {e}",
                a.socket.display()
            );
            2
        }
    }
}
