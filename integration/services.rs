//! End-to-end tests of several services in one process (issue #10): real nginx and
//! redis-server pools behind one fulcrum, per-service control commands and metrics,
//! the state file across a restart, and SIGHUP adding and removing services under load.
//! Everything listens and connects on 127.0.0.1.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("fulcrum-svc-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process ended by PID when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One nginx (no master process) answering `NAME\n` on each `(NAME, PORT)`.
fn nginx(dir: &Scratch, sites: &[(&str, u16)]) -> Daemon {
    let d = dir.path("nginx");
    std::fs::create_dir_all(&d).unwrap();
    let mut servers = String::new();
    for (name, port) in sites {
        servers.push_str(&format!(
            "  server {{ listen 127.0.0.1:{port}; location / {{ default_type text/plain; return 200 \"{name}\\n\"; }} }}\n"
        ));
    }
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\nevents {{ worker_connections 512; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{servers}}}\n"
    );
    let conf_path = format!("{d}/nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new("nginx")
        .args(["-p", &d, "-e", &format!("{d}/error.log"), "-c", &conf_path])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (apt-get install nginx)");
    let n = Daemon(child);
    for (_, port) in sites {
        let a: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        assert!(
            eventually(Duration::from_secs(5), || TcpStream::connect(a).is_ok()),
            "nginx did not listen on {a}"
        );
    }
    n
}

/// A redis-server on `port`, nothing saved to disk.
fn redis(dir: &Scratch, port: u16) -> Daemon {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            &dir.path(""),
            "--loglevel",
            "warning",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server)");
    let d = Daemon(child);
    let a: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        eventually(Duration::from_secs(5), || TcpStream::connect(a).is_ok()),
        "redis did not listen on {a}"
    );
    d
}

/// `redis-cli -p PORT ARGS…`: its standard output, trimmed.
fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One HTTP GET of `/` on `addr` through fulcrum: the body, or `None`.
fn get(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let body = out.split("\r\n\r\n").nth(1)?.trim().to_string();
    (out.starts_with("HTTP/1.1 200") && !body.is_empty()).then_some(body)
}

/// The bodies of `n` requests to `addr`, sorted and deduplicated.
fn answers(addr: SocketAddr, n: usize) -> Vec<String> {
    let mut seen: Vec<String> = (0..n).filter_map(|_| get(addr)).collect();
    seen.sort();
    seen.dedup();
    seen
}

fn loopback(port: u16) -> SocketAddr {
    format!("127.0.0.1:{port}").parse().unwrap()
}

