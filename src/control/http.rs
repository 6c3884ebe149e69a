//! HTTP on the control plane (`--http`): the request-head parser ([`parse_request`], on
//! `httparse`), the routes, the admission policy (`Admission`) and the IO shell
//! (`HttpServer`) that the control component drives.
//!
//! HTTP/1.x, one request per connection (`Connection: close`), head ≤ 8 KiB with at most
//! 64 header fields, body ≤ 4 KiB given by `Content-Length` (no chunked bodies). Routes:
//! `GET /metrics`, `GET /api/v1/{services,nodes,stats,console,rollout,bgp}`, `GET /` (the
//! console page) and
//! `POST /api/v1/command` (needs `Authorization: Bearer TOKEN`).
//!
//! The control plane is one thread that also runs health checks and failover adverts, so
//! HTTP clients must never be able to hold it up or crowd out the Unix socket:
//! - HTTP has its own budget of [`MAX_CONNS`] connections (the Unix socket has its own);
//! - the request (head and body) must arrive within [`HEAD_TIMEOUT`] of the accept, the
//!   response must be taken within [`WRITE_TIMEOUT`] of being ready, else the connection
//!   is closed (a late request gets a 408 first);
//! - one source address holds at most [`MAX_PER_SOURCE`] connections, and the budget is
//!   never a reason to refuse: a new connection over either limit closes the connection
//!   nearest its deadline (the source's own oldest, or the oldest incomplete one overall).
//!
//! Fresh clients are therefore always admitted; stale ones pay. What decides
//! ([`parse_request`], `route`, `Admission`) does no IO and is unit-tested below.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::control::exec::{self, Executor, Outcome};
use crate::control::render;
use crate::plane::Plane;

/// Largest request head accepted (request line and header fields).
pub const MAX_HEAD: usize = 8192;
/// Largest request body accepted.
pub const MAX_BODY: usize = 4096;
/// Most header fields in one request head.
pub const MAX_HEADERS: usize = 64;
/// The whole request must arrive within this time of the accept.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(3);
/// A ready response must be taken by the client within this time.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP connections held at once (each costs a descriptor and at most ~12 KiB).
pub const MAX_CONNS: usize = 1024;
/// HTTP connections held at once from one source address.
pub const MAX_PER_SOURCE: usize = 64;
/// Connections accepted per readiness event before other work gets a turn; the rest
/// are accepted on the next loop turn.
const ACCEPT_BATCH: usize = 64;
/// Reads per readiness event (4 KiB each; more than a head plus a body).
const READ_ROUNDS: usize = 4;
/// How long accepting pauses when descriptors run out.
const EMFILE_PAUSE: Duration = Duration::from_millis(100);

/// The console page, served at `/`.
const CONSOLE: &str = include_str!("console.html");

/// A parsed request: what routing needs, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target as sent (query included).
    pub path: String,
    /// The bearer token of `Authorization: Bearer …`, if any.
    pub auth: Option<String>,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
}

/// What [`parse_request`] made of the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// Not a whole request yet (and nothing wrong so far).
    Incomplete,
    /// Refused: the status to answer and why.
    Bad(u16, &'static str),
    /// A whole request.
    Request(Request),
}

