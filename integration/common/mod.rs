//! Shared helpers for the end-to-end tests: start the real `fulcrum` binary, real
//! backends on loopback, and clean up by PID.
//!
//! Every test server here listens on 127.0.0.1 only, every loop is bounded, and every
//! child process is killed by PID when its guard drops (also when a test panics).

#![allow(dead_code)]

pub mod dr_lab;
pub mod netlab;
pub mod topology;
pub mod vm;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What an IPv6 lab host gets (`KEY=VALUE`): duplicate address detection off (so an
/// address, or a VIP added at takeover, is usable at once), router advertisements
/// ignored, forwarding off, IPv6 on for eth0 and lo.
pub const IPV6_SYSCTLS: [&str; 10] = [
    "net.ipv6.conf.all.accept_dad=0",
    "net.ipv6.conf.default.accept_dad=0",
    "net.ipv6.conf.all.accept_ra=0",
    "net.ipv6.conf.default.accept_ra=0",
    "net.ipv6.conf.all.forwarding=0",
    "net.ipv6.conf.all.disable_ipv6=0",
    "net.ipv6.conf.default.disable_ipv6=0",
    "net.ipv6.conf.eth0.accept_dad=0",
    "net.ipv6.conf.eth0.disable_ipv6=0",
    "net.ipv6.conf.lo.disable_ipv6=0",
];

/// `fulcrum ctl` against one distributor's control socket.
pub struct Ctl {
    pub sock: PathBuf,
}

impl Ctl {
    pub fn new(sock: impl Into<PathBuf>) -> Ctl {
        Ctl { sock: sock.into() }
    }
    /// Runs `fulcrum ctl --socket S ARGS…`: (exit code, stdout, stderr).
    pub fn run(&self, args: &str) -> (i32, String, String) {
        let out = Command::new(bin())
            .arg("ctl")
            .arg("--socket")
            .arg(&self.sock)
            .args(args.split_whitespace())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
    /// Runs a command that must succeed; its output.
    pub fn ok(&self, args: &str) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "ctl {args}: {err}");
        out
    }
}

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fulcrum")
}

/// A free loopback port (bound then released; the caller binds it soon after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Raises this test process's descriptor limit (tests with thousands of sockets).
pub fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// A child process killed (by PID) when dropped, with its stderr collected.
pub struct Proc {
    pub child: Child,
    pub log: Arc<Mutex<String>>,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
    }
    /// Waits for exit up to `limit`; returns the exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Starts `fulcrum ARGS…` with RUST_LOG set, collecting stderr.
pub fn spawn(args: &[&str], rust_log: &str) -> Proc {
    let mut child = Command::new(bin())
        .args(args)
        .env("RUST_LOG", rust_log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fulcrum");
    let log = Arc::new(Mutex::new(String::new()));
    for stream in [
        Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stdout.take().unwrap()),
    ] {
        let log = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
    Proc { child, log }
}

/// Starts a distributor on a free port in front of `backends`; waits until it accepts.
pub fn start_fulcrum(backends: &[SocketAddr], extra: &[&str]) -> (Proc, SocketAddr) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args: Vec<String> = vec!["serve".into(), "--listen".into(), listen.clone()];
    for b in backends {
        args.push("--backend".into());
        args.push(b.to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = spawn(&argv, "info");
    let addr: SocketAddr = listen.parse().unwrap();
    wait_listening(addr, &p);
    (p, addr)
}

/// Waits until something accepts on `addr` (5 s at most).
pub fn wait_listening(addr: SocketAddr, p: &Proc) {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("fulcrum did not listen on {addr}; log:\n{}", p.log());
}

/// A test backend: a listener on loopback served by a thread per connection with
/// `handler`, stoppable. Counts accepted connections.
pub struct Backend {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    pub fn start<F>(handler: F) -> Backend
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        Self::start_on("127.0.0.1:0".parse().unwrap(), handler)
    }

    pub fn start_on<F>(addr: SocketAddr, handler: F) -> Backend
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        // A deep backlog: the tests open thousands of connections at once.
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .unwrap();
        sock.set_reuse_address(true).unwrap();
        sock.bind(&addr.into()).unwrap();
        sock.listen(4096).unwrap();
        let l: TcpListener = sock.into();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        {
            let (accepted, stop) = (Arc::clone(&accepted), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((s, _)) => {
                            s.set_nonblocking(false).unwrap();
                            accepted.fetch_add(1, Ordering::Relaxed);
                            let h = Arc::clone(&handler);
                            thread::spawn(move || h(s));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(1)),
                    }
                }
            });
        }
        Backend {
            addr,
            accepted,
            stop,
        }
    }

    pub fn count(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Handler: writes `name\n` and closes.
pub fn says(name: &'static str) -> impl Fn(TcpStream) + Send + Sync + 'static {
    move |mut s: TcpStream| {
        let _ = s.write_all(format!("{name}\n").as_bytes());
    }
}

/// Handler: echoes everything until EOF, then closes.
pub fn echo(s: TcpStream) {
    let mut r = s.try_clone().unwrap();
    let mut w = s;
    let _ = io::copy(&mut r, &mut w);
    let _ = w.shutdown(Shutdown::Write);
}

/// Connects through the proxy and reads everything until EOF.
pub fn fetch(addr: SocketAddr) -> io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Deterministic pseudo-random bytes (xorshift), for byte-exact transfer checks.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// SHA-256 of a byte slice, hex.
pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Polls `f` until true or `limit` passes.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    f()
}
