//! End-to-end tests of rolling maintenance and maintenance windows (issue #13): a real fulcrum in front of real
//! nginx nodes (one nginx process per node, no master process, on loopback ports),
//! declared hooks that restart a node's nginx, and `fulcrum ctl rollout …`.
//!
//! The hook scripts find their node from `FULCRUM_NODE`, log each run to a file in the
//! scratch directory, and record each nginx's PID in a pid file; every nginx still
//! running at the end is killed by the PID in its file.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A scratch directory with one nginx per port, started and restarted by scripts;
/// every nginx is killed by PID when dropped.
struct Nodes {
    dir: PathBuf,
    ports: Vec<u16>,
}

impl Nodes {
    fn new(tag: &str, n: usize) -> Nodes {
        let dir = std::env::temp_dir().join(format!("fulcrum-maint-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let d = dir.display();
        for (i, port) in ports.iter().enumerate() {
            let nd = format!("{d}/n{port}");
            std::fs::create_dir_all(&nd).unwrap();
            let conf = format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {nd}/nginx.pid;\n\
                 error_log {nd}/error.log warn;\nevents {{ worker_connections 256; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {nd}/body;\n  proxy_temp_path {nd}/proxy;\n\
                 fastcgi_temp_path {nd}/fastcgi;\n  uwsgi_temp_path {nd}/uwsgi;\n  scgi_temp_path {nd}/scgi;\n\
                 server {{ listen 127.0.0.1:{port}; location / {{ default_type text/plain; return 200 \"node{i}\\n\"; }}\n\
                 location = /big {{ default_type application/octet-stream; alias {d}/big; add_header X-Node node{i}; }} }}\n}}\n"
            );
            std::fs::write(format!("{nd}/nginx.conf"), conf).unwrap();
        }
        // start.sh PORT: nginx in the background, its PID in pid.
        std::fs::write(
            dir.join("start.sh"),
            format!(
                "d={d}/n$1\nnginx -p $d -e $d/error.log -c $d/nginx.conf </dev/null >/dev/null 2>&1 &\necho $! > $d/pid\n"
            ),
        )
        .unwrap();
        // stop.sh PORT: TERM, then wait until it is gone.
        std::fs::write(
            dir.join("stop.sh"),
            format!(
                "d={d}/n$1\npid=$(cat $d/pid)\nkill $pid\ni=0\nwhile kill -0 $pid 2>/dev/null && ! grep -q '^State:.*Z' /proc/$pid/status 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done\n"
            ),
        )
        .unwrap();
        // The hook: restart this node's nginx, unless the node is marked broken.
        std::fs::write(
            dir.join("hook.sh"),
            format!(
                "port=${{FULCRUM_NODE##*:}}\n\
                 echo \"$FULCRUM_ROLLOUT $FULCRUM_SERVICE $FULCRUM_HOOK $FULCRUM_NODE\" >> {d}/runs.log\n\
                 echo \"deploying to $FULCRUM_NODE\"\n\
                 if [ -e {d}/broken-$port ]; then echo \"deploy of $FULCRUM_NODE failed: disk full\" >&2; exit 1; fi\n\
                 sh {d}/stop.sh $port\nsh {d}/start.sh $port\n\
                 echo \"$FULCRUM_NODE\" >> {d}/restarts.log\necho restarted\n"
            ),
        )
        .unwrap();
        let nodes = Nodes { dir, ports };
        for &p in &nodes.ports {
            nodes.start(p);
        }
        nodes
    }

    fn script(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn start(&self, port: u16) {
        let st = Command::new("sh")
            .arg(self.script("start.sh"))
            .arg(port.to_string())
            .status()
            .expect("sh");
        assert!(st.success());
        let a = loopback(port);
        assert!(
            eventually(Duration::from_secs(5), || TcpStream::connect(a).is_ok()),
            "nginx did not listen on {a} (is nginx installed?)"
        );
    }

    fn stop(&self, port: u16) {
        let st = Command::new("sh")
            .arg(self.script("stop.sh"))
            .arg(port.to_string())
            .status()
            .expect("sh");
        assert!(st.success());
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.ports.iter().map(|&p| loopback(p)).collect()
    }

    fn hook_flag(&self) -> String {
        format!("restart=sh {}", self.script("hook.sh"))
    }

    /// The nodes the hook restarted, in order.
    fn restarts(&self) -> Vec<SocketAddr> {
        lines(&self.dir.join("restarts.log"))
    }

    /// The nodes the hook ran for (restarted or not), in order.
    fn runs(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("runs.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn mark_broken(&self, port: u16, broken: bool) {
        let p = self.dir.join(format!("broken-{port}"));
        if broken {
            std::fs::write(p, "").unwrap();
        } else {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for p in &self.ports {
            let pidfile = self.dir.join(format!("n{p}/pid"));
            if let Ok(pid) = std::fs::read_to_string(pidfile) {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn lines(p: &std::path::Path) -> Vec<SocketAddr> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn loopback(port: u16) -> SocketAddr {
    format!("127.0.0.1:{port}").parse().unwrap()
}

/// Health checks every 100 ms, up after 2 passes, down after 1 failure.
const FAST_CHECKS: [&str; 14] = [
    "--check",
    "http:/",
    "--check-interval",
    "100ms",
    "--check-fast-interval",
    "100ms",
    "--check-down-interval",
    "100ms",
    "--check-timeout",
    "90ms",
    "--rise",
    "2",
    "--fall",
    "1",
];

/// [`FAST_CHECKS`], then `extra`.
fn with_fast_checks<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = FAST_CHECKS.to_vec();
    v.extend_from_slice(extra);
    v
}

/// Starts fulcrum in front of `nodes` with fast health checks and the hook declared.
fn distributor(nodes: &Nodes, sock: &str) -> (Proc, SocketAddr, Ctl) {
    let hook = nodes.hook_flag();
    let (p, addr) = start_fulcrum(
        &nodes.addrs(),
        &with_fast_checks(&["--control", sock, "--hook", &hook, "--hook-timeout", "20s"]),
    );
    let ctl = Ctl::new(sock);
    assert!(
        eventually(Duration::from_secs(5), || usable(&ctl) == nodes.ports.len()),
        "not every node came up: {}",
        ctl.run("show nodes").1
    );
    (p, addr, ctl)
}

/// A number field of `addr`'s object in `show nodes --json`.
fn node_num(ctl: &Ctl, addr: SocketAddr, key: &str) -> u64 {
    let out = ctl.ok("show nodes --json");
    let at = out
        .find(&format!("\"addr\":\"{addr}\""))
        .expect("node listed");
    let rest = &out[at..];
    let k = rest.find(&format!("\"{key}\":")).unwrap() + key.len() + 3;
    rest[k..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

/// Nodes the scheduler may pick now, from `show nodes --json`.
fn usable(ctl: &Ctl) -> usize {
    let (code, out, _) = ctl.run("show nodes --json");
    if code != 0 {
        return 0;
    }
    out.matches("\"not_eligible\":null").count()
}

/// The admin state of `addr` in `show nodes --json`.
fn admin(ctl: &Ctl, addr: SocketAddr) -> String {
    let out = ctl.ok("show nodes --json");
    let at = out
        .find(&format!("\"addr\":\"{addr}\""))
        .expect("node listed");
    let rest = &out[at..];
    let a = rest.find("\"admin\":\"").unwrap() + 9;
    rest[a..a + rest[a..].find('"').unwrap()].to_owned()
}

/// One HTTP GET through fulcrum: the body, or `None`.
fn get(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let body = out.split("\r\n\r\n").nth(1)?.trim().to_string();
    (out.starts_with("HTTP/1.1 200") && body.starts_with("node")).then_some(body)
}

/// A client sending one request every 10 ms (at most `limit`) until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failed: Arc<Mutex<Vec<String>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, limit: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let (st, se, fa) = (Arc::clone(&stop), Arc::clone(&sent), Arc::clone(&failed));
        let thread = thread::spawn(move || {
            let end = Instant::now() + limit;
            while !st.load(Ordering::Relaxed) && Instant::now() < end {
                let n = se.fetch_add(1, Ordering::Relaxed);
                if get(addr).is_none() {
                    fa.lock().unwrap().push(format!("request {n}"));
                }
                thread::sleep(Duration::from_millis(10));
            }
        });
        Load {
            stop,
            sent,
            failed,
            thread: Some(thread),
        }
    }

    /// Stops; (requests sent, failures).
    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let failed = self.failed.lock().unwrap().clone();
        (self.sent.load(Ordering::Relaxed), failed)
    }
}

/// Samples the usable node count every 50 ms until stopped; the smallest seen.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<(usize, usize)>>,
}

impl Sampler {
    fn start(sock: String) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let st = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let ctl = Ctl::new(sock);
            let (mut min, mut samples) = (usize::MAX, 0);
            let end = Instant::now() + Duration::from_secs(60);
            while !st.load(Ordering::Relaxed) && Instant::now() < end {
                min = min.min(usable(&ctl));
                samples += 1;
                thread::sleep(Duration::from_millis(50));
            }
            (min, samples)
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

#[test]
fn rollout_restarts_each_node_once_in_order_without_a_failed_request() {
    let nodes = Nodes::new("a", 3);
    let sock = nodes.dir.join("ctl.sock").display().to_string();
    let (p, addr, ctl) = distributor(&nodes, &sock);

    // Nothing undeclared can be named, and the numbers are checked before anything runs.
    let (code, _, err) = ctl.run("rollout start --hook rm-rf");
    assert_eq!(code, 1);
    assert!(
        err.contains("hook \"rm-rf\" is not declared (declared: restart)"),
        "{err}"
    );
    let (code, _, err) = ctl.run("rollout start --hook restart --batch 0");
    assert_eq!(code, 1);
    assert!(err.contains("--batch must be at least 1"), "{err}");
    assert!(nodes.runs().is_empty());
    let config = ctl.ok("show config --json");
    assert!(
        config.contains(&format!("\"hook\":[\"{}\"]", nodes.hook_flag())),
        "{config}"
    );
    assert!(config.contains("\"hook_timeout\":\"20s\""), "{config}");

    let load = Load::start(addr, Duration::from_secs(40));
    let sampler = Sampler::start(sock.clone());
    thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let (code, out, err) = ctl.run("rollout start --hook restart --min-ready 2 --wait");
    let took = t0.elapsed();
    thread::sleep(Duration::from_millis(300));
    let (min_usable, samples) = sampler.finish();
    let (sent, failed) = load.finish();
    eprintln!(
        "rollout of 3 nodes took {took:?}; {sent} requests, {} failed; {samples} samples of show nodes, fewest usable {min_usable}",
        failed.len()
    );
    assert_eq!(code, 0, "--wait: {out}{err}\n{}", p.log());
    assert!(
        out.starts_with(
            "rollout 1 started: hook restart on service default, 3 nodes, batch 1, min-ready 2"
        ),
        "{out}"
    );
    assert!(out.contains("rollout 1: done"), "{out}");
    assert!(
        failed.is_empty(),
        "failed requests: {failed:?}\n{}",
        p.log()
    );
    assert!(sent > 50, "only {sent} requests sent");
    assert_eq!(
        nodes.restarts(),
        nodes.addrs(),
        "restarted once each, in order"
    );
    assert!(samples > 10, "only {samples} samples");
    assert!(
        min_usable >= 2,
        "fewer than min-ready usable nodes: {min_usable}"
    );
    // The hook saw its environment.
    let runs = nodes.runs();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0], format!("1 default restart {}", nodes.addrs()[0]));
    // Every node back in service, the status says so per node, in JSON too.
    assert!(eventually(Duration::from_secs(3), || usable(&ctl) == 3));
    let json = ctl.ok("rollout status --json");
    assert!(
        json.starts_with(
            "{\"id\":1,\"service\":\"default\",\"action\":\"hook\",\"hook\":\"restart\",\"state\":\"done\""
        ),
        "{json}"
    );
    assert_eq!(json.matches("\"state\":\"done\"").count(), 4, "{json}");
    assert!(json.contains("\"output\":\"deploying to"), "{json}");
    let log = p.log();
    assert!(
        log.contains("rollout service default: running -> done"),
        "{log}"
    );
    // Each node's drain was in force before its hook started.
    for a in nodes.addrs() {
        let drained = log.find(&format!(
            "rollout: set state {a} drain -> node {a} state ready -> drain"
        ));
        let hook = log.find(&format!("hook restart on {a} started"));
        assert!(
            matches!((drained, hook), (Some(d), Some(h)) if d < h),
            "{a}: drain at {drained:?}, hook at {hook:?}\n{log}"
        );
    }
}

#[test]
fn a_failing_hook_stops_the_rollout_in_maint_and_resume_completes_it() {
    let nodes = Nodes::new("b", 3);
    let sock = nodes.dir.join("ctl.sock").display().to_string();
    let (p, _addr, ctl) = distributor(&nodes, &sock);
    let addrs = nodes.addrs();
    nodes.mark_broken(nodes.ports[1], true);

    let (code, out, err) = ctl.run("rollout start --hook restart --wait");
    assert_eq!(code, 1, "--wait must fail: {out}{err}");
    assert!(err.contains("rollout 1: failed"), "{err}");
    let status = ctl.ok("rollout status");
    assert!(
        status.contains(&format!(
            "failed at {}: hook restart failed: deploy of {} failed: disk full",
            addrs[1], addrs[1]
        )),
        "{status}"
    );
    assert!(status.contains("  | deploying to"), "{status}");
    assert!(
        status.contains(&format!("  | deploy of {} failed: disk full", addrs[1])),
        "{status}"
    );
    let third = status
        .lines()
        .find(|l| l.starts_with(&addrs[2].to_string()))
        .unwrap();
    assert!(third.contains("pending"), "{status}");
    assert_eq!(admin(&ctl, addrs[1]), "maint");
    assert_eq!(admin(&ctl, addrs[2]), "ready");
    assert_eq!(
        nodes.restarts(),
        vec![addrs[0]],
        "the third node was touched"
    );
    assert_eq!(nodes.runs().len(), 2);

    // Fixed: resume re-runs the failed node and carries on.
    nodes.mark_broken(nodes.ports[1], false);
    let (code, out, err) = ctl.run("rollout resume --wait");
    assert_eq!(code, 0, "{out}{err}\n{}", p.log());
    assert!(out.contains("rollout 1: done"), "{out}");
    assert_eq!(nodes.restarts(), addrs);
    assert!(eventually(Duration::from_secs(3), || usable(&ctl) == 3));
    let log = p.log();
    assert!(
        log.contains("rollout service default: running -> failed"),
        "{log}"
    );
}

#[test]
fn min_ready_waits_while_the_pool_is_too_thin() {
    let nodes = Nodes::new("c", 3);
    let sock = nodes.dir.join("ctl.sock").display().to_string();
    let hook = nodes.hook_flag();
    let addrs = nodes.addrs();
    // The service has two of the three nginx nodes; the third is a spare.
    let (_p, _addr) = start_fulcrum(
        &addrs[..2],
        &with_fast_checks(&["--control", &sock, "--hook", &hook]),
    );
    let ctl = Ctl::new(sock);
    assert!(eventually(Duration::from_secs(5), || usable(&ctl) == 2));

    // --min-ready 2 on a 2-node service: it waits, says so, and drains nothing.
    let out = ctl.ok("rollout start --hook restart --min-ready 2");
    assert!(
        out.contains("it waits until the service has 3 usable nodes"),
        "{out}"
    );
    thread::sleep(Duration::from_millis(800));
    let status = ctl.ok("rollout status");
    assert!(status.starts_with("rollout 1: waiting"), "{status}");
    assert!(
        status.contains("waiting: 2 usable nodes; taking out 1 would leave fewer than min-ready 2"),
        "{status}"
    );
    assert!(nodes.runs().is_empty());
    assert_eq!(admin(&ctl, addrs[0]), "ready");
    assert_eq!(admin(&ctl, addrs[1]), "ready");

    // A spare node added for the occasion: the rollout proceeds, one node at a time,
    // and never leaves fewer than two usable.
    let sampler = Sampler::start(ctl.sock.display().to_string());
    ctl.ok(&format!("add node {}", addrs[2]));
    assert!(
        eventually(Duration::from_secs(20), || ctl
            .ok("rollout status")
            .starts_with("rollout 1: done")),
        "{}",
        ctl.ok("rollout status")
    );
    let (min_usable, samples) = sampler.finish();
    assert_eq!(nodes.restarts(), addrs[..2].to_vec());
    assert!(
        samples > 5 && min_usable >= 2,
        "min {min_usable} in {samples}"
    );

    // The first node is down: taking it out would leave one usable, which is the
    // minimum already, so the rollout waits and says why instead of draining anything.
    ctl.ok(&format!("remove node {}", addrs[2]));
    assert!(eventually(Duration::from_secs(5), || usable(&ctl) == 2));
    nodes.stop(nodes.ports[0]);
    assert!(eventually(Duration::from_secs(3), || usable(&ctl) == 1));
    ctl.ok("rollout start --hook restart --min-ready 1");
    thread::sleep(Duration::from_millis(800));
    let status = ctl.ok("rollout status");
    assert!(status.starts_with("rollout 2: waiting"), "{status}");
    assert!(
        status.contains("waiting: 1 usable nodes; taking out 1 would leave fewer than min-ready 1"),
        "{status}"
    );
    assert_eq!(nodes.runs().len(), 2, "nothing new ran");
    assert_eq!(admin(&ctl, addrs[1]), "ready");

    // Back up: the rollout carries on by itself.
    nodes.start(nodes.ports[0]);
    assert!(
        eventually(Duration::from_secs(15), || ctl
            .ok("rollout status")
            .starts_with("rollout 2: done")),
        "{}",
        ctl.ok("rollout status")
    );
    assert_eq!(nodes.restarts().len(), 4);
}

#[test]
fn a_maintenance_window_empties_the_node_keeps_it_out_and_gives_it_back() {
    let nodes = Nodes::new("w", 2);
    let sock = nodes.dir.join("ctl.sock").display().to_string();
    let hook = nodes.hook_flag();
    let (p, addr) = start_fulcrum(
        &nodes.addrs(),
        &with_fast_checks(&[
            "--control",
            &sock,
            "--hook",
            &hook,
            // Windows are drained this long ahead of their opening.
            "--deadline",
            "1s",
        ]),
    );
    let ctl = Ctl::new(&sock);
    assert!(eventually(Duration::from_secs(5), || usable(&ctl) == 2));
    let b = nodes.addrs()[1];

    // Idle connections through fulcrum until one is on node b (round-robin puts the
    // second there, unless a check missed its 90 ms timeout on a loaded machine and took
    // b out for a moment: then a few more).
    let mut idle: Vec<TcpStream> = Vec::new();
    let on_b = eventually(Duration::from_secs(5), || {
        if node_num(&ctl, b, "active") >= 1 {
            return true;
        }
        if idle.len() < 10 && usable(&ctl) == 2 {
            idle.push(TcpStream::connect(addr).unwrap());
        }
        false
    });
    assert!(on_b, "no idle flow on {b} after {} connections", idle.len());

    let t0 = Instant::now();
    let out = ctl.ok(&format!("set state {b} maint at +3s for 3s"));
    assert!(
        out.contains(&format!("node {b}: maint window in 3.0s for 3s")),
        "{out}"
    );
    let (code, _, err) = ctl.run(&format!("set state {b} maint at +9s"));
    assert_eq!(code, 1);
    assert!(err.contains("has a maintenance window already"), "{err}");
    let shown = ctl.ok("show nodes");
    assert!(shown.contains("maint window in"), "{shown}");
    assert_eq!(admin(&ctl, b), "ready", "drained only --deadline ahead");

    // Drained ahead (from 2 s), still holding the idle flow; at the opening it is
    // empty and in maint.
    assert!(eventually(Duration::from_secs(3), || admin(&ctl, b) == "drain"));
    assert!(
        t0.elapsed() >= Duration::from_millis(1800),
        "drained too early: {:?}",
        t0.elapsed()
    );
    assert!(eventually(Duration::from_secs(3), || admin(&ctl, b) == "maint"));
    let opened = t0.elapsed();
    assert!(
        opened >= Duration::from_millis(2900),
        "opened at {opened:?}"
    );
    assert!(eventually(Duration::from_millis(500), || node_num(
        &ctl, b, "active"
    ) == 0));
    let shown = ctl.ok("show nodes");
    assert!(shown.contains("maint window open"), "{shown}");

    // No new flow reaches it during the window.
    let total = node_num(&ctl, b, "total");
    let bodies: Vec<String> = (0..20).filter_map(|_| get(addr)).collect();
    assert_eq!(bodies.len(), 20);
    assert!(bodies.iter().all(|b| b == "node0"), "{bodies:?}");
    assert_eq!(node_num(&ctl, b, "total"), total);

    // Back after it.
    assert!(eventually(Duration::from_secs(5), || admin(&ctl, b) == "ready"));
    let closed = t0.elapsed();
    assert!(
        closed >= Duration::from_millis(5900),
        "closed at {closed:?}"
    );
    assert!(eventually(Duration::from_secs(3), || usable(&ctl) == 2));
    let bodies: Vec<String> = (0..10).filter_map(|_| get(addr)).collect();
    assert!(bodies.iter().any(|b| b == "node1"), "{bodies:?}");
    assert!(!ctl.ok("show nodes").contains("maint window"));
    eprintln!("window: opened at {opened:?}, closed at {closed:?}");
    drop(idle);

    // A window cancelled after it began puts the node back at once.
    ctl.ok(&format!("set state {b} maint at +0s"));
    assert!(eventually(Duration::from_secs(2), || admin(&ctl, b) == "maint"));
    let out = ctl.ok(&format!("cancel maint {b}"));
    assert!(out.contains("cancelled; ready again"), "{out}");
    assert!(eventually(Duration::from_secs(2), || admin(&ctl, b) == "ready"));
    let (code, _, err) = ctl.run(&format!("cancel maint {b}"));
    assert_eq!(code, 1, "{err}");
    assert!(p.log().contains("maint window"), "{}", p.log());
}

#[test]
fn drain_and_hook_timeouts_cut_and_fail_as_documented() {
    let nodes = Nodes::new("t", 2);
    let sock = nodes.dir.join("ctl.sock").display().to_string();
    let restart = nodes.hook_flag();
    let (_p, addr) = start_fulcrum(
        &nodes.addrs(),
        &with_fast_checks(&[
            "--control",
            &sock,
            "--hook",
            &restart,
            "--hook",
            "slow=echo working; sleep 30",
            "--hook-timeout",
            "1s",
        ]),
    );
    let ctl = Ctl::new(&sock);
    assert!(eventually(Duration::from_secs(5), || usable(&ctl) == 2));
    let addrs = nodes.addrs();

    // An idle flow on each node never ends by itself: each drain times out after 1 s
    // and the flow is cut, then the node is restarted and serves again.
    // (Round-robin puts one on each node; a check that missed its timeout on a loaded
    // machine can take a node out for a moment, so open more until each has one.)
    let mut idle: Vec<TcpStream> = Vec::new();
    let spread = eventually(Duration::from_secs(5), || {
        if addrs.iter().all(|&a| node_num(&ctl, a, "active") >= 1) {
            return true;
        }
        if idle.len() < 10 && usable(&ctl) == 2 {
            idle.push(TcpStream::connect(addr).unwrap());
        }
        false
    });
    assert!(
        spread,
        "no idle flow on each node after {} connections",
        idle.len()
    );
    // An operator who puts a draining node back in service wins: at the drain timeout
    // neither its flows are cut nor its hook run, and the rollout stops there.
    ctl.ok("rollout start --hook restart --min-ready 1 --drain-timeout 2s");
    assert!(eventually(Duration::from_secs(2), || admin(&ctl, addrs[0]) == "drain"));
    ctl.ok(&format!("set state {} ready", addrs[0]));
    assert!(
        eventually(Duration::from_secs(5), || ctl
            .ok("rollout status")
            .starts_with("rollout 1: failed")),
        "{}",
        ctl.ok("rollout status")
    );
    let status = ctl.ok("rollout status");
    assert!(
        status.contains("was set ready by another command while it drained; the hook was not run"),
        "{status}"
    );
    assert!(nodes.runs().is_empty(), "the hook ran");
    assert!(node_num(&ctl, addrs[0], "active") >= 1, "its flow was cut");
    ctl.ok(&format!("set state {} ready", addrs[0]));

    let t0 = Instant::now();
    let (code, out, err) =
        ctl.run("rollout start --hook restart --min-ready 1 --drain-timeout 1s --wait");
    let took = t0.elapsed();
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        took >= Duration::from_secs(2),
        "two drain timeouts took {took:?}"
    );
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut b = [0u8; 16];
        // Closed (EOF or reset): cut at the drain timeout (or, at the latest, when its
        // nginx stopped).
        assert!(
            matches!(s.read(&mut b), Ok(0) | Err(_)),
            "an idle flow survived"
        );
    }
    assert_eq!(nodes.restarts(), addrs);
    assert!(eventually(Duration::from_secs(3), || usable(&ctl) == 2));
    // New flows live on both nodes again (the cut applied to the old ones only).
    let bodies: Vec<String> = (0..10).filter_map(|_| get(addr)).collect();
    assert_eq!(bodies.len(), 10, "{bodies:?}");
    assert!(bodies.iter().any(|b| b == "node0") && bodies.iter().any(|b| b == "node1"));
    // And they stay: the workers' cut flag was cleared when each node came back, or
    // their 100 ms sweep would close these.
    let fresh: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    thread::sleep(Duration::from_millis(600));
    for &a in &addrs {
        assert_eq!(node_num(&ctl, a, "active"), 1, "a new flow to {a} was cut");
    }
    drop(fresh);
    eprintln!("rollout with two drain timeouts of 1s took {took:?}");

    // A hook that outlives --hook-timeout is killed and fails its node into maint.
    let t0 = Instant::now();
    let (code, out, err) = ctl.run("rollout start --hook slow --wait");
    assert_eq!(code, 1, "{out}{err}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    let status = ctl.ok("rollout status");
    assert!(
        status.contains(&format!(
            "failed at {}: hook slow failed: killed after 1s (--hook-timeout)",
            addrs[0]
        )),
        "{status}"
    );
    assert!(status.contains("  | working"), "{status}");
    assert_eq!(admin(&ctl, addrs[0]), "maint");
    assert_eq!(admin(&ctl, addrs[1]), "ready");
}

// ---- agent tasks ----------------------------------------------------------------

const KEY: &str = "0123456789abcdef0123456789abcdef";

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

impl Nodes {
    /// A key file (mode 0600) in the scratch directory.
    fn key(&self, name: &str, key: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, key).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        p.display().to_string()
    }

    /// A task script that logs `TASK ID NODE` to tasks.log and prints a line.
    fn task_flag(&self, name: &str) -> String {
        let d = self.dir.display();
        std::fs::write(
            self.dir.join("task.sh"),
            format!(
                "echo \"$FULCRUM_TASK $FULCRUM_TASK_ID $FULCRUM_NODE\" >> {d}/tasks.log\necho \"ran $FULCRUM_TASK $FULCRUM_TASK_ID\"\n"
            ),
        )
        .unwrap();
        format!("{name}=sh {}", self.script("task.sh"))
    }

    /// The lines of tasks.log.
    fn task_runs(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("tasks.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// `fulcrum agent` for the nginx node `node`, reporting to `distributor` every 100 ms.
fn agent(node: SocketAddr, distributor: &str, key: &str, tasks: &[&str]) -> Proc {
    let node = node.to_string();
    let mut args = vec![
        "agent",
        "--service",
        &node,
        "--distributor",
        distributor,
        "--key-file",
        key,
        "--interval",
        "100ms",
        "--check",
        "http:/",
    ];
    for t in tasks {
        args.extend_from_slice(&["--task", t]);
    }
    spawn(&args, "info")
}

/// The next authentic heartbeat on `sock` (10 s at most), and where it came from.
fn heartbeat(
    sock: &std::net::UdpSocket,
) -> Option<(fulcrum::wire::heartbeat::Heartbeat, SocketAddr)> {
    let end = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 2048];
    while Instant::now() < end {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if let Ok(hb) = fulcrum::wire::heartbeat::parse(&buf[..n], KEY.as_bytes()) {
            return Some((hb, from));
        }
    }
    None
}

/// Reads heartbeats (10 s at most) until one carries a report that `want` accepts.
fn report_where(
    sock: &std::net::UdpSocket,
    want: impl Fn(&fulcrum::wire::task::Report) -> bool,
) -> Option<fulcrum::wire::task::Report> {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        let (hb, _) = heartbeat(sock)?;
        if let Some(r) = hb.report.filter(|r| want(r)) {
            return Some(r);
        }
    }
    None
}

#[test]
fn an_agent_runs_a_declared_task_once_per_id_and_refuses_the_rest() {
    use fulcrum::wire::task::{Refusal, TaskRequest, TaskStatus};
    let nodes = Nodes::new("agent", 1);
    let node = nodes.addrs()[0];
    let key = nodes.key("agent.key", KEY);
    // The test is the distributor: it reads the heartbeats and sends the requests.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let me = sock.local_addr().unwrap().to_string();
    let task = nodes.task_flag("rotate");
    let a = agent(node, &me, &key, &[&task]);
    let (_, agent_addr) =
        heartbeat(&sock).unwrap_or_else(|| panic!("no heartbeat from the agent: {}", a.log()));
    let mut seq = 0u64;
    // Run ids are the time they were made, in µs (the agent refuses runs made before
    // it started): runs 1 to 4 are made now.
    let base = wall_ms() * 1000;
    let run = |k: u64| base + k;
    let mut send = |id: u64, name: &str, key: &str, sent_at_ms: u64| -> Vec<u8> {
        seq += 1;
        let req = TaskRequest {
            node_id: node.to_string(),
            name: name.into(),
            sender: "test".into(),
            id,
            sequence: seq,
            sent_at_ms,
            deadline_ms: wall_ms() + 30_000,
        };
        let mut b = Vec::new();
        req.emit(key.as_bytes(), &mut b).unwrap();
        sock.send_to(&b, agent_addr).unwrap();
        b
    };
    let refused = |id: u64, why: Refusal| {
        report_where(&sock, |r| {
            r.id == id && r.status == TaskStatus::Refused(why)
        })
        .is_some()
    };
    // A wrong key, an undeclared name, a stale request: refused and reported.
    send(
        run(1),
        "rotate",
        "not the agent's key at all!!!!!",
        wall_ms(),
    );
    assert!(refused(run(1), Refusal::BadMac), "{}", a.log());
    send(run(2), "rm-everything", KEY, wall_ms());
    assert!(refused(run(2), Refusal::Undeclared), "{}", a.log());
    send(run(3), "rotate", KEY, wall_ms() - 60_000);
    assert!(refused(run(3), Refusal::Stale), "{}", a.log());
    // A declared task: asked three times (as a distributor resends), run once.
    let first = send(run(4), "rotate", KEY, wall_ms());
    send(run(4), "rotate", KEY, wall_ms());
    send(run(4), "rotate", KEY, wall_ms());
    let done = report_where(&sock, |r| r.id == run(4) && r.status.is_over())
        .unwrap_or_else(|| panic!("no end reported: {}", a.log()));
    assert_eq!(done.status, TaskStatus::Exited(0), "{done:?}");
    assert_eq!(done.output, format!("ran rotate {}\n", run(4)));
    // The very bytes again: a replay, refused (counted and logged: refusals are logged
    // once a second), nothing runs.
    thread::sleep(Duration::from_millis(1100));
    sock.send_to(&first, agent_addr).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || a
            .log()
            .contains(&format!("task request {} from", run(4)))
            && a.log().contains("refused: replayed request")),
        "{}",
        a.log()
    );
    // Asked again later: still nothing runs.
    send(run(4), "rotate", KEY, wall_ms());
    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        nodes.task_runs(),
        vec![format!("rotate {} {node}", run(4))],
        "{}",
        a.log()
    );
    // Nothing refused ever ran.
    assert!(!nodes
        .task_runs()
        .iter()
        .any(|l| l.contains("rm-everything")));
}

/// A distributor in front of `nodes` with their agents (declaring `tasks`), its control
/// socket and its HTTP port; waits until every node is usable.
struct WithAgents {
    p: Proc,
    addr: SocketAddr,
    ctl: Ctl,
    http: String,
    _agents: Vec<Proc>,
}

fn distributor_with_agents(nodes: &Nodes, tasks: &[&str]) -> WithAgents {
    let sock = nodes.dir.join("ctl.sock").display().to_string();
    let key = nodes.key("agent.key", KEY);
    let agent_listen = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let hook = nodes.hook_flag();
    let backends: Vec<String> = nodes.addrs().iter().map(|a| format!("{a},agent")).collect();
    let mut args = with_fast_checks(&[
        "--control",
        &sock,
        "--http",
        &http,
        "--hook",
        &hook,
        "--hook-timeout",
        "20s",
        "--agent-listen",
        &agent_listen,
        "--agent-key-file",
        &key,
        "--agent-interval",
        "100ms",
    ]);
    for b in &backends {
        args.extend_from_slice(&["--backend", b]);
    }
    let (p, addr) = start_fulcrum(&[], &args);
    let agents = nodes
        .addrs()
        .iter()
        .map(|n| agent(*n, &agent_listen, &key, tasks))
        .collect();
    let ctl = Ctl::new(sock);
    assert!(
        eventually(Duration::from_secs(5), || usable(&ctl) == nodes.ports.len()),
        "not every node came up: {}\n{}",
        ctl.run("show nodes").1,
        p.log()
    );
    WithAgents {
        p,
        addr,
        ctl,
        http,
        _agents: agents,
    }
}

fn metrics(http: &str) -> String {
    let mut s = TcpStream::connect(http).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn a_rollout_runs_the_agents_task_and_an_undeclared_task_is_refused_and_reported() {
    let nodes = Nodes::new("at", 2);
    let addrs = nodes.addrs();
    // The agents declare the restart script as their task `restart`.
    let restart = nodes.hook_flag();
    let d = distributor_with_agents(&nodes, &[&restart]);

    // A task no agent declared: refused by each, and said so.
    let (code, out, err) = d.ctl.run("task deploy-everything --wait");
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.starts_with("task job 1 started: deploy-everything on service default, 2 nodes"),
        "{out}"
    );
    assert_eq!(
        err.matches("refused: the agent declares no such task")
            .count(),
        2,
        "{err}"
    );
    let m = metrics(&d.http);
    assert!(
        m.contains("fulcrum_agent_task_refusals_total{reason=\"undeclared\"} 2"),
        "{m}"
    );
    assert!(nodes.runs().is_empty());

    // A rollout whose action is the agents' task, under a request every 10 ms.
    let load = Load::start(d.addr, Duration::from_secs(60));
    let (code, out, err) = d
        .ctl
        .run("rollout start --task restart --min-ready 1 --wait");
    let (sent, failed) = load.finish();
    assert_eq!(code, 0, "{out}{err}\n{}", d.p.log());
    assert!(
        out.starts_with("rollout 1 started: task restart on service default, 2 nodes"),
        "{out}"
    );
    assert_eq!(nodes.restarts(), addrs, "each node once, in order");
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {failed:?}",
        failed.len()
    );
    let status = d.ctl.ok("rollout status --json");
    assert!(status.contains("\"action\":\"task\""), "{status}");
    assert!(
        status.contains("restarted"),
        "the agent's output tail: {status}"
    );
    let m = metrics(&d.http);
    assert!(m.contains("fulcrum_agent_tasks_done_total 2"), "{m}");
}

#[test]
fn a_when_idle_task_waits_for_a_long_transfer_which_stays_byte_exact() {
    let nodes = Nodes::new("idle", 2);
    let addrs = nodes.addrs();
    // 24 MiB served by both nodes, read slowly by the client (about 3 s).
    let body = pattern(7, 24 << 20);
    std::fs::write(nodes.dir.join("big"), &body).unwrap();
    let task = nodes.task_flag("rotate");
    let d = distributor_with_agents(&nodes, &[&task]);

    // A download that lands on the first node (connections are spread: retry).
    let mut transfer = None;
    for _ in 0..20 {
        let mut s = TcpStream::connect(d.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /big HTTP/1.0\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
        if String::from_utf8_lossy(&head).contains("X-Node: node0") {
            transfer = Some(s);
            break;
        }
    }
    let mut s = transfer.expect("no connection reached the first node");
    let reader = thread::spawn(move || {
        let mut got = Vec::with_capacity(24 << 20);
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => panic!("transfer broke: {e}"),
            }
            thread::sleep(Duration::from_millis(8));
        }
        got
    });
    let t0 = Instant::now();
    let node = addrs[0];
    let (code, out, err) = d.ctl.run(&format!("task rotate --when-idle {node} --wait"));
    let took = t0.elapsed();
    let got = reader.join().unwrap();
    assert_eq!(code, 0, "{out}{err}\n{}", d.p.log());
    assert_eq!(got.len(), body.len());
    assert_eq!(sha256(&got), sha256(&body), "the transfer is byte-exact");
    assert!(
        took >= Duration::from_secs(1),
        "the task did not wait: {took:?}"
    );
    // The task ran once, after the transfer had ended (the log says when the node went
    // idle), and the node is back.
    let runs = nodes.task_runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(
        runs[0].starts_with("rotate ") && runs[0].ends_with(&node.to_string()),
        "{runs:?}"
    );
    assert_eq!(admin(&d.ctl, node), "ready");
    let log = d.p.log();
    let drained = log
        .find(&format!("task job 1: {node} to drain"))
        .expect("drained");
    let asked = log
        .find(&format!("task job 1: rotate on {node} asked"))
        .expect("asked");
    assert!(drained < asked, "{log}");
    assert_eq!(admin(&d.ctl, addrs[1]), "ready");
}