/// Parses a request (head and body) from the start of `buf`. Never panics; bytes after
/// the declared body are ignored (one request per connection).
pub fn parse_request(buf: &[u8]) -> Parse {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
        Ok(httparse::Status::Complete(_)) => return Parse::Bad(431, "request head too large"),
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Parse::Bad(431, "request head too large")
        }
        Ok(httparse::Status::Partial) => return Parse::Incomplete,
        Err(httparse::Error::TooManyHeaders) => {
            return Parse::Bad(431, "too many header fields (at most 64)")
        }
        Err(httparse::Error::Version) => return Parse::Bad(505, "only HTTP/1.x"),
        Err(_) => return Parse::Bad(400, "malformed request head"),
    };
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return Parse::Bad(400, "malformed request line");
    };
    let mut len: Option<usize> = None;
    let mut auth = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            // RFC 9110 §8.6: digits only; differing repeated values are an error.
            let n = match std::str::from_utf8(h.value) {
                Ok(v) if !v.trim().is_empty() && v.trim().bytes().all(|b| b.is_ascii_digit()) => {
                    v.trim().parse::<usize>().unwrap_or(usize::MAX)
                }
                _ => return Parse::Bad(400, "bad Content-Length"),
            };
            if len.is_some_and(|l| l != n) {
                return Parse::Bad(400, "conflicting Content-Length fields");
            }
            if n > MAX_BODY {
                return Parse::Bad(413, "body too large (at most 4096 bytes)");
            }
            len = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Parse::Bad(
                501,
                "Transfer-Encoding is not supported; send Content-Length",
            );
        } else if h.name.eq_ignore_ascii_case("authorization") {
            // RFC 9110 §11.1: the scheme name is case-insensitive.
            auth = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim().to_string());
        }
    }
    let len = len.unwrap_or(0);
    let Some(body) = buf.get(head_len..head_len + len) else {
        return Parse::Incomplete;
    };
    Parse::Request(Request {
        method: method.to_string(),
        path: path.to_string(),
        auth,
        body: body.to_vec(),
    })
}

/// A whole response with `Connection: close`.
pub(crate) fn response(code: u16, ctype: &str, body: &str) -> Vec<u8> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
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

fn error(code: u16, why: &str) -> Vec<u8> {
    response(code, "text/plain", &format!("error: {why}\n"))
}

/// Compares without an early exit on the first differing byte.
fn token_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Answers one request. `token`: the configured bearer token (`None`: read-only).
pub(crate) fn route(
    exec: &mut Executor,
    plane: &mut Plane,
    who: &str,
    req: &Request,
    token: Option<&str>,
    now: Instant,
) -> Vec<u8> {
    let path = req.path.split('?').next().unwrap_or(&req.path);
    match (req.method.as_str(), path) {
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
        ("GET", "/api/v1/services") => response(
            200,
            "application/json",
            &render::services_json(&exec::services(plane)),
        ),
        ("GET", "/api/v1/stats") => response(
            200,
            "application/json",
            &exec::stats_reply(plane, now, true),
        ),
        ("GET", "/api/v1/console") => response(
            200,
            "application/json",
            &render::console_json(token.is_some()),
        ),
        ("GET", "/api/v1/rollout") => response(
            200,
            "application/json",
            &crate::control::rollout::status_reply(plane, now, true),
        ),
        ("GET", "/api/v1/tasks") => response(
            200,
            "application/json",
            &crate::control::task::status_reply(plane, now, true),
        ),
        ("GET", "/api/v1/bgp") => response(
            200,
            "application/json",
            &plane
                .bgp
                .as_ref()
                .map_or_else(|| "null".to_owned(), |b| b.json(now)),
        ),
        ("POST", "/api/v1/command") => command(exec, plane, who, req, token, now),
        (
            _,
            "/" | "/index.html" | "/metrics" | "/api/v1/nodes" | "/api/v1/services"
            | "/api/v1/stats" | "/api/v1/console" | "/api/v1/command" | "/api/v1/rollout"
            | "/api/v1/tasks" | "/api/v1/bgp",
        ) => error(405, "method not allowed"),
        _ => error(404, "not found"),
    }
}

fn command(
    exec: &mut Executor,
    plane: &mut Plane,
    who: &str,
    req: &Request,
    token: Option<&str>,
    now: Instant,
) -> Vec<u8> {
    let Some(expected) = token else {
        return error(403, "console is read-only (no --http-token-file)");
    };
    if !req.auth.as_deref().is_some_and(|a| token_eq(a, expected)) {
        warn!(target: "fulcrum::control", "{who}: command refused: missing or wrong bearer token");
        return error(401, "missing or wrong bearer token");
    }
    let Ok(line) = std::str::from_utf8(&req.body) else {
        return error(400, "body is not UTF-8");
    };
    let line = line.trim();
    if line.contains('\n') {
        return error(400, "one command per request");
    }
    // Process commands act on the process, not the node set: local operators only.
    if line == crate::reload::SHUTDOWN
        || line == crate::reload::EXPOSE
        || line == crate::reconfig::RELOAD
    {
        return error(
            400,
            &format!("`{line}` is allowed on the Unix control socket only (fulcrum ctl)"),
        );
    }
    // Starting (or resuming) a rollout, or a task job, runs commands on the hosts:
    // local operators only. Status and abort are allowed with the token, like any
    // other command.
    if let Ok(crate::control::command::Command::Rollout(
        crate::control::command::RolloutCommand::Start(_)
        | crate::control::command::RolloutCommand::Resume
        | crate::control::command::RolloutCommand::Task(_),
    )) = crate::control::command::parse(line)
    {
        return error(
            400,
            "`rollout start`, `rollout resume` and `task` are allowed on the Unix control socket only (fulcrum ctl)",
        );
    }
    match exec.execute(plane, line, who, true, now) {
        Outcome::Reply(r) if r.ok => response(200, "text/plain", &format!("{}\n", r.body)),
        Outcome::Reply(r) => response(400, "text/plain", &format!("{}\n", r.body)),
        Outcome::Wait { .. } => error(400, "wait is only available on the control socket"),
    }
}

