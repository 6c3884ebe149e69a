//! Signals as events: every signal an operator may send is blocked in all threads and
//! read from a signalfd by the event loop, so none of them kills the process by its
//! default action and none is handled in async-signal context.
//!
//! SIGPIPE is not among them: the Rust runtime already ignores it, so a write to a
//! closed socket fails with `EPIPE` instead.

use std::io;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// The signals [`signal_fd`] reports.
const HANDLED: [Signal; 5] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// What a received signal asks of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// SIGTERM, SIGINT: drain and exit.
    Stop,
    /// SIGHUP: re-read the configuration.
    Reload,
    /// SIGUSR1, SIGUSR2: no meaning yet; logged and otherwise ignored.
    Ignore,
}

/// One signal read from the signalfd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Its name, e.g. `SIGHUP`.
    pub name: &'static str,
    /// What it asks for.
    pub request: Request,
}

/// Blocks the handled signals in this thread (and the threads it spawns later) and
/// returns a non-blocking signalfd that reports them. Call it before any thread starts.
pub fn signal_fd() -> io::Result<SignalFd> {
    let mut set = SigSet::empty();
    for s in HANDLED {
        set.add(s);
    }
    set.thread_block().map_err(io::Error::from)?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(io::Error::from)
}

/// Reads the next pending signal, if any.
pub fn next(sfd: &mut SignalFd) -> Option<Received> {
    let si = sfd.read_signal().ok()??;
    Some(classify(si.ssi_signo as i32))
}

/// What signal number `signo` asks for.
pub fn classify(signo: i32) -> Received {
    let sig = Signal::try_from(signo).ok();
    let request = match sig {
        Some(Signal::SIGTERM | Signal::SIGINT) => Request::Stop,
        Some(Signal::SIGHUP) => Request::Reload,
        _ => Request::Ignore,
    };
    Received {
        name: sig.map_or("signal", |s| s.as_str()),
        request,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operator_signal_has_a_meaning() {
        assert_eq!(classify(libc::SIGTERM).request, Request::Stop);
        assert_eq!(classify(libc::SIGINT).request, Request::Stop);
        assert_eq!(classify(libc::SIGHUP).request, Request::Reload);
        assert_eq!(classify(libc::SIGUSR1).request, Request::Ignore);
        assert_eq!(classify(libc::SIGUSR2).request, Request::Ignore);
        assert_eq!(classify(libc::SIGHUP).name, "SIGHUP");
        assert_eq!(classify(9999).name, "signal");
    }
}
