//! `fulcrum demo`: the embedded default. Three tiny HTTP backends on loopback, each
//! answering with its own name, and a distributor in front of them.
//!
//! The backends are deliberately simple (a thread per connection, keep-alive, bounded
//! request heads): they exist to show distribution, not to be fast.
//!
//! The distributor has the control socket and the web console on, on loopback, with a
//! bearer token generated at start (printed, kept in a 0600 temp file removed at exit),
//! so the whole tour — `ctl`, the console, `/metrics` — works on the demo.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use log::info;

use crate::config::DemoArgs;
use crate::serve::Server;
use clap::Parser;

/// Starts one demo backend on `addr` (port 0 = any); returns its address.
pub fn spawn_backend(addr: SocketAddr, name: String) -> io::Result<SocketAddr> {
    let l = TcpListener::bind(addr)?;
    let local = l.local_addr()?;
    std::thread::Builder::new()
        .name(format!("demo-{name}"))
        .spawn(move || {
            for s in l.incoming().flatten() {
                let name = name.clone();
                let _ = std::thread::Builder::new().spawn(move || serve_http(s, &name));
            }
        })?;
    Ok(local)
}

/// Answers HTTP/1.1 requests on one connection until the client closes or asks to.
fn serve_http(mut s: TcpStream, name: &str) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = [0u8; 8192];
    let mut have = 0;
    loop {
        let Some(end) = find_head_end(&buf[..have]) else {
            if have == buf.len() {
                let _ = s.write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                return;
            }
            match s.read(&mut buf[have..]) {
                Ok(0) | Err(_) => return,
                Ok(n) => have += n,
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let close = head.contains("connection: close")
            || head.starts_with("get / http/1.0") && !head.contains("keep-alive");
        let body = format!("{name}\n");
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-Backend: {name}\r\n{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if s.write_all(resp.as_bytes()).is_err() || close {
            return;
        }
        buf.copy_within(end..have, 0);
        have -= end;
    }
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// The console's default address; if taken, a free loopback port is used instead.
const DEFAULT_HTTP: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9090);

/// 128 random bits from the kernel, as 32 hex digits.
fn random_token() -> io::Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Writes `token` to a new file only the owner can read.
fn write_secret(path: &std::path::Path, token: &str) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(token.as_bytes())
}

/// Removes the demo's temp files when the demo ends, however it ends.
struct TempFiles(Vec<std::path::PathBuf>);

impl Drop for TempFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Runs the demo until Ctrl-C.
pub fn run(args: DemoArgs) -> io::Result<()> {
    let sfd = crate::sys::signal::signal_fd()?;
    let nofile = crate::sys::limits::raise_nofile();
    let mut addrs = Vec::new();
    for i in 1..=3 {
        let a = spawn_backend(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            format!("backend-{i}"),
        )?;
        info!(target: "fulcrum::demo", "backend-{i} on {a}");
        addrs.push(a);
    }
    // The demo distributor is an ordinary `serve` with every default, built from flags
    // so it cannot drift from what `fulcrum serve` does.
    let mut argv: Vec<String> = [
        "fulcrum",
        "serve",
        "--workers",
        "1",
        "--drain-timeout",
        "2s",
        "--check-interval",
        "1s",
    ]
    .map(String::from)
    .to_vec();
    argv.extend([
        "--listen".to_string(),
        args.listen.to_string(),
        "--scheduler".into(),
        args.scheduler.to_string(),
    ]);
    for a in &addrs {
        argv.extend(["--backend".to_string(), a.to_string()]);
    }
    let pid = std::process::id();
    let control = args
        .control
        .unwrap_or_else(|| std::env::temp_dir().join(format!("fulcrum-demo-{pid}.sock")));
    let http = match args.http {
        Some(h) => h,
        // Probe the default port; taken (another demo, a dashboard) → any free one.
        None => match TcpListener::bind(DEFAULT_HTTP) {
            Ok(l) => l.local_addr()?,
            Err(_) => TcpListener::bind(SocketAddr::new(DEFAULT_HTTP.ip(), 0))?.local_addr()?,
        },
    };
    let token = random_token()?;
    let token_file = std::env::temp_dir().join(format!("fulcrum-demo-{pid}.token"));
    write_secret(&token_file, &token)?;
    let _cleanup = TempFiles(vec![token_file.clone(), control.clone()]);
    argv.extend([
        "--control".to_string(),
        control.display().to_string(),
        "--http".into(),
        http.to_string(),
        "--http-token-file".into(),
        token_file.display().to_string(),
    ]);
    let serve_args = match crate::cli::Cli::try_parse_from(&argv).map(|c| c.command) {
        Ok(crate::cli::CliCommand::Serve(a)) => *a,
        Ok(_) => return Err(io::Error::other("demo: internal flag error")),
        Err(e) => return Err(io::Error::other(e.to_string())),
    };
    let cfg =
        crate::config::ServeConfig::from_args(serve_args, nofile).map_err(io::Error::other)?;
    let server = Server::start(vec![cfg], sfd)?;
    println!(
        "fulcrum demo: distributor on http://{} in front of 3 backends on loopback",
        args.listen
    );
    println!(
        "  try:  for i in 1 2 3 4 5 6; do curl -s http://{}/; done",
        args.listen
    );
    println!(
        "  ctl:  fulcrum ctl --socket {} show nodes",
        control.display()
    );
    println!("  web:  http://{http}/  (token for changes: {token})");
    println!("  metrics: curl -s http://{http}/metrics");
    println!("  stop: Ctrl-C");
    server.run()
}