/// Admission and deadlines of HTTP connections, without IO: which connection to close
/// to admit a new one, and which have outlived their deadline. `K` names a connection
/// (the shell's slab key). Every operation is O(log n).
#[derive(Debug)]
pub(crate) struct Admission<K> {
    max_total: usize,
    max_per_source: usize,
    next_seq: u64,
    entries: HashMap<u64, Entry<K>>,
    /// (deadline, seq): expiry order, and the global eviction order.
    by_deadline: BTreeSet<(Instant, u64)>,
    /// (source, seq): a source's connections in accept order.
    by_source: BTreeSet<(IpAddr, u64)>,
    /// Connections per source; entries vanish at zero.
    per_source: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Entry<K> {
    key: K,
    src: IpAddr,
    deadline: Instant,
}

/// A connection's place in [`Admission`] (its accept sequence number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot(u64);

impl<K: Copy> Admission<K> {
    pub(crate) fn new(max_total: usize, max_per_source: usize) -> Self {
        Admission {
            max_total: max_total.max(1),
            max_per_source: max_per_source.max(1),
            next_seq: 0,
            entries: HashMap::new(),
            by_deadline: BTreeSet::new(),
            by_source: BTreeSet::new(),
            per_source: HashMap::new(),
        }
    }

    /// Connections held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The connection to close before admitting one more from `src`, if a limit is
    /// reached: `src`'s own oldest when it holds its share, else the one nearest its
    /// deadline when the budget is full.
    pub(crate) fn victim(&self, src: IpAddr) -> Option<K> {
        let seq = if self.per_source.get(&src).copied().unwrap_or(0) >= self.max_per_source {
            self.by_source
                .range((src, 0)..=(src, u64::MAX))
                .next()
                .map(|&(_, s)| s)
        } else if self.entries.len() >= self.max_total {
            self.by_deadline.first().map(|&(_, s)| s)
        } else {
            None
        };
        seq.and_then(|s| self.entries.get(&s)).map(|e| e.key)
    }

    /// Records a new connection from `src`, to be closed at `deadline`.
    pub(crate) fn insert(&mut self, key: K, src: IpAddr, deadline: Instant) -> Slot {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.insert(seq, Entry { key, src, deadline });
        self.by_deadline.insert((deadline, seq));
        self.by_source.insert((src, seq));
        *self.per_source.entry(src).or_insert(0) += 1;
        Slot(seq)
    }

    /// Moves a connection's deadline (its request was answered: now it must be read).
    pub(crate) fn set_deadline(&mut self, slot: Slot, deadline: Instant) {
        if let Some(e) = self.entries.get_mut(&slot.0) {
            self.by_deadline.remove(&(e.deadline, slot.0));
            e.deadline = deadline;
            self.by_deadline.insert((deadline, slot.0));
        }
    }

    /// Forgets a closed connection.
    pub(crate) fn remove(&mut self, slot: Slot) {
        let Some(e) = self.entries.remove(&slot.0) else {
            return;
        };
        self.by_deadline.remove(&(e.deadline, slot.0));
        self.by_source.remove(&(e.src, slot.0));
        if let Some(n) = self.per_source.get_mut(&e.src) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&e.src);
            }
        }
    }

    /// A connection whose deadline has passed (call until `None`, closing each).
    pub(crate) fn expired(&self, now: Instant) -> Option<(K, Slot)> {
        let &(d, seq) = self.by_deadline.first()?;
        let e = self.entries.get(&seq)?;
        (d <= now).then_some((e.key, Slot(seq)))
    }

    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline.first().map(|&(d, _)| d)
    }
}

