//! End-to-end tests of the control interface: the real binary, `fulcrum ctl`, the Unix
//! socket, HTTP on loopback.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// `show nodes --json`, one field of the node `addr`.
fn node_field(ctl: &Ctl, addr: SocketAddr, field: &str) -> Option<String> {
    json_field(&ctl.ok("show nodes --json"), addr, field)
}

/// Extracts `"field":value` of the object whose "addr" is `addr` from the nodes JSON.
fn json_field(json: &str, addr: SocketAddr, field: &str) -> Option<String> {
    let start = json.find(&format!("\"addr\":\"{addr}\""))?;
    let obj = &json[start..];
    let obj = &obj[..obj.find('}').unwrap_or(obj.len())];
    let key = format!("\"{field}\":");
    let v = &obj[obj.find(&key)? + key.len()..];
    let end = v.find([',', '}']).unwrap_or(v.len());
    Some(v[..end].trim_matches('"').to_string())
}

fn sock_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "fulcrum-ctl-{tag}-{}-{}.sock",
        std::process::id(),
        free_port()
    ))
}

fn start(backends: &[SocketAddr], tag: &str, extra: &[&str]) -> (Proc, SocketAddr, Ctl) {
    let sock = sock_path(tag);
    let s = sock.to_str().unwrap().to_string();
    let mut args = vec!["--control", s.as_str(), "--workers", "2"];
    args.extend_from_slice(extra);
    let (p, addr) = start_fulcrum(backends, &args);
    assert!(eventually(Duration::from_secs(3), || sock.exists()));
    (p, addr, Ctl { sock })
}

fn tally(addr: SocketAddr, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        *seen
            .entry(fetch(addr).unwrap().trim().to_string())
            .or_insert(0) += 1;
    }
    seen
}

#[test]
fn socket_is_0600_and_table_and_json_parse() {
    let a = Backend::start(says("a"));
    let (_p, addr, ctl) = start(&[a.addr], "perm", &[]);
    let mode = std::fs::metadata(&ctl.sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // start_fulcrum's readiness probe was one connection already; count from here.
    let t0: u64 = node_field(&ctl, a.addr, "total").unwrap().parse().unwrap();
    fetch(addr).unwrap();
    let t1 = (t0 + 1).to_string();
    let table = ctl.ok("show nodes");
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&header[..4], &["NODE", "WEIGHT", "ADMIN", "HEALTH"]);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[0], a.addr.to_string());
    assert_eq!((row[2], row[3]), ("ready", "up"));
    let total_col = header.iter().position(|h| *h == "TOTAL").unwrap();
    assert_eq!(row[total_col], t1);
    let json = ctl.ok("show nodes --json");
    assert!(
        json.trim_start().starts_with('[') && json.trim_end().ends_with(']'),
        "{json}"
    );
    assert_eq!(json_field(&json, a.addr, "total"), Some(t1.clone()));
    assert_eq!(json_field(&json, a.addr, "admin").as_deref(), Some("ready"));
    let stats = ctl.ok("show stats --json");
    assert!(stats.contains(&format!("\"total\":{t1}")), "{stats}");
    assert!(ctl.ok("show config").contains("scheduler: rr"));
    // Exit codes: refused = 1, unreachable = 3.
    let (code, _, err) = ctl.run("set weight 127.0.0.1:1 5");
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("error:"), "{err}");
    let gone = Ctl {
        sock: sock_path("missing"),
    };
    assert_eq!(gone.run("show nodes").0, 3);
}

