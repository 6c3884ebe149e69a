//! End-to-end tests of failure detection: active checks, passive failures, the node
//! agent, alerts. Real binary, real sockets on loopback.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A scratch directory removed on drop.
struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "fulcrum-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// HTTP handler: reads the request head, answers `status` with body `name\n`, closes.
fn http(name: &'static str, status: u16) -> impl Fn(TcpStream) + Send + Sync + 'static {
    move |mut s: TcpStream| {
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut head = Vec::new();
        let mut b = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut b) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&b[..n]),
            }
        }
        let body = format!("{name}\n");
        let _ = write!(
            s,
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}

fn get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.lines().last().unwrap_or_default().to_string())
}

/// Waits (3 s at most) for `needle` in the distributor's log.
fn wait_log(p: &Proc, needle: &str) {
    assert!(
        eventually(Duration::from_secs(3), || p.log().contains(needle)),
        "no {needle:?} in the log:\n{}",
        p.log()
    );
}

fn notify_lines(path: &PathBuf) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

const FAST: &[&str] = &[
    "--check-interval",
    "200ms",
    "--check-fast-interval",
    "100ms",
    "--check-down-interval",
    "200ms",
    "--check-timeout",
    "300ms",
    "--warn",
    "1",
    "--fall",
    "3",
    "--rise",
    "2",
    "--workers",
    "1",
];

#[test]
fn killed_backend_goes_down_with_alert_and_comes_back() {
    let dir = TempDir::new("notify");
    let out = dir.path("alerts");
    let a = Backend::start(says("a"));
    let b = Backend::start(says("b"));
    let b_addr = b.addr;
    let notify = format!(
        "echo \"$FULCRUM_EVENT|$FULCRUM_NODE|$FULCRUM_OLD_STATE|$FULCRUM_NEW_STATE|$FULCRUM_REASON\" >> {}",
        out.display()
    );
    let mut args = FAST.to_vec();
    args.extend(["--notify", notify.as_str()]);
    let (p, addr) = start_fulcrum(&[a.addr, b.addr], &args);
    assert_eq!(tally_names(addr, 10), (5, 5), "both serve at first");

    drop(b); // its listener closes within a few ms
    let killed = Instant::now();
    // (fall × interval) plus one interval, with fast re-probes in between: down well before.
    let bound = Duration::from_millis(3 * 200 + 200 + 300);
    assert!(
        eventually(Duration::from_secs(3), || notify_lines(&out)
            .iter()
            .any(|l| l.starts_with(&format!("health|{b_addr}|warning|down|")))),
        "no down alert; alerts: {:?}\nlog:\n{}",
        notify_lines(&out),
        p.log()
    );
    let took = killed.elapsed();
    assert!(
        took <= bound + Duration::from_millis(500),
        "down after {took:?} (bound {bound:?})"
    );
    let lines = notify_lines(&out);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("health|{b_addr}|up|warning|"))),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("consecutive failures")),
        "reason given: {lines:?}"
    );
    // No new flows go to it (a is the only one serving).
    assert_eq!(tally_names(addr, 10), (10, 0));

    // Restart it on the same port: back after `rise` successful checks.
    let b2 = Backend::start_on(b_addr, says("b"));
    assert!(
        eventually(Duration::from_secs(3), || notify_lines(&out)
            .iter()
            .any(|l| l.starts_with(&format!("health|{b_addr}|down|up|")))),
        "no up alert: {:?}",
        notify_lines(&out)
    );
    let before = b2.count();
    let (_, nb) = tally_names(addr, 10);
    assert!(nb >= 4, "restarted node gets traffic again ({nb} of 10)");
    assert!(b2.count() > before);
    drop(p);
}

