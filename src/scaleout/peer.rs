//! One BGP peer's TCP shell: the non-blocking connection that carries a
//! [`crate::bgp::session::Session`], its write buffer, and the translation of the
//! session's events (connect, close, established, down) into socket calls, logs and
//! alerts.
//!
//! What it owns: the socket and the bytes the socket has not taken yet. What it does
//! not do: decide anything about BGP (the session does) or about routes (the driver
//! does).

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use log::{debug, info, warn, Level};
use mio::event::Event as MioEvent;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::config::PeerSpec;
use crate::bgp::session::{DownReason, Event, Session, StateKind};
use crate::notify::Alert;
use crate::plane::Plane;

/// Reads per readiness event on one BGP connection (bounded).
const MAX_READS: usize = 64;

/// A TCP connection to a peer.
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    pub(super) connected: bool,
    /// Bytes the socket did not take yet (back-pressure from the peer).
    pub(super) out: Vec<u8>,
}

/// One BGP peer: its session, its connection, what the operator view needs.
pub(super) struct Peer {
    pub(super) spec: PeerSpec,
    pub(super) session: Session,
    pub(super) conn: Option<Conn>,
    pub(super) established_at: Option<Instant>,
    pub(super) last_error: Option<String>,
    /// Index into the BFD link's sessions.
    pub(super) bfd: Option<usize>,
    pub(super) bfd_downs: u64,
    /// Why we closed the session ourselves (BFD), for the Down that follows.
    pub(super) closing_because: Option<String>,
}

impl Peer {
    /// Writes, closes, connects and reports whatever the session asks for.
    pub(super) fn pump(
        &mut self,
        token: Token,
        registry: &Registry,
        plane: &mut Plane,
        epoch: Instant,
    ) {
        let p = self;
        // Bounded: every round consumes a queued item; a session queues finitely many.
        for _ in 0..64 {
            let mut progressed = false;
            while let Some(bytes) = p.session.poll_transmit() {
                progressed = true;
                if let Some(c) = p.conn.as_mut() {
                    c.out.extend_from_slice(&bytes);
                }
            }
            flush(p, Instant::now().saturating_duration_since(epoch));
            let Some(ev) = p.session.poll_event() else {
                if !progressed {
                    break;
                }
                continue;
            };
            let now = Instant::now();
            let t = now.saturating_duration_since(epoch);
            match ev {
                Event::Connect => {
                    if let Some(mut c) = p.conn.take() {
                        let _ = registry.deregister(&mut c.stream);
                    }
                    match TcpStream::connect(p.spec.addr) {
                        Ok(mut stream) => {
                            match registry.register(
                                &mut stream,
                                token,
                                Interest::READABLE | Interest::WRITABLE,
                            ) {
                                Ok(()) => {
                                    p.conn = Some(Conn {
                                        stream,
                                        connected: false,
                                        out: Vec::new(),
                                    })
                                }
                                Err(e) => {
                                    debug!(target: "fulcrum::bgp", "peer {}: register: {e}", p.spec.addr);
                                    p.session.on_connect_failed(t);
                                }
                            }
                        }
                        Err(e) => {
                            debug!(target: "fulcrum::bgp", "peer {}: connect: {e}", p.spec.addr);
                            p.session.on_connect_failed(t);
                        }
                    }
                }
                Event::Close => {
                    if let Some(mut c) = p.conn.take() {
                        // The NOTIFICATION that explains the close was queued before.
                        let _ = write_out(&mut c);
                        let _ = c.stream.shutdown(std::net::Shutdown::Write);
                        let _ = registry.deregister(&mut c.stream);
                    }
                }
                Event::Established => {
                    p.established_at = Some(now);
                    info!(target: "fulcrum::bgp", "peer {} as {}: established", p.spec.addr, p.spec.asn);
                    plane.notifier.alert(Alert {
                        event: "bgp",
                        subject: p.spec.addr.to_string(),
                        old: "down".into(),
                        new: "established".into(),
                        reason: "session up".into(),
                        level: Level::Info,
                    });
                }
                Event::Down { reason } => {
                    let why = p.closing_because.take().unwrap_or_else(|| describe(reason));
                    if p.established_at.take().is_some() {
                        warn!(target: "fulcrum::bgp", "peer {} as {}: session down: {why}", p.spec.addr, p.spec.asn);
                        plane.notifier.alert(Alert {
                            event: "bgp",
                            subject: p.spec.addr.to_string(),
                            old: "established".into(),
                            new: "down".into(),
                            reason: why.clone(),
                            level: Level::Warn,
                        });
                    } else {
                        debug!(target: "fulcrum::bgp", "peer {}: attempt failed: {why}", p.spec.addr);
                    }
                    p.last_error = Some(why);
                    // The session is over: whatever it wanted written went out at Close.
                    if let Some(mut c) = p.conn.take() {
                        let _ = registry.deregister(&mut c.stream);
                    }
                }
            }
        }
    }