#[test]
fn malformed_commands_get_errors_and_connection_stays_usable() {
    let a = Backend::start(says("a"));
    let (_p, _addr, ctl) = start(&[a.addr], "malformed", &[]);
    let s = UnixStream::connect(&ctl.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut reply = || {
        let mut body = String::new();
        loop {
            let mut l = String::new();
            assert!(r.read_line(&mut l).unwrap() > 0, "connection closed");
            if l == "\n" {
                return body;
            }
            body.push_str(&l);
        }
    };
    for (line, needle) in [
        ("shwo nodes", "unknown command"),
        ("set weight 127.0.0.1:80 abc", "abc"),
        ("add node", "missing"),
        ("enable now", "now"),
        ("set state 127.0.0.1:9 sleepy", "sleepy"),
    ] {
        writeln!(w, "{line}").unwrap();
        let body = reply();
        assert!(
            body.starts_with("error:") && body.contains(needle),
            "{line}: {body}"
        );
    }
    // An oversized line is refused without being buffered, and the next one works.
    let huge = "x".repeat(100_000);
    writeln!(w, "{huge}").unwrap();
    assert!(reply().contains("error: line longer than"));
    writeln!(w, "show stats --json").unwrap();
    assert!(reply().starts_with('{'));
}

#[test]
fn add_node_under_load_gets_traffic_and_set_weight_changes_distribution() {
    let a = Backend::start(says("a"));
    let b = Backend::start(says("b"));
    let (_p, addr, ctl) = start(&[a.addr], "add", &["--scheduler", "wrr"]);
    // Load in the background while the node is added.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut n = 0;
            let end = Instant::now() + Duration::from_secs(10);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < end {
                fetch(addr).unwrap();
                n += 1;
            }
            n
        })
    };
    thread::sleep(Duration::from_millis(100));
    assert!(ctl.ok(&format!("add node {}", b.addr)).contains("added"));
    assert!(
        eventually(Duration::from_secs(3), || b.count() > 5),
        "new node got no traffic"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(load.join().unwrap() > 0);
    ctl.ok(&format!("set weight {} 3", b.addr));
    let seen = tally(addr, 40);
    // Smooth wrr keeps its counters per worker (two here), so the total may be off by one
    // per worker from the exact 3:1.
    let b_got = seen.get("b").copied().unwrap_or(0);
    assert!(b_got.abs_diff(30) <= 2, "{seen:?}");
    assert_eq!(node_field(&ctl, b.addr, "weight").as_deref(), Some("3"));
}

#[test]
fn drain_maint_ready_and_disable_enable() {
    let a = Backend::start(says("a"));
    let b = Backend::start(|mut s: TcpStream| {
        // b holds its flow until the client leaves, then says goodbye.
        let mut buf = [0u8; 1];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"b\n");
    });
    // No health probes: they would count as connections to b.
    let (_p, addr, ctl) = start(&[a.addr, b.addr], "states", &["--check", "none"]);
    // One long flow to b: a answers at once, b stays silent until the client writes.
    // (Telling them apart by what the connection itself receives, not by b's counter,
    // which may lag behind under load.)
    let mut held = None;
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 2];
        match s.read(&mut buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                held = Some(s);
                break;
            }
            _ => continue, // a's "a\n" (or its close): not b's flow
        }
    }
    let mut held = held.expect("a flow to b");
    for state in ["drain", "maint"] {
        assert!(ctl
            .ok(&format!("set state {} {state}", b.addr))
            .contains(state));
        let before = b.count();
        for _ in 0..6 {
            assert_eq!(fetch(addr).unwrap().trim(), "a");
        }
        assert_eq!(b.count(), before, "{state}: no new flows to b");
        assert_eq!(node_field(&ctl, b.addr, "admin").as_deref(), Some(state));
    }
    ctl.ok(&format!("set state {} ready", b.addr));
    // disable: new connections refused, the existing one keeps working.
    ctl.ok("disable");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 8];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        Ok(n) => panic!("disabled but got {n} bytes"),
    }
    held.write_all(b"x").unwrap();
    held.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut got = String::new();
    held.read_to_string(&mut got).unwrap();
    assert_eq!(got, "b\n", "existing flow kept working while disabled");
    ctl.ok("enable");
    ctl.ok(&format!("set state {} drain", b.addr)); // b's handler waits for input
    assert_eq!(
        tally(addr, 2).get("a"),
        Some(&2),
        "enable restores distribution"
    );
}