/// Counts answers "a" and "b" over `n` requests.
fn tally_names(addr: SocketAddr, n: usize) -> (usize, usize) {
    let (mut a, mut b) = (0, 0);
    for _ in 0..n {
        match fetch(addr).unwrap().trim() {
            "a" => a += 1,
            "b" => b += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    (a, b)
}

#[test]
fn http_check_marks_500_node_down() {
    let good = Backend::start(http("good", 200));
    let bad = Backend::start(http("bad", 500));
    let mut args = FAST.to_vec();
    args.extend(["--check", "http:/health"]);
    let (p, addr) = start_fulcrum(&[good.addr, bad.addr], &args);
    let bad_addr = bad.addr.to_string();
    wait_log(&p, &format!("health {bad_addr}: warning -> down"));
    assert!(
        p.log().contains("bad status 500") || p.log().contains("status 500"),
        "{}",
        p.log()
    );
    for _ in 0..10 {
        assert_eq!(get(addr).unwrap(), "good");
    }
}

#[test]
fn distributor_starts_serving_at_once_with_an_unreachable_node() {
    // A listener whose accept queue is full and never drained: SYNs to it are dropped,
    // so connecting hangs (a black hole), unlike a closed port which refuses at once.
    let hole = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    hole.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    hole.listen(0).unwrap();
    let hole_addr: SocketAddr = hole.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&hole_addr.into());
        fillers.push(s);
    }
    let good = Backend::start(says("a"));
    let t0 = Instant::now();
    let (_p, addr) = start_fulcrum(
        &[hole_addr, good.addr],
        &["--connect-timeout", "300ms", "--workers", "1"],
    );
    let first = fetch(addr).unwrap();
    assert_eq!(first.trim(), "a");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "first answer after {:?}",
        t0.elapsed()
    );
    for _ in 0..10 {
        assert_eq!(fetch(addr).unwrap().trim(), "a");
    }
}

