//! End-to-end failover tests: two real `fulcrum serve` processes (lb1 priority 200,
//! lb2 priority 100) sharing a VIP in front of two real nginx backends, a client, and
//! for the forgery test an attacker — each in its own network namespace on one bridge
//! ([`common::netlab`]). Needs root; every lab is torn down by its guard, also on panic.
//!
//! Traffic stays inside the lab namespaces (10.99.0.0/24 exists only there). Every loop
//! is bounded in count and time. The tests take a global lock so that only one lab runs
//! at a time: the figures they measure are timing figures on a 2-core machine.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::bin;
use common::netlab::{enter_ns, wait_until, Lab, LabProc};
use fulcrum::wire::advert as wire;
use nix::sys::signal::Signal;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 100);
const HA_PORT: u16 = 5800;
const KEY: &str = "lab-shared-secret-0123456789abcdef";

static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The lab with nginx on srv1/srv2 and the key file written.
struct Pair {
    lab: Lab,
    key: String,
}

impl Pair {
    fn new(extra_hosts: &[(&str, u8)]) -> Pair {
        let mut hosts = vec![
            ("client", 10),
            ("lb1", 11),
            ("lb2", 12),
            ("srv1", 21),
            ("srv2", 22),
        ];
        hosts.extend_from_slice(extra_hosts);
        let mut lab = Lab::new(&hosts);
        lab.nginx("srv1");
        lab.nginx("srv2");
        let key = lab
            .write("ha.key", &format!("{KEY}\n"))
            .display()
            .to_string();
        Pair { lab, key }
    }

    /// Starts fulcrum on `lb` ("lb1" or "lb2") with the pair's flags plus `extra`.
    fn fulcrum(&mut self, lb: &str, extra: &[&str]) -> LabProc {
        self.fulcrum_vip(lb, &format!("{VIP}/24"), &format!("{VIP}:80"), extra)
    }

    /// [`Pair::fulcrum`] with another `--vip` and `--listen` (an IPv6 VIP).
    fn fulcrum_vip(&mut self, lb: &str, vip: &str, listen: &str, extra: &[&str]) -> LabProc {
        let (priority, peer) = match lb {
            "lb1" => ("200", "10.99.0.12"),
            _ => ("100", "10.99.0.11"),
        };
        let mut args = vec![
            "serve",
            "--listen",
            listen,
            "--backend",
            "10.99.0.21:80",
            "--backend",
            "10.99.0.22:80",
            "--workers",
            "1",
            "--vip",
            vip,
            "--interface",
            "eth0",
            "--peer",
            peer,
            "--ha-key-file",
            &self.key,
            "--priority",
            priority,
        ];
        args.extend_from_slice(extra);
        self.lab.spawn(lb, bin(), &args, &[("RUST_LOG", "info")])
    }

    fn holds_vip(&self, lb: &str) -> bool {
        self.lab.has_addr(lb, VIP)
    }

    /// Waits until `lb` alone holds the VIP.
    fn wait_sole_master(&self, lb: &str, limit: Duration) -> bool {
        let other = if lb == "lb1" { "lb2" } else { "lb1" };
        wait_until(limit, || self.holds_vip(lb) && !self.holds_vip(other))
    }
}

/// How many times the log shows a role change to `to`.
fn role_changes(log: &str, to: &str) -> usize {
    log.lines()
        .filter(|l| {
            l.contains("fulcrum::ha") && l.contains("role ") && l.contains(&format!("-> {to} "))
        })
        .count()
}

/// One HTTP request through the VIP; the body (the backend's name) on success.
fn request(timeout: Duration) -> Result<String, String> {
    request_to(SocketAddr::from((VIP, 80)), timeout)
}

/// [`request`] to any address (the IPv6 VIP).
fn request_to(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: vip\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    if !out.starts_with("HTTP/1.1 200") {
        return Err(format!("bad reply {out:?}"));
    }
    out.split("\r\n\r\n")
        .nth(1)
        .map(|b| b.trim().to_string())
        .ok_or_else(|| "no body".into())
}

#[derive(Debug, Clone)]
struct Sample {
    start: Instant,
    end: Instant,
    result: Result<String, String>,
}

/// A client in the lab's client namespace: one request every `period` for `total`.
fn client_loop(ns: String, total: Duration, period: Duration) -> thread::JoinHandle<Vec<Sample>> {
    client_loop_to(SocketAddr::from((VIP, 80)), ns, total, period)
}

/// [`client_loop`] to any address (the IPv6 VIP).
fn client_loop_to(
    addr: SocketAddr,
    ns: String,
    total: Duration,
    period: Duration,
) -> thread::JoinHandle<Vec<Sample>> {
    thread::spawn(move || {
        enter_ns(&ns);
        let begin = Instant::now();
        let mut out = Vec::new();
        // Bounded by time and by count.
        for i in 1..=10_000u32 {
            if begin.elapsed() >= total {
                break;
            }
            let start = Instant::now();
            let result = request_to(addr, Duration::from_millis(250));
            out.push(Sample {
                start,
                end: Instant::now(),
                result,
            });
            let next = begin + period * i;
            let now = Instant::now();
            if next > now {
                thread::sleep(next - now);
            }
        }
        out
    })
}