#[test]
fn remove_node_drains_inflight_transfer_then_disappears() {
    const N: usize = 2 << 20;
    let a = Backend::start(says("a"));
    // b trickles 2 MiB over ~1 s.
    let b = Backend::start(|mut s: TcpStream| {
        let data = pattern(5, N);
        for c in data.chunks(N / 10) {
            if s.write_all(c).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    // No health probes: they would count as connections to b.
    let (_p, addr, ctl) = start(
        &[b.addr, a.addr],
        "remove",
        &["--scheduler", "rr", "--check", "none"],
    );
    // Round-robin alternates: one of two connections is b's transfer.
    let (mut s, first) = (0..2)
        .find_map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut first = [0u8; 16];
            s.read_exact(&mut first).ok().map(|_| (s, first))
        })
        .expect("a transfer from b");
    assert!(ctl
        .ok(&format!("remove node {}", b.addr))
        .contains("draining"));
    let row = ctl
        .ok("show nodes")
        .lines()
        .find(|l| l.starts_with(&b.addr.to_string()))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(row.contains("removing"), "shown as removing: {row}");
    let json = ctl.ok("show nodes --json");
    assert!(
        json.contains(&format!(
            r#""addr":"{}","weight":1,"effective_weight":1,"backup":false,"maxconn":0,"admin":"drain","removing":true"#,
            b.addr
        )),
        "{json}"
    );
    let before = b.count();
    for _ in 0..5 {
        assert_eq!(fetch(addr).unwrap().trim(), "a");
    }
    assert_eq!(b.count(), before, "no new flows to a node being removed");
    // wait drained returns once the transfer ends (well before its 10 s timeout).
    let waiter = {
        let sock = ctl.sock.clone();
        let b_addr = b.addr;
        thread::spawn(move || Ctl { sock }.run(&format!("wait drained {b_addr} 10s")))
    };
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let mut got = first.to_vec();
    got.extend_from_slice(&rest);
    assert_eq!(
        sha256(&got),
        sha256(&pattern(5, N)),
        "in-flight transfer completes byte-exact"
    );
    drop(s);
    let (code, out, err) = waiter.join().unwrap();
    assert_eq!(code, 0, "wait drained: {out} {err}");
    assert!(out.contains("drained"), "{out}");
    assert!(eventually(Duration::from_secs(3), || !ctl
        .ok("show nodes")
        .contains(&b.addr.to_string())));
}

#[test]
fn wait_drained_times_out_while_a_flow_is_open() {
    let b = Backend::start(|mut s: TcpStream| {
        let mut buf = [0u8; 1];
        let _ = s.read(&mut buf);
    });
    let (_p, addr, ctl) = start(&[b.addr], "wait", &[]);
    let held = TcpStream::connect(addr).unwrap();
    assert!(eventually(Duration::from_secs(2), || node_field(
        &ctl, b.addr, "active"
    )
    .as_deref()
        == Some("1")));
    let t0 = Instant::now();
    let (code, _, err) = ctl.run(&format!("wait drained {} 300ms", b.addr));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("timeout"), "{err}");
    assert!(t0.elapsed() >= Duration::from_millis(300));
    held.shutdown(Shutdown::Both).unwrap();
    drop(held);
    let (code, out, err) = ctl.run(&format!("wait drained {} 5s", b.addr));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("drained"));
}