struct Conn {
    stream: TcpStream,
    who: String,
    slot: Slot,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    responded: bool,
}

/// The HTTP listener and its connections. Tokens: the listener's, and `conn_base + key`
/// for connection `key`.
pub(crate) struct HttpServer {
    listener: TcpListener,
    token: Option<String>,
    conns: Slab<Conn>,
    admission: Admission<usize>,
    conn_base: usize,
    /// More connections may be waiting in the backlog (the last batch hit its cap, or
    /// descriptors ran out): accept again at this time.
    accept_again: Option<Instant>,
    /// Evictions since the last warning, and when that was (warn at most every 10 s).
    evicted: u64,
    warned: Option<Instant>,
}

impl HttpServer {
    /// Binds the listener with SO_REUSEPORT so that a reloading successor can bind the
    /// same address while this process drains. Outside a reload, a probe first refuses an
    /// address another process listens on (SO_REUSEPORT alone would let two share it).
    pub(crate) fn bind(a: SocketAddr, reload: bool, token: Option<String>) -> io::Result<Self> {
        if !reload {
            crate::proxy::ensure_no_listener(a, false)?;
        }
        let l = crate::proxy::bind_listener(a, 1024, false)?;
        Ok(HttpServer {
            listener: TcpListener::from_std(l),
            token,
            conns: Slab::new(),
            admission: Admission::new(MAX_CONNS, MAX_PER_SOURCE),
            conn_base: 0,
            accept_again: None,
            evicted: 0,
            warned: None,
        })
    }

    /// Registers the listener; connection `key` will use token `conn_base + key`.
    pub(crate) fn register(
        &mut self,
        registry: &Registry,
        listener: Token,
        conn_base: usize,
    ) -> io::Result<()> {
        self.conn_base = conn_base;
        registry.register(&mut self.listener, listener, Interest::READABLE)
    }