/// `n` requests from the client namespace, one after the other.
fn requests(ns: &str, n: usize) -> Vec<Result<String, String>> {
    let ns = ns.to_string();
    thread::spawn(move || {
        enter_ns(&ns);
        (0..n)
            .map(|_| request(Duration::from_millis(500)))
            .collect()
    })
    .join()
    .expect("client thread")
}

fn failures(samples: &[Sample]) -> usize {
    samples.iter().filter(|s| s.result.is_err()).count()
}

fn describe(samples: &[Sample], origin: Instant) -> String {
    samples
        .iter()
        .filter(|s| s.result.is_err())
        .take(40)
        .map(|s| {
            format!(
                "  +{:>5}ms {:?}\n",
                s.start.saturating_duration_since(origin).as_millis(),
                s.result
            )
        })
        .collect()
}

#[test]
fn primary_crash_fails_over_in_under_a_second() {
    let _one = serial();
    let mut pair = Pair::new(&[]);
    let lb1 = pair.fulcrum("lb1", &[]);
    let lb2 = pair.fulcrum("lb2", &[]);
    assert!(
        pair.wait_sole_master("lb1", Duration::from_secs(3)),
        "lb1 did not become master\nlb1:\n{}\nlb2:\n{}",
        lb1.log(),
        lb2.log()
    );
    let client = client_loop(
        pair.lab.ns("client"),
        Duration::from_secs(10),
        Duration::from_millis(20),
    );
    thread::sleep(Duration::from_secs(3));
    let killed_at = Instant::now();
    pair.lab.signal(&lb1, Signal::SIGKILL);
    let samples = client.join().expect("client");
    // Requests started after the kill: the first success marks the end of the gap.
    let after: Vec<&Sample> = samples.iter().filter(|s| s.start >= killed_at).collect();
    let first_ok = after
        .iter()
        .position(|s| s.result.is_ok())
        .unwrap_or_else(|| {
            panic!(
                "no request succeeded after the kill\n{}\nlb2:\n{}",
                describe(&samples, killed_at),
                lb2.log()
            )
        });
    let recovered = after[first_ok].end;
    let gap = recovered.saturating_duration_since(killed_at);
    let last_ok_before = samples
        .iter()
        .filter(|s| s.end <= killed_at && s.result.is_ok())
        .map(|s| s.end)
        .max()
        .unwrap_or(killed_at);
    let outage = recovered.saturating_duration_since(last_ok_before);
    let failed = failures(&samples);
    println!(
        "FAILOVER (fulcrum, advert 100ms, kill -9 primary): gap kill->first success = {} ms, \
         outage last success->first success = {} ms, {failed} of {} requests failed",
        gap.as_millis(),
        outage.as_millis(),
        samples.len()
    );
    assert!(
        gap < Duration::from_secs(1),
        "gap {gap:?} >= 1s\n{}\nlb2:\n{}",
        describe(&samples, killed_at),
        lb2.log()
    );
    // After recovery every request succeeds, and both backends serve.
    let later = &after[first_ok..];
    assert_eq!(
        failures(&later.iter().map(|s| (*s).clone()).collect::<Vec<_>>()),
        0,
        "failures after recovery:\n{}",
        describe(&samples, killed_at)
    );
    for name in ["srv1", "srv2"] {
        assert!(
            later.iter().any(|s| s.result.as_deref() == Ok(name)),
            "{name} never answered after the takeover"
        );
    }
    assert!(pair.holds_vip("lb2"));
    assert_eq!(role_changes(&lb2.log(), "master"), 1, "lb2:\n{}", lb2.log());
}

#[test]
fn primary_returns_with_preempt_and_takes_over_with_at_most_one_failure() {
    let _one = serial();
    let mut pair = Pair::new(&[]);
    let lb1 = pair.fulcrum("lb1", &[]);
    let lb2 = pair.fulcrum("lb2", &[]);
    assert!(
        pair.wait_sole_master("lb1", Duration::from_secs(3)),
        "lb1:\n{}",
        lb1.log()
    );
    pair.lab.signal(&lb1, Signal::SIGKILL);
    // lb1's namespace keeps the VIP (a crashed process cannot remove it): lb2 must
    // take over anyway, and the restarted lb1 must clean it up.
    assert!(
        wait_until(Duration::from_secs(3), || pair.holds_vip("lb2")),
        "lb2 did not take over:\n{}",
        lb2.log()
    );
    assert!(requests(&pair.lab.ns("client"), 5)
        .iter()
        .all(|r| r.is_ok()));
    let client = client_loop(
        pair.lab.ns("client"),
        Duration::from_secs(4),
        Duration::from_millis(20),
    );
    thread::sleep(Duration::from_secs(1));
    let restarted_at = Instant::now();
    let lb1 = pair.fulcrum("lb1", &["--preempt"]);
    let samples = client.join().expect("client");
    let failed = failures(&samples);
    println!(
        "PREEMPT (lb1 back, --preempt): {failed} of {} requests failed",
        samples.len()
    );
    assert!(
        failed <= 1,
        "{failed} failed requests\n{}\nlb1:\n{}\nlb2:\n{}",
        describe(&samples, restarted_at),
        lb1.log(),
        lb2.log()
    );
    assert!(
        pair.wait_sole_master("lb1", Duration::from_secs(2)),
        "lb1 did not take over again:\nlb1:\n{}\nlb2:\n{}",
        lb1.log(),
        lb2.log()
    );
    assert_eq!(role_changes(&lb1.log(), "master"), 1, "lb1:\n{}", lb1.log());
    assert_eq!(role_changes(&lb2.log(), "backup"), 2, "lb2:\n{}", lb2.log());
    assert!(
        lb1.log().contains("left on eth0 by a previous run"),
        "lb1:\n{}",
        lb1.log()
    );
    assert!(requests(&pair.lab.ns("client"), 5)
        .iter()
        .all(|r| r.is_ok()));
}