#[test]
fn refuses_to_start_on_a_non_socket_path() {
    let path = sock_path("file");
    std::fs::write(&path, "precious").unwrap();
    let out = Command::new(bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--backend",
            "127.0.0.1:1",
            "--control",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a socket"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn http_metrics_and_api() {
    let a = Backend::start(says("a"));
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    let (_p, addr, _ctl) = start(&[a.addr], "http", &["--http", &http]);
    fetch(addr).unwrap();
    let get = |path: &str| {
        let mut s = TcpStream::connect(&http).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let m = get("/metrics");
    assert!(m.starts_with("HTTP/1.1 200"), "{m}");
    assert!(
        m.contains("# TYPE fulcrum_connections_total counter"),
        "{m}"
    );
    let n = get("/api/v1/nodes");
    assert!(
        n.contains("application/json") && n.contains(&format!("\"addr\":\"{}\"", a.addr)),
        "{n}"
    );
    // The metric and the JSON API agree on the node's total.
    let body = &n[n.find("\r\n\r\n").unwrap() + 4..];
    let total = json_field(body, a.addr, "total").unwrap();
    assert!(total.parse::<u64>().unwrap() >= 1);
    let m = get("/metrics");
    assert!(
        m.contains(&format!(
            "fulcrum_node_connections_total{{service=\"default\",node=\"{}\"}} {total}",
            a.addr
        )),
        "{m}"
    );
    assert!(get("/").contains("<html"));
    assert!(get("/nope").starts_with("HTTP/1.1 404"));
    // No token file: read-only.
    let mut s = TcpStream::connect(&http).unwrap();
    write!(
        s,
        "POST /api/v1/command HTTP/1.1\r\nContent-Length: 7\r\n\r\ndisable"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert_eq!(fetch(addr).unwrap().trim(), "a", "still enabled");
}

#[test]
fn several_commands_on_one_connection_stay_in_step() {
    let a = Backend::start(says("a"));
    let (_p, _addr, ctl) = start(&[a.addr], "pipeline", &[]);
    let mut s = UnixStream::connect(&ctl.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Pipelined: every kind of reply, then a marker command whose reply must come last.
    s.write_all(b"show nodes\nshow stats\nshow config\nhelp\nbogus\nshow stats --json\n")
        .unwrap();
    let mut r = BufReader::new(s);
    let mut replies = Vec::new();
    let mut cur = String::new();
    while replies.len() < 6 {
        let mut l = String::new();
        assert!(r.read_line(&mut l).unwrap() > 0);
        if l == "\n" {
            replies.push(std::mem::take(&mut cur));
        } else {
            cur.push_str(&l);
        }
    }
    assert!(replies[0].starts_with("NODE"), "{replies:?}");
    assert!(replies[1].starts_with("uptime_s:"), "{replies:?}");
    assert!(replies[2].starts_with("mode: proxy"), "{replies:?}");
    assert!(replies[4].starts_with("error:"), "{replies:?}");
    assert!(replies[5].starts_with('{'), "{replies:?}");
}

/// A backend that holds each connection open until the client closes it.
fn hold(mut s: TcpStream) {
    let mut buf = [0u8; 1];
    let _ = s.read(&mut buf);
}

/// Regression (#14, item 3): `ctl`'s reply timeout (here 1 s) used to cut a longer
/// `wait drained` short with "cannot reach the distributor … (os error 11)" and exit 2.
#[test]
fn wait_drained_longer_than_ctl_timeout_gets_its_answer() {
    let b = Backend::start(hold);
    let (_p, addr, ctl) = start(&[b.addr], "waitlong", &["--check", "none"]);
    let _held = TcpStream::connect(addr).unwrap();
    assert!(eventually(Duration::from_secs(2), || node_field(
        &ctl, b.addr, "active"
    )
    .as_deref()
        == Some("1")));
    let t0 = Instant::now();
    let (code, out, err) = ctl.run(&format!("--timeout 1s wait drained {} 2500ms", b.addr));
    assert!(t0.elapsed() >= Duration::from_millis(2500), "{out}{err}");
    assert_eq!(code, 1, "the distributor's own timeout answer: {out}{err}");
    assert!(err.contains("timeout: node"), "{err}");
    assert!(!err.contains("cannot reach"), "{err}");
}

/// Regression (#14, item 3): a reply that does not come in time is reported as such,
/// not as an unreachable distributor.
#[test]
fn ctl_no_reply_is_not_reported_as_unreachable() {
    let path = sock_path("mute");
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let server = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        thread::sleep(Duration::from_secs(2));
        drop(s);
    });
    let (code, _, err) = Ctl { sock: path.clone() }.run("--timeout 300ms show nodes");
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no reply within 300ms"), "{err}");
    assert!(!err.contains("cannot reach"), "{err}");
    server.join().unwrap();
    let _ = std::fs::remove_file(&path);
}

/// Regression (#14, items 12 and 13): usage errors (2), refusals (1) and an unreachable
/// distributor (3) have distinct exit codes; a regular file is "not a socket".
#[test]
fn ctl_exit_codes_tell_usage_from_unreachable() {
    let a = Backend::start(says("a"));
    let (_p, _addr, ctl) = start(&[a.addr], "codes", &[]);
    // A bare number is not a duration: ctl's own usage error, before any connection.
    let (code, _, err) = ctl.run("--timeout 5 show nodes");
    assert_eq!(code, 2, "usage error: {err}");
    let (code, _, err) = ctl.run("");
    assert_eq!(code, 2, "no command: {err}");
    let (code, _, err) = ctl.run("set weight 127.0.0.1:1 3");
    assert_eq!(code, 1, "refused: {err}");
    let gone = Ctl {
        sock: sock_path("absent"),
    };
    let (code, _, err) = gone.run("show nodes");
    assert_eq!(code, 3, "unreachable: {err}");
    assert!(err.contains("cannot reach the distributor"), "{err}");
    let file = sock_path("regular");
    std::fs::write(&file, "x").unwrap();
    let (code, _, err) = Ctl { sock: file.clone() }.run("show nodes");
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("is not a socket"), "{err}");
    let _ = std::fs::remove_file(&file);
}

/// Regression (#14, item 4): `remove node X; wait drained X 5m && echo gone` never
/// printed `gone`: once X had left, `wait drained X` answered "no node X" and exit 1.
#[test]
fn wait_drained_after_remove_node_exits_0() {
    let a = Backend::start(says("a"));
    let b = Backend::start(says("b"));
    let (_p, _addr, ctl) = start(&[a.addr, b.addr], "gone", &["--check", "none"]);
    ctl.ok(&format!("remove node {}", b.addr));
    assert!(eventually(Duration::from_secs(3), || !ctl
        .ok("show nodes")
        .contains(&b.addr.to_string())));
    let (code, out, err) = ctl.run(&format!("wait drained {} 5s", b.addr));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("drained"), "{out}");
    // A node that never existed is still an error, worded like every other command's.
    let (code, _, err) = ctl.run("wait drained 127.0.0.1:1 1s");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no such node 127.0.0.1:1"), "{err}");
    let (_, _, err) = ctl.run("set weight 127.0.0.1:1 3");
    assert!(err.contains("no such node 127.0.0.1:1"), "{err}");
}