    /// Accepts up to [`ACCEPT_BATCH`] connections, making room by eviction.
    pub(crate) fn accept(&mut self, registry: &Registry, now: Instant) {
        self.accept_again = None;
        for _ in 0..ACCEPT_BATCH {
            let (stream, peer) = match self.listener.accept() {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    // The readiness edge is spent: look again shortly.
                    debug!(target: "fulcrum::control", "http accept: {e}; pausing");
                    self.accept_again = Some(now + EMFILE_PAUSE);
                    return;
                }
                Err(e) => {
                    debug!(target: "fulcrum::control", "http accept: {e}");
                    continue;
                }
            };
            self.admit(registry, stream, peer, now);
        }
        // The batch cap, not WouldBlock, ended this: more may be queued.
        self.accept_again = Some(now);
    }

    fn admit(
        &mut self,
        registry: &Registry,
        mut stream: TcpStream,
        peer: SocketAddr,
        now: Instant,
    ) {
        let src = peer.ip().to_canonical();
        if let Some(victim) = self.admission.victim(src) {
            self.close(registry, victim);
            self.evicted += 1;
            if self
                .warned
                .is_none_or(|w| now >= w + Duration::from_secs(10))
            {
                warn!(target: "fulcrum::control", "http: connection limits reached ({MAX_CONNS} in all, {MAX_PER_SOURCE} per address); closed {} of the oldest incomplete connections to admit new ones", self.evicted);
                self.evicted = 0;
                self.warned = Some(now);
            }
        }
        let entry = self.conns.vacant_entry();
        let token = Token(self.conn_base + entry.key());
        if registry
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            .is_err()
        {
            return;
        }
        let slot = self.admission.insert(entry.key(), src, now + HEAD_TIMEOUT);
        entry.insert(Conn {
            stream,
            who: format!("http:{peer}"),
            slot,
            inbuf: Vec::new(),
            out: Vec::new(),
            responded: false,
        });
    }

    /// A readiness event on connection `key`.
    pub(crate) fn on_conn_event(
        &mut self,
        plane: &mut Plane,
        exec: &mut Executor,
        registry: &Registry,
        key: usize,
        now: Instant,
    ) {
        if !self.drive(plane, exec, key, now) {
            self.close(registry, key);
        }
    }

    /// Reads, answers, writes; false when the connection should close.
    fn drive(&mut self, plane: &mut Plane, exec: &mut Executor, key: usize, now: Instant) -> bool {
        let Some(c) = self.conns.get_mut(key) else {
            return false;
        };
        if !c.responded {
            let mut buf = [0u8; 4096];
            let mut eof = false;
            for _ in 0..READ_ROUNDS {
                match c.stream.read(&mut buf) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        c.inbuf.extend_from_slice(&buf[..n]);
                        if c.inbuf.len() > MAX_HEAD + MAX_BODY || n < buf.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
            c.out = match parse_request(&c.inbuf) {
                // The client gave up before finishing its request.
                Parse::Incomplete if eof => return false,
                Parse::Incomplete => return true,
                Parse::Bad(code, why) => error(code, why),
                Parse::Request(req) => route(exec, plane, &c.who, &req, self.token.as_deref(), now),
            };
            c.inbuf = Vec::new();
            c.responded = true;
            self.admission.set_deadline(c.slot, now + WRITE_TIMEOUT);
        }
        flush(&mut c.stream, &mut c.out) && !c.out.is_empty()
    }

    fn close(&mut self, registry: &Registry, key: usize) {
        if let Some(mut c) = self.conns.try_remove(key) {
            self.admission.remove(c.slot);
            let _ = registry.deregister(&mut c.stream);
        }
    }

    /// Closes connections past their deadline (a 408 first to those still sending their
    /// request) and resumes accepting when due.
    pub(crate) fn tick(&mut self, registry: &Registry, now: Instant) {
        while let Some((key, slot)) = self.admission.expired(now) {
            if let Some(c) = self.conns.get_mut(key) {
                if !c.responded {
                    debug!(target: "fulcrum::control", "{}: no whole request within {HEAD_TIMEOUT:?}; closing", c.who);
                    let mut out = error(408, "request timeout");
                    let _ = flush(&mut c.stream, &mut out);
                }
            }
            self.close(registry, key);
            self.admission.remove(slot); // already gone unless the tables disagree
        }
        if self.accept_again.is_some_and(|t| now >= t) {
            self.accept(registry, now);
        }
    }

    /// When [`HttpServer::tick`] is next needed.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        [self.admission.next_deadline(), self.accept_again]
            .into_iter()
            .flatten()
            .min()
    }
}