/// Runs `fulcrum ctl --socket PATH ARGS…` inside `host`.
fn ctl(lab: &Lab, host: &str, socket: &str, args: &[&str]) -> String {
    let mut all = vec!["ctl", "--socket", socket];
    all.extend_from_slice(args);
    lab.must(host, bin(), &all)
}

fn admin_of(nodes_json: &str, addr: &str) -> Option<String> {
    // A JSON array of objects with "addr" and "admin"; find the object for `addr`.
    let at = nodes_json
        .find(&format!("\"addr\":\"{addr}\""))
        .or_else(|| nodes_json.find(&format!("\"addr\": \"{addr}\"")))?;
    let rest = &nodes_json[at..];
    let end = rest.find('}').unwrap_or(rest.len());
    let obj = &rest[..end];
    let key = obj.find("\"admin\"")?;
    let v = obj[key + 7..].trim_start_matches([':', ' ']);
    let v = v.strip_prefix('"')?;
    Some(v[..v.find('"')?].to_string())
}

#[test]
fn drained_node_is_drained_on_the_backup_and_after_takeover() {
    let _one = serial();
    let mut pair = Pair::new(&[]);
    let s1 = pair.lab.dir.join("lb1.sock").display().to_string();
    let s2 = pair.lab.dir.join("lb2.sock").display().to_string();
    let lb1 = pair.fulcrum("lb1", &["--control", &s1]);
    let lb2 = pair.fulcrum("lb2", &["--control", &s2]);
    assert!(
        pair.wait_sole_master("lb1", Duration::from_secs(3)),
        "lb1:\n{}",
        lb1.log()
    );
    ctl(
        &pair.lab,
        "lb1",
        &s1,
        &["set", "state", "10.99.0.21:80", "drain"],
    );
    let synced = wait_until(Duration::from_secs(3), || {
        let json = ctl(&pair.lab, "lb2", &s2, &["show", "nodes", "--json"]);
        admin_of(&json, "10.99.0.21:80").as_deref() == Some("drain")
    });
    assert!(
        synced,
        "drain not synced to lb2: {}\nlb2:\n{}",
        ctl(&pair.lab, "lb2", &s2, &["show", "nodes", "--json"]),
        lb2.log()
    );
    pair.lab.signal(&lb1, Signal::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(3), || pair.holds_vip("lb2")),
        "lb2 did not take over:\n{}",
        lb2.log()
    );
    let replies = requests(&pair.lab.ns("client"), 20);
    assert!(
        replies.iter().all(|r| r.as_deref() == Ok("srv2")),
        "the drained node got flows after takeover: {replies:?}"
    );
}

/// A node's admin state in one service, from `show nodes --json`.
fn admin_in(nodes_json: &str, service: &str, addr: &str) -> Option<String> {
    let at = nodes_json.find(&format!("\"service\":\"{service}\",\"addr\":\"{addr}\""))?;
    admin_of(&nodes_json[at..], addr)
}

