//! The control interface's IO shell: the Unix socket (`--control`) and HTTP on loopback
//! (`--http`), one [`Component`] for both so they share one [`Executor`].
//!
//! Unix socket: one command per line, one reply per command; a reply is its text lines
//! followed by one empty line (bodies never contain empty lines), errors start with
//! `error: `. The socket is created 0600 and start-up refuses a path that exists and is
//! not a socket. Lines are framed by [`LineBuffer`]: an over-long line is refused without
//! being buffered; the connection stays usable after any error.
//!
//! HTTP: HTTP/1.1, one request per connection (`Connection: close`), bounded head and
//! body. `GET /metrics` (Prometheus text), `GET /api/v1/nodes`, `GET /api/v1/stats`,
//! `GET /api/v1/console`, `GET /` (the console page), `POST /api/v1/command` (a command
//! line as the body; needs `Authorization: Bearer TOKEN` — without `--http-token-file`
//! the console is read-only).
//!
//! Two process commands exist on the Unix socket only, outside the command grammar (they
//! act on the process, not on the node set, and are never synced to a failover peer):
//! `expose listeners` hands the proxy listeners to a reloading process
//! ([`crate::reload`]) and `shutdown` drains and exits as SIGTERM does.

use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::control::command::{LineBuffer, LineError};
use crate::control::exec::{self, Executor, Outcome, Reply};
use crate::control::render;
use crate::plane::{Component, Plane};

const UNIX_LISTENER: usize = 0;
const HTTP_LISTENER: usize = 1;
const FIRST_CONN: usize = 2;
/// Largest HTTP request head and body accepted.
const MAX_HTTP_HEAD: usize = 8192;
const MAX_HTTP_BODY: usize = 4096;
/// An HTTP client must send its request within this time.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Most control connections at once (each costs a descriptor and a small buffer).
const MAX_CONNS: usize = 256;

/// The console page, served at `/`.
const CONSOLE: &str = include_str!("console.html");

enum Conn {
    Unix {
        stream: UnixStream,
        who: String,
        lines: LineBuffer,
        out: Vec<u8>,
        /// A `wait drained` in progress: (node, deadline). Further lines wait behind it.
        waiting: Option<(std::net::SocketAddr, Instant)>,
        closing: bool,
    },
    Http {
        stream: TcpStream,
        who: String,
        inbuf: Vec<u8>,
        out: Vec<u8>,
        deadline: Instant,
        responded: bool,
    },
}