/// Writes what the socket takes; false on a hard error.
pub(crate) fn flush<W: Write>(w: &mut W, out: &mut Vec<u8>) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str, auth: Option<&str>, body: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            auth: auth.map(str::to_string),
            body: body.as_bytes().to_vec(),
        }
    }

    fn status(resp: &[u8]) -> u16 {
        let text = String::from_utf8_lossy(resp);
        text.strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("not a response: {text}"))
    }

    fn body(resp: &[u8]) -> String {
        let text = String::from_utf8_lossy(resp);
        text[text.find("\r\n\r\n").expect("head end") + 4..].to_string()
    }

    /// A plane with one node, 127.0.0.1:9001, as `fulcrum serve` would build it.
    fn plane() -> Plane {
        Plane::for_tests(&["--listen", "127.0.0.1:1", "--backend", "127.0.0.1:9001"])
    }

    const TOKEN: &str = "0123456789abcdef";

    fn call(plane: &mut Plane, r: &Request, token: Option<&str>) -> Vec<u8> {
        route(
            &mut Executor::default(),
            plane,
            "http:test",
            r,
            token,
            Instant::now(),
        )
    }

    #[test]
    fn parses_a_get_with_query() {
        let p = parse_request(b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(p, Parse::Request(req("GET", "/metrics?x=1", None, "")));
    }

    #[test]
    fn parses_a_post_with_body_and_bearer_token_any_case() {
        let raw = b"POST /api/v1/command HTTP/1.0\r\nauthorization: bearer  tok \r\nContent-Length: 7\r\n\r\ndisable and more";
        assert_eq!(
            parse_request(raw),
            Parse::Request(req("POST", "/api/v1/command", Some("tok"), "disable"))
        );
        // Another scheme is no token.
        let raw = b"POST / HTTP/1.1\r\nAuthorization: Basic dTpw\r\n\r\n";
        assert!(matches!(
            parse_request(raw),
            Parse::Request(Request { auth: None, .. })
        ));
    }

    #[test]
    fn every_prefix_of_a_request_is_incomplete() {
        let raw = b"POST /api/v1/command HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nhelp";
        for n in 0..raw.len() {
            assert_eq!(parse_request(&raw[..n]), Parse::Incomplete, "prefix {n}");
        }
        assert!(matches!(parse_request(raw), Parse::Request(_)));
        // The slowloris shape: a head that never ends.
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"),
            Parse::Incomplete
        );
    }

    #[test]
    fn malformed_heads_are_400() {
        for raw in [
            &b"GET\r\n\r\n"[..],
            b"GET /metrics\r\n\r\n",
            b"G@T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
            b"\x00\x01\x02\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length:\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        ] {
            assert!(
                matches!(parse_request(raw), Parse::Bad(400, _)),
                "{:?}: {:?}",
                String::from_utf8_lossy(raw),
                parse_request(raw)
            );
        }
        // Repeated equal lengths are allowed (RFC 9110 §8.6).
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na";
        assert!(matches!(parse_request(raw), Parse::Request(_)));
    }

    #[test]
    fn oversized_heads_and_bodies() {
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD + 1, b'a');
        assert!(matches!(parse_request(&long), Parse::Bad(431, _)));
        long.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(parse_request(&long), Parse::Bad(431, _)));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(parse_request(&many), Parse::Bad(431, _)));
        let big = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(matches!(parse_request(big.as_bytes()), Parse::Bad(413, _)));
        let huge = b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert!(matches!(parse_request(huge), Parse::Bad(413, _)));
    }

    #[test]
    fn chunked_is_501_and_http2_is_505() {
        let raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(parse_request(raw), Parse::Bad(501, _)));
        assert!(matches!(
            parse_request(b"GET / HTTP/2.0\r\n\r\n"),
            Parse::Bad(505, _)
        ));
    }

    #[test]
    fn responses_carry_status_reason_and_length() {
        for (code, reason) in [
            (200, "OK"),
            (400, "Bad Request"),
            (401, "Unauthorized"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (408, "Request Timeout"),
            (413, "Content Too Large"),
            (431, "Request Header Fields Too Large"),
            (501, "Not Implemented"),
            (505, "HTTP Version Not Supported"),
        ] {
            let r = response(code, "text/plain", "hé\n");
            let text = String::from_utf8(r).unwrap();
            assert!(
                text.starts_with(&format!("HTTP/1.1 {code} {reason}\r\n")),
                "{text}"
            );
            assert!(text.contains("Content-Length: 4\r\n"), "{text}");
            assert!(text.contains("Connection: close\r\n"), "{text}");
        }
    }

    #[test]
    fn read_routes() {
        let mut p = plane();
        let m = call(&mut p, &req("GET", "/metrics", None, ""), None);
        assert_eq!(status(&m), 200);
        assert!(body(&m).contains(
            "fulcrum_node_connections_total{service=\"default\",node=\"127.0.0.1:9001\"}"
        ));
        assert!(body(&m).contains("fulcrum_service_nodes{service=\"default\"} 1"));
        let b = call(&mut p, &req("GET", "/api/v1/bgp", None, ""), None);
        assert_eq!(status(&b), 200);
        assert_eq!(body(&b), "null", "no BGP configured");
        let s = call(&mut p, &req("GET", "/api/v1/services", None, ""), None);
        assert_eq!(status(&s), 200);
        assert!(
            body(&s).starts_with("[{\"name\":\"default\",\"mode\":\"proxy\""),
            "{}",
            body(&s)
        );
        let n = call(&mut p, &req("GET", "/api/v1/nodes?pretty", None, ""), None);
        assert_eq!(status(&n), 200);
        assert!(
            body(&n).contains("\"addr\":\"127.0.0.1:9001\""),
            "{}",
            body(&n)
        );
        let s = call(&mut p, &req("GET", "/api/v1/stats", None, ""), None);
        assert!(body(&s).starts_with('{'), "{}", body(&s));
        let c = call(
            &mut p,
            &req("GET", "/api/v1/console", None, ""),
            Some(TOKEN),
        );
        assert_eq!(body(&c), "{\"mutations\":true}");
        let c = call(&mut p, &req("GET", "/api/v1/console", None, ""), None);
        assert_eq!(body(&c), "{\"mutations\":false}");
        assert!(body(&call(&mut p, &req("GET", "/", None, ""), None)).contains("<html"));
        assert_eq!(
            status(&call(&mut p, &req("GET", "/nope", None, ""), None)),
            404
        );
        for (m, path) in [
            ("POST", "/metrics"),
            ("DELETE", "/"),
            ("GET", "/api/v1/command"),
        ] {
            assert_eq!(
                status(&call(&mut p, &req(m, path, None, ""), None)),
                405,
                "{m} {path}"
            );
        }
    }

    #[test]
    fn command_needs_the_token() {
        let mut p = plane();
        let disable = req("POST", "/api/v1/command", None, "disable");
        assert_eq!(status(&call(&mut p, &disable, None)), 403);
        assert_eq!(status(&call(&mut p, &disable, Some(TOKEN))), 401);
        let wrong = req(
            "POST",
            "/api/v1/command",
            Some("0123456789abcdeX"),
            "disable",
        );
        assert_eq!(status(&call(&mut p, &wrong, Some(TOKEN))), 401);
        let short = req("POST", "/api/v1/command", Some("0123"), "disable");
        assert_eq!(status(&call(&mut p, &short, Some(TOKEN))), 401);
        assert!(p.first().enabled.load(std::sync::atomic::Ordering::Relaxed));
        let ok = req("POST", "/api/v1/command", Some(TOKEN), "disable\n");
        let r = call(&mut p, &ok, Some(TOKEN));
        assert_eq!(status(&r), 200, "{}", body(&r));
        assert!(!p.first().enabled.load(std::sync::atomic::Ordering::Relaxed));
    }

    #[test]
    fn bad_commands_are_400() {
        let mut p = plane();
        for (line, needle) in [
            ("shwo nodes", "unknown command"),
            ("help\nhelp", "one command per request"),
            (
                "wait drained 127.0.0.1:9001 1s",
                "only available on the control socket",
            ),
        ] {
            let r = call(
                &mut p,
                &req("POST", "/api/v1/command", Some(TOKEN), line),
                Some(TOKEN),
            );
            assert_eq!(status(&r), 400, "{line}: {}", body(&r));
            assert!(body(&r).contains(needle), "{line}: {}", body(&r));
        }
        let mut bad = req("POST", "/api/v1/command", Some(TOKEN), "");
        bad.body = vec![0xff, 0xfe];
        assert_eq!(status(&call(&mut p, &bad, Some(TOKEN))), 400);
    }

    #[test]
    fn process_commands_are_refused_over_http() {
        let mut p = plane();
        for line in [
            crate::reload::SHUTDOWN,
            crate::reload::EXPOSE,
            crate::reconfig::RELOAD,
        ] {
            let r = call(
                &mut p,
                &req("POST", "/api/v1/command", Some(TOKEN), line),
                Some(TOKEN),
            );
            assert_eq!(status(&r), 400);
            assert!(
                body(&r).contains("allowed on the Unix control socket only"),
                "{}",
                body(&r)
            );
        }
        assert!(!p.stop_requested);
    }

    #[test]
    fn rollout_start_and_resume_are_refused_over_http() {
        let mut p = plane();
        for line in [
            "rollout start hook deploy",
            "rollout resume",
            "task rotate all",
        ] {
            let r = call(
                &mut p,
                &req("POST", "/api/v1/command", Some(TOKEN), line),
                Some(TOKEN),
            );
            assert_eq!(status(&r), 400, "{line}");
            assert!(
                body(&r).contains("allowed on the Unix control socket only"),
                "{}",
                body(&r)
            );
        }
        assert!(p.rollout.requests.is_empty());
        // Looking is allowed (with the token, as every command).
        let r = call(
            &mut p,
            &req("POST", "/api/v1/command", Some(TOKEN), "rollout status"),
            Some(TOKEN),
        );
        assert_eq!(status(&r), 200);
        assert_eq!(body(&r), "no rollout has run\n");
        let r = call(&mut p, &req("GET", "/api/v1/rollout", None, ""), None);
        assert_eq!(status(&r), 200);
        assert_eq!(body(&r), "{\"rollout\":null}");
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn admission_admits_freely_below_the_limits() {
        let t = Instant::now();
        let mut a = Admission::new(3, 2);
        for (k, src) in [(0, 1), (1, 2), (2, 1)] {
            assert_eq!(a.victim(ip(src)), None);
            a.insert(k, ip(src), t + HEAD_TIMEOUT);
        }
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn a_full_budget_evicts_the_one_nearest_its_deadline() {
        let t = Instant::now();
        let mut a = Admission::new(3, 10);
        let s0 = a.insert(0, ip(1), t + Duration::from_secs(3));
        a.insert(1, ip(2), t + Duration::from_secs(4));
        a.insert(2, ip(3), t + Duration::from_secs(5));
        // A fresh client is never refused: the oldest incomplete one makes room.
        assert_eq!(a.victim(ip(9)), Some(0));
        // Once answered, 0's deadline moves past the others: 1 is next.
        a.set_deadline(s0, t + Duration::from_secs(8));
        assert_eq!(a.victim(ip(9)), Some(1));
    }

    #[test]
    fn a_source_at_its_cap_evicts_its_own_oldest() {
        let t = Instant::now();
        let mut a = Admission::new(100, 2);
        a.insert(0, ip(1), t + Duration::from_secs(3));
        a.insert(1, ip(2), t + Duration::from_secs(1)); // nearer its deadline, other source
        let s2 = a.insert(2, ip(1), t + Duration::from_secs(4));
        assert_eq!(a.victim(ip(1)), Some(0));
        assert_eq!(a.victim(ip(2)), None);
        // Other sources are unaffected, and closing one frees the source's share.
        a.remove(s2);
        assert_eq!(a.victim(ip(1)), None);
    }

    #[test]
    fn expiry_in_deadline_order_and_tables_emptied() {
        let t = Instant::now();
        let mut a = Admission::new(10, 10);
        let s = [
            a.insert(7, ip(1), t + Duration::from_secs(2)),
            a.insert(8, ip(1), t + Duration::from_secs(1)),
            a.insert(9, ip(2), t + Duration::from_secs(3)),
        ];
        assert_eq!(a.next_deadline(), Some(t + Duration::from_secs(1)));
        assert_eq!(a.expired(t), None);
        let now = t + Duration::from_secs(2);
        let mut closed = Vec::new();
        while let Some((k, slot)) = a.expired(now) {
            closed.push(k);
            a.remove(slot);
        }
        assert_eq!(closed, vec![8, 7]);
        a.remove(s[2]);
        a.remove(s[2]); // twice: harmless
        assert_eq!(a.len(), 0);
        assert!(a.per_source.is_empty() && a.by_source.is_empty() && a.by_deadline.is_empty());
        assert_eq!(a.next_deadline(), None);
    }

    #[test]
    fn eviction_keeps_admitting_under_a_flood() {
        // 10,000 arrivals from 50 addresses into a budget of 1,024: the table never
        // exceeds either limit, and the newest arrival is always admitted.
        let t = Instant::now();
        let mut a = Admission::new(MAX_CONNS, MAX_PER_SOURCE);
        let mut slots: HashMap<usize, Slot> = HashMap::new();
        for k in 0..10_000usize {
            let src = ip((k % 50) as u8);
            if let Some(v) = a.victim(src) {
                assert_ne!(v, k);
                a.remove(slots.remove(&v).expect("victim is held"));
            }
            let now = t + Duration::from_millis(k as u64);
            slots.insert(k, a.insert(k, src, now + HEAD_TIMEOUT));
            assert!(a.len() <= MAX_CONNS);
            assert!(a.per_source.values().all(|&n| n <= MAX_PER_SOURCE));
        }
        assert_eq!(a.len(), slots.len());
        assert!(slots.contains_key(&9_999));
    }
}
