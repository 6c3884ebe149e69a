//! Zero-downtime reload: a new `fulcrum serve` takes the running one's listening sockets
//! over its control socket, then tells it to drain and exit.
//!
//! What it is: the new process's side ([`take_listeners`], [`Handover::stop_old`]) and
//! the old process's side ([`send_listeners`]), both over the Unix control socket.
//! `expose listeners` is answered with the text `listeners N` (then `http ADDR` when
//! the old process serves HTTP, so the successor can say it drops it) and, attached to
//! it (SCM_RIGHTS), the N listening sockets; `shutdown` starts the old process's drain as
//! SIGTERM does.
//!
//! Why pass the sockets rather than bind new SO_REUSEPORT ones beside the old: a
//! connection waiting in a listener's accept queue is reset when that listener closes.
//! Handed-over sockets stay open in the new process, so nothing queued on them is lost,
//! and no listening address is ever unbound (HAProxy's `expose-fd listeners` and Envoy's
//! hot restart do the same).

use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{getsockopt, sockopt};

/// Most sockets one hand-over carries (workers × listen addresses).
pub const MAX_LISTENERS: usize = 64;

/// The command a new process sends first.
pub const EXPOSE: &str = "expose listeners";
/// The command that makes the old process drain and exit.
pub const SHUTDOWN: &str = "shutdown";

/// Longest reply read back (the replies here are one line).
const MAX_REPLY: usize = 4096;

/// The new process's end of a hand-over: the sockets, and the connection on which the
/// old process is told to stop once the new one runs.
pub struct Handover {
    stream: UnixStream,
    /// The listening sockets received.
    pub listeners: Vec<TcpListener>,
    /// The old process's `--http` address, if it has one.
    pub old_http: Option<std::net::SocketAddr>,
}

fn err(path: &Path, m: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("--listeners-from {}: {m}", path.display()))
}

/// Connects to the running process's control socket and takes its listeners.
pub fn take_listeners(path: &Path) -> io::Result<Handover> {
    let mut stream = UnixStream::connect(path).map_err(|e| err(path, e))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("{EXPOSE}\n").as_bytes())?;
    let mut buf = vec![0u8; MAX_REPLY];
    let (n, fds) = crate::sys::scm::recv_with_fds(&stream, &mut buf, MAX_LISTENERS)
        .map_err(|e| err(path, e))?;
    let mut text = buf[..n].to_vec();
    read_reply(&mut stream, &mut text)?;
    let text = String::from_utf8_lossy(&text);
    let line = text.lines().next().unwrap_or_default();
    let old_http = text
        .lines()
        .find_map(|l| l.strip_prefix("http "))
        .and_then(|a| a.parse().ok());
    let Some(count) = line.strip_prefix("listeners ") else {
        return Err(err(path, format!("the running process answered {line:?}")));
    };
    if count.parse::<usize>().ok() != Some(fds.len()) {
        return Err(err(
            path,
            format!("announced {count} sockets, received {}", fds.len()),
        ));
    }
    let mut listeners = Vec::with_capacity(fds.len());
    for fd in fds {
        if !getsockopt(&fd, sockopt::AcceptConn).unwrap_or(false) {
            return Err(err(path, "a received socket is not listening"));
        }
        listeners.push(TcpListener::from(fd));
    }
    Ok(Handover {
        stream,
        listeners,
        old_http,
    })
}

/// Reads until the reply's terminating empty line.
fn read_reply(stream: &mut UnixStream, text: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 512];
    while !text.ends_with(b"\n\n") {
        if text.len() > MAX_REPLY {
            return Err(io::Error::other("reply too long"));
        }
        match stream.read(&mut chunk)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => text.extend_from_slice(&chunk[..n]),
        }
    }
    Ok(())
}

impl Handover {
    /// Tells the old process to drain and exit; returns its reply line.
    pub fn stop_old(mut self) -> io::Result<String> {
        self.stream.write_all(format!("{SHUTDOWN}\n").as_bytes())?;
        let mut text = Vec::new();
        read_reply(&mut self.stream, &mut text)?;
        Ok(String::from_utf8_lossy(&text).trim().to_string())
    }
}

/// The old process's side: sends `reply` (one text reply, `\n\n`-terminated) with
/// `fds` attached. Returns how many bytes of `reply` went out; the caller queues the
/// rest as ordinary output (the descriptors travel with the first byte).
pub fn send_listeners(sock: RawFd, reply: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    crate::sys::scm::send_with_fds(sock, reply, fds)
}