    /// A readiness event on the connection: completes a connect, reads into the session.
    pub(super) fn on_event(&mut self, ev: &MioEvent, t: Duration) {
        let p = self;
        let Some(c) = p.conn.as_mut() else {
            return;
        };
        if !c.connected {
            if !(ev.is_writable() || ev.is_error() || ev.is_write_closed()) {
                return;
            }
            match c.stream.take_error() {
                Ok(Some(_)) | Err(_) => {
                    p.conn = None;
                    p.session.on_connect_failed(t);
                    return;
                }
                Ok(None) => {}
            }
            match c.stream.peer_addr() {
                Ok(_) => {
                    c.connected = true;
                    let _ = c.stream.set_nodelay(true);
                    p.session.on_connected(t);
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(_) => {
                    p.conn = None;
                    p.session.on_connect_failed(t);
                    return;
                }
            }
        }
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            let mut buf = [0u8; 4096];
            for _ in 0..MAX_READS {
                let Some(c) = p.conn.as_mut() else { break };
                match c.stream.read(&mut buf) {
                    Ok(0) => {
                        p.session.on_closed(t);
                        break;
                    }
                    Ok(n) => p.session.on_bytes(buf.get(..n).unwrap_or_default(), t),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        debug!(target: "fulcrum::bgp", "peer {}: read: {e}", p.spec.addr);
                        p.session.on_closed(t);
                        break;
                    }
                }
            }
        }
    }
}

/// The reason a session went down, for the operator.
fn describe(reason: DownReason) -> String {
    match reason {
        DownReason::ConnectFailed => "connect failed".into(),
        DownReason::ConnectTimeout => "connect timed out".into(),
        DownReason::PeerClosed => "peer closed the connection".into(),
        DownReason::HoldTimerExpired => "hold timer expired (sent NOTIFICATION 4/0)".into(),
        DownReason::NotificationReceived { code, subcode } => {
            format!("peer sent NOTIFICATION {code}/{subcode}")
        }
        DownReason::NotificationSent { code, subcode } => {
            format!("sent NOTIFICATION {code}/{subcode}")
        }
    }
}

pub(super) fn state_name(s: StateKind) -> &'static str {
    match s {
        StateKind::Idle => "idle",
        StateKind::Connect => "connect",
        StateKind::OpenSent => "opensent",
        StateKind::OpenConfirm => "openconfirm",
        StateKind::Established => "established",
    }
}

/// Moves buffered bytes to the socket of a connected peer.
pub(super) fn flush(p: &mut Peer, now: Duration) {
    let Some(c) = p.conn.as_mut() else { return };
    if !c.connected || c.out.is_empty() {
        return;
    }
    if write_out(c).is_err() {
        p.conn = None;
        p.session.on_closed(now);
    }
}

/// Writes until the buffer is empty or the socket is full.
fn write_out(c: &mut Conn) -> io::Result<()> {
    let mut written = 0;
    while written < c.out.len() {
        match c.stream.write(c.out.get(written..).unwrap_or_default()) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    c.out.drain(..written.min(c.out.len()));
    Ok(())
}
