//! The control interface's IO shell: the Unix socket (`--control`) and HTTP on loopback
//! (`--http`, served by [`crate::control::http`]), one [`Component`] for both so they
//! share one [`Executor`].
//!
//! Unix socket: one command per line, one reply per command; a reply is its text lines
//! followed by one empty line (bodies never contain empty lines), errors start with
//! `error: `. The socket is created 0600 and start-up refuses a path that exists and is
//! not a socket. Lines are framed by [`LineBuffer`]: an over-long line is refused without
//! being buffered; the connection stays usable after any error.
//!
//! Each listener has its own connection budget: [`MAX_UNIX_CONNS`] for the Unix socket
//! (only its owner can connect; accepting pauses at the cap), and HTTP's own (see
//! [`crate::control::http`]), so no number of HTTP clients can refuse or delay
//! `fulcrum ctl`. Every per-event loop is bounded so that health checks and failover
//! adverts, served by the same thread, keep their cadence.
//!
//! Two process commands exist on the Unix socket only, outside the command grammar (they
//! act on the process, not on the node set, and are never synced to a failover peer):
//! `expose listeners` hands the proxy listeners to a reloading process
//! ([`crate::reload`]) and `shutdown` drains and exits as SIGTERM does.

use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::event::Event;
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::control::command::{LineBuffer, LineError};
use crate::control::exec::{Executor, Outcome, Reply};
use crate::control::http::{flush, HttpServer};
use crate::plane::{Component, Plane};

const UNIX_LISTENER: usize = 0;
const HTTP_LISTENER: usize = 1;
/// `bgp withdraw`: withdraw the announced prefixes and keep serving (control socket
/// only, like `shutdown`: it moves traffic away from this distributor).
const BGP_WITHDRAW: &str = "bgp withdraw";
/// `bgp announce`: undo `bgp withdraw`.
const BGP_ANNOUNCE: &str = "bgp announce";

/// Unix connection `key` has token offset `FIRST_UNIX + key`.
const FIRST_UNIX: usize = 2;
/// HTTP connection `key` has token offset `FIRST_HTTP + key` (far above any Unix key).
const FIRST_HTTP: usize = 1 << 22;
/// Most Unix control connections at once (each costs a descriptor and a small buffer).
/// HTTP clients never count against it.
pub const MAX_UNIX_CONNS: usize = 256;
/// Unix connections accepted per readiness event; the rest on the next loop turn.
const ACCEPT_BATCH: usize = 32;
/// Reads (4 KiB each) per readiness event on one Unix connection.
const READ_ROUNDS: usize = 16;

struct UnixConn {
    stream: UnixStream,
    who: String,
    lines: LineBuffer,
    out: Vec<u8>,
    /// A `wait drained` in progress: (node, deadline). Further lines wait behind it.
    waiting: Option<(usize, std::net::SocketAddr, Instant)>,
    closing: bool,
    /// The last read stopped at its round cap, not at `WouldBlock`: drive again on the
    /// next tick (no new readiness edge will come for bytes already queued).
    more: bool,
}

/// The control component.
pub struct ControlServer {
    /// The Unix listener, its path, and the (device, inode) it was created as: at exit
    /// the path is removed only if it is still ours (a reload's successor re-creates it).
    unix: Option<(UnixListener, PathBuf, (u64, u64))>,
    /// Reload: the socket was bound at a staging path and is renamed onto this one once
    /// the process has started, so a failed start leaves the predecessor's path alone.
    publish_to: Option<PathBuf>,
    http: Option<HttpServer>,
    conns: Slab<UnixConn>,
    /// Connections with a `wait drained` in progress or more input queued (driven again
    /// on ticks). May hold stale keys; they are dropped at the next check.
    waiters: Vec<usize>,
    exec: Executor,
    base: usize,
    /// Unix accepting stopped at [`MAX_UNIX_CONNS`]; resumed on the tick after a close.
    at_cap: bool,
    /// More Unix connections may be queued (a batch was cut short, or accept failed):
    /// accept again at this time.
    accept_again: Option<Instant>,
}