/// The control component.
pub struct ControlServer {
    /// The Unix listener, its path, and the (device, inode) it was created as: at exit
    /// the path is removed only if it is still ours (a reload's successor re-creates it).
    unix: Option<(UnixListener, PathBuf, (u64, u64))>,
    /// Reload: the socket was bound at a staging path and is renamed onto this one once
    /// the process has started, so a failed start leaves the predecessor's path alone.
    publish_to: Option<PathBuf>,
    http: Option<TcpListener>,
    token: Option<String>,
    conns: Slab<Conn>,
    exec: Executor,
    base: usize,
    /// Accepting stopped at [`MAX_CONNS`]; retried on ticks until below it.
    paused: bool,
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
                bind_http(a, reload_from.is_some())
                    .map_err(|e| io::Error::new(e.kind(), format!("--http {a}: {e}")))?,
            ),
            None => None,
        };
        Ok(ControlServer {
            unix,
            http,
            token,
            conns: Slab::new(),
            exec: Executor::default(),
            base: 0,
            paused: false,
            publish_to,
        })
    }

    fn accept(&mut self, registry: &Registry, unix: bool) {
        loop {
            if self.conns.len() >= MAX_CONNS {
                if !self.paused {
                    warn!(target: "fulcrum::control", "too many control connections ({MAX_CONNS}); not accepting more for now");
                }
                self.paused = true;
                return;
            }
            let entry = self.conns.vacant_entry();
            let token = Token(self.base + FIRST_CONN + entry.key());
            let accepted = if unix {
                let Some((l, ..)) = self.unix.as_ref() else {
                    return;
                };
                l.accept().map(|(s, _)| Conn::Unix {
                    who: peer_uid(&s).map_or("unix".to_string(), |uid| format!("unix:uid={uid}")),
                    stream: s,
                    lines: LineBuffer::new(),
                    out: Vec::new(),
                    waiting: None,
                    closing: false,
                })
            } else {
                let Some(l) = self.http.as_ref() else { return };
                l.accept().map(|(s, peer)| Conn::Http {
                    stream: s,
                    who: format!("http:{peer}"),
                    inbuf: Vec::new(),
                    out: Vec::new(),
                    deadline: Instant::now() + HTTP_TIMEOUT,
                    responded: false,
                })
            };
            let mut conn = match accepted {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    debug!(target: "fulcrum::control", "accept: {e}");
                    return;
                }
            };
            let interest = Interest::READABLE | Interest::WRITABLE;
            if registry.register(conn.source(), token, interest).is_err() {
                continue;
            }
            entry.insert(conn);
        }
    }

    /// Reads, runs commands, writes; returns false when the connection should close.
    fn drive(&mut self, plane: &mut Plane, key: usize, now: Instant) -> bool {
        let token = self.token.clone();
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        match conn {
            Conn::Unix {
                stream,
                who,
                lines,
                out,
                waiting,
                closing,
            } => {
                let mut buf = [0u8; 4096];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) => {
                            lines.finish();
                            *closing = true;
                            break;
                        }
                        Ok(n) => lines.push(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
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
                                        .shared
                                        .stats
                                        .active
                                        .load(std::sync::atomic::Ordering::Relaxed),
                                    "connection"
                                ),
                                crate::duration::format_duration(plane.cfg.drain_timeout)
                            ))
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
                            Outcome::Wait { addr, deadline } => {
                                *waiting = Some((addr, deadline));
                                break;
                            }
                        },
                    };
                    push_reply(out, &reply);
                }
                if let Some((addr, deadline)) = *waiting {
                    match plane.shared.pool.find(addr) {
                        // Only a removal takes a node out of the pool: it is drained.
                        None => {
                            push_reply(
                                out,
                                &Reply::ok(crate::control::exec::drained_removed(addr)),
                            );
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
            Conn::Http {
                stream,
                who,
                inbuf,
                out,
                deadline,
                responded,
            } => {
                if !*responded {
                    let mut buf = [0u8; 4096];
                    loop {
                        match stream.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                inbuf.extend_from_slice(&buf[..n]);
                                if inbuf.len() > MAX_HTTP_HEAD + MAX_HTTP_BODY {
                                    break;
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(_) => return false,
                        }
                    }
                    match parse_http(inbuf) {
                        HttpParse::Incomplete if now < *deadline => return true,
                        HttpParse::Incomplete => {
                            *out = response(408, "text/plain", "error: request timeout\n");
                        }
                        HttpParse::Bad(code, why) => {
                            *out = response(code, "text/plain", &format!("error: {why}\n"))
                        }
                        HttpParse::Request {
                            method,
                            path,
                            auth,
                            body,
                        } => {
                            *out = route(
                                &mut self.exec,
                                plane,
                                who,
                                &method,
                                &path,
                                auth.as_deref(),
                                &body,
                                token.as_deref(),
                                now,
                            );
                        }
                    }
                    *responded = true;
                }
                flush(stream, out) && !out.is_empty()
            }
        }
    }

    fn close(&mut self, registry: &Registry, key: usize) {
        if let Some(mut c) = self.conns.try_remove(key) {
            let _ = registry.deregister(c.source());
        }
    }
}

impl Conn {
    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Conn::Unix { stream, .. } => stream,
            Conn::Http { stream, .. } => stream,
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
    let fds: Vec<std::os::fd::RawFd> = plane.listeners.iter().map(|f| f.as_raw_fd()).collect();
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

/// The HTTP listener, with SO_REUSEPORT so that a reloading successor can bind the same
/// address while this process drains. Outside a reload, a probe first refuses an address
/// another process listens on (SO_REUSEPORT alone would let two share it silently).
fn bind_http(a: std::net::SocketAddr, reload: bool) -> io::Result<TcpListener> {
    if !reload {
        crate::proxy::ensure_no_listener(a, false)?;
    }
    let l = crate::proxy::bind_listener(a, 128, false)?;
    Ok(TcpListener::from_std(l))
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

/// Writes what the socket takes; false on a hard error.
fn flush<W: Write>(w: &mut W, out: &mut Vec<u8>) -> bool {
    let mut done = 0;
    while done < out.len() {
        match w.write(&out[done..]) {
            Ok(0) => return false,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    out.drain(..done);
    true
}

enum HttpParse {
    Incomplete,
    Bad(u16, String),
    Request {
        method: String,
        path: String,
        auth: Option<String>,
        body: Vec<u8>,
    },
}

fn parse_http(buf: &[u8]) -> HttpParse {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HTTP_HEAD {
            HttpParse::Bad(431, "request head too large".into())
        } else {
            HttpParse::Incomplete
        };
    };
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return HttpParse::Bad(400, "request head is not UTF-8".into());
    };
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(path), Some(ver)) = (first.next(), first.next(), first.next()) else {
        return HttpParse::Bad(400, "bad request line".into());
    };
    if !ver.starts_with("HTTP/1.") {
        return HttpParse::Bad(505, "only HTTP/1.x".into());
    }
    let mut len = 0usize;
    let mut auth = None;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            match v.parse::<usize>() {
                Ok(n) if n <= MAX_HTTP_BODY => len = n,
                _ => return HttpParse::Bad(413, "body too large or bad Content-Length".into()),
            }
        } else if k.eq_ignore_ascii_case("authorization") {
            auth = v.strip_prefix("Bearer ").map(|t| t.trim().to_string());
        }
    }
    let body_start = end + 4;
    if buf.len() < body_start + len {
        return HttpParse::Incomplete;
    }
    HttpParse::Request {
        method: method.to_string(),
        path: path.to_string(),
        auth,
        body: buf[body_start..body_start + len].to_vec(),
    }
}

