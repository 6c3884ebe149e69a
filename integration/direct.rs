//! End-to-end tests of direct-routing mode in network namespaces (needs root, as CI runs).
//!
//! Each test builds its own lab (`common::dr_lab`: client, lb1, lb2, srv1, srv2 on one
//! bridge, names unique to the run, always torn down), runs the real `fulcrum` binary on
//! lb1 (and lb2) and real nginx on the nodes, and never turns offloads off: the client's
//! frames reach the distributor with partial checksums, as on any veth/virtio host.
//! The tests run one at a time (one lock): they share two CPUs with everything else.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use common::dr_lab::{ip, ip6, mac, Lab, VIP, VIP6};
use fulcrum::direct::flow::FiveTuple;
use fulcrum::pool::{Node, NodeSpec};
use fulcrum::scheduler::Maglev;
use nix::sys::signal::Signal;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn vip_url() -> String {
    format!("http://{VIP}/")
}

/// Starts fulcrum in direct mode on `host` in front of srv1 and srv2 (port `port`) and
/// waits until the client reaches the VIP through it (`probe`), or until it has logged
/// its start-up line when there is nothing to probe.
fn start_direct(lab: &Lab, host: &str, port: u16, extra: &[&str]) -> usize {
    let listen = [format!("{VIP}:{port}")];
    let backends = [
        format!("{}:{port}", ip("srv1")),
        format!("{}:{port}", ip("srv2")),
    ];
    start_direct_on(lab, host, &listen, &backends, extra)
}

/// [`start_direct`] with any `--listen` list and `--backend` list.
fn start_direct_on(
    lab: &Lab,
    host: &str,
    listen: &[String],
    backends: &[String],
    extra: &[&str],
) -> usize {
    let mut args = vec!["serve", "--mode", "direct", "--interface", "eth0"];
    for l in listen {
        args.extend(["--listen", l.as_str()]);
    }
    for b in backends {
        args.extend(["--backend", b.as_str()]);
    }
    args.extend(["--drain-timeout", "1s"]);
    args.extend_from_slice(extra);
    let p = lab.fulcrum(host, &args);
    let ok = common::eventually(Duration::from_secs(5), || {
        lab.log(p).contains("fulcrum::serve] mode=direct")
    });
    assert!(ok, "fulcrum did not start: {}", lab.log(p));
    p
}

/// Stops fulcrum with SIGTERM and returns its log (with the final counters line).
fn stop(lab: &Lab, p: usize) -> String {
    lab.signal(p, Signal::SIGTERM);
    assert_eq!(
        lab.wait(p, Duration::from_secs(10)),
        Some(0),
        "clean exit: {}",
        lab.log(p)
    );
    lab.log(p)
}

/// `name=value` from fulcrum's final counters line.
fn counter(log: &str, name: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("fulcrum::direct] stopped:"))
        .flat_map(|l| l.split_whitespace())
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
        .unwrap_or(0)
}

/// The node Maglev (seed 0, srv1 and srv2 on `port`) gives the client's flow from `sport`.
fn maglev_owner(sport: u16, port: u16) -> &'static str {
    let nodes: Vec<Node> = ["srv1", "srv2"]
        .iter()
        .map(|h| {
            Node::new(NodeSpec {
                addr: format!("{}:{port}", ip(h)).parse().unwrap(),
                weight: 1,
                backup: false,
                maxconn: 0,
                agent: false,
            })
        })
        .collect();
    let mut m = Maglev::new(0);
    m.prepare(&nodes);
    let t = FiveTuple {
        src: ip("client").parse().unwrap(),
        dst: VIP.parse().unwrap(),
        sport,
        dport: port,
        proto: 6,
    };
    ["srv1", "srv2"][m.owner(m.slot(&t.key())).expect("an owner")]
}

#[test]
fn http_through_vip_reaches_both_nodes_and_replies_bypass_distributor() {
    let _g = serial();
    let lab = Lab::up("a");
    lab.nginx("srv1");
    lab.nginx("srv2");
    let lb = start_direct(&lab, "lb1", 80, &[]);
    // Replies come from the VIP (port 80): none may cross lb1; the client must see them
    // with a node's source MAC.
    let at_lb = lab.capture("lb1", &format!("tcp and src host {VIP} and src port 80"));
    let at_client = lab.capture("client", &format!("tcp and src host {VIP} and src port 80"));
    let mut seen: HashMap<String, usize> = HashMap::new();
    for i in 0..20u16 {
        let sport = 41000 + i;
        let body = lab
            .curl("client", &vip_url(), Some(sport))
            .unwrap_or_else(|| panic!("request {i} failed; fulcrum log:\n{}", lab.log(lb)));
        let name = body.trim().to_string();
        // Distribution follows the scheduler exactly: the flow's Maglev owner answers.
        assert_eq!(name, maglev_owner(sport, 80), "client port {sport}");
        *seen.entry(name).or_default() += 1;
    }
    assert!(
        seen.get("srv1").is_some_and(|&n| n > 0) && seen.get("srv2").is_some_and(|&n| n > 0),
        "both nodes answer: {seen:?}"
    );
    let lb_lines = lab.capture_lines(at_lb);
    let client_lines = lab.capture_lines(at_client);
    assert!(
        lb_lines.is_empty(),
        "replies crossed the distributor: {lb_lines:?}"
    );
    assert!(client_lines.len() >= 20 * 3, "{client_lines:?}");
    for l in &client_lines {
        assert!(
            l.starts_with_any(&[mac("srv1"), mac("srv2")]),
            "reply not straight from a node: {l}"
        );
    }
    let log = stop(&lab, lb);
    // veth delivers partial checksums: with PACKET_VNET_HDR they travel on in the
    // virtio-net header (offloaded), without it they are completed in userspace.
    assert!(
        counter(&log, "csum_offloaded") + counter(&log, "csum_completed") > 0,
        "partial checksums were passed on or completed: {log}"
    );
    assert_eq!(counter(&log, "flows_created"), 20, "{log}");
}