fn key_file(dir: &TempDir) -> PathBuf {
    let k = dir.path("agent.key");
    std::fs::write(&k, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&k, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    k
}

#[test]
fn agent_overload_skips_node_and_missing_heartbeats_take_it_down() {
    let dir = TempDir::new("agent");
    let key = key_file(&dir);
    let load = dir.path("loadavg");
    std::fs::write(&load, "0.10 0.10 0.10 1/100 1\n").unwrap();
    let a = Backend::start(says("a"));
    let b = Backend::start(says("b"));
    let agent_port = free_port();
    let agent_listen = format!("127.0.0.1:{agent_port}");
    let (p, addr) = start_fulcrum(
        &[],
        &[
            "--backend",
            &format!("{},agent", a.addr),
            "--backend",
            &b.addr.to_string(),
            "--agent-listen",
            &agent_listen,
            "--agent-key-file",
            key.to_str().unwrap(),
            "--agent-interval",
            "100ms",
            "--agent-misses",
            "3",
            "--workers",
            "1",
        ],
    );
    let mut agent = spawn(
        &[
            "agent",
            "--service",
            &a.addr.to_string(),
            "--distributor",
            &agent_listen,
            "--key-file",
            key.to_str().unwrap(),
            "--interval",
            "100ms",
            "--overload",
            "2.0",
            "--loadavg-file",
            load.to_str().unwrap(),
        ],
        "info",
    );
    let a_addr = a.addr.to_string();
    wait_log(&p, &format!("agent {a_addr}: none -> ready"));
    assert_eq!(tally_names(addr, 10), (5, 5));

    // Overloaded: skipped.
    std::fs::write(&load, "99.0 50.0 10.0 1/100 1\n").unwrap();
    wait_log(&p, &format!("agent {a_addr}: ready -> overloaded"));
    assert_eq!(tally_names(addr, 10), (0, 10));

    // Recovered: used again.
    std::fs::write(&load, "0.10 0.10 0.10 1/100 1\n").unwrap();
    wait_log(&p, &format!("agent {a_addr}: overloaded -> ready"));
    assert_eq!(tally_names(addr, 10), (5, 5));

    // The agent dies: heartbeats stop, the node goes out after misses × interval.
    agent.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = agent.wait_exit(Duration::from_secs(2));
    wait_log(&p, &format!("agent {a_addr}: ready -> missing"));
    assert_eq!(tally_names(addr, 10), (0, 10));
}

#[test]
fn forged_and_replayed_heartbeats_change_nothing() {
    use fulcrum::wire::heartbeat::{self as wire, AgentState, Heartbeat};
    let dir = TempDir::new("forge");
    let key = key_file(&dir);
    let a = Backend::start(says("a"));
    let b = Backend::start(says("b"));
    let agent_listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (p, addr) = start_fulcrum(
        &[],
        &[
            "--backend",
            &format!("{},agent", a.addr),
            "--backend",
            &b.addr.to_string(),
            "--agent-listen",
            &agent_listen.to_string(),
            "--agent-key-file",
            key.to_str().unwrap(),
            "--agent-interval",
            "200ms",
            "--agent-misses",
            "100",
            "--workers",
            "1",
        ],
    );
    let real_key = std::fs::read_to_string(&key).unwrap();
    let real_key = real_key.trim_end().as_bytes();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let hb = |state, seq| Heartbeat {
        node_id: a.addr.to_string(),
        state,
        sequence: seq,
        sent_at_ms: now_ms(),
        load_per_cpu_milli: 10,
        probe_rtt: None,
        weight_pct: None,
        report: None,
    };
    let mut buf = Vec::new();
    // A genuine "ready" first.
    wire::emit(&hb(AgentState::Ready, 10), real_key, &mut buf).unwrap();
    sock.send_to(&buf, agent_listen).unwrap();
    let a_addr = a.addr.to_string();
    wait_log(&p, &format!("agent {a_addr}: none -> ready"));
    let genuine = buf.clone();
    // Forged: wrong key, claims the node is down.
    wire::emit(
        &hb(AgentState::Down, 11),
        b"wrong-key-wrong-key-wrong-key!!",
        &mut buf,
    )
    .unwrap();
    for _ in 0..5 {
        sock.send_to(&buf, agent_listen).unwrap();
    }
    // Garbage and truncated datagrams.
    sock.send_to(b"not a heartbeat", agent_listen).unwrap();
    sock.send_to(&genuine[..genuine.len() / 2], agent_listen)
        .unwrap();
    // Replay of the genuine datagram.
    sock.send_to(&genuine, agent_listen).unwrap();
    // A genuine "down" that was captured, then replayed after a newer "ready".
    wire::emit(&hb(AgentState::Down, 12), real_key, &mut buf).unwrap();
    let old_down = buf.clone();
    wire::emit(&hb(AgentState::Ready, 13), real_key, &mut buf).unwrap();
    sock.send_to(&buf, agent_listen).unwrap();
    thread::sleep(Duration::from_millis(100));
    sock.send_to(&old_down, agent_listen).unwrap();
    thread::sleep(Duration::from_millis(300));
    assert!(p.log().contains("rejected heartbeat"), "{}", p.log());
    // Regression (#14, rejected heartbeat names the node): the log says which node the
    // forged datagram claimed to be from.
    assert!(
        p.log().contains(&format!("node={a_addr}(claimed)")),
        "{}",
        p.log()
    );
    assert!(
        !p.log().contains(&format!("agent {a_addr}: ready -> down")),
        "{}",
        p.log()
    );
    assert_eq!(tally_names(addr, 10), (5, 5), "node still in service");
}

#[test]
fn passive_failures_mark_a_refusing_node_before_the_next_probe() {
    let a = Backend::start(says("a"));
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // Probes far apart: only passive detection can mark it quickly.
    let (p, addr) = start_fulcrum(
        &[a.addr, dead],
        &[
            "--check-interval",
            "30s",
            "--check-down-interval",
            "30s",
            "--check-fast-interval",
            "30s",
            "--workers",
            "1",
        ],
    );
    for _ in 0..4 {
        assert_eq!(fetch(addr).unwrap().trim(), "a");
    }
    assert!(
        p.log().contains(&format!("health {dead}: up -> warning")),
        "{}",
        p.log()
    );
    assert!(
        p.log().contains("client connection refused"),
        "reason names passive detection and the cause: {}",
        p.log()
    );
}