fn response(code: u16, ctype: &str, body: &str) -> Vec<u8> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// Compares without an early exit on the first differing byte.
fn token_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[allow(clippy::too_many_arguments)]
fn route(
    exec: &mut Executor,
    plane: &mut Plane,
    who: &str,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &[u8],
    token: Option<&str>,
    now: Instant,
) -> Vec<u8> {
    let path = path.split('?').next().unwrap_or(path);
    match (method, path) {
        ("GET", "/") | ("GET", "/index.html") => response(200, "text/html; charset=utf-8", CONSOLE),
        ("GET", "/metrics") => {
            let body = exec::metrics(plane, now);
            response(200, render::PROMETHEUS_CONTENT_TYPE, &body)
        }
        ("GET", "/api/v1/nodes") => response(
            200,
            "application/json",
            &render::nodes_json(&exec::nodes(plane, now)),
        ),
        ("GET", "/api/v1/stats") => response(
            200,
            "application/json",
            &exec::stats_reply(plane, now, true),
        ),
        ("GET", "/api/v1/console") => response(
            200,
            "application/json",
            &format!("{{\"mutations\":{}}}", token.is_some()),
        ),
        ("POST", "/api/v1/command") => {
            let Some(expected) = token else {
                return response(
                    403,
                    "text/plain",
                    "error: console is read-only (no --http-token-file)\n",
                );
            };
            if !auth.is_some_and(|a| token_eq(a, expected)) {
                warn!(target: "fulcrum::control", "{who}: command refused: missing or wrong bearer token");
                return response(401, "text/plain", "error: missing or wrong bearer token\n");
            }
            let Ok(line) = std::str::from_utf8(body) else {
                return response(400, "text/plain", "error: body is not UTF-8\n");
            };
            let line = line.trim();
            if line.contains('\n') {
                return response(400, "text/plain", "error: one command per request\n");
            }
            match exec.execute(plane, line, who, true, now) {
                Outcome::Reply(r) if r.ok => response(200, "text/plain", &format!("{}\n", r.body)),
                Outcome::Reply(r) => response(400, "text/plain", &format!("{}\n", r.body)),
                Outcome::Wait { .. } => response(
                    400,
                    "text/plain",
                    "error: wait is only available on the control socket\n",
                ),
            }
        }
        (
            _,
            "/" | "/metrics" | "/api/v1/nodes" | "/api/v1/stats" | "/api/v1/console"
            | "/api/v1/command",
        ) => response(405, "text/plain", "error: method not allowed\n"),
        _ => response(404, "text/plain", "error: not found\n"),
    }
}

impl Component for ControlServer {
    fn register(&mut self, registry: &Registry, base: usize) -> io::Result<()> {
        self.base = base;
        if let Some((l, ..)) = self.unix.as_mut() {
            registry.register(l, Token(base + UNIX_LISTENER), Interest::READABLE)?;
        }
        if let Some(l) = self.http.as_mut() {
            registry.register(l, Token(base + HTTP_LISTENER), Interest::READABLE)?;
        }
        Ok(())
    }

    fn on_event(&mut self, plane: &mut Plane, registry: &Registry, offset: usize, _ev: &Event) {
        match offset {
            UNIX_LISTENER => self.accept(registry, true),
            HTTP_LISTENER => self.accept(registry, false),
            o => {
                let key = o - FIRST_CONN;
                if !self.drive(plane, key, Instant::now()) {
                    self.close(registry, key);
                }
            }
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
        // Waiting and timed-out connections.
        let keys: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| match c {
                Conn::Unix { waiting, .. } => waiting.is_some(),
                Conn::Http {
                    deadline,
                    responded,
                    ..
                } => !*responded && now >= *deadline,
            })
            .map(|(k, _)| k)
            .collect();
        for k in keys {
            if !self.drive(plane, k, now) {
                self.close(registry, k);
            }
        }
        if self.paused && self.conns.len() < MAX_CONNS {
            // Resume accepting: the readiness edge was consumed while we were at the cap.
            self.paused = false;
            self.accept(registry, true);
            self.accept(registry, false);
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
        let waits = self.conns.iter().any(|(_, c)| {
            matches!(
                c,
                Conn::Unix {
                    waiting: Some(_),
                    ..
                }
            )
        });
        let http = self
            .conns
            .iter()
            .filter_map(|(_, c)| match c {
                Conn::Http {
                    deadline,
                    responded: false,
                    ..
                } => Some(*deadline),
                _ => None,
            })
            .min();
        let poll = (waits || self.paused).then(|| Instant::now() + Duration::from_millis(50));
        [self.exec.deadline(), http, poll]
            .into_iter()
            .flatten()
            .min()
    }
}