impl ControlServer {
    /// Binds the Unix socket (0600) and the HTTP listener as configured. `reload_from`:
    /// the control socket of the process this one replaces. If it is `unix_path`, the
    /// socket is bound at a staging path and renamed over it once everything started
    /// ([`Component::on_started`]; the old process keeps serving the connections it
    /// accepted on its now-unlinked inode). The HTTP address may be shared with the old
    /// process while it drains.
    pub fn new(
        unix_path: Option<PathBuf>,
        http: Option<std::net::SocketAddr>,
        token: Option<String>,
        reload_from: Option<&std::path::Path>,
    ) -> io::Result<Self> {
        let mut publish_to = None;
        let unix = match unix_path {
            Some(p) => {
                let at = if reload_from == Some(p.as_path()) {
                    let mut staged = p.clone().into_os_string();
                    staged.push(format!(".new-{}", std::process::id()));
                    publish_to = Some(p);
                    PathBuf::from(staged)
                } else {
                    p
                };
                let l = bind_unix(&at)?;
                let meta = std::fs::symlink_metadata(&at)?;
                Some((l, at, (meta.dev(), meta.ino())))
            }
            None => None,
        };
        let http = match http {
            Some(a) => Some(
                HttpServer::bind(a, reload_from.is_some(), token)
                    .map_err(|e| io::Error::new(e.kind(), format!("--http {a}: {e}")))?,
            ),
            None => None,
        };
        Ok(ControlServer {
            unix,
            http,
            conns: Slab::new(),
            waiters: Vec::new(),
            exec: Executor::default(),
            base: 0,
            at_cap: false,
            accept_again: None,
            publish_to,
        })
    }