#[test]
fn two_services_sync_their_admin_changes_separately() {
    let _one = serial();
    let mut pair = Pair::new(&[]);
    // Both services list the same two nodes: a change must reach only its service.
    let file = |lb: &str, priority: &str, peer: &str, key: &str, sock: &str| {
        format!(
            "workers = 1\ncontrol = \"{sock}\"\nvip = [\"{VIP}/24\"]\ninterface = \"eth0\"\n\
             peer = [\"{peer}\"]\nha-key-file = \"{key}\"\npriority = {priority}\n\n\
             [[service]]\nname = \"web\"\nlisten = [\"{VIP}:80\"]\n\
             backend = [\"10.99.0.21:80\", \"10.99.0.22:80\"]\n\n\
             [[service]]\nname = \"api\"\nlisten = [\"{VIP}:81\"]\n\
             backend = [\"10.99.0.21:80\", \"10.99.0.22:80\"]\n# {lb}\n"
        )
    };
    let s1 = pair.lab.dir.join("lb1.sock").display().to_string();
    let s2 = pair.lab.dir.join("lb2.sock").display().to_string();
    let key = pair.key.clone();
    let c1 = pair
        .lab
        .write("lb1.toml", &file("lb1", "200", "10.99.0.12", &key, &s1))
        .display()
        .to_string();
    let c2 = pair
        .lab
        .write("lb2.toml", &file("lb2", "100", "10.99.0.11", &key, &s2))
        .display()
        .to_string();
    let env = [("RUST_LOG", "info")];
    let lb1 = pair
        .lab
        .spawn("lb1", bin(), &["serve", "--config", &c1], &env);
    let lb2 = pair
        .lab
        .spawn("lb2", bin(), &["serve", "--config", &c2], &env);
    assert!(
        pair.wait_sole_master("lb1", Duration::from_secs(3)),
        "lb1:\n{}",
        lb1.log()
    );
    ctl(
        &pair.lab,
        "lb1",
        &s1,
        &["set", "state", "web/10.99.0.21:80", "drain"],
    );
    ctl(
        &pair.lab,
        "lb1",
        &s1,
        &["set", "weight", "api/10.99.0.22:80", "7"],
    );
    let synced = wait_until(Duration::from_secs(3), || {
        let json = ctl(&pair.lab, "lb2", &s2, &["show", "nodes", "--json"]);
        admin_in(&json, "web", "10.99.0.21:80").as_deref() == Some("drain")
            && json.contains("\"service\":\"api\",\"addr\":\"10.99.0.22:80\",\"weight\":7")
    });
    let json = ctl(&pair.lab, "lb2", &s2, &["show", "nodes", "--json"]);
    assert!(synced, "not synced to lb2: {json}\nlb2:\n{}", lb2.log());
    // The other service's copy of each node is untouched.
    assert_eq!(
        admin_in(&json, "api", "10.99.0.21:80").as_deref(),
        Some("ready"),
        "{json}"
    );
    assert!(
        json.contains("\"service\":\"web\",\"addr\":\"10.99.0.22:80\",\"weight\":1"),
        "{json}"
    );
}

/// Reads real adverts that lb1 also sends to the attacker (a third `--peer`).
fn capture(ns: &str, want: usize) -> Vec<Vec<u8>> {
    let ns = ns.to_string();
    thread::spawn(move || {
        enter_ns(&ns);
        let sock = UdpSocket::bind(("10.99.0.30", HA_PORT)).expect("attacker bind");
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        let end = Instant::now() + Duration::from_secs(5);
        while out.len() < want && Instant::now() < end {
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                out.push(buf[..n].to_vec());
            }
        }
        out
    })
    .join()
    .expect("capture thread")
}

/// Datagrams an attacker without the key can make: wrong key, flipped MAC, garbage.
fn forgeries(lb1_node_id: u32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let base = wire::Advert {
        kind: wire::Kind::Advert,
        priority: 254,
        group_id: 1,
        advert_interval_cs: 10,
        node_id: 0x0a63_00fe,
        epoch: u64::MAX / 2,
        sequence: u64::MAX - 1,
        payload: &[],
    };
    for (advert, key) in [
        (base, &b"wrong-key-wrong-key-wrong"[..]),
        (
            wire::Advert {
                kind: wire::Kind::Resign,
                priority: 0,
                node_id: lb1_node_id,
                ..base
            },
            b"another-wrong-key-123",
        ),
        (
            wire::Advert {
                kind: wire::Kind::StateSync,
                payload: b"set state 10.99.0.22:80 maint\n",
                ..base
            },
            b"wrong-key-wrong-key-wrong",
        ),
    ] {
        let mut buf = Vec::new();
        wire::emit(&advert, key, &mut buf).unwrap();
        out.push(buf);
    }
    // Right format and sizes, MAC bytes flipped.
    let mut flipped = Vec::new();
    wire::emit(&base, KEY.as_bytes(), &mut flipped).unwrap();
    if let Some(b) = flipped.last_mut() {
        *b ^= 1;
    }
    out.push(flipped);
    out.push(vec![0u8; 66]);
    out.push(b"FLCH".to_vec());
    out
}