#[test]
fn three_services_each_reach_only_their_pool_and_are_operated_by_name() {
    let dir = Scratch::new("three");
    let (w1, w2, a1, a2) = (free_port(), free_port(), free_port(), free_port());
    let _nginx = nginx(
        &dir,
        &[("web1", w1), ("web2", w2), ("api1", a1), ("api2", a2)],
    );
    let (r1, r2) = (free_port(), free_port());
    let _redis = (redis(&dir, r1), redis(&dir, r2));
    let (web, api, cache, http) = (free_port(), free_port(), free_port(), free_port());
    let sock = dir.path("ctl.sock");
    let state = dir.path("state");
    let conf = dir.path("site.toml");
    std::fs::write(
        &conf,
        format!(
            "workers = 2\ndrain-timeout = \"1s\"\ncontrol = \"{sock}\"\nhttp = \"127.0.0.1:{http}\"\n\
             state-file = \"{state}\"\n\n[defaults]\ncheck = \"http:/\"\ncheck-interval = \"200ms\"\n\n\
             [[service]]\nname = \"web\"\nlisten = [\"127.0.0.1:{web}\"]\n\
             backend = [\"127.0.0.1:{w1}\", \"127.0.0.1:{w2}\"]\n\n\
             [[service]]\nname = \"api\"\nlisten = [\"127.0.0.1:{api}\"]\n\
             backend = [\"127.0.0.1:{a1}\", \"127.0.0.1:{a2}\"]\nscheduler = \"lc\"\n\n\
             [[service]]\nname = \"cache\"\nlisten = [\"127.0.0.1:{cache}\"]\n\
             backend = [\"127.0.0.1:{r1}\", \"127.0.0.1:{r2}\"]\ncheck = \"tcp\"\n"
        ),
    )
    .unwrap();
    let (code, out, err) = {
        let o = Command::new(bin())
            .args(["check", "--config", &conf])
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(0), "{out}{err}");
    let mut p = spawn(&["serve", "--config", &conf], "info");
    for port in [web, api, cache] {
        wait_listening(loopback(port), &p);
    }
    let ctl = Ctl::new(&sock);
    assert!(
        eventually(Duration::from_secs(5), || {
            let s = ctl.ok("show services");
            s.lines().filter(|l| l.contains(" 2/2 ")).count() == 3
        }),
        "{}\n{}",
        ctl.ok("show services"),
        p.log()
    );

    // Each port reaches its own pool, and only it.
    assert_eq!(answers(loopback(web), 20), ["web1", "web2"]);
    assert_eq!(answers(loopback(api), 20), ["api1", "api2"]);
    assert_eq!(redis_cli(cache, &["PING"]), "PONG");
    assert_eq!(redis_cli(cache, &["SET", "k", "v"]), "OK");
    // The pair is not replicated: the key is on one of the two servers.
    let on: Vec<String> = [r1, r2]
        .iter()
        .map(|&r| redis_cli(r, &["GET", "k"]))
        .collect();
    assert!(on.contains(&"v".to_string()), "{on:?}");
    let bench = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &cache.to_string()])
        .args(["-n", "2000", "-c", "10", "-t", "ping,set,get", "-q"])
        .output()
        .expect("redis-benchmark");
    let bench_out = String::from_utf8_lossy(&bench.stdout);
    assert!(bench.status.success(), "{bench_out}");
    assert_eq!(
        bench_out.matches("requests per second").count(),
        4,
        "{bench_out}"
    );

    // show services: one line per service with its listener, scheduler and nodes.
    let s = ctl.ok("show services");
    let line = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{s}"))
            .to_string()
    };
    assert!(line("web").contains(&format!("127.0.0.1:{web}")), "{s}");
    assert!(line("api").contains(" lc "), "{s}");
    assert!(line("cache").contains(" 2/2 "), "{s}");
    let json = ctl.ok("show services --json");
    assert!(json.starts_with("[{\"name\":\"web\""), "{json}");

    // Node commands by SERVICE/ADDR; the same address in two services needs the name.
    ctl.ok(&format!("set state web/127.0.0.1:{w1} drain"));
    assert_eq!(answers(loopback(web), 10), ["web2"]);
    ctl.ok(&format!("add node api/127.0.0.1:{w1} weight 2"));
    let (code, _, err) = ctl.run(&format!("set weight 127.0.0.1:{w1} 5"));
    assert_ne!(code, 0);
    assert!(err.contains("several services (web, api)"), "{err}");
    ctl.ok(&format!("set weight web/127.0.0.1:{w1} 5"));
    ctl.ok(&format!("set weight 127.0.0.1:{r2} 3"));
    let (code, _, err) = ctl.run("disable nosuch");
    assert_ne!(code, 0);
    assert!(err.contains("no such service \"nosuch\""), "{err}");
    ctl.ok("set scheduler cache wlc");
    let web_nodes = ctl.ok("show nodes web");
    assert!(
        web_nodes.contains(&format!("web/127.0.0.1:{w1}")),
        "{web_nodes}"
    );
    assert!(!web_nodes.contains("api/"), "{web_nodes}");
    // disable/enable one service leaves the others serving.
    ctl.ok("disable api");
    assert!(get(loopback(api)).is_none());
    assert!(get(loopback(web)).is_some());
    ctl.ok("enable api");

    // Metrics carry the service label.
    let m = fetch_http(http, "/metrics");
    assert!(
        m.contains(&format!(
            "fulcrum_node_connections_total{{service=\"web\",node=\"127.0.0.1:{w2}\"}}"
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "fulcrum_node_weight{{service=\"api\",node=\"127.0.0.1:{w1}\"}} 2"
        )),
        "{m}"
    );
    assert!(
        m.contains("fulcrum_service_connections_total{service=\"cache\"}"),
        "{m}"
    );
    let api_json = fetch_http(http, "/api/v1/services");
    assert!(api_json.contains("\"name\":\"cache\""), "{api_json}");

    // The state file names the service in every line, and a restart applies it.
    assert!(
        eventually(Duration::from_secs(5), || {
            std::fs::read_to_string(&state)
                .is_ok_and(|t| t.contains(&format!("set state web/127.0.0.1:{w1} drain")))
        }),
        "{:?}",
        std::fs::read_to_string(&state)
    );
    p.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0), "{}", p.log());
    let text = std::fs::read_to_string(&state).unwrap();
    for want in [
        format!("set weight web/127.0.0.1:{w1} 5"),
        format!("add node api/127.0.0.1:{w1} weight 2"),
        format!("set weight cache/127.0.0.1:{r2} 3"),
        "set scheduler cache wlc".to_string(),
    ] {
        assert!(text.contains(&want), "{want}:\n{text}");
    }
    let p2 = spawn(&["serve", "--config", &conf], "info");
    wait_listening(loopback(web), &p2);
    assert!(
        eventually(Duration::from_secs(5), || {
            let n = ctl.ok("show nodes --json");
            n.contains(&format!(
                "\"service\":\"web\",\"addr\":\"127.0.0.1:{w1}\",\"weight\":5"
            )) && n.contains(&format!("\"service\":\"api\",\"addr\":\"127.0.0.1:{w1}\""))
        }),
        "{}\n{}",
        ctl.ok("show nodes --json"),
        p2.log()
    );
    assert!(ctl.ok("show services").contains(" wlc "));
    assert!(
        eventually(Duration::from_secs(5), || answers(loopback(web), 10)
            == ["web2"]),
        "{}",
        ctl.ok("show nodes")
    );
}