/// #14, item 16: `set state X ready` calls off a removal in progress.
#[test]
fn set_state_ready_cancels_a_removal() {
    let b = Backend::start(echo);
    let (_p, addr, ctl) = start(
        &[b.addr],
        "cancel",
        &["--check", "none", "--deadline", "1s"],
    );
    let mut held = TcpStream::connect(addr).unwrap();
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(eventually(Duration::from_secs(2), || node_field(
        &ctl, b.addr, "active"
    )
    .as_deref()
        == Some("1")));
    ctl.ok(&format!("remove node {}", b.addr));
    assert_eq!(
        node_field(&ctl, b.addr, "removing").as_deref(),
        Some("true")
    );
    let out = ctl.ok(&format!("set state {} ready", b.addr));
    assert!(out.contains("removal cancelled"), "{out}");
    // Past the removal deadline: still in the pool, ready, and the flow was not cut.
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        node_field(&ctl, b.addr, "removing").as_deref(),
        Some("false")
    );
    assert_eq!(node_field(&ctl, b.addr, "admin").as_deref(), Some("ready"));
    held.write_all(b"x").unwrap();
    let mut one = [0u8; 1];
    held.read_exact(&mut one).unwrap();
    assert_eq!(&one, b"x");
    assert_eq!(fetch_echo(addr), "y", "new flows go to it again");
}

