//! End-to-end tests of proxy mode: the real binary, real sockets on loopback.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;

fn tally(addr: SocketAddr, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let name = fetch(addr).expect("request through fulcrum");
        *seen.entry(name.trim().to_string()).or_insert(0) += 1;
    }
    seen
}

#[test]
fn round_robin_is_even_over_three_backends() {
    let b: Vec<Backend> = ["a", "b", "c"]
        .into_iter()
        .map(|n| Backend::start(says(n)))
        .collect();
    let addrs: Vec<SocketAddr> = b.iter().map(|b| b.addr).collect();
    // Two workers: round-robin must still be one rotation, not two.
    let (_p, addr) = start_fulcrum(&addrs, &["--scheduler", "rr", "--workers", "2"]);
    let seen = tally(addr, 300);
    assert_eq!(seen.values().sum::<usize>(), 300);
    for n in ["a", "b", "c"] {
        let c = seen.get(n).copied().unwrap_or(0);
        assert!(c.abs_diff(100) <= 1, "{n} got {c}: {seen:?}");
    }
}

#[test]
fn weighted_round_robin_follows_weights() {
    let a = Backend::start(says("a"));
    let b = Backend::start(says("b"));
    let (_p, addr) = start_fulcrum(
        &[],
        &[
            "--backend",
            &format!("{},weight=3", a.addr),
            "--backend",
            &format!("{},weight=1", b.addr),
            "--scheduler",
            "wrr",
            "--workers",
            "1",
        ],
    );
    let seen = tally(addr, 80);
    assert_eq!(seen.get("a"), Some(&60), "{seen:?}");
    assert_eq!(seen.get("b"), Some(&20), "{seen:?}");
}

/// Backend "sticky" keeps every connection open until the client leaves; "quick" answers
/// and closes. Least-connections must steer new flows away from "sticky".
#[test]
fn least_connections_avoids_backend_holding_long_flows() {
    let sticky = Backend::start(|mut s: TcpStream| {
        let _ = s.write_all(b"sticky\n");
        let mut buf = [0u8; 1];
        let _ = s.read(&mut buf); // until the client closes
    });
    let quick = Backend::start(says("quick"));
    let count_sticky = |sched: &str| {
        let (_p, addr) = start_fulcrum(
            &[sticky.addr, quick.addr],
            &["--scheduler", sched, "--workers", "1"],
        );
        let mut held = Vec::new();
        let mut to_sticky = 0;
        for _ in 0..10 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut line = [0u8; 7];
            let n = s.read(&mut line).unwrap();
            if &line[..n] == b"sticky\n" {
                to_sticky += 1;
                held.push(s); // a long-lived flow: keep it open
            } // a quick flow: the client closes it, as a real one would
            thread::sleep(Duration::from_millis(30)); // let quick's closes propagate
        }
        to_sticky
    };
    let lc = count_sticky("lc");
    let rr = count_sticky("rr");
    assert_eq!(rr, 5, "round-robin alternates regardless of load");
    assert!(
        lc <= 1,
        "lc sent {lc} of 10 flows to the backend holding long flows"
    );
}

#[test]
fn closed_backend_is_skipped_without_client_visible_failure() {
    let a = Backend::start(says("a"));
    let b = Backend::start(says("b"));
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (p, addr) = start_fulcrum(
        &[a.addr, dead, b.addr],
        &["--retries", "2", "--workers", "1"],
    );
    let seen = tally(addr, 60);
    assert_eq!(seen.values().sum::<usize>(), 60, "{seen:?}");
    assert!(seen.keys().all(|k| k == "a" || k == "b"), "{seen:?}");
    assert!(seen["a"] >= 10 && seen["b"] >= 10, "{seen:?}");
    drop(p);
}

#[test]
fn all_nodes_down_gives_client_an_error_not_a_hang() {
    let dead1 = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let dead2 = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (_p, addr) = start_fulcrum(&[dead1, dead2], &["--retries", "3"]);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Ok(n) => panic!("unexpected {n} bytes"),
    }
}