/// GET `path` from the HTTP interface on 127.0.0.1:`port`: the body.
fn fetch_http(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(loopback(port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
}

/// A node that sends `len` bytes of `pattern(seed)` to each client, 64 KiB every
/// 20 ms, so a transfer lasts long enough to straddle a reload.
fn slow_sender(seed: u64, len: usize) -> Backend {
    Backend::start(move |mut s: TcpStream| {
        let data = pattern(seed, len);
        for chunk in data.chunks(64 * 1024) {
            if s.write_all(chunk).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

#[test]
fn sighup_adds_and_removes_services_without_dropping_anything() {
    let dir = Scratch::new("hup");
    let web1 = Backend::start(says("web1"));
    let web2 = Backend::start(says("web2"));
    const LEN: usize = 8 << 20;
    let bulk = slow_sender(7, LEN);
    let extra = Backend::start(says("extra"));
    let (web, web_b, api, more) = (free_port(), free_port(), free_port(), free_port());
    let sock = dir.path("ctl.sock");
    let conf = dir.path("site.toml");
    let file = |services: &str| {
        format!(
            "workers = 2\ndrain-timeout = \"2s\"\ncontrol = \"{sock}\"\n\n[defaults]\ncheck = \"none\"\n\n{services}"
        )
    };
    let web_svc = |w: u32, listen: &str, extra: &str| {
        format!(
            "[[service]]\nname = \"web\"\nlisten = [{listen}]\nbackend = [\"{},weight={w}\", \"{}\"]\n{extra}\n",
            web1.addr, web2.addr
        )
    };
    let web_a = format!("\"127.0.0.1:{web}\"");
    let api_svc = format!(
        "[[service]]\nname = \"api\"\nlisten = [\"127.0.0.1:{api}\"]\nbackend = [\"{}\"]\n\n",
        bulk.addr
    );
    let more_svc = format!(
        "[[service]]\nname = \"more\"\nlisten = [\"127.0.0.1:{more}\"]\nbackend = [\"{}\"]\n\n",
        extra.addr
    );
    std::fs::write(&conf, file(&format!("{}{api_svc}", web_svc(1, &web_a, "")))).unwrap();
    let mut p = spawn(&["serve", "--config", &conf], "info");
    wait_listening(loopback(web), &p);
    wait_listening(loopback(api), &p);
    let ctl = Ctl::new(&sock);

    // A client loop on web, one request every 10 ms (bounded: 3000 requests at most).
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let client = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let addr = loopback(web);
        std::thread::spawn(move || {
            for _ in 0..3000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match fetch(addr) {
                    Ok(s) if s.starts_with("web") => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    // An 8 MiB transfer through the service the reload removes.
    let got = Arc::new(Mutex::new(Vec::new()));
    let transfer = {
        let got = got.clone();
        let addr = loopback(api);
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut buf = Vec::with_capacity(LEN);
            let _ = s.read_to_end(&mut buf);
            *got.lock().unwrap() = buf;
        })
    };
    std::thread::sleep(Duration::from_millis(400));

    // The file adds "more", drops "api", weighs web1 3, gives web a second address, a
    // longer connect timeout and TCP checks.
    let web_ab = format!("{web_a}, \"127.0.0.1:{web_b}\"");
    let web_new = web_svc(3, &web_ab, "connect-timeout = \"3s\"\ncheck = \"tcp\"\n");
    std::fs::write(&conf, file(&format!("{web_new}{more_svc}"))).unwrap();
    p.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        eventually(Duration::from_secs(5), || p
            .log()
            .contains("1 service started, 1 stopped")),
        "{}",
        p.log()
    );
    wait_listening(loopback(more), &p);
    assert_eq!(fetch(loopback(more)).unwrap(), "extra\n");
    wait_listening(loopback(web_b), &p);
    assert!(fetch(loopback(web_b)).unwrap().starts_with("web"));
    let config = ctl.ok("show config --json");
    assert!(config.contains("\"connect_timeout\":\"3s\""), "{config}");
    assert!(config.contains("\"check\":\"tcp\""), "{config}");
    assert!(p.log().contains("0 waiting for a restart"), "{}", p.log());
    // TCP checks now run on web's nodes (their last check is shown).
    assert!(
        eventually(Duration::from_secs(5), || ctl
            .ok("show nodes web --json")
            .contains("\"last_check\":{\"ok\":true")),
        "{}",
        ctl.ok("show nodes web --json")
    );
    let s = ctl.ok("show services");
    assert!(s.contains("more ") && !s.contains("api "), "{s}");
    assert!(ctl
        .ok("show nodes --json")
        .contains(&format!("\"addr\":\"{}\",\"weight\":3", web1.addr)));
    // The removed service's listener is closed: new connections are refused...
    assert!(
        eventually(Duration::from_secs(2), || TcpStream::connect(loopback(api))
            .is_err()),
        "api still accepts"
    );
    // ...while its transfer goes on to the last byte.
    let started = Instant::now();
    transfer.join().unwrap();
    let data = got.lock().unwrap().clone();
    assert_eq!(
        data.len(),
        LEN,
        "transfer cut after {:?}",
        started.elapsed()
    );
    assert_eq!(sha256(&data), sha256(&pattern(7, LEN)));

    // A bad file changes nothing and says why.
    std::fs::write(
        &conf,
        file("[[service]]\nname = \"web\"\nlisten = [\"nowhere\"]\n"),
    )
    .unwrap();
    p.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        eventually(Duration::from_secs(5), || p
            .log()
            .contains("still serving with the configuration it had")),
        "{}",
        p.log()
    );
    assert_eq!(fetch(loopback(more)).unwrap(), "extra\n");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    assert!(ok.load(Ordering::Relaxed) > 50, "too few requests ran");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "{}", p.log());
    p.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0), "{}", p.log());
}