fn fetch_echo(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"y").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Regression (#14, item 8): `show config` omitted the backends, --http, --control, the
/// check status and host, and gave every JSON value as a string.
#[test]
fn show_config_is_complete_and_typed() {
    let a = Backend::start(says("a"));
    let http = format!("127.0.0.1:{}", free_port());
    let (_p, addr, ctl) = start(
        &[a.addr],
        "config",
        &[
            "--http",
            &http,
            "--check-host",
            "svc.example",
            "--check-status",
            "200,204",
        ],
    );
    ctl.ok("add node 127.0.0.1:9 weight 3");
    let json = ctl.ok("show config --json");
    let sock = ctl.sock.display().to_string();
    for want in [
        "\"mode\":\"proxy\"".to_string(),
        format!("\"listen\":[\"{addr}\"]"),
        format!(
            "\"backends\":[{{\"addr\":\"{}\",\"weight\":1,\"backup\":false,\"maxconn\":0,\"agent\":false,\"admin\":\"ready\"}},\
             {{\"addr\":\"127.0.0.1:9\",\"weight\":3,",
            a.addr
        ),
        "\"workers\":2".into(),
        "\"enabled\":true".into(),
        "\"splice\":true".into(),
        "\"retries\":2".into(),
        "\"connect_timeout\":\"2s\"".into(),
        "\"check\":\"tcp\"".into(),
        "\"check_status\":\"200,204\"".into(),
        "\"check_host\":\"svc.example\"".into(),
        "\"agent_listen\":null".into(),
        format!("\"control\":\"{sock}\""),
        format!("\"http\":\"{http}\""),
        "\"http_token\":false".into(),
        "\"vip\":[]".into(),
    ] {
        assert!(json.contains(&want), "missing {want} in {json}");
    }
    let text = ctl.ok("show config");
    assert!(
        text.contains(&format!("backends: addr={},weight=1", a.addr)),
        "{text}"
    );
    assert!(text.contains(&format!("http: {http}")), "{text}");
    assert!(text.contains("check_host: svc.example"), "{text}");
}

/// Regression (#14, item 9): the table hid the agent's verdict and why a node gets no
/// traffic.
#[test]
fn show_nodes_table_says_why_a_node_is_not_eligible() {
    let a = Backend::start(says("a"));
    let b = Backend::start(says("b"));
    let (_p, _addr, ctl) = start(&[a.addr, b.addr], "note", &["--check", "none"]);
    ctl.ok(&format!("set state {} drain", b.addr));
    let table = ctl.ok("show nodes");
    let header = table.lines().next().unwrap();
    assert!(
        header.contains("AGENT") && header.contains("NOTE"),
        "{table}"
    );
    let row = |addr: SocketAddr| {
        table
            .lines()
            .find(|l| l.starts_with(&addr.to_string()))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(row(b.addr).contains("admin drain"), "{table}");
    assert!(!row(a.addr).contains("admin"), "{table}");
    assert_eq!(
        node_field(&ctl, b.addr, "not_eligible").as_deref(),
        Some("admin drain")
    );
}

/// Regression (#14, item 10): during a SIGTERM drain `show stats` and `/metrics` said
/// only `enabled: true`; they now give the life-cycle state and the version.
#[test]
fn stats_and_metrics_say_draining_during_sigterm_drain() {
    let b = Backend::start(hold);
    let http = format!("127.0.0.1:{}", free_port());
    let (p, addr, ctl) = start(
        &[b.addr],
        "drainstate",
        &["--http", &http, "--drain-timeout", "20s", "--check", "none"],
    );
    let get = |path: &str| {
        let mut s = TcpStream::connect(&http).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert!(ctl.ok("show stats").contains("state: serving"));
    let m = get("/metrics");
    assert!(m.contains("fulcrum_state{state=\"serving\"} 1"), "{m}");
    assert!(
        m.contains(&format!(
            "fulcrum_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "fulcrum_node_removing{{service=\"default\",node=\"{}\"}} 0",
            b.addr
        )),
        "{m}"
    );
    let _held = TcpStream::connect(addr).unwrap();
    assert!(eventually(Duration::from_secs(2), || node_field(
        &ctl, b.addr, "active"
    )
    .as_deref()
        == Some("1")));
    p.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        eventually(Duration::from_secs(3), || ctl
            .ok("show stats")
            .contains("state: draining")),
        "{}",
        ctl.ok("show stats")
    );
    assert!(ctl
        .ok("show stats --json")
        .contains("\"state\":\"draining\""));
    let m = get("/metrics");
    assert!(m.contains("fulcrum_state{state=\"draining\"} 1"), "{m}");
    assert!(m.contains("fulcrum_state{state=\"serving\"} 0"), "{m}");
}

/// A TCP connection to `to` from `from` (any 127.0.0.0/8 address works on loopback),
/// holding half a request head: the slowloris shape.
fn slow_client(from: std::net::IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.bind(&SocketAddr::new(from, 0).into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(2))?;
    let mut s: TcpStream = s.into();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")?;
    Ok(s)
}

/// Still connected and unanswered (no byte, no EOF yet).
fn still_open(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let open = matches!((&*s).read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    s.set_nonblocking(false).unwrap();
    open
}

/// `GET path` from 127.0.0.1: (time to the whole response, response).
fn timed_get(http: SocketAddr, path: &str) -> (Duration, String) {
    let t = Instant::now();
    let mut s = TcpStream::connect_timeout(&http, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    (t.elapsed(), out)
}

fn http_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// Issue #9: 300 half-sent HTTP requests used to lock `fulcrum ctl` and `/metrics` out.
#[test]
fn thousand_slow_http_clients_lock_out_neither_ctl_nor_metrics() {
    raise_nofile();
    let a = Backend::start(says("a"));
    let http = http_addr();
    let (_p, _addr, ctl) = start(&[a.addr], "slow1000", &["--http", &http.to_string()]);
    let t0 = Instant::now();
    // 25 per address from 127.0.0.2..=127.0.0.41: under the per-address cap (64).
    let slow: Vec<TcpStream> = (0..1000u32)
        .map(|i| {
            let from = std::net::IpAddr::from([127, 0, 0, 2 + (i % 40) as u8]);
            slow_client(from, http).expect("slow client")
        })
        .collect();
    let opened = t0.elapsed();
    let (mut worst_ctl, mut worst_metrics) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..3 {
        let t = Instant::now();
        let nodes = ctl.ok("show nodes");
        worst_ctl = worst_ctl.max(t.elapsed());
        assert!(nodes.starts_with("NODE"), "{nodes}");
        let (d, m) = timed_get(http, "/metrics");
        worst_metrics = worst_metrics.max(d);
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        assert!(m.contains("fulcrum_connections_total"), "{m}");
    }
    let held = slow.iter().filter(|s| still_open(s)).count();
    println!(
        "SLOW1000: 1000 slow clients connected in {} ms, then {} ms after the first: \
         ctl show nodes worst {} ms, GET /metrics worst {} ms, {held} slow clients still held",
        opened.as_millis(),
        t0.elapsed().as_millis(),
        worst_ctl.as_millis(),
        worst_metrics.as_millis()
    );
    assert!(held >= 990, "the load was not held: {held} of 1000 open");
    assert!(worst_ctl < Duration::from_secs(1), "ctl took {worst_ctl:?}");
    assert!(
        worst_metrics < Duration::from_secs(1),
        "/metrics took {worst_metrics:?}"
    );
    // They were accepted and held by fulcrum (not left in the backlog): each gets its
    // 408 at the head deadline.
    let timed_out = slow
        .into_iter()
        .filter(|s| {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut out = String::new();
            let _ = (&*s).read_to_string(&mut out);
            out.starts_with("HTTP/1.1 408")
        })
        .count();
    assert_eq!(timed_out, 1000);
}

#[test]
fn slow_http_client_is_closed_after_the_head_deadline() {
    let a = Backend::start(says("a"));
    let http = http_addr();
    let (_p, _addr, _ctl) = start(&[a.addr], "deadline", &["--http", &http.to_string()]);
    let t = Instant::now();
    let mut s = slow_client([127, 0, 0, 1].into(), http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let took = t.elapsed();
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    let limit = fulcrum::control::http::HEAD_TIMEOUT;
    assert!(
        took >= limit - Duration::from_millis(100) && took < limit + Duration::from_secs(1),
        "closed after {took:?}, deadline {limit:?}"
    );
}

#[test]
fn an_address_over_its_share_loses_its_own_oldest_connection() {
    let a = Backend::start(says("a"));
    let http = http_addr();
    let (_p, _addr, _ctl) = start(&[a.addr], "persource", &["--http", &http.to_string()]);
    let cap = fulcrum::control::http::MAX_PER_SOURCE;
    let me = std::net::IpAddr::from([127, 0, 0, 3]);
    let held: Vec<TcpStream> = (0..cap).map(|_| slow_client(me, http).unwrap()).collect();
    let other = slow_client([127, 0, 0, 4].into(), http).unwrap();
    thread::sleep(Duration::from_millis(200));
    assert!(held.iter().all(still_open), "evicted below the cap");
    // One more from the same address: its own oldest goes, nobody else's.
    let _newest = slow_client(me, http).unwrap();
    let first = &held[0];
    first
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut out = Vec::new();
    let n = (&*first).read_to_end(&mut out);
    assert!(
        matches!(n, Ok(0)) || n.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "oldest not closed: {out:?}"
    );
    assert!(held[1..].iter().all(still_open));
    assert!(still_open(&other));
}

#[test]
fn a_full_http_budget_evicts_the_oldest_to_admit_a_new_client() {
    raise_nofile();
    let a = Backend::start(says("a"));
    let http = http_addr();
    let (_p, _addr, _ctl) = start(&[a.addr], "budget", &["--http", &http.to_string()]);
    let budget = fulcrum::control::http::MAX_CONNS;
    let per = fulcrum::control::http::MAX_PER_SOURCE - 1;
    let slow: Vec<TcpStream> = (0..budget)
        .map(|i| {
            let from = std::net::IpAddr::from([127, 0, 1, 1 + (i / per) as u8]);
            let s = slow_client(from, http).unwrap();
            if i == 0 {
                // The first is clearly the oldest.
                thread::sleep(Duration::from_millis(50));
            }
            s
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    assert!(still_open(&slow[0]), "closed before the budget was full");
    // A fresh client from a new address is served, not refused.
    let (took, m) = timed_get(http, "/metrics");
    assert!(m.starts_with("HTTP/1.1 200"), "{m}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(!still_open(&slow[0]), "the oldest was not evicted");
    let open = slow[1..].iter().filter(|s| still_open(s)).count();
    assert!(open >= budget - 2, "only {open} still open");
}

#[test]
fn process_commands_are_refused_over_http() {
    let a = Backend::start(says("a"));
    let http = http_addr();
    let token = std::env::temp_dir().join(format!("fulcrum-token-{}", std::process::id()));
    std::fs::write(&token, "0123456789abcdef0123\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (mut p, addr, ctl) = start(
        &[a.addr],
        "nohttpstop",
        &[
            "--http",
            &http.to_string(),
            "--http-token-file",
            token.to_str().unwrap(),
        ],
    );
    for line in ["shutdown", "expose listeners"] {
        let mut s = TcpStream::connect(http).unwrap();
        write!(
            s,
            "POST /api/v1/command HTTP/1.1\r\nAuthorization: Bearer 0123456789abcdef0123\r\nContent-Length: {}\r\n\r\n{line}",
            line.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        assert!(
            out.contains("allowed on the Unix control socket only"),
            "{out}"
        );
    }
    assert_eq!(p.wait_exit(Duration::from_millis(300)), None, "it stopped");
    assert_eq!(fetch(addr).unwrap().trim(), "a");
    assert!(ctl.ok("show nodes").starts_with("NODE"));
    let _ = std::fs::remove_file(&token);
}