#[test]
fn half_close_client_shuts_write_and_still_reads_full_reply() {
    // Backend reads until EOF, then answers with the byte count and its SHA-256 digest.
    let b = Backend::start(|mut s: TcpStream| {
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        thread::sleep(Duration::from_millis(50)); // reply well after the client's FIN
        let reply = format!("{} {}\n", got.len(), sha256(&got));
        s.write_all(reply.as_bytes()).unwrap();
    });
    let (_p, addr) = start_fulcrum(&[b.addr], &[]);
    let data = pattern(7, 300_000);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&data).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, format!("{} {}\n", data.len(), sha256(&data)));
}

#[test]
fn eight_mib_both_ways_byte_exact() {
    const N: usize = 8 << 20;
    // Backend: sends its own 8 MiB while reading the client's 8 MiB, then reports.
    let b = Backend::start(|s: TcpStream| {
        let mut w = s.try_clone().unwrap();
        let sender = thread::spawn(move || {
            w.write_all(&pattern(2, N)).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut r = s;
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        sender.join().unwrap();
        assert_eq!(
            sha256(&got),
            sha256(&pattern(1, N)),
            "backend received corrupted data"
        );
    });
    for splice in ["on", "off"] {
        let (_p, addr) = start_fulcrum(&[b.addr], &["--splice", splice]);
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut w = s.try_clone().unwrap();
        let sender = thread::spawn(move || {
            w.write_all(&pattern(1, N)).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut r = s;
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        sender.join().unwrap();
        assert_eq!(got.len(), N, "splice={splice}");
        assert_eq!(sha256(&got), sha256(&pattern(2, N)), "splice={splice}");
    }
}

#[test]
fn two_thousand_concurrent_connections_all_complete() {
    raise_nofile();
    let b = Backend::start(echo);
    let (_p, addr) = start_fulcrum(&[b.addr], &["--workers", "2"]);
    const N: usize = 2000;
    let mut socks = Vec::with_capacity(N);
    for i in 0..N {
        let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect #{i}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(format!("hello {i:05}\n").as_bytes()).unwrap();
        socks.push(s);
    }
    // All 2000 are open at once; now read every echo.
    let mut ok = 0;
    for (i, s) in socks.iter_mut().enumerate() {
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf)
            .unwrap_or_else(|e| panic!("read #{i}: {e}"));
        assert_eq!(&buf, format!("hello {i:05}\n").as_bytes());
        ok += 1;
    }
    assert_eq!(ok, N);
    assert!(b.count() >= N);
}

#[test]
fn sigterm_drains_inflight_transfer_to_completion() {
    const N: usize = 4 << 20;
    // Backend trickles 4 MiB over about a second.
    let b = Backend::start(|mut s: TcpStream| {
        let data = pattern(9, N);
        for chunk in data.chunks(N / 20) {
            if s.write_all(chunk).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    });
    let (mut p, addr) = start_fulcrum(&[b.addr], &["--drain-timeout", "20s"]);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut first = [0u8; 1024];
    s.read_exact(&mut first).unwrap();
    p.signal(nix::sys::signal::Signal::SIGTERM);
    // New connections are no longer accepted...
    assert!(eventually(Duration::from_secs(2), || TcpStream::connect(
        addr
    )
    .is_err()));
    // ...but the transfer in flight completes byte-exact.
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let mut got = first.to_vec();
    got.extend_from_slice(&rest);
    assert_eq!(got.len(), N);
    assert_eq!(sha256(&got), sha256(&pattern(9, N)));
    drop(s); // the client closes its side: the flow is complete
    assert_eq!(
        p.wait_exit(Duration::from_secs(5)),
        Some(0),
        "log:\n{}",
        p.log()
    );
    assert!(p.log().contains("0 connections cut"), "{}", p.log());
    assert!(p.log().contains(" for up to 20s"), "{}", p.log());
}

#[test]
fn drain_timeout_cuts_and_reports() {
    let b = Backend::start(|mut s: TcpStream| {
        let mut buf = [0u8; 1];
        let _ = s.read(&mut buf); // hold until the peer goes away
    });
    let (mut p, addr) = start_fulcrum(&[b.addr], &["--drain-timeout", "300ms"]);
    let held = TcpStream::connect(addr).unwrap();
    thread::sleep(Duration::from_millis(100));
    p.signal(nix::sys::signal::Signal::SIGINT);
    assert_eq!(p.wait_exit(Duration::from_secs(5)), Some(0));
    // Regression (#14, plural forms): "1 connection", not "1 connections".
    assert!(p.log().contains("1 connection cut"), "{}", p.log());
    drop(held);
}

#[test]
fn bad_flags_exit_2_naming_flag_and_value() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["--scheduler", "bogus"], &["--scheduler", "bogus"]),
        (&["--connect-timeout", "5"], &["--connect-timeout", "\"5\""]),
        (
            &["--backend", "127.0.0.1:1,weight=abc"],
            &["--backend", "abc"],
        ),
        (
            &["--backend", "no-such-host.invalid:80"],
            &["--backend", "no-such-host.invalid"],
        ),
        (&["--listen", "127.0.0.1"], &["--listen", "127.0.0.1"]),
        (&["--workers", "0"], &["--workers", "0"]),
        (&["--send-proxy", "v3"], &["--send-proxy", "v3"]),
    ];
    for (extra, needles) in cases {
        let mut args = vec![
            "serve",
            "--listen",
            "127.0.0.1:1",
            "--backend",
            "127.0.0.1:2",
        ];
        args.extend_from_slice(extra);
        let out = Command::new(bin()).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        let first = err.lines().next().unwrap_or_default();
        for n in *needles {
            assert!(
                first.contains(n),
                "{extra:?}: first line {first:?} lacks {n:?}"
            );
        }
    }
    let out = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--backend"));
}

#[test]
fn listen_on_ipv6_loopback() {
    let b = Backend::start(says("v6"));
    let port = free_port();
    let listen = format!("[::1]:{port}");
    let p = spawn(
        &[
            "serve",
            "--listen",
            &listen,
            "--backend",
            &b.addr.to_string(),
        ],
        "info",
    );
    let addr: SocketAddr = listen.parse().unwrap();
    if TcpStream::connect("[::1]:1")
        .is_err_and(|e| e.kind() == std::io::ErrorKind::AddrNotAvailable)
    {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    }
    wait_listening(addr, &p);
    assert_eq!(fetch(addr).unwrap(), "v6\n");
}

#[test]
fn demo_answers_curl_from_all_three_backends() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut p = spawn(&["demo", "--listen", &listen], "info");
    wait_listening(listen.parse().unwrap(), &p);
    let seen = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..6 {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5", &format!("http://{listen}/")])
            .output()
            .expect("curl is installed (.ci/run installs it)");
        assert!(out.status.success());
        seen.lock()
            .unwrap()
            .push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    let mut names = seen.lock().unwrap().clone();
    names.sort();
    names.dedup();
    assert_eq!(names, vec!["backend-1", "backend-2", "backend-3"]);
    assert!(p.log().contains("curl"), "prints how to try it");
    p.signal(nix::sys::signal::Signal::SIGINT);
    assert_eq!(
        p.wait_exit(Duration::from_secs(5)),
        Some(0),
        "Ctrl-C stops the demo cleanly"
    );
}

/// Two adjacent limits: whether the last free descriptor goes to `accept` or to the node
/// socket depends on how many descriptors the process holds, so one of the two limits
/// runs out at accept and the other at the node socket.
#[test]
fn descriptor_exhaustion_pauses_accept_and_recovers() {
    for limit in [48, 49] {
        descriptor_exhaustion_case(limit);
    }
}

fn descriptor_exhaustion_case(limit: u64) {
    use std::os::unix::process::CommandExt;
    let b = Backend::start(echo);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = std::process::Command::new(bin());
    cmd.args([
        "serve",
        "--listen",
        &listen,
        "--backend",
        &b.addr.to_string(),
        "--workers",
        "1",
        "--check",
        "none",
        "--max-conns",
        "1000",
    ])
    .env("RUST_LOG", "info")
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, limit, limit)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    {
        let log = Arc::clone(&log);
        thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                log.lock().unwrap().push_str(&(l + "\n"));
            }
        });
    }
    let addr: SocketAddr = listen.parse().unwrap();
    assert!(eventually(Duration::from_secs(5), || TcpStream::connect(
        addr
    )
    .is_ok()));
    // Open far more connections than 48 descriptors allow (2 per proxied flow).
    let mut held = Vec::new();
    for i in 0..40 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(150)))
            .unwrap();
        s.write_all(format!("{i:04}").as_bytes()).unwrap();
        held.push(s);
    }
    assert!(
        eventually(Duration::from_secs(5), || log
            .lock()
            .unwrap()
            .contains("pausing accept")),
        "limit {limit}, log:\n{}",
        log.lock().unwrap()
    );
    // Flows that got through still work (echo), the process is alive.
    let mut served = 0;
    for (i, s) in held.iter_mut().enumerate() {
        let mut buf = [0u8; 4];
        if s.read_exact(&mut buf).is_ok() {
            assert_eq!(&buf, format!("{i:04}").as_bytes());
            served += 1;
        }
    }
    assert!(
        served >= 5,
        "limit {limit}: some flows are served ({served})"
    );
    assert!(child.try_wait().unwrap().is_none(), "still running");
    // Free descriptors: accepting resumes.
    held.clear();
    assert!(
        eventually(Duration::from_secs(5), || {
            let Ok(mut s) = TcpStream::connect(addr) else {
                return false;
            };
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.write_all(b"ping").is_ok() && {
                let mut buf = [0u8; 4];
                s.read_exact(&mut buf).is_ok() && &buf == b"ping"
            }
        }),
        "limit {limit}: accept resumed; log:\n{}",
        log.lock().unwrap()
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn second_distributor_on_the_same_port_is_refused() {
    let b = Backend::start(says("a"));
    let (p, addr) = start_fulcrum(&[b.addr], &["--workers", "2"]);
    let out = std::process::Command::new(bin())
        .args([
            "serve",
            "--listen",
            &addr.to_string(),
            "--backend",
            &b.addr.to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another process listens"), "{err}");
    assert_eq!(
        fetch(addr).unwrap().trim(),
        "a",
        "the first one is unaffected"
    );
    drop(p);
}

/// nginx on loopback whose listener requires the PROXY protocol; it answers with the
/// client address and port the header carried, and the server address it names.
struct ProxyProtocolNginx {
    child: std::process::Child,
    addr: SocketAddr,
    dir: std::path::PathBuf,
}

impl ProxyProtocolNginx {
    fn start() -> ProxyProtocolNginx {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("fulcrum-ppng-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\nevents {{ worker_connections 256; }}\n\
             http {{\n  log_format checks '$http_user_agent';\n  access_log {d}/access.log checks;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             server {{\n    listen 127.0.0.1:{port} proxy_protocol;\n    keepalive_timeout 0;\n\
             location / {{ default_type text/plain; return 200 \"$proxy_protocol_addr $proxy_protocol_port $proxy_protocol_server_addr $proxy_protocol_server_port\\n\"; }}\n  }}\n}}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("nginx (apt-get install nginx)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        assert!(
            eventually(Duration::from_secs(5), || TcpStream::connect(addr).is_ok()),
            "nginx did not listen on {addr}"
        );
        ProxyProtocolNginx { child, addr, dir }
    }

    /// Requests nginx served to fulcrum's HTTP health check.
    fn checks_served(&self) -> usize {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("fulcrum-check"))
            .count()
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for ProxyProtocolNginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One HTTP/1.0 GET through `addr` from a socket bound to `from` (port chosen by the
/// kernel); returns the body and the client port used.
fn get_from(from: std::net::IpAddr, addr: SocketAddr) -> (String, u16) {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(from, 0).into()).unwrap();
    s.connect(&addr.into()).unwrap();
    let mut s = TcpStream::from(s);
    let port = s.local_addr().unwrap().port();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: t\r\n\r\n").unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let body = resp
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (body, port)
}

#[test]
fn send_proxy_tells_nginx_the_client_address_and_checks_pass() {
    for version in ["v1", "v2"] {
        let ng = ProxyProtocolNginx::start();
        // HTTP checks every 100 ms; with warn=1 a single refused check would show.
        let (p, addr) = start_fulcrum(
            &[ng.addr],
            &[
                "--send-proxy",
                version,
                "--check",
                "http:/",
                "--check-interval",
                "100ms",
                "--warn",
                "1",
                "--fall",
                "2",
            ],
        );
        let client_ip: std::net::IpAddr = "127.0.0.7".parse().unwrap();
        for _ in 0..3 {
            let (body, port) = get_from(client_ip, addr);
            assert_eq!(
                body.trim(),
                format!("127.0.0.7 {port} 127.0.0.1 {}", addr.port()),
                "{version}: the node sees the client, not the distributor; nginx:\n{}",
                ng.error_log()
            );
        }
        // Checks, each with a LOCAL header first, reach nginx's HTTP stage and pass.
        assert!(
            eventually(Duration::from_secs(5), || ng.checks_served() >= 5),
            "{version}: {} checks served; nginx:\n{}\nfulcrum:\n{}",
            ng.checks_served(),
            ng.error_log(),
            p.log()
        );
        let log = p.log();
        assert!(
            !log.contains("warning") && !log.contains("down"),
            "{version}: health checks failed:\n{log}"
        );
        assert!(
            !ng.error_log().contains("broken header"),
            "{version}: nginx refused a header:\n{}",
            ng.error_log()
        );
        assert!(log.contains(&format!("send_proxy={version}")), "{log}");
    }
}

/// One request of the reload test's load: sends `g`, expects `a` back.
fn small_request(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut out = String::new();
    s.write_all(b"g").is_ok() && s.read_to_string(&mut out).is_ok() && out == "a"
}

#[test]
fn reload_hands_listeners_over_without_losing_a_connection() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    const BIG: usize = 1 << 20;
    // `b` first: a 1 MiB reply trickled over ~1 s (in flight during the reload);
    // anything else: "a".
    let backend = Backend::start(|mut s: TcpStream| {
        let mut first = [0u8; 1];
        if s.read_exact(&mut first).is_err() {
            return;
        }
        if first[0] == b'b' {
            for c in pattern(9, BIG).chunks(BIG / 10) {
                if s.write_all(c).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(100));
            }
        } else {
            let _ = s.write_all(b"a");
        }
    });
    let sock = std::env::temp_dir().join(format!(
        "fulcrum-reload-{}-{}.sock",
        std::process::id(),
        free_port()
    ));
    let sock_s = sock.display().to_string();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let addr: SocketAddr = listen.parse().unwrap();
    let be = backend.addr.to_string();
    let http = format!("127.0.0.1:{}", free_port());
    let base = [
        "serve",
        "--listen",
        &listen,
        "--backend",
        &be,
        "--control",
        &sock_s,
        "--http",
        &http,
    ];
    let mut old_args = base.to_vec();
    old_args.extend(["--workers", "2"]);
    let mut old = spawn(&old_args, "info");
    wait_listening(addr, &old);
    // A reload that fails to start (one more --listen, on a busy port) leaves the old
    // process untouched: still serving, its control socket still at its path.
    let busy = backend.addr.to_string();
    let mut failed_args = base.to_vec();
    failed_args.extend(["--listen", &busy, "--listeners-from", &sock_s]);
    let mut failed = spawn(&failed_args, "info");
    assert_eq!(
        failed.wait_exit(Duration::from_secs(5)),
        Some(1),
        "{}",
        failed.log()
    );
    assert!(small_request(addr));
    let ctl_ok = |want: &str| {
        let out = Command::new(bin())
            .args(["ctl", "--socket", &sock_s, "show", "stats"])
            .output()
            .unwrap();
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(want)
    };
    assert!(
        ctl_ok("workers: 2"),
        "the old process's control socket survived"
    );
    let dir = sock.parent().unwrap();
    let stem = sock.file_name().unwrap().to_string_lossy().to_string();
    let staged = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.starts_with(&stem) && n != stem
        })
        .count();
    assert_eq!(staged, 0, "no staging socket left behind");
    // The in-flight transfer through the old process.
    let mut big = TcpStream::connect(addr).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    big.write_all(b"b").unwrap();
    let mut got = vec![0u8; 1000];
    big.read_exact(&mut got).unwrap();
    let reader = thread::spawn(move || {
        let mut rest = Vec::new();
        big.read_to_end(&mut rest).map(|_| rest)
    });
    // Load: two clients, back-to-back requests, bounded in count and time.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
            thread::spawn(move || {
                let end = std::time::Instant::now() + Duration::from_secs(20);
                for _ in 0..20_000 {
                    if stop.load(Ordering::Relaxed) || std::time::Instant::now() > end {
                        break;
                    }
                    let r = if small_request(addr) { &ok } else { &failed };
                    r.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let before = ok.load(Ordering::Relaxed);
    let mut new_args = base.to_vec();
    new_args.extend(["--workers", "1", "--listeners-from", &sock_s]);
    let new = spawn(&new_args, "info");
    // The old process drains (the transfer ends after ~1 s) and exits 0.
    assert_eq!(
        old.wait_exit(Duration::from_secs(10)),
        Some(0),
        "old:\n{}\nnew:\n{}",
        old.log(),
        new.log()
    );
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    got.extend_from_slice(&reader.join().unwrap().unwrap());
    assert_eq!(
        sha256(&got),
        sha256(&pattern(9, BIG)),
        "the in-flight transfer completes byte-exact"
    );
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("reload under load: {ok} requests, {failed} failed");
    assert_eq!(failed, 0, "{ok} ok; new:\n{}", new.log());
    assert!(ok > before + 20, "load kept running: {before} -> {ok}");
    assert!(
        old.log().contains("handed over 2 listening sockets"),
        "{}",
        old.log()
    );
    assert!(
        new.log().contains("took 2 listening sockets"),
        "{}",
        new.log()
    );
    // The socket path is now the new process's (the old one did not remove it at exit).
    assert!(ctl_ok("workers: 1"), "new:\n{}", new.log());
    assert!(small_request(addr));
    // --http was shared with the old process while it drained, and is served now.
    let mut h = TcpStream::connect(&http).unwrap();
    h.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    h.write_all(b"GET /api/v1/stats HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    let _ = h.read_to_string(&mut resp);
    assert!(
        resp.starts_with("HTTP/1.1 200") && resp.contains("\"workers\":1"),
        "{resp}"
    );
    drop(new);
    let _ = std::fs::remove_file(&sock);
}

#[test]
fn max_conns_per_source_resets_the_extra_connection_of_one_client_only() {
    // The backend holds each connection until the client closes it.
    let b = Backend::start(|mut s: TcpStream| {
        let mut buf = [0u8; 64];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {
            let _ = s.write_all(b"k");
        }
    });
    let (p, addr) = start_fulcrum(
        &[b.addr],
        &[
            "--max-conns-per-source",
            "3",
            "--workers",
            "2",
            "--check",
            "none",
        ],
    );
    // A connection counts as open once the backend answers through it.
    let open_from = |ip: &str| -> std::io::Result<TcpStream> {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        s.bind(&SocketAddr::new(ip.parse().unwrap(), 0).into())?;
        s.connect(&addr.into())?;
        let mut s = TcpStream::from(s);
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(b"x")?;
        let mut k = [0u8; 1];
        s.read_exact(&mut k)?;
        Ok(s)
    };
    // wait_listening's probe may still be counted for 127.0.0.1: use other addresses.
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| open_from("127.0.0.11").expect("three are allowed"))
        .collect();
    assert!(
        open_from("127.0.0.11").is_err(),
        "the fourth from the same address is reset"
    );
    let other = open_from("127.0.0.12").expect("another client is unaffected");
    // Closing one frees its slot (the close is seen by the worker shortly after).
    held.pop();
    assert!(
        eventually(Duration::from_secs(3), || open_from("127.0.0.11")
            .map(|s| held.push(s))
            .is_ok()),
        "a slot frees up after a close"
    );
    assert_eq!(held.len(), 3);
    let ctl_stats = p.log();
    assert!(ctl_stats.contains("max_conns_per_source=3"), "{ctl_stats}");
    drop(other);
    drop(held);
}

/// #14, item 11: `--access-log` writes one key=value line per connection at close; the
/// start-up line names the control socket and the HTTP address and counts "1 node".
#[test]
fn access_log_one_line_per_connection() {
    let a = Backend::start(says("a"));
    let sock = std::env::temp_dir().join(format!(
        "fulcrum-access-{}-{}.sock",
        std::process::id(),
        free_port()
    ));
    let http = format!("127.0.0.1:{}", free_port());
    let s = sock.display().to_string();
    let (p, addr) = start_fulcrum(
        &[a.addr],
        &["--access-log", "--control", &s, "--http", &http],
    );
    assert_eq!(fetch(addr).unwrap(), "a\n");
    let want = format!("node={} bytes_in=0 bytes_out=2 duration_ms=", a.addr);
    assert!(
        eventually(Duration::from_secs(3), || p.log().contains(&want)),
        "{}",
        p.log()
    );
    let line = p
        .log()
        .lines()
        .find(|l| l.contains(&want))
        .unwrap_or_default()
        .to_owned();
    assert!(line.contains("fulcrum::access"), "{line}");
    assert!(line.contains("client=127.0.0.1:"), "{line}");
    assert!(line.ends_with("end=closed"), "{line}");
    let log = p.log();
    assert!(log.contains(&format!("-> 1 node [{}", a.addr)), "{log}");
    assert!(log.contains(&format!("control={s}")), "{log}");
    assert!(log.contains(&format!("http={http}")), "{log}");
    let _ = std::fs::remove_file(&sock);
}

/// Without `--access-log` no line is written per connection (at the default level).
#[test]
fn no_access_log_by_default() {
    let a = Backend::start(says("a"));
    let (p, addr) = start_fulcrum(&[a.addr], &[]);
    assert_eq!(fetch(addr).unwrap(), "a\n");
    thread::sleep(Duration::from_millis(300));
    assert!(!p.log().contains("bytes_in="), "{}", p.log());
    assert!(
        !p.log().contains("control="),
        "no control socket, none named"
    );
}

/// #14, item 17: the demo has the control socket and the console, so the whole tour
/// works on it.
#[test]
fn demo_serves_ctl_and_console() {
    let listen = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let sock = std::env::temp_dir().join(format!(
        "fulcrum-demo-test-{}-{}.sock",
        std::process::id(),
        free_port()
    ));
    let s = sock.display().to_string();
    let mut p = spawn(
        &[
            "demo",
            "--listen",
            &listen,
            "--control",
            &s,
            "--http",
            &http,
        ],
        "info",
    );
    wait_listening(listen.parse().unwrap(), &p);
    let out = Command::new(bin())
        .args(["ctl", "--socket", &s, "show", "nodes", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let nodes = String::from_utf8_lossy(&out.stdout);
    assert_eq!(nodes.matches("\"addr\"").count(), 3, "{nodes}");
    // The printed token allows changes through HTTP.
    assert!(
        eventually(Duration::from_secs(2), || p
            .log()
            .contains("token for changes: ")),
        "{}",
        p.log()
    );
    let log = p.log();
    let token = log
        .split("token for changes: ")
        .nth(1)
        .and_then(|t| t.split(')').next())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(token.len(), 32, "{log}");
    assert!(log.contains(&format!("fulcrum ctl --socket {s}")), "{log}");
    let mut c = TcpStream::connect(&http).unwrap();
    write!(
        c,
        "POST /api/v1/command HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Length: 7\r\n\r\ndisable"
    )
    .unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    p.signal(nix::sys::signal::Signal::SIGINT);
    assert_eq!(p.wait_exit(Duration::from_secs(5)), Some(0));
    assert!(!sock.exists(), "the demo removes its control socket");
}