/// `Ip: InReceives` of `host`'s namespace: IPv4 packets that reached its IP stack.
fn ip_in_receives(lab: &Lab, host: &str) -> u64 {
    let out = lab.exec(host, &["cat", "/proc/net/snmp"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut ip = text.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (ip.next().unwrap_or(""), ip.next().unwrap_or(""));
    let at = names.split_whitespace().position(|n| n == "InReceives");
    at.and_then(|i| values.split_whitespace().nth(i)?.parse().ok())
        .unwrap_or_else(|| panic!("no Ip InReceives in {text}"))
}

/// The host sink: once the rings have copied the frames for the VIP, a tcx program drops
/// them before lb1's IP stack, which would only route each one to find it has nowhere
/// to go (the VIP is not local, forwarding is off). lb1's `InReceives` stays put while
/// hundreds of frames are forwarded; with `--host-sink off` every one of them reaches it.
#[test]
fn forwarded_frames_never_reach_the_distributors_ip_stack() {
    let _g = serial();
    let lab = Lab::up("sink");
    lab.nginx("srv1");
    lab.nginx("srv2");
    for on in [true, false] {
        let flag = if on { "on" } else { "off" };
        let lb = start_direct(&lab, "lb1", 80, &["--check", "none", "--host-sink", flag]);
        assert!(
            lab.curl("client", &vip_url(), None).is_some(),
            "{}",
            lab.log(lb)
        );
        let before = ip_in_receives(&lab, "lb1");
        for i in 0..50u16 {
            // A fresh port each round: the first round's are still in TIME_WAIT.
            lab.curl("client", &vip_url(), Some(42000 + 100 * u16::from(!on) + i))
                .unwrap_or_else(|| panic!("request {i} failed: {}", lab.log(lb)));
        }
        let seen = ip_in_receives(&lab, "lb1") - before;
        let log = stop(&lab, lb);
        let forwarded = counter(&log, "tx_packets");
        assert!(forwarded >= 50 * 4, "{log}");
        if on {
            assert!(
                seen < 10,
                "lb1's IP stack saw {seen} packets while {forwarded} frames were forwarded:\n{log}"
            );
        } else {
            assert!(
                seen >= forwarded * 9 / 10,
                "sink off: {seen} of {forwarded}:\n{log}"
            );
        }
        assert!(
            log.contains(&format!("host_sink={}", if on { "tcx" } else { "off" })),
            "{log}"
        );
    }
}

/// The kernel fast path (`--offload`, on by default): once a flow is established and has
/// sent a few packets through the ring, lb1 installs it and its kernel forwards the rest
/// of the flow's frames without waking the data plane. 300 echo round trips on one
/// connection, byte-exact: with the fast path lb1's ring forwards a handful of the
/// client's frames and the fast path the rest; without it, the ring forwards them all.
#[test]
fn established_flows_take_the_kernel_fast_path() {
    let _g = serial();
    let lab = Lab::up("fast");
    let _e1 = lab.echo("srv1", 9000);
    let _e2 = lab.echo("srv2", 9000);
    let addr: SocketAddr = format!("{VIP}:9000").parse().unwrap();
    for on in [true, false] {
        let flag = if on { "on" } else { "off" };
        let lb = start_direct(&lab, "lb1", 9000, &["--check", "none", "--offload", flag]);
        echo_300_round_trips(&lab, lb, addr);
        let log = stop(&lab, lb);
        let (ring, fast) = (counter(&log, "tx_packets"), counter(&log, "offload_frames"));
        assert!(
            log.contains(&format!("offload={}", if on { "tcx" } else { "off" })),
            "{log}"
        );
        if on {
            round_trips_took_the_fast_path(&log);
        } else {
            assert_eq!(fast, 0, "{log}");
            assert!(ring >= 300, "{log}");
        }
    }
}

/// Echo servers on both nodes' port 9000 and lb1 in front of them at [VIP6]:9000 (see
/// [`lb6_on_9000`]): the servers (to keep), lb1's PID and the VIP's address.
fn echo6_behind_vip(lab: &Lab, extra: &[&str]) -> ([common::dr_lab::Echo; 2], usize, SocketAddr) {
    let echoes = [lab.echo("srv1", 9000), lab.echo("srv2", 9000)];
    let (lb, addr) = lb6_on_9000(lab, extra);
    (echoes, lb, addr)
}

/// lb1 at [VIP6]:9000 in front of both nodes' port 9000, given by their IPv6 addresses:
/// its PID and the VIP's address.
fn lb6_on_9000(lab: &Lab, extra: &[&str]) -> (usize, SocketAddr) {
    let listen = [format!("[{VIP6}]:9000")];
    let backends = [
        format!("[{}]:9000", ip6("srv1")),
        format!("[{}]:9000", ip6("srv2")),
    ];
    let args = [&["--check", "none"], extra].concat();
    let lb = start_direct_on(lab, "lb1", &listen, &backends, &args);
    (lb, format!("[{VIP6}]:9000").parse().unwrap())
}

/// The same over IPv6 (its own map): 300 round trips to the IPv6 VIP, byte-exact, the
/// fast path carrying all but the first few of the client's frames; then, with a fresh
/// lb1, 64 MiB up and echoed back byte-exact, the upload's super-frames forwarded whole
/// by the fast path. (Two runs, because the bulk's ring share varies: the client's ACKs
/// of the echo still arriving after its FIN take the ring, as a closing flow's do.)
#[test]
fn established_ipv6_flows_take_the_kernel_fast_path_too() {
    let _g = serial();
    let lab = Lab::up6("fast6");
    let (_echoes, lb, addr) = echo6_behind_vip(&lab, &[]);
    echo_300_round_trips(&lab, lb, addr);
    round_trips_took_the_fast_path(&stop(&lab, lb));
    let (lb, _) = lb6_on_9000(&lab, &[]);
    let (_, bulk) = bulk_echo_from_client(&lab, addr);
    let log = stop(&lab, lb);
    assert_eq!(
        bulk, BULK,
        "64 MiB echoed byte-exact over the fast path: {log}"
    );
    bulk_took_the_fast_path(&log, 1);
}

/// From lb1's final log after [`echo_300_round_trips`]: the flow was installed once, the
/// ring forwarded a handful of the client's frames and the fast path the rest.
fn round_trips_took_the_fast_path(log: &str) {
    let (ring, fast) = (counter(log, "tx_packets"), counter(log, "offload_frames"));
    assert_eq!(counter(log, "offload_installs"), 1, "{log}");
    assert!(
        fast >= 250,
        "fast path forwarded {fast}, ring {ring}:\n{log}"
    );
    assert!(ring < 40, "ring forwarded {ring}, fast path {fast}:\n{log}");
}

/// 300 one-byte echo round trips on one connection to `addr` through lb1 (`lb`),
/// back to back, all echoed byte-exact by one of the nodes.
fn echo_300_round_trips(lab: &Lab, lb: usize, addr: SocketAddr) {
    let client = lab.in_ns("client", move || round_trips(addr, 300, Duration::ZERO));
    let (name, sent, got, _) = client.join().expect("client thread");
    assert!(name == "srv1" || name == "srv2", "{name}: {}", lab.log(lb));
    assert_eq!(got.len(), 300, "{}", lab.log(lb));
    assert_eq!(got, sent, "byte-exact");
}

/// From lb1's final log: `installs` flows were installed, and the fast path forwarded
/// at least 60 MiB in frames far larger than a segment (super-frames passed on whole).
fn bulk_took_the_fast_path(log: &str, installs: u64) {
    let (frames, bytes) = (
        counter(log, "offload_frames"),
        counter(log, "offload_bytes"),
    );
    assert_eq!(counter(log, "offload_installs"), installs, "{log}");
    assert!(
        bytes >= 60 << 20,
        "fast path forwarded {bytes} bytes: {log}"
    );
    assert!(
        bytes / frames.max(1) > 3000,
        "{frames} frames for {bytes} bytes: not super-frames: {log}"
    );
}

/// An installed flow's packets no longer pass the flow table, so at its idle timeout
/// the table asks the fast path when the flow last passed, and keeps it while it is
/// busy. Round-robin cannot find a forgotten flow's node again (Maglev could), so a flow
/// wrongly dropped from the table would be cut at its next packet: a connection busy for
/// three idle timeouts must come through whole.
#[test]
fn busy_installed_flow_outlives_the_idle_timeout() {
    let _g = serial();
    let lab = Lab::up("idle");
    let _e1 = lab.echo("srv1", 9000);
    let _e2 = lab.echo("srv2", 9000);
    let addr: SocketAddr = format!("{VIP}:9000").parse().unwrap();
    let lb = start_direct(
        &lab,
        "lb1",
        9000,
        &[
            "--check",
            "none",
            "--scheduler",
            "rr",
            "--idle-timeout",
            "2s",
        ],
    );
    let client = lab.in_ns("client", move || {
        round_trips(addr, 60, Duration::from_millis(100))
    });
    let (_, sent, got, _) = client.join().expect("client thread");
    assert_eq!(
        got.len(),
        60,
        "cut after {} bytes: {}",
        got.len(),
        lab.log(lb)
    );
    assert_eq!(got, sent, "byte-exact");
    let log = stop(&lab, lb);
    assert_eq!(counter(&log, "offload_installs"), 1, "{log}");
    assert!(counter(&log, "offload_frames") >= 40, "{log}");
    assert_eq!(counter(&log, "drop_no_flow"), 0, "{log}");
}

trait StartsWithAny {
    fn starts_with_any(&self, p: &[&str]) -> bool;
}
impl StartsWithAny for String {
    /// tcpdump -e lines: "HH:MM:SS.us SRC_MAC > DST_MAC, ..."
    fn starts_with_any(&self, p: &[&str]) -> bool {
        let src = self.split_whitespace().nth(1).unwrap_or("");
        p.contains(&src)
    }
}

#[test]
fn round_robin_alternates_and_killed_node_stops_receiving_new_flows() {
    let _g = serial();
    let lab = Lab::up("b");
    lab.nginx("srv1");
    let srv2 = lab.nginx("srv2");
    let lb = start_direct(
        &lab,
        "lb1",
        80,
        &[
            "--scheduler",
            "rr",
            "--check",
            "tcp",
            "--check-interval",
            "200ms",
            "--check-fast-interval",
            "100ms",
            "--check-timeout",
            "200ms",
            "--warn",
            "1",
            "--fall",
            "2",
            "--rise",
            "2",
        ],
    );
    let names: Vec<String> = (0..10)
        .map(|i| {
            lab.curl("client", &vip_url(), None)
                .unwrap_or_else(|| panic!("request {i}: {}", lab.log(lb)))
                .trim()
                .to_string()
        })
        .collect();
    let srv1 = names.iter().filter(|n| *n == "srv1").count();
    assert_eq!(srv1, 5, "round-robin over flows: {names:?}");
    for w in names.windows(2) {
        assert_ne!(w[0], w[1], "alternates: {names:?}");
    }
    // Kill srv2's nginx: its kernel resets new connections until health takes it out.
    lab.kill(srv2);
    let killed = Instant::now();
    // The first failed check makes it "warning" (--warn 1): skipped for new flows.
    let detected = common::eventually(Duration::from_secs(5), || {
        lab.log(lb).contains("health 10.99.0.22:80: up -> ")
    });
    let detect_time = killed.elapsed();
    assert!(detected, "health did not mark srv2 down: {}", lab.log(lb));
    // Within (fall × fast interval) + timeout + one interval; generous for a busy CI.
    assert!(detect_time < Duration::from_secs(3), "{detect_time:?}");
    for i in 0..10 {
        let body = lab.curl("client", &vip_url(), None);
        assert_eq!(
            body.as_deref(),
            Some("srv1\n"),
            "request {i} after detection; log:\n{}",
            lab.log(lb)
        );
    }
    stop(&lab, lb);
}

/// Reads the greeting line, then sends one byte every 100 ms and expects it echoed.
/// Returns (node name, bytes sent, bytes echoed, longest stall).
fn long_lived(n: u16) -> (String, Vec<u8>, Vec<u8>, Duration) {
    long_lived_to(format!("{VIP}:9000").parse().unwrap(), n)
}

/// [`long_lived`] to any address (the IPv6 VIP).
fn long_lived_to(addr: SocketAddr, n: u16) -> (String, Vec<u8>, Vec<u8>, Duration) {
    round_trips(addr, n, Duration::from_millis(100))
}

/// `n` one-byte echo round trips on one connection to `addr`, `pause` apart: the node's
/// name, the bytes sent, the bytes echoed, the longest round trip.
fn round_trips(addr: SocketAddr, n: u16, pause: Duration) -> (String, Vec<u8>, Vec<u8>, Duration) {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut name = String::new();
    r.read_line(&mut name).expect("greeting");
    let mut w = s;
    let (mut sent, mut got) = (Vec::new(), Vec::new());
    let mut stall = Duration::ZERO;
    for i in 0..n {
        let b = (i as u8).wrapping_mul(37).wrapping_add(11);
        let t = Instant::now();
        w.write_all(&[b]).expect("write");
        sent.push(b);
        let mut one = [0u8; 1];
        if r.read_exact(&mut one).is_err() {
            break;
        }
        got.push(one[0]);
        stall = stall.max(t.elapsed());
        thread::sleep(pause);
    }
    (name.trim().to_string(), sent, got, stall)
}

#[test]
fn maglev_long_lived_connection_survives_failover_to_second_distributor() {
    failover_survives(&[]);
}

/// The same with two data-plane workers on each distributor: the flow is on one worker
/// of lb1 and, after the takeover, on one worker of lb2, whose Maglev tables agree.
#[test]
fn maglev_long_lived_connection_survives_failover_with_two_workers() {
    failover_survives(&["--workers", "2"]);
}

fn failover_survives(extra: &[&str]) {
    let _g = serial();
    let lab = Lab::up("c");
    let _e1 = lab.echo("srv1", 9000);
    let _e2 = lab.echo("srv2", 9000);
    // A real primary/backup pair: same node set, same Maglev seed, authenticated adverts
    // every 100 ms; only the master answers ARP for the VIP.
    let key = std::env::temp_dir().join(format!("fulcrum-dr-ha-{}.key", std::process::id()));
    std::fs::write(&key, "direct-failover-test-key-0123456789\n").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let key_s = key.to_str().unwrap().to_string();
    let vip = format!("{VIP}/24");
    let ha = |prio: &'static str, peer: &'static str| -> Vec<String> {
        [
            "--check",
            "none",
            "--vip",
            &vip,
            "--peer",
            ip(peer),
            "--priority",
            prio,
            "--ha-key-file",
            &key_s,
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
    };
    let a1 = ha("200", "lb2");
    let a2 = ha("100", "lb1");
    let lb1 = start_direct(
        &lab,
        "lb1",
        9000,
        &a1.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let lb2 = start_direct(
        &lab,
        "lb2",
        9000,
        &a2.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(
        common::eventually(Duration::from_secs(5), || lab
            .log(lb1)
            .contains("-> master")),
        "lb1 became master: {}",
        lab.log(lb1)
    );
    let client = lab.in_ns("client", || long_lived(60));
    // The first SYN may wait for lb1 to resolve the nodes (one retransmission): give the
    // connection time to be established and carry bytes before the crash.
    thread::sleep(Duration::from_secs(3));
    // lb1 crashes (SIGKILL: no resign). lb2 notices the missing adverts, takes over (answers
    // ARP for the VIP, gratuitous ARPs) and, with the same Maglev table, sends the flow's
    // packets to the same node: the connection survives.
    lab.kill(lb1);
    let (name, sent, got, stall) = client.join().expect("client thread");
    assert!(name == "srv1" || name == "srv2", "{name}");
    assert_eq!(
        got.len(),
        sent.len(),
        "connection broke after {} bytes; lb2:\n{}",
        got.len(),
        lab.log(lb2)
    );
    assert_eq!(got, sent, "byte-exact");
    assert_eq!(sent.len(), 60);
    eprintln!("failover stall: {stall:?} (node {name})");
    assert!(stall < Duration::from_secs(3), "{stall:?}");
    let log = stop(&lab, lb2);
    let _ = std::fs::remove_file(&key);
    assert!(
        log.contains("backup -> master"),
        "lb2 took over by election: {log}"
    );
    // Through its ring, then (once established there) its kernel fast path.
    assert!(
        counter(&log, "tx_packets") + counter(&log, "offload_frames") > 10,
        "lb2 carried the flow: {log}"
    );
}

/// A byte stream no two positions of which repeat with a short period (xorshift64*),
/// so a dropped, duplicated or reordered segment cannot go unnoticed.
struct Stream(u64);

impl Stream {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// `name=value` from a worker's own final line (`worker N stopped: …`).
fn worker_counter(log: &str, worker: usize, name: &str) -> u64 {
    let head = format!("fulcrum::direct] worker {worker} stopped:");
    log.lines()
        .filter(|l| l.contains(&head))
        .flat_map(|l| l.split_whitespace())
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
        .unwrap_or(0)
}

/// 64 MiB up through the distributor and the same 64 MiB echoed down (straight from the
/// node), every offload at the kernel's default, through the ring alone (`--offload
/// off`): the client's TSO super-frames must be forwarded whole (PACKET_VNET_HDR) and
/// arrive byte-exact.
#[test]
fn sixty_four_mib_up_and_down_byte_exact_with_offloads_on() {
    let log = sixty_four_mib(&["--offload", "off"]);
    assert_eq!(counter(&log, "offload_installs"), 0, "{log}");
    assert!(
        counter(&log, "super_frames") > 100,
        "TSO super-frames were forwarded whole: {log}"
    );
}

/// The same through the TPACKET_V3 block ring (`--ring blocks`).
#[test]
fn sixty_four_mib_up_and_down_byte_exact_through_block_ring() {
    let log = sixty_four_mib(&["--ring", "blocks", "--offload", "off"]);
    assert!(counter(&log, "super_frames") > 100, "{log}");
}

/// The same through the kernel fast path (the default): the upload is installed after
/// its first packets and the rest of its 64 MiB is forwarded by the classifier, whose
/// frames are super-frames passed on whole (on average far above one segment).
#[test]
fn sixty_four_mib_up_and_down_byte_exact_through_the_kernel_fast_path() {
    bulk_took_the_fast_path(&sixty_four_mib(&[]), 1);
}

/// Sends 64 MiB up and checks the echo byte for byte; returns lb1's log.
fn sixty_four_mib(extra: &[&str]) -> String {
    const TOTAL: usize = 64 << 20;
    let _g = serial();
    let lab = Lab::up("u");
    let _e1 = lab.echo("srv1", 9000);
    let _e2 = lab.echo("srv2", 9000);
    let lb = start_direct(&lab, "lb1", 9000, extra);
    let layout = if extra.contains(&"blocks") {
        "ring=Blocks"
    } else {
        "ring=Slots"
    };
    assert!(lab.log(lb).contains(layout), "{layout}: {}", lab.log(lb));
    let client = lab.in_ns("client", || {
        let addr: SocketAddr = format!("{VIP}:9000").parse().unwrap();
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut name = String::new();
        r.read_line(&mut name).expect("greeting");
        let mut w = s.try_clone().unwrap();
        let writer = thread::spawn(move || {
            let mut src = Stream(0x9e37_79b9_7f4a_7c15);
            let mut buf = vec![0u8; 64 << 10];
            let mut sent = 0;
            while sent < TOTAL {
                src.fill(&mut buf);
                w.write_all(&buf).expect("upload");
                sent += buf.len();
            }
            w.shutdown(std::net::Shutdown::Write).expect("half-close");
            sent
        });
        let mut want = Stream(0x9e37_79b9_7f4a_7c15);
        let (mut got, mut exp) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
        let mut matched = 0usize;
        loop {
            // Compare in whole chunks of the generator's output.
            let n = match r.read(&mut got[..]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => panic!("download after {matched} bytes: {e}"),
            };
            let mut off = 0;
            while off < n {
                let k = (n - off).min(exp.len() - (matched % exp.len()));
                if matched % exp.len() == 0 {
                    want.fill(&mut exp);
                }
                let at = matched % exp.len();
                assert!(
                    got[off..off + k] == exp[at..at + k],
                    "byte mismatch in [{matched}, {})",
                    matched + k
                );
                matched += k;
                off += k;
            }
        }
        (
            name.trim().to_string(),
            writer.join().expect("writer"),
            matched,
        )
    });
    let (name, sent, echoed) = client.join().expect("client thread");
    assert!(name == "srv1" || name == "srv2", "{name}");
    assert_eq!(sent, TOTAL);
    assert_eq!(echoed, TOTAL, "the node echoed every byte back");
    let log = stop(&lab, lb);
    assert_eq!(counter(&log, "drop_oversize"), 0, "{log}");
    assert_eq!(counter(&log, "drop_gso_unsupported"), 0, "{log}");
    assert_eq!(counter(&log, "drop_send_failed"), 0, "{log}");
    log
}

/// Two workers: 200 flows spread over both (each worker's own counters), and every
/// packet of a flow on the worker that saw its SYN — with round-robin (no stateless
/// fallback), a packet on the other worker would be dropped `no_flow` and its
/// connection would fail.
#[test]
fn two_workers_share_200_flows_each_flow_on_one_worker() {
    let _g = serial();
    let lab = Lab::up("w");
    let _e1 = lab.echo("srv1", 9000);
    let _e2 = lab.echo("srv2", 9000);
    let lb = start_direct(
        &lab,
        "lb1",
        9000,
        &[
            "--workers",
            "2",
            "--scheduler",
            "rr",
            "--http",
            "127.0.0.1:9100",
        ],
    );
    let client = lab.in_ns("client", || {
        let addr: SocketAddr = format!("{VIP}:9000").parse().unwrap();
        let mut failed = Vec::new();
        // 10 at a time, so flows overlap on both workers.
        for round in 0..20 {
            let conns: Vec<thread::JoinHandle<Result<(), String>>> = (0..10)
                .map(|i| {
                    thread::spawn(move || {
                        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                            .map_err(|e| format!("connect: {e}"))?;
                        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let mut r = BufReader::new(s.try_clone().unwrap());
                        let mut name = String::new();
                        r.read_line(&mut name)
                            .map_err(|e| format!("greeting: {e}"))?;
                        let mut w = s;
                        // Several segments per flow, each echoed.
                        for k in 0..5u8 {
                            let b = [round as u8, i as u8, k];
                            w.write_all(&b).map_err(|e| format!("write: {e}"))?;
                            let mut back = [0u8; 3];
                            r.read_exact(&mut back).map_err(|e| format!("echo: {e}"))?;
                            if back != b {
                                return Err(format!("echo {back:?} != {b:?}"));
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            for c in conns {
                if let Err(e) = c.join().expect("conn thread") {
                    failed.push(e);
                }
            }
        }
        failed
    });
    let failed = client.join().expect("client thread");
    assert!(
        failed.is_empty(),
        "{} failed: {failed:?}: {}",
        failed.len(),
        lab.log(lb)
    );
    // The per-worker counters reach /metrics (labelled by worker).
    let metrics = lab
        .in_ns("lb1", || {
            let mut s = TcpStream::connect("127.0.0.1:9100").expect("metrics");
            write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
        .join()
        .expect("metrics thread");
    for w in ["0", "1"] {
        let head = format!("fulcrum_direct_worker_syns_total{{worker=\"{w}\"}} ");
        let n: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&head)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{head}: {metrics}"));
        assert!(n > 0, "worker {w} opened flows: {metrics}");
    }
    assert!(
        metrics.contains("fulcrum_direct_send_batches_total "),
        "{metrics}"
    );
    let log = stop(&lab, lb);
    let syns: Vec<u64> = (0..2)
        .map(|w| worker_counter(&log, w, "worker_syns"))
        .collect();
    assert!(
        syns[0] > 0 && syns[1] > 0,
        "both workers opened flows: {syns:?}\n{log}"
    );
    assert!(syns[0] + syns[1] >= 200, "{syns:?}\n{log}");
    assert_eq!(counter(&log, "flows_created"), 200, "{log}");
    assert_eq!(
        counter(&log, "drop_no_flow"),
        0,
        "no packet reached the other worker: {log}"
    );
    let per_worker: u64 = (0..2)
        .map(|w| worker_counter(&log, w, "worker_tx_packets"))
        .sum();
    assert_eq!(per_worker, counter(&log, "tx_packets"), "{log}");
}

/// An IPv4/TCP frame from the client to the VIP through lb1, with a full checksum, then
/// `patch` applied to (ip header, tcp header) — checksums of the IP header fixed after.
fn frame(dport: u16, patch: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let parse = |m: &str| -> Vec<u8> {
        m.split(':')
            .map(|x| u8::from_str_radix(x, 16).unwrap())
            .collect()
    };
    let mut f = Vec::new();
    f.extend(parse(mac("lb1")));
    f.extend(parse(mac("client")));
    f.extend([0x08, 0x00]);
    let src: Ipv4Addr = ip("client").parse().unwrap();
    let dst: Ipv4Addr = VIP.parse().unwrap();
    let mut ip_hdr = vec![0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0];
    ip_hdr.extend(src.octets());
    ip_hdr.extend(dst.octets());
    f.extend(ip_hdr);
    f.extend(43210u16.to_be_bytes());
    f.extend(dport.to_be_bytes());
    f.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    patch(&mut f);
    // IP header checksum over whatever header length the patch left.
    let ihl = usize::from(f[14] & 0xf) * 4;
    if f.len() >= 14 + ihl && ihl >= 20 {
        f[24] = 0;
        f[25] = 0;
        let mut sum: u32 = f[14..14 + ihl]
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let c = !(sum as u16);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }
    f
}

#[test]
fn malformed_frames_are_dropped_and_counted_never_forwarded() {
    let _g = serial();
    let lab = Lab::up("d");
    lab.nginx("srv1");
    lab.nginx("srv2");
    let lb = start_direct(&lab, "lb1", 80, &["--check", "none"]);
    assert!(
        lab.curl("client", &vip_url(), None).is_some(),
        "{}",
        lab.log(lb)
    );
    // Anything odd that reaches a node: fragments, options, UDP, port 81.
    let filter = "(ip[6:2] & 0x3fff != 0) or (ip[0] & 0xf != 5) or udp or (tcp dst port 81) or (tcp src port 43210)";
    let caps = [lab.capture("srv1", filter), lab.capture("srv2", filter)];
    let frames = vec![
        // IPv4 total length beyond the frame.
        frame(80, |f| {
            f[16] = 0x05;
            f[17] = 0xdc;
        }),
        // IP options: header of 24 bytes (one NOP word).
        frame(80, |f| {
            f[14] = 0x46;
            f.splice(34..34, [1, 1, 1, 1]);
            f[17] = 44;
        }),
        // First fragment (MF) and a later one (offset 8).
        frame(80, |f| f[20] = 0x20),
        frame(80, |f| f[21] = 0x01),
        // UDP to the VIP.
        frame(80, |f| f[23] = 17),
        // Another port of the VIP.
        frame(81, |_| {}),
        // Truncated: the TCP header cut to 10 bytes.
        frame(80, |f| {
            f.truncate(44);
            f[17] = 30;
        }),
        // TCP data offset of 15 words in a 20-byte segment.
        frame(80, |f| f[46] = 0xf2),
    ];
    let mut frames = frames;
    // A bad IP header checksum (spoiled after frame()'s fix-up).
    let mut broken = frame(80, |_| {});
    broken[24] ^= 0xff;
    frames.push(broken);
    let n = frames.len();
    assert_eq!(lab.send_frames("client", frames), n);
    // Still serving.
    assert!(lab.curl("client", &vip_url(), None).is_some());
    for c in caps {
        let lines = lab.capture_lines(c);
        assert!(
            lines.is_empty(),
            "a malformed frame reached a node: {lines:?}"
        );
    }
    let log = stop(&lab, lb);
    for (name, at_least) in [
        ("drop_bad_length", 2),
        ("drop_ip_options", 1),
        ("drop_fragment", 2),
        ("drop_not_tcp", 1),
        ("drop_wrong_port", 1),
        ("drop_truncated", 1),
        ("drop_bad_checksum", 1),
    ] {
        assert!(counter(&log, name) >= at_least, "{name}: {log}");
    }
}

#[test]
fn startup_refuses_ip_forward_no_cap_net_raw_local_vip_down_interface() {
    let _g = serial();
    let lab = Lab::up("e");
    let args = [
        "serve",
        "--mode",
        "direct",
        "--interface",
        "eth0",
        "--listen",
        "10.99.0.100:80",
        "--backend",
        "10.99.0.21:80",
    ];
    let run = |what: &str| -> String {
        let p = lab.fulcrum("lb1", &args);
        assert_eq!(
            lab.wait(p, Duration::from_secs(10)),
            Some(1),
            "{what}: {}",
            lab.log(p)
        );
        let log = lab.log(p);
        let err: Vec<&str> = log.lines().filter(|l| l.starts_with("fulcrum: ")).collect();
        assert_eq!(err.len(), 1, "{what}: one line: {log}");
        err[0].to_string()
    };
    lab.sysctl("lb1", "net.ipv4.ip_forward", "1");
    assert!(run("ip_forward").contains("ip_forward=0"));
    lab.sysctl("lb1", "net.ipv4.ip_forward", "0");
    // Without CAP_NET_RAW (dropped from the bounding set, so the exec'd binary lacks it).
    let mut v = vec!["setpriv", "--bounding-set", "-net_raw", common::bin()];
    v.extend_from_slice(&args);
    let p = lab.spawn("lb1", &v, &[]);
    assert_eq!(
        lab.wait(p, Duration::from_secs(10)),
        Some(1),
        "{}",
        lab.log(p)
    );
    assert!(lab.log(p).contains("needs CAP_NET_RAW"), "{}", lab.log(p));
    let ns = lab.ns("lb1");
    let o = std::process::Command::new("ip")
        .args(["-n", &ns, "addr", "add", "10.99.0.100/32", "dev", "lo"])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(run("local VIP").contains("is a local address"));
    let o = std::process::Command::new("ip")
        .args(["-n", &ns, "link", "set", "eth0", "down"])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(run("interface down").contains("is down"));
}

/// Bytes of the bulk transfers: 64 MiB each way.
const BULK: usize = 64 << 20;

/// The `i`-th byte of the bulk stream (xorshift-like, cheap, not periodic in 64 MiB at
/// any small stride, so a lost, duplicated or reordered segment cannot go unnoticed).
fn bulk_byte(i: usize) -> u8 {
    let x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 29) as u8 ^ (i >> 16) as u8
}

/// [`bulk_echo`] run from the client's namespace.
fn bulk_echo_from_client(lab: &Lab, addr: SocketAddr) -> (String, usize) {
    lab.in_ns("client", move || bulk_echo(addr))
        .join()
        .expect("client")
}

/// 20 requests to `url` from client ports `sport0..`: both nodes answer, and no reply
/// (the tcpdump filter `replies`, captured on lb1 meanwhile) crosses the distributor.
fn both_nodes_answer_and_replies_bypass(
    lab: &Lab,
    lb: usize,
    url: &str,
    replies: &str,
    sport0: u16,
) {
    let at_lb = lab.capture("lb1", replies);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for i in 0..20u16 {
        let body = lab
            .curl("client", url, Some(sport0 + i))
            .unwrap_or_else(|| panic!("{url}: request {i} failed; fulcrum log:\n{}", lab.log(lb)));
        *seen.entry(body.trim().to_string()).or_default() += 1;
    }
    assert!(
        seen.get("srv1").is_some_and(|&n| n > 0) && seen.get("srv2").is_some_and(|&n| n > 0),
        "{url}: both nodes answer: {seen:?}"
    );
    let lb_lines = lab.capture_lines(at_lb);
    assert!(
        lb_lines.is_empty(),
        "replies crossed the distributor: {lb_lines:?}"
    );
}

/// From the client: connects to `addr` (an echo node behind the VIP), sends [`BULK`]
/// bytes and checks the [`BULK`] bytes echoed back are the same, in order. The upload
/// crosses the distributor, the download goes straight from the node. Returns the
/// node's name and the bytes received.
fn bulk_echo(addr: SocketAddr) -> (String, usize) {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    // Bounded: a stalled transfer ends (and fails the byte count) instead of hanging.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        let mut sent = 0;
        while sent < BULK && Instant::now() < deadline {
            for (k, b) in buf.iter_mut().enumerate() {
                *b = bulk_byte(sent + k);
            }
            if w.write_all(&buf).is_err() {
                break;
            }
            sent += buf.len();
        }
        let _ = w.shutdown(std::net::Shutdown::Write);
        sent
    });
    let mut r = BufReader::new(s);
    let mut name = String::new();
    r.read_line(&mut name).expect("greeting");
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 << 10];
    while Instant::now() < deadline {
        let n = match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for (k, b) in buf[..n].iter().enumerate() {
            assert_eq!(*b, bulk_byte(got + k), "byte {} differs", got + k);
        }
        got += n;
    }
    let sent = writer.join().expect("writer");
    eprintln!("bulk: sent {sent} received {got}");
    (name.trim().to_string(), got)
}

/// IPv6 end to end: curl to [VIP6] is answered by both nodes (given by their IPv6
/// addresses, so their MACs come from neighbour discovery), and 64 MiB go up and come
/// back byte-exact over IPv6 — with the kernel's offloads as they are (the client's
/// TSO/GSO on: see the report if only oversize drops make it fail).
#[test]
fn ipv6_vip_end_to_end_nginx_and_64mib_byte_exact() {
    let _g = serial();
    let lab = Lab::up6("v6");
    lab.nginx("srv1");
    lab.nginx("srv2");
    let _e1 = lab.echo("srv1", 9000);
    let _e2 = lab.echo("srv2", 9000);
    let listen = [format!("[{VIP6}]:80"), format!("[{VIP6}]:9000")];
    let backends = [
        format!("[{}]:80", ip6("srv1")),
        format!("[{}]:80", ip6("srv2")),
    ];
    // The ring alone: its super-frame path over IPv6 (the fast path has its own test).
    let lb = start_direct_on(
        &lab,
        "lb1",
        &listen,
        &backends,
        &["--check", "none", "--offload", "off"],
    );
    both_nodes_answer_and_replies_bypass(
        &lab,
        lb,
        &format!("http://[{VIP6}]/"),
        &format!("ip6 and tcp and src host {VIP6}"),
        42000,
    );
    let addr: SocketAddr = format!("[{VIP6}]:9000").parse().unwrap();
    let (name, got) = bulk_echo_from_client(&lab, addr);
    let log = stop(&lab, lb);
    assert!(name == "srv1" || name == "srv2", "{name}");
    assert_eq!(
        got,
        BULK,
        "64 MiB echoed byte-exact over IPv6 (drop_oversize={}): {log}",
        counter(&log, "drop_oversize")
    );
    assert!(
        counter(&log, "nd_adverts") > 0,
        "NS for the VIP answered: {log}"
    );
    assert!(
        counter(&log, "nd_solicits") > 0,
        "nodes resolved by NDP: {log}"
    );
    assert!(counter(&log, "unsolicited_nas") > 0, "VIP announced: {log}");
    assert_eq!(counter(&log, "drop_ndp_malformed"), 0, "{log}");
}

/// The same bulk transfer with segmentation offloads off on the client's eth0, so every
/// frame is wire-sized: proves the IPv6 forwarding path itself byte-exact whatever the
/// state of super-frame handling.
#[test]
fn ipv6_64mib_byte_exact_with_client_segmentation_off() {
    let _g = serial();
    let lab = Lab::up6("v6w");
    let out = lab.exec(
        "client",
        &["ethtool", "-K", "eth0", "tso", "off", "gso", "off"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_echoes, lb, addr) = echo6_behind_vip(&lab, &["--offload", "off"]);
    let (name, got) = bulk_echo_from_client(&lab, addr);
    let log = stop(&lab, lb);
    assert!(name == "srv1" || name == "srv2", "{name}");
    assert_eq!(got, BULK, "64 MiB echoed byte-exact: {log}");
    assert_eq!(counter(&log, "drop_oversize"), 0, "{log}");
}

/// Several VIPs in one process: an IPv4 and an IPv6 VIP on port 80 and the IPv4 VIP on
/// a second port, one pool; ARP is answered for the IPv4 VIP, neighbour discovery for
/// the IPv6 one, and each reaches the nodes.
#[test]
fn several_vips_ipv4_and_ipv6_served_by_one_process() {
    let _g = serial();
    let lab = Lab::up6("multi");
    lab.nginx("srv1");
    lab.nginx("srv2");
    let _e1 = lab.echo("srv1", 9000);
    let _e2 = lab.echo("srv2", 9000);
    let listen = [
        format!("{VIP}:80"),
        format!("[{VIP6}]:80"),
        format!("{VIP}:9000"),
    ];
    // One node by its IPv4 address, one by its IPv6 address: each serves both VIPs.
    let backends = [
        format!("{}:80", ip("srv1")),
        format!("[{}]:80", ip6("srv2")),
    ];
    let lb = start_direct_on(&lab, "lb1", &listen, &backends, &["--check", "none"]);
    // Client ports differ per VIP: curl binds its port on the dual-stack wildcard, which a
    // v4 connection of the same port still in TIME_WAIT would refuse.
    for (base, url) in [
        (43000u16, format!("http://{VIP}/")),
        (43100, format!("http://[{VIP6}]/")),
    ] {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for i in 0..12u16 {
            let body = lab.curl("client", &url, Some(base + i)).unwrap_or_else(|| {
                let dbg = |h: &str, a: &[&str]| {
                    String::from_utf8_lossy(&lab.exec(h, a).stdout).into_owned()
                };
                panic!(
                    "{url} request {i} failed: {}\nclient: {}\nsrv1: {}\nsrv2: {}\n{}\n{}",
                    lab.log(lb),
                    dbg("client", &["ip", "-6", "neigh"]),
                    dbg("srv1", &["ip", "-6", "neigh"]),
                    dbg("srv2", &["ip", "-6", "neigh"]),
                    dbg(
                        "srv1",
                        &[
                            "nstat",
                            "-az",
                            "Ip6InAddrErrors",
                            "Ip6InNoRoutes",
                            "TcpInCsumErrors",
                            "Ip6InDiscards",
                            "TcpPassiveOpens",
                            "Ip6InReceives"
                        ]
                    ),
                    dbg(
                        "srv2",
                        &[
                            "nstat",
                            "-az",
                            "Ip6InAddrErrors",
                            "Ip6InNoRoutes",
                            "TcpInCsumErrors",
                            "Ip6InDiscards",
                            "TcpPassiveOpens",
                            "Ip6InReceives"
                        ]
                    ),
                )
            });
            *seen.entry(body.trim().to_string()).or_default() += 1;
        }
        assert_eq!(seen.len(), 2, "{url}: both nodes answer: {seen:?}");
    }
    let greeting = lab
        .in_ns("client", || {
            let a: SocketAddr = format!("{VIP}:9000").parse().unwrap();
            let s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut line = String::new();
            BufReader::new(s).read_line(&mut line).expect("greeting");
            line
        })
        .join()
        .expect("client");
    assert!(
        greeting.starts_with("srv"),
        "second port of the v4 VIP: {greeting}"
    );
    // A port no --listen names is not forwarded.
    let refused = lab.curl("client", &format!("http://{VIP}:8080/"), None);
    assert!(refused.is_none());
    let log = stop(&lab, lb);
    assert!(counter(&log, "arp_replies") > 0, "{log}");
    assert!(counter(&log, "nd_adverts") > 0, "{log}");
    assert!(counter(&log, "drop_wrong_port") > 0, "{log}");
}

/// Puts `host` on VLAN 100 (`eth0.100`, 10.100.0.X/24, X = the last byte of its
/// 10.99.0.X address) — and, for a node, the VLAN's VIP on `lo`.
fn join_vlan100(lab: &Lab, host: &str) {
    let ns = lab.ns(host);
    let last = ip(host).rsplit('.').next().unwrap();
    let run = |args: &[&str]| {
        let out = lab.exec(host, args);
        assert!(
            out.status.success(),
            "{ns}: {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "ip", "link", "add", "link", "eth0", "name", "eth0.100", "type", "vlan", "id", "100",
    ]);
    run(&["ip", "link", "set", "eth0.100", "up"]);
    let a = format!("10.100.0.{last}/24");
    run(&["ip", "addr", "add", &a, "dev", "eth0.100"]);
    if host.starts_with("srv") {
        run(&["ip", "addr", "add", "10.100.0.100/32", "dev", "lo"]);
    }
}

/// A SYN to `vip`:80 from the client's `src` port `sport`, addressed to lb1's MAC, with
/// an 802.1Q tag for VLAN `vid` (0: untagged).
fn tagged(vid: u16, src: [u8; 4], vip: [u8; 4], sport: u16) -> Vec<u8> {
    let mut f = frame(80, |f| {
        f[26..30].copy_from_slice(&src);
        f[30..34].copy_from_slice(&vip);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
    });
    if vid != 0 {
        let mut tag = vec![0x81, 0x00];
        tag.extend(vid.to_be_bytes());
        f.splice(12..12, tag);
    }
    f
}

/// Whether this kernel makes 802.1Q VLAN devices: tries one on a veth in a scratch
/// namespace (deleted again).
fn vlan_devices_work() -> bool {
    let ns = format!("fdr{}vlanprobe", std::process::id());
    let ok = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let works = ok(&["netns", "add", &ns])
        && ok(&[
            "-n", &ns, "link", "add", "a", "type", "veth", "peer", "name", "b",
        ])
        && ok(&[
            "-n", &ns, "link", "add", "link", "a", "name", "a.5", "type", "vlan", "id", "5",
        ]);
    ok(&["netns", "del", &ns]);
    works
}

/// Runs the test `name` of this binary again inside a VM ([`common::vm`]) whose kernel
/// has 802.1Q (Debian's, `modprobe 8021q`), and asserts it passed there. The host's root
/// filesystem is the guest's, so it is the same binary, fulcrum, nginx and tcpdump.
fn run_in_vlan_vm(name: &str) {
    let exe = std::env::current_exe().expect("test binary path");
    let exe = exe.to_str().expect("UTF-8 test binary path");
    let mut env = vec![("RUST_BACKTRACE", "1".to_string())];
    if let Ok(f) = std::env::var("FULCRUM_TEST_LOG") {
        env.push(("FULCRUM_TEST_LOG", f));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let argv = [
        exe,
        "--exact",
        name,
        "--include-ignored",
        "--test-threads=1",
        "--nocapture",
    ];
    let modules = ["8021q", "veth", "bridge"];
    let out =
        common::vm::run(&argv, &env, &modules, Duration::from_secs(300)).unwrap_or_else(|e| {
            panic!(
                "this kernel has no 802.1Q VLAN devices, and the VM to run {name} in could not \
                 start: {e} (needs qemu-system-x86, linux-image-amd64, busybox-static: .ci/run \
                 installs them)"
            )
        });
    eprintln!(
        "{name}: ran in a VM ({}, kernel {}) in {:.1} s; its output:\n{}",
        out.accel,
        out.kernel,
        out.elapsed.as_secs_f64(),
        out.output
    );
    assert!(
        out.status == Some(0) && out.output.contains("test result: ok. 1 passed"),
        "{name} inside the VM: {}",
        out.report()
    );
}

/// [`start_direct_on`] with `--interface eth0.100` (that helper names `eth0`, and the
/// flag may be given once) and no health checks.
fn start_direct_on_vlan100(lab: &Lab, host: &str, listen: &[String], backends: &[String]) -> usize {
    let mut args = vec!["serve", "--mode", "direct", "--interface", "eth0.100"];
    for l in listen {
        args.extend(["--listen", l.as_str()]);
    }
    for b in backends {
        args.extend(["--backend", b.as_str()]);
    }
    args.extend(["--drain-timeout", "1s", "--check", "none"]);
    let p = lab.fulcrum(host, &args);
    let ok = common::eventually(Duration::from_secs(5), || {
        lab.log(p).contains("fulcrum::serve] mode=direct")
    });
    assert!(ok, "fulcrum did not start on eth0.100: {}", lab.log(p));
    p
}

/// VLAN: direct mode on the VLAN device (`--interface eth0.100`). The kernel strips the
/// tag on the way in and adds it on the way out, so requests over VLAN 100 reach both
/// nodes, tagged; frames for the VIP tagged with another VLAN (200), sent to the
/// distributor's MAC on the same wire, never reach a node. Where this kernel has no
/// 802.1Q (CI's has none), the test runs itself inside a VM with Debian's kernel.
#[test]
fn vlan_device_forwards_its_vlan_and_not_another() {
    let _g = serial();
    if std::env::var_os(common::vm::IN_VM).is_none() && !vlan_devices_work() {
        return run_in_vlan_vm("vlan_device_forwards_its_vlan_and_not_another");
    }
    let lab = Lab::up("vlan");
    for h in ["client", "lb1", "srv1", "srv2"] {
        join_vlan100(&lab, h);
    }
    lab.nginx("srv1");
    lab.nginx("srv2");
    let listen = ["10.100.0.100:80".to_string()];
    let backends = ["10.100.0.21:80".to_string(), "10.100.0.22:80".to_string()];
    let lb = start_direct_on_vlan100(&lab, "lb1", &listen, &backends);
    let filter = "vlan and tcp dst port 80";
    let caps = [lab.capture("srv1", filter), lab.capture("srv2", filter)];
    // SYNs to the VIP on VLAN 200 (and, to show the injection itself works, on VLAN 100),
    // addressed to lb1's MAC, from the client's parent interface.
    let (src, vip) = ([10, 100, 0, 10], [10, 100, 0, 100]);
    let frames: Vec<Vec<u8>> = (0..10)
        .map(|i| tagged(200, src, vip, 52000 + i))
        .chain((0..10).map(|i| tagged(100, src, vip, 53000 + i)))
        .collect();
    assert_eq!(lab.send_frames("client", frames), 20);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for i in 0..12u16 {
        let body = lab
            .curl("client", "http://10.100.0.100/", Some(44000 + i))
            .unwrap_or_else(|| panic!("request {i} over VLAN 100 failed: {}", lab.log(lb)));
        *seen.entry(body.trim().to_string()).or_default() += 1;
    }
    assert_eq!(seen.len(), 2, "both nodes answer over VLAN 100: {seen:?}");
    let lines: Vec<String> = caps
        .into_iter()
        .flat_map(|c| lab.capture_lines(c))
        .collect();
    let on = |vid: &str| {
        lines
            .iter()
            .filter(|l| l.contains(&format!("vlan {vid},")))
            .count()
    };
    assert_eq!(on("200"), 0, "VLAN 200 frames reached a node: {lines:#?}");
    let injected = lines.iter().filter(|l| l.contains(".53")).count();
    assert!(
        injected >= 10,
        "VLAN 100 injected SYNs forwarded: {lines:#?}"
    );
    assert!(on("100") >= 10 + 12, "{lines:#?}");
    // Replies leave the nodes tagged, straight to the client: curl got its answers.
    let log = stop(&lab, lb);
    assert!(counter(&log, "tx_packets") >= 10 + 12 * 3, "{log}");
    eprintln!(
        "VLAN 100 answers {seen:?}; frames at the nodes: {} tagged 100 ({injected} injected \
         SYNs), {} tagged 200; tx_packets {}",
        on("100"),
        on("200"),
        counter(&log, "tx_packets")
    );
}

/// On the parent interface (`--interface eth0`), 802.1Q-tagged frames are never
/// forwarded, whatever their VLAN: the kernel hands them over with the tag stripped into
/// the auxdata (`TP_STATUS_VLAN_VALID`), and rewriting them untagged would move them to
/// the native VLAN. Untagged frames sent the same way are forwarded (the injection works).
#[test]
fn tagged_frames_on_the_parent_interface_are_never_forwarded() {
    let _g = serial();
    let lab = Lab::up("tag");
    lab.nginx("srv1");
    lab.nginx("srv2");
    let lb = start_direct(&lab, "lb1", 80, &["--check", "none"]);
    assert!(
        lab.curl("client", &vip_url(), None).is_some(),
        "{}",
        lab.log(lb)
    );
    let filter = "tcp dst port 80 and tcp src portrange 52000-54999";
    let caps = [lab.capture("srv1", filter), lab.capture("srv2", filter)];
    // To the VIP itself, so the socket filter lets them in and fulcrum must decide.
    let (src, vip) = ([10, 99, 0, 10], [10, 99, 0, 100]);
    let frames: Vec<Vec<u8>> = (0..10)
        .map(|i| tagged(100, src, vip, 52000 + i))
        .chain((0..10).map(|i| tagged(200, src, vip, 53000 + i)))
        .chain((0..10).map(|i| tagged(0, src, vip, 54000 + i)))
        .collect();
    assert_eq!(lab.send_frames("client", frames), 30);
    let lines: Vec<String> = caps
        .into_iter()
        .flat_map(|c| lab.capture_lines(c))
        .collect();
    let from = |p: &str| {
        lines
            .iter()
            .filter(|l| l.contains(&format!(".{p}")))
            .count()
    };
    assert_eq!(
        from("52") + from("53"),
        0,
        "tagged frames forwarded: {lines:#?}"
    );
    assert!(
        from("54") >= 10,
        "untagged injected SYNs forwarded: {lines:#?}"
    );
    let log = stop(&lab, lb);
    assert!(counter(&log, "drop_not_ipv4") >= 20, "{log}");
}

/// Direct mode, failover pair, IPv6 VIP: the master crashes under a long-lived
/// connection to [VIP6]; the backup takes over (answers neighbour solicitations for the
/// VIP, announces it with unsolicited advertisements, which a capture on the client
/// shows) and, with the same Maglev table, keeps the connection on its node.
#[test]
fn ipv6_vip_failover_in_direct_mode_keeps_the_connection_and_announces_the_vip() {
    let _g = serial();
    let lab = Lab::up6("v6ha");
    let _e1 = lab.echo("srv1", 9000);
    let _e2 = lab.echo("srv2", 9000);
    let key = std::env::temp_dir().join(format!("fulcrum-dr-ha6-{}.key", std::process::id()));
    std::fs::write(&key, "direct-failover-test-key-0123456789\n").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let key_s = key.to_str().unwrap().to_string();
    let vip = format!("{VIP6}/64");
    let listen = [format!("[{VIP6}]:9000")];
    let backends = [
        format!("[{}]:9000", ip6("srv1")),
        format!("[{}]:9000", ip6("srv2")),
    ];
    let ha = |prio: &str, peer: &str| -> Vec<String> {
        let v = [
            "--check",
            "none",
            "--vip",
            &vip,
            "--peer",
            peer,
            "--priority",
            prio,
            "--ha-key-file",
            &key_s,
        ];
        v.iter().map(|s| s.to_string()).collect()
    };
    let a1 = ha("200", ip("lb2"));
    let a2 = ha("100", ip("lb1"));
    let a1: Vec<&str> = a1.iter().map(String::as_str).collect();
    let a2: Vec<&str> = a2.iter().map(String::as_str).collect();
    let lb1 = start_direct_on(&lab, "lb1", &listen, &backends, &a1);
    let lb2 = start_direct_on(&lab, "lb2", &listen, &backends, &a2);
    assert!(
        common::eventually(Duration::from_secs(5), || lab
            .log(lb1)
            .contains("-> master")),
        "lb1 became master: {}",
        lab.log(lb1)
    );
    let nas = lab.capture("client", "icmp6 and ip6[40] == 136");
    let addr: SocketAddr = format!("[{VIP6}]:9000").parse().unwrap();
    let client = lab.in_ns("client", move || long_lived_to(addr, 60));
    thread::sleep(Duration::from_secs(3));
    lab.kill(lb1);
    let (name, sent, got, stall) = client.join().expect("client thread");
    assert!(name == "srv1" || name == "srv2", "{name}");
    assert_eq!(
        got,
        sent,
        "byte-exact over the takeover; lb2:\n{}",
        lab.log(lb2)
    );
    assert_eq!(sent.len(), 60);
    eprintln!("IPv6 direct failover stall: {stall:?} (node {name})");
    assert!(stall < Duration::from_secs(3), "{stall:?}");
    let lines = lab.capture_lines(nas);
    let from_lb2 = format!("{} > 33:33:00:00:00:01", mac("lb2"));
    assert!(
        lines.iter().any(|l| l.starts_with_any(&[mac("lb2")])
            && l.contains(&from_lb2)
            && l.contains(&format!("tgt is {VIP6}"))),
        "no unsolicited NA from lb2: {lines:#?}"
    );
    let log = stop(&lab, lb2);
    let _ = std::fs::remove_file(&key);
    assert!(log.contains("backup -> master"), "{log}");
    // Through its ring, then (once established there) its kernel fast path.
    assert!(
        counter(&log, "tx_packets") + counter(&log, "offload_frames") > 10,
        "lb2 carried the flow: {log}"
    );
}

/// Start-up checks for an IPv6 VIP: IPv6 forwarding on, the VIP a local address, a
/// node off link — each refused with one line that says what to do.
#[test]
fn startup_refuses_ipv6_forwarding_local_ipv6_vip_and_off_link_node() {
    let _g = serial();
    let lab = Lab::up6("e6");
    let run = |what: &str, backend: &str| -> String {
        let args = [
            "serve",
            "--mode",
            "direct",
            "--interface",
            "eth0",
            "--listen",
            "[fd99::100]:80",
            "--backend",
            backend,
        ];
        let p = lab.fulcrum("lb1", &args);
        assert_eq!(
            lab.wait(p, Duration::from_secs(10)),
            Some(1),
            "{what}: {}",
            lab.log(p)
        );
        let log = lab.log(p);
        let err: Vec<&str> = log.lines().filter(|l| l.starts_with("fulcrum: ")).collect();
        assert_eq!(err.len(), 1, "{what}: one line: {log}");
        err[0].to_string()
    };
    lab.sysctl("lb1", "net.ipv6.conf.all.forwarding", "1");
    let e = run("ipv6 forwarding", "[fd99::21]:80");
    assert!(e.contains("IPv6 forwarding is on"), "{e}");
    lab.sysctl("lb1", "net.ipv6.conf.all.forwarding", "0");
    lab.sysctl("lb1", "net.ipv6.conf.eth0.forwarding", "0");
    let e = run("off-link node", "[fd98::21]:80");
    assert!(e.contains("same L2 segment"), "{e}");
    let out = lab.exec(
        "lb1",
        &["ip", "addr", "add", "fd99::100/128", "dev", "lo", "nodad"],
    );
    assert!(out.status.success());
    let e = run("local VIP", "[fd99::21]:80");
    assert!(
        e.contains("is a local address") && e.contains("ip addr del fd99::100/128 dev lo"),
        "{e}"
    );
}

/// `--ring xdp` (AF_XDP, experimental) end to end: the XDP program is attached while
/// fulcrum runs; curl through the VIP is answered by both nodes with the replies
/// bypassing the distributor; 64 MiB go up through it and come back byte-exact, with
/// the client's partial checksums completed (AF_XDP does not say which are partial);
/// and after a clean stop nothing is left attached to the interface.
#[test]
fn xdp_ring_serves_http_and_64mib_byte_exact_and_detaches_on_exit() {
    let _g = serial();
    let lab = Lab::up("x");
    lab.nginx("srv1");
    lab.nginx("srv2");
    let _e1 = lab.echo("srv1", 9000);
    let _e2 = lab.echo("srv2", 9000);
    let listen = [format!("{VIP}:80"), format!("{VIP}:9000")];
    let backends = [format!("{}:80", ip("srv1")), format!("{}:80", ip("srv2"))];
    let lb = start_direct_on(
        &lab,
        "lb1",
        &listen,
        &backends,
        &["--check", "none", "--ring", "xdp"],
    );
    assert!(lab.log(lb).contains("ring=Xdp"), "{}", lab.log(lb));
    let link = |when: &str| {
        let o = lab.exec("lb1", &["ip", "-d", "link", "show", "dev", "eth0"]);
        assert!(o.status.success(), "{when}");
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    assert!(
        link("running").contains("xdp"),
        "attached: {}",
        link("running")
    );
    both_nodes_answer_and_replies_bypass(
        &lab,
        lb,
        &vip_url(),
        &format!("tcp and src host {VIP}"),
        43000,
    );
    let addr: SocketAddr = format!("{VIP}:9000").parse().unwrap();
    let (name, got) = bulk_echo_from_client(&lab, addr);
    let log = stop(&lab, lb);
    assert!(name == "srv1" || name == "srv2", "{name}");
    assert_eq!(got, BULK, "64 MiB echoed byte-exact: {log}");
    assert!(
        counter(&log, "csum_completed") > 0,
        "partial checksums recognised and completed: {log}"
    );
    assert!(
        counter(&log, "arp_replies") > 0,
        "ARP still reaches the kernel's socket: {log}"
    );
    assert!(
        !link("stopped").contains("xdp"),
        "detached: {}",
        link("stopped")
    );
}

/// `--ring xdp` needs one receive queue per worker: a lab veth has one, so two workers
/// are refused with one line that says so.
#[test]
fn xdp_ring_refuses_more_workers_than_receive_queues() {
    let _g = serial();
    let lab = Lab::up("xq");
    let p = lab.fulcrum(
        "lb1",
        &[
            "serve",
            "--mode",
            "direct",
            "--interface",
            "eth0",
            "--listen",
            "10.99.0.100:80",
            "--backend",
            "10.99.0.21:80",
            "--ring",
            "xdp",
            "--workers",
            "2",
        ],
    );
    assert_eq!(
        lab.wait(p, Duration::from_secs(10)),
        Some(1),
        "{}",
        lab.log(p)
    );
    let log = lab.log(p);
    assert!(log.contains("needs as many receive queues"), "{log}");
}

/// The XDP program hangs on a BPF link owned by the process: SIGKILL (no clean-up code
/// runs) leaves nothing attached, and the host's own traffic is unaffected meanwhile.
#[test]
fn xdp_ring_program_is_detached_when_fulcrum_is_killed() {
    let _g = serial();
    let lab = Lab::up("xk");
    lab.nginx("srv1");
    lab.nginx("srv2");
    let lb = start_direct(&lab, "lb1", 80, &["--check", "none", "--ring", "xdp"]);
    let link = || {
        let o = lab.exec("lb1", &["ip", "-d", "link", "show", "dev", "eth0"]);
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    assert!(link().contains("xdp"), "attached: {}", link());
    // lb1's own traffic (not to a VIP) still reaches its kernel with the program on.
    let own = lab.curl("lb1", &format!("http://{}/", ip("srv1")), None);
    assert_eq!(
        own.as_deref().map(str::trim),
        Some("srv1"),
        "lb1 reaches srv1 with XDP attached"
    );
    lab.signal(lb, Signal::SIGKILL);
    lab.wait(lb, Duration::from_secs(10));
    let ok = common::eventually(Duration::from_secs(5), || !link().contains("xdp"));
    assert!(ok, "detached after SIGKILL: {}", link());
}