/// Sends every datagram to lb2 every 20 ms for `total` from the attacker namespace,
/// twice: from the attacker's own address, and with lb1's address forged as the source
/// (IP_TRANSPARENT lets a root socket send from an address that is not local), as
/// anyone on the segment can.
fn attack(ns: &str, datagrams: Vec<Vec<u8>>, total: Duration) -> usize {
    let ns = ns.to_string();
    thread::spawn(move || {
        enter_ns(&ns);
        let own = UdpSocket::bind(("10.99.0.30", 0)).expect("attacker socket");
        let spoofed = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .expect("attacker socket");
        spoofed.set_ip_transparent(true).expect("IP_TRANSPARENT");
        let lb1: SocketAddr = "10.99.0.11:0".parse().unwrap();
        spoofed.bind(&lb1.into()).expect("bind lb1's address");
        let spoofed = UdpSocket::from(spoofed);
        let end = Instant::now() + total;
        let mut sent = 0;
        for _ in 0..1000 {
            if Instant::now() >= end {
                break;
            }
            for d in &datagrams {
                for sock in [&own, &spoofed] {
                    if sock.send_to(d, ("10.99.0.12", HA_PORT)).is_ok() {
                        sent += 1;
                    }
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        sent
    })
    .join()
    .expect("attack thread")
}

/// Sum of the `class=N` counts in the refusal report lines of a log.
fn refused(log: &str, class: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("refused"))
        .filter_map(|l| {
            let at = l.find(class)? + class.len();
            let digits: String = l[at..].chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse::<u64>().ok()
        })
        .sum()
}

#[test]
fn forged_and_replayed_adverts_cannot_take_the_vip() {
    let _one = serial();
    let mut pair = Pair::new(&[("attacker", 30)]);
    let lb1 = pair.fulcrum("lb1", &["--peer", "10.99.0.30"]);
    let lb2 = pair.fulcrum("lb2", &[]);
    assert!(
        pair.wait_sole_master("lb1", Duration::from_secs(3)),
        "lb1:\n{}",
        lb1.log()
    );
    let attacker = pair.lab.ns("attacker");
    let captured = capture(&attacker, 20);
    assert!(
        captured.len() >= 10,
        "captured only {} adverts",
        captured.len()
    );
    let lb1_id = u32::from(Ipv4Addr::new(10, 99, 0, 11));
    for c in &captured {
        let a = wire::parse(c, KEY.as_bytes()).expect("captured adverts are genuine");
        assert_eq!((a.node_id, a.priority), (lb1_id, 200));
    }
    // Phase 1, lb1 alive: a forged resign or higher-priority advert must not make lb2
    // take over; replays of lb1's adverts are refused.
    let mut all = forgeries(lb1_id);
    all.extend(captured.iter().cloned());
    let sent = attack(&attacker, all.clone(), Duration::from_millis(1500));
    assert!(sent > 100);
    assert_eq!(role_changes(&lb2.log(), "master"), 0, "lb2:\n{}", lb2.log());
    assert!(pair.holds_vip("lb1") && !pair.holds_vip("lb2"));
    // Phase 2, lb1 dead, lb2 master: replaying lb1's priority-200 adverts would make
    // lb2 step down if they were accepted.
    pair.lab.signal(&lb1, Signal::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(3), || pair.holds_vip("lb2")),
        "lb2 did not take over:\n{}",
        lb2.log()
    );
    thread::sleep(Duration::from_millis(200));
    attack(&attacker, all, Duration::from_millis(1500));
    let log = lb2.log();
    assert_eq!(role_changes(&log, "master"), 1, "lb2:\n{log}");
    assert_eq!(role_changes(&log, "backup"), 1, "lb2 stepped down:\n{log}");
    assert!(pair.holds_vip("lb2"));
    assert!(
        refused(&log, "unknown_source=") > 0,
        "no stranger refused:\n{log}"
    );
    assert!(refused(&log, "replayed=") > 0, "no replay refused:\n{log}");
    assert!(refused(&log, "bad_mac=") > 0, "no forgery refused:\n{log}");
    assert!(requests(&pair.lab.ns("client"), 5)
        .iter()
        .all(|r| r.is_ok()));
}

#[test]
fn heartbeat_cut_then_healed_ends_with_one_master_and_clients_served() {
    let _one = serial();
    let mut pair = Pair::new(&[]);
    let lb1 = pair.fulcrum("lb1", &[]);
    let lb2 = pair.fulcrum("lb2", &[]);
    assert!(
        pair.wait_sole_master("lb1", Duration::from_secs(3)),
        "lb1:\n{}",
        lb1.log()
    );
    // Cut: lb2 stops hearing lb1's adverts (split brain: both become master).
    pair.lab
        .must("lb2", "nft", &["add", "table", "inet", "cut"]);
    pair.lab.must(
        "lb2",
        "nft",
        &[
            "add",
            "chain",
            "inet",
            "cut",
            "in",
            "{ type filter hook input priority 0 ; }",
        ],
    );
    pair.lab.must(
        "lb2",
        "nft",
        &[
            "add", "rule", "inet", "cut", "in", "udp", "dport", "5800", "drop",
        ],
    );
    assert!(
        wait_until(Duration::from_secs(3), || role_changes(
            &lb2.log(),
            "master"
        ) == 1),
        "lb2 did not become master with the heartbeat cut:\n{}",
        lb2.log()
    );
    // Heal: exactly one master (lb1, the higher priority) within a bound.
    let healed_at = Instant::now();
    pair.lab
        .must("lb2", "nft", &["delete", "table", "inet", "cut"]);
    assert!(
        pair.wait_sole_master("lb1", Duration::from_secs(2)),
        "not exactly one master after heal:\nlb1:\n{}\nlb2:\n{}",
        lb1.log(),
        lb2.log()
    );
    println!(
        "HEAL: one master again {} ms after the heartbeat link came back",
        healed_at.elapsed().as_millis()
    );
    thread::sleep(Duration::from_millis(600)); // the winner's gratuitous ARP train
    let replies = requests(&pair.lab.ns("client"), 20);
    assert!(replies.iter().all(|r| r.is_ok()), "after heal: {replies:?}");
    // The link itself goes down on lb2 and comes back: fault, then backup.
    pair.lab.must("lb2", "ip", &["link", "set", "eth0", "down"]);
    assert!(
        wait_until(Duration::from_secs(2), || role_changes(&lb2.log(), "fault")
            == 1),
        "lb2 did not notice its link going down:\n{}",
        lb2.log()
    );
    pair.lab.must("lb2", "ip", &["link", "set", "eth0", "up"]);
    assert!(
        wait_until(Duration::from_secs(2), || role_changes(
            &lb2.log(),
            "backup"
        ) == 3),
        "lb2 did not come back as backup:\n{}",
        lb2.log()
    );
    assert!(pair.wait_sole_master("lb1", Duration::from_secs(1)));
    let replies = requests(&pair.lab.ns("client"), 10);
    assert!(
        replies.iter().all(|r| r.is_ok()),
        "after link flap: {replies:?}"
    );
}

/// Counts of what a control-plane flood got answered.
#[derive(Debug, Default)]
struct Flood {
    metrics_ok: usize,
    ctl_ok: usize,
    slow_opened: usize,
}

/// Inside `ns` for `total`: GETs of /metrics back to back, `fulcrum ctl`-style reads
/// on the Unix socket back to back, and up to 1,000 slow HTTP clients (half a request,
/// from 40 loopback addresses) re-opened as fulcrum closes them. Bounded in count and
/// time; loopback of the lab namespace only.
fn flood(ns: &str, http: SocketAddr, sock: &str, total: Duration) -> Flood {
    use std::os::unix::net::UnixStream;
    let run = |f: Box<dyn FnOnce() -> usize + Send>| {
        let ns = ns.to_string();
        thread::spawn(move || {
            enter_ns(&ns);
            f()
        })
    };
    let end = Instant::now() + total;
    let metrics = run(Box::new(move || {
        let mut ok = 0;
        for _ in 0..1_000_000 {
            if Instant::now() >= end {
                break;
            }
            let Ok(mut s) = TcpStream::connect_timeout(&http, Duration::from_secs(1)) else {
                continue;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            ok += usize::from(out.starts_with("HTTP/1.1 200"));
        }
        ok
    }));
    let sock = sock.to_string();
    let ctl = run(Box::new(move || {
        let mut ok = 0;
        let Ok(s) = UnixStream::connect(&sock) else {
            return 0;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut w = s.try_clone().expect("clone");
        let mut r = std::io::BufReader::new(s);
        for i in 0..1_000_000 {
            if Instant::now() >= end {
                break;
            }
            let cmd: &[u8] = match i % 3 {
                0 => b"show nodes\n",
                1 => b"show stats --json\n",
                _ => b"show config\n",
            };
            if w.write_all(cmd).is_err() {
                break;
            }
            // One reply: lines up to an empty one.
            loop {
                let mut l = String::new();
                match std::io::BufRead::read_line(&mut r, &mut l) {
                    Ok(0) | Err(_) => return ok,
                    Ok(_) if l == "\n" => break,
                    Ok(_) => {}
                }
            }
            ok += 1;
        }
        ok
    }));
    let slow = run(Box::new(move || {
        let mut held: std::collections::VecDeque<TcpStream> = Default::default();
        let mut opened = 0;
        for i in 0..1_000_000u32 {
            if Instant::now() >= end {
                break;
            }
            if held.len() >= 1000 {
                held.pop_front();
            }
            let from = std::net::IpAddr::from([127, 0, 0, 2 + (i % 40) as u8]);
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            if s.bind(&SocketAddr::new(from, 0).into()).is_err()
                || s.connect_timeout(&http.into(), Duration::from_secs(1))
                    .is_err()
            {
                thread::sleep(Duration::from_millis(10));
                continue;
            }
            let mut s: TcpStream = s.into();
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
            held.push_back(s);
            opened += 1;
            if opened % 1000 == 0 {
                thread::sleep(Duration::from_millis(200));
            }
        }
        opened
    }));
    Flood {
        metrics_ok: metrics.join().expect("metrics thread"),
        ctl_ok: ctl.join().expect("ctl thread"),
        slow_opened: slow.join().expect("slow thread"),
    }
}

/// Issue #9: the control plane (one thread) also sends the failover adverts; no load
/// on the control socket or HTTP may delay them long enough for the backup to take over.
#[test]
fn control_plane_flood_on_the_master_never_lets_the_backup_take_over() {
    let _one = serial();
    let mut pair = Pair::new(&[]);
    let s1 = pair.lab.dir.join("lb1.sock").display().to_string();
    let http: SocketAddr = "127.0.0.1:9090".parse().unwrap();
    let lb1 = pair.fulcrum("lb1", &["--control", &s1, "--http", "127.0.0.1:9090"]);
    let lb2 = pair.fulcrum("lb2", &[]);
    assert!(
        pair.wait_sole_master("lb1", Duration::from_secs(3)),
        "lb1:\n{}",
        lb1.log()
    );
    let ns = pair.lab.ns("lb1");
    let total = Duration::from_secs(30);
    let load = {
        let s1 = s1.clone();
        thread::spawn(move || flood(&ns, http, &s1, total))
    };
    // Watch the VIP while the flood runs (bounded: the flood's length plus a margin).
    let begin = Instant::now();
    let mut lost = Vec::new();
    while !load.is_finished() && begin.elapsed() < total + Duration::from_secs(10) {
        if !pair.holds_vip("lb1") || pair.holds_vip("lb2") {
            lost.push(begin.elapsed().as_millis());
        }
        thread::sleep(Duration::from_millis(200));
    }
    let done = load.join().expect("flood");
    println!("FLOOD: {done:?} in {} ms", begin.elapsed().as_millis());
    assert!(
        lost.is_empty(),
        "lb1 was not sole master at +{lost:?} ms\nlb1:\n{}\nlb2:\n{}",
        lb1.log(),
        lb2.log()
    );
    assert_eq!(
        role_changes(&lb2.log(), "master"),
        0,
        "lb2 took over:\n{}",
        lb2.log()
    );
    // The flood was real.
    assert!(done.metrics_ok >= 300, "{done:?}");
    assert!(done.ctl_ok >= 300, "{done:?}");
    assert!(done.slow_opened >= 1000, "{done:?}");
    assert!(requests(&pair.lab.ns("client"), 5)
        .iter()
        .all(|r| r.is_ok()));
}

/// `fulcrum ctl` on `host` that may fail: (exit code, stdout + stderr).
fn ctl_may_fail(lab: &Lab, host: &str, socket: &str, args: &[&str]) -> (i32, String) {
    let mut all = vec!["ctl", "--socket", socket];
    all.extend_from_slice(args);
    let out = lab.exec(host, bin(), &all);
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn a_rollout_survives_a_failover_and_the_new_master_can_abort_it() {
    let _one = serial();
    let mut pair = Pair::new(&[]);
    let dir = pair.lab.dir.display().to_string();
    let s1 = pair.lab.dir.join("lb1.sock").display().to_string();
    let s2 = pair.lab.dir.join("lb2.sock").display().to_string();
    // A hook that takes a while: the rollout is mid-way when lb1 dies. It records its
    // run and its PID (the test ends it by PID).
    let hook = format!(
        "slow=echo $FULCRUM_NODE >> {dir}/runs.log; echo $$ > {dir}/hook.pid; exec sleep 8"
    );
    let extra = ["--hook", hook.as_str(), "--hook-timeout", "30s"];
    let lb1 = pair.fulcrum(
        "lb1",
        &[&["--control", s1.as_str()][..], &extra[..]].concat(),
    );
    let lb2 = pair.fulcrum(
        "lb2",
        &[&["--control", s2.as_str()][..], &extra[..]].concat(),
    );
    assert!(
        pair.wait_sole_master("lb1", Duration::from_secs(3)),
        "lb1:\n{}",
        lb1.log()
    );
    // Never on both: the backup refuses to start one.
    let (code, out) = ctl_may_fail(
        &pair.lab,
        "lb2",
        &s2,
        &["rollout", "start", "--hook", "slow"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not the failover master"), "{out}");

    ctl(
        &pair.lab,
        "lb1",
        &s1,
        &["rollout", "start", "--hook", "slow", "--min-ready", "1"],
    );
    // A maintenance window too, an hour ahead.
    ctl(
        &pair.lab,
        "lb1",
        &s1,
        &[
            "set",
            "state",
            "10.99.0.22:80",
            "maint",
            "at",
            "+1h",
            "for",
            "10m",
        ],
    );
    // The backup shows where the master's rollout stands.
    let shown = wait_until(Duration::from_secs(5), || {
        let st = ctl(&pair.lab, "lb2", &s2, &["rollout", "status"]);
        st.starts_with("rollout 1: running") && st.contains("10.99.0.21:80            running")
    });
    assert!(
        shown,
        "lb2: {}\nlb1: {}",
        ctl(&pair.lab, "lb2", &s2, &["rollout", "status"]),
        ctl(&pair.lab, "lb1", &s1, &["rollout", "status"])
    );

    pair.lab.signal(&lb1, Signal::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(3), || pair.holds_vip("lb2")),
        "lb2 did not take over:\n{}",
        lb2.log()
    );
    // The new master shows it interrupted, the node that was out in maint, the rest
    // untouched; it does not run the hook by itself.
    let taken = wait_until(Duration::from_secs(3), || {
        ctl(&pair.lab, "lb2", &s2, &["rollout", "status"]).starts_with("rollout 1: interrupted")
    });
    let st = ctl(&pair.lab, "lb2", &s2, &["rollout", "status"]);
    assert!(taken, "{st}\nlb2:\n{}", lb2.log());
    assert!(st.contains("lost the master role"), "{st}");
    assert!(st.contains("10.99.0.22:80            pending"), "{st}");
    // The window came over as well.
    let nodes = ctl(&pair.lab, "lb2", &s2, &["show", "nodes"]);
    assert!(nodes.contains("maint window in"), "{nodes}");
    let json = ctl(&pair.lab, "lb2", &s2, &["show", "nodes", "--json"]);
    assert_eq!(
        admin_of(&json, "10.99.0.21:80").as_deref(),
        Some("maint"),
        "{json}"
    );
    let replies = requests(&pair.lab.ns("client"), 10);
    assert!(
        replies.iter().all(|r| r.as_deref() == Ok("srv2")),
        "the node in maint got flows: {replies:?}"
    );
    // Abort works there, and ends it.
    ctl(&pair.lab, "lb2", &s2, &["rollout", "abort"]);
    assert!(
        wait_until(Duration::from_secs(3), || ctl(
            &pair.lab,
            "lb2",
            &s2,
            &["rollout", "status"]
        )
        .starts_with("rollout 1: aborted")),
        "{}",
        ctl(&pair.lab, "lb2", &s2, &["rollout", "status"])
    );
    // The hook ran once, on lb1, for the first node only.
    let runs = std::fs::read_to_string(pair.lab.dir.join("runs.log")).unwrap_or_default();
    assert_eq!(
        runs.lines().collect::<Vec<_>>(),
        vec!["10.99.0.21:80"],
        "{runs}"
    );
    if let Ok(pid) = std::fs::read_to_string(pair.lab.dir.join("hook.pid")) {
        if let Ok(pid) = pid.trim().parse::<i32>() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

const VIP6: &str = "fd99::100";

/// Proxy mode with an IPv6 VIP: the master holds `fd99::100/64` (added `nodad`); when it
/// crashes the backup adds it and announces it with unsolicited neighbour advertisements
/// (Override, to ff02::1), which move the client's neighbour entry at once: served
/// again within 1 s — without them the client would wait for neighbour unreachability
/// detection (5 s or more). A capture on the client shows the advertisement.
#[test]
fn ipv6_vip_primary_crash_backup_takes_over_with_unsolicited_na() {
    let _one = serial();
    let mut pair = Pair::new(&[]);
    for (h, last) in [("client", 10), ("lb1", 11), ("lb2", 12)] {
        pair.lab.enable_ipv6(h, &format!("fd99::{last}/64"));
    }
    let vip = format!("{VIP6}/64");
    let listen = format!("[{VIP6}]:80");
    let lb1 = pair.fulcrum_vip("lb1", &vip, &listen, &[]);
    let lb2 = pair.fulcrum_vip("lb2", &vip, &listen, &[]);
    let lab = &pair.lab;
    assert!(
        wait_until(Duration::from_secs(3), || lab.has_addr6("lb1", VIP6)
            && !lab.has_addr6("lb2", VIP6)),
        "lb1 did not take the IPv6 VIP\nlb1:\n{}\nlb2:\n{}",
        lb1.log(),
        lb2.log()
    );
    let addr: SocketAddr = listen.parse().unwrap();
    // The client resolves the VIP to lb1 and is served.
    let first = thread::spawn({
        let ns = lab.ns("client");
        move || {
            enter_ns(&ns);
            request_to(addr, Duration::from_secs(2))
        }
    })
    .join()
    .expect("client");
    assert!(first.is_ok(), "{first:?}\nlb1:\n{}", lb1.log());
    // Neighbour advertisements seen by the client (ICMPv6 type 136 right after the
    // fixed header).
    let dump = pair.lab.spawn(
        "client",
        "tcpdump",
        &[
            "-i",
            "eth0",
            "-nn",
            "-e",
            "-l",
            "--immediate-mode",
            "icmp6 and ip6[40] == 136",
        ],
        &[],
    );
    assert!(
        wait_until(Duration::from_secs(5), || dump
            .log()
            .contains("listening on")),
        "tcpdump: {}",
        dump.log()
    );
    let client = client_loop_to(
        addr,
        pair.lab.ns("client"),
        Duration::from_secs(6),
        Duration::from_millis(20),
    );
    thread::sleep(Duration::from_secs(2));
    let killed_at = Instant::now();
    pair.lab.signal(&lb1, Signal::SIGKILL);
    let samples = client.join().expect("client");
    let after: Vec<&Sample> = samples.iter().filter(|s| s.start >= killed_at).collect();
    let first_ok = after
        .iter()
        .position(|s| s.result.is_ok())
        .unwrap_or_else(|| {
            panic!(
                "no request succeeded after the kill\n{}\nlb2:\n{}",
                describe(&samples, killed_at),
                lb2.log()
            )
        });
    let gap = after[first_ok].end.saturating_duration_since(killed_at);
    println!(
        "FAILOVER IPv6 (proxy, kill -9 primary): kill->first success = {} ms",
        gap.as_millis()
    );
    assert!(
        gap < Duration::from_secs(1),
        "gap {gap:?} >= 1s\n{}\nlb2:\n{}",
        describe(&samples, killed_at),
        lb2.log()
    );
    assert!(pair.lab.has_addr6("lb2", VIP6), "lb2 holds the IPv6 VIP");
    pair.lab.signal(&dump, Signal::SIGINT);
    pair.lab.reap(dump.pid, Duration::from_secs(5));
    let lines: Vec<String> = dump
        .log()
        .lines()
        .filter(|l| l.contains("neighbor advertisement"))
        .map(str::to_string)
        .collect();
    // From lb2's MAC to the all-nodes group, for the VIP.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("02:99:00:00:00:0c > 33:33:00:00:00:01")
                && l.contains(&format!("{VIP6} > ff02::1"))
                && l.contains(&format!("tgt is {VIP6}"))),
        "no unsolicited NA from lb2 for the VIP: {lines:#?}\n{}",
        dump.log()
    );
    assert!(
        lb2.log().contains(&format!("vip={VIP6}/64 added")),
        "lb2:\n{}",
        lb2.log()
    );
}