    /// Accepts Unix connections: a batch at most, and none beyond [`MAX_UNIX_CONNS`].
    fn accept_unix(&mut self, registry: &Registry, now: Instant) {
        let Some((l, ..)) = self.unix.as_ref() else {
            return;
        };
        self.accept_again = None;
        for _ in 0..ACCEPT_BATCH {
            if self.conns.len() >= MAX_UNIX_CONNS {
                if !self.at_cap {
                    warn!(target: "fulcrum::control", "too many control socket connections ({MAX_UNIX_CONNS}); not accepting more for now");
                }
                self.at_cap = true;
                return;
            }
            self.at_cap = false;
            let mut stream = match l.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!(target: "fulcrum::control", "accept: {e}");
                    // Descriptors may have run out: look again shortly.
                    self.accept_again = Some(now + Duration::from_millis(100));
                    return;
                }
            };
            let entry = self.conns.vacant_entry();
            let token = Token(self.base + FIRST_UNIX + entry.key());
            let interest = Interest::READABLE | Interest::WRITABLE;
            if registry.register(&mut stream, token, interest).is_err() {
                continue;
            }
            entry.insert(UnixConn {
                who: peer_uid(&stream).map_or("unix".to_string(), |uid| format!("unix:uid={uid}")),
                stream,
                lines: LineBuffer::new(),
                out: Vec::new(),
                waiting: None,
                closing: false,
                more: false,
            });
        }
        // The batch cap ended this: more may be queued; the next loop turn goes on.
        self.accept_again = Some(now);
    }

    /// Reads, runs commands, writes; returns false when the connection should close.
    fn drive_unix(&mut self, plane: &mut Plane, key: usize, now: Instant) -> bool {
        let Some(UnixConn {
            stream,
            who,
            lines,
            out,
            waiting,
            closing,
            more,
        }) = self.conns.get_mut(key)
        else {
            return false;
        };
        let mut buf = [0u8; 4096];
        *more = true;
        for _ in 0..READ_ROUNDS {
            match stream.read(&mut buf) {
                Ok(0) => {
                    lines.finish();
                    *closing = true;
                    *more = false;
                    break;
                }
                Ok(n) => lines.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    *more = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
            // Stop reading while replies pile up (a client that never reads).
            if out.len() > 1 << 20 {
                break;
            }
        }
        while waiting.is_none() {
            let Some(line) = lines.next_line() else { break };
            let reply = match line {
                Err(LineError::TooLong) => Reply::error(format!(
                    "line longer than {} bytes refused",
                    crate::control::command::MAX_LINE
                )),
                Err(e) => Reply::error(e),
                Ok(l) if l.trim() == crate::reload::SHUTDOWN => {
                    plane.stop_requested = true;
                    warn!(target: "fulcrum::control", "{who}: shutdown");
                    Reply::ok(format!(
                        "stopping: draining {} for up to {}",
                        crate::words::plural(
                            plane
                                .process
                                .active
                                .load(std::sync::atomic::Ordering::Relaxed),
                            "connection"
                        ),
                        crate::duration::format_duration(plane.cfg.drain_timeout)
                    ))
                }
                Ok(l) if matches!(l.trim(), BGP_WITHDRAW | BGP_ANNOUNCE) => {
                    if plane.bgp.is_none() {
                        Reply::error("BGP is not configured (no --bgp-peer)")
                    } else {
                        let withdraw = l.trim() == BGP_WITHDRAW;
                        plane.bgp_withdrawn = withdraw;
                        warn!(target: "fulcrum::control", "{who}: {}", l.trim());
                        Reply::ok(if withdraw {
                            "withdrawing every prefix; still serving (bgp announce undoes it)"
                        } else {
                            "announcing again while the pool is healthy"
                        })
                    }
                }
                Ok(l) if l.trim() == crate::reconfig::RELOAD => {
                    match crate::reconfig::reload_plane(plane) {
                        Ok(summary) => {
                            info!(target: "fulcrum::control", "{who}: {summary}");
                            Reply::ok(summary)
                        }
                        Err(e) => {
                            warn!(target: "fulcrum::control", "{who}: reload refused, still serving with the configuration it had: {e}");
                            Reply::error(format!(
                                "not reloaded (still serving with the configuration it had): {e}"
                            ))
                        }
                    }
                }
                Ok(l) if l.trim() == crate::reload::EXPOSE => {
                    match expose_listeners(plane, stream, out) {
                        Ok(n) => {
                            warn!(target: "fulcrum::control", "{who}: handed over {} (reload)", crate::words::plural(n as u64, "listening socket"));
                            continue;
                        }
                        Err(e) => Reply::error(e),
                    }
                }
                Ok(l) => match self.exec.execute(plane, &l, who, true, now) {
                    Outcome::Reply(r) => r,
                    Outcome::Wait {
                        service,
                        addr,
                        deadline,
                    } => {
                        *waiting = Some((service, addr, deadline));
                        break;
                    }
                },
            };
            push_reply(out, &reply);
        }
        if let Some((service, addr, deadline)) = *waiting {
            match plane
                .services
                .get(service)
                .and_then(|s| s.shared.pool.find(addr))
            {
                // Only a removal takes a node out of the pool: it is drained.
                None => {
                    push_reply(out, &Reply::ok(crate::control::exec::drained_removed(addr)));
                    *waiting = None;
                }
                Some(n) if n.active() == 0 => {
                    push_reply(
                        out,
                        &Reply {
                            ok: true,
                            body: format!("node {addr} drained"),
                        },
                    );
                    *waiting = None;
                }
                Some(n) if now >= deadline => {
                    push_reply(
                        out,
                        &Reply::error(format!(
                            "timeout: node {addr} still has {} active",
                            n.active()
                        )),
                    );
                    *waiting = None;
                }
                Some(_) => {}
            }
        }
        if !flush(stream, out) {
            return false;
        }
        !(*closing && out.is_empty() && waiting.is_none())
    }

    fn close(&mut self, registry: &Registry, key: usize) {
        if let Some(mut c) = self.conns.try_remove(key) {
            let _ = registry.deregister(&mut c.stream);
        }
    }

    /// Drives Unix connection `key`, closing it when done; remembers it if it waits.
    fn on_unix(&mut self, plane: &mut Plane, registry: &Registry, key: usize, now: Instant) {
        if !self.drive_unix(plane, key, now) {
            self.close(registry, key);
        } else if self
            .conns
            .get(key)
            .is_some_and(|c| c.waiting.is_some() || c.more)
            && !self.waiters.contains(&key)
        {
            self.waiters.push(key);
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        if let Some((_, p, id)) = &self.unix {
            let ours = std::fs::symlink_metadata(p).is_ok_and(|m| (m.dev(), m.ino()) == *id);
            if ours {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// Answers `expose listeners`: `listeners N` with the N listener descriptors attached.
/// Only with nothing else queued for this client, so the descriptors ride on the first
/// byte of their own reply.
fn expose_listeners(
    plane: &Plane,
    stream: &mut UnixStream,
    out: &mut Vec<u8>,
) -> Result<usize, String> {
    use std::os::fd::AsRawFd;
    if plane.listeners.is_empty() {
        return Err("no listeners to hand over (direct mode, or already draining)".into());
    }
    if plane.listeners.len() > crate::reload::MAX_LISTENERS {
        return Err(format!(
            "{} listeners, more than one hand-over carries ({})",
            plane.listeners.len(),
            crate::reload::MAX_LISTENERS
        ));
    }
    if !flush(stream, out) || !out.is_empty() {
        return Err("earlier replies are still queued; send this on a fresh connection".into());
    }
    let fds: Vec<std::os::fd::RawFd> = plane.listeners.iter().map(|(_, f)| f.as_raw_fd()).collect();
    // What the successor should know it replaces: the HTTP address it may be dropping.
    let http = plane
        .cfg
        .http
        .map_or(String::new(), |h| format!("http {h}\n"));
    let reply = format!("listeners {}\n{http}\n", fds.len());
    let sent = crate::reload::send_listeners(stream.as_raw_fd(), reply.as_bytes(), &fds)
        .map_err(|e| format!("sending the listeners: {e}"))?;
    if sent == 0 {
        return Err("sending the listeners: nothing sent".into());
    }
    out.extend_from_slice(&reply.as_bytes()[sent..]);
    Ok(fds.len())
}

fn bind_unix(path: &std::path::Path) -> io::Result<UnixListener> {
    let err = |m: String| {
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("--control {}: {m}", path.display()),
        )
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(err(
                "exists and is not a socket; refusing to replace it".into()
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(err("another process is serving this socket".into()));
        }
        std::fs::remove_file(path)?; // a stale socket from a previous run
    }
    // Created with umask 0177 so it is never reachable by others, even briefly.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let l = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let l =
        l.map_err(|e| io::Error::new(e.kind(), format!("--control {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

fn peer_uid(s: &UnixStream) -> Option<u32> {
    use std::os::fd::AsFd;
    nix::sys::socket::getsockopt(&s.as_fd(), nix::sys::socket::sockopt::PeerCredentials)
        .ok()
        .map(|c| c.uid())
}

/// Appends a reply: its lines, then the empty line that ends every reply. Blank lines
/// inside a body would end it early, so trailing ones are trimmed and inner ones dropped.
fn push_reply(out: &mut Vec<u8>, r: &Reply) {
    for line in r.body.lines().filter(|l| !l.trim().is_empty()) {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

impl Component for ControlServer {
    fn register(&mut self, registry: &Registry, base: usize) -> io::Result<()> {
        self.base = base;
        if let Some((l, ..)) = self.unix.as_mut() {
            registry.register(l, Token(base + UNIX_LISTENER), Interest::READABLE)?;
        }
        if let Some(h) = self.http.as_mut() {
            h.register(registry, Token(base + HTTP_LISTENER), base + FIRST_HTTP)?;
        }
        Ok(())
    }

    fn on_event(&mut self, plane: &mut Plane, registry: &Registry, offset: usize, _ev: &Event) {
        let now = Instant::now();
        match offset {
            UNIX_LISTENER => self.accept_unix(registry, now),
            HTTP_LISTENER => {
                if let Some(h) = self.http.as_mut() {
                    h.accept(registry, now);
                }
            }
            o if o >= FIRST_HTTP => {
                if let Some(h) = self.http.as_mut() {
                    h.on_conn_event(plane, &mut self.exec, registry, o - FIRST_HTTP, now);
                }
            }
            o => self.on_unix(plane, registry, o - FIRST_UNIX, now),
        }
    }

    fn on_tick(&mut self, plane: &mut Plane, registry: &Registry, now: Instant) {
        // Commands from the failover peer: applied, not echoed back.
        for cmd in std::mem::take(&mut plane.remote_admin) {
            if let Outcome::Reply(r) = self.exec.run(plane, &cmd, "ha-peer", false, now) {
                if !r.ok {
                    debug!(target: "fulcrum::control", "peer command {cmd} not applied: {}", r.body);
                }
            }
        }
        for (who, cmd) in std::mem::take(&mut plane.queued_admin) {
            if let Outcome::Reply(r) = self.exec.run(plane, &cmd, who, true, now) {
                if !r.ok {
                    warn!(target: "fulcrum::control", "{who}: {cmd} not applied: {}", r.body.trim_end());
                }
            }
        }
        self.exec.tick(plane, now);
        // `wait drained` in progress (at most MAX_UNIX_CONNS of them).
        if !self.waiters.is_empty() {
            for k in std::mem::take(&mut self.waiters) {
                self.on_unix(plane, registry, k, now);
            }
        }
        if let Some(h) = self.http.as_mut() {
            h.tick(registry, now);
        }
        // Resume accepting: the readiness edge was consumed while we were stopped.
        let resume = self.at_cap && self.conns.len() < MAX_UNIX_CONNS;
        if resume || self.accept_again.is_some_and(|t| now >= t) {
            self.accept_unix(registry, now);
        }
    }

    fn on_started(&mut self) -> io::Result<()> {
        let (Some(to), Some((_, at, _))) = (self.publish_to.take(), self.unix.as_mut()) else {
            return Ok(());
        };
        // rename(2) replaces the predecessor's path atomically; the inode stays ours.
        std::fs::rename(&*at, &to)
            .map_err(|e| io::Error::new(e.kind(), format!("--control {}: {e}", to.display())))?;
        *at = to;
        Ok(())
    }

    fn deadline(&self) -> Option<Instant> {
        let poll = (!self.waiters.is_empty()).then(|| Instant::now() + Duration::from_millis(50));
        [
            self.exec.deadline(),
            self.accept_again,
            self.http.as_ref().and_then(HttpServer::deadline),
            poll,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}
