//! A network-namespace lab for end-to-end failover tests (needs root).
//!
//! What it owns: one bridge namespace and one namespace per host, each host joined to
//! the bridge by a veth pair (`eth0` inside the host), addresses in 10.99.0.0/24 that
//! exist only inside these namespaces, a temporary directory, and every process it
//! started. Names carry a short id made of the test process's PID and a counter, so
//! concurrent or leftover runs never clash. Nothing is created in the root namespace.
//!
//! The namespaces, veths, bridge and sysctls are a [`super::topology::Topology`], shared
//! with the direct-routing lab. Teardown is a guard: [`Lab`]'s `Drop` — which also runs
//! when a test panics — kills every process it started by PID (SIGKILL) and removes the
//! directory; then the topology's own drop kills any straggler still inside one of its
//! namespaces (`ip netns pids`) and deletes the namespaces. Commands
//! run inside a host with `ip netns exec`, which execs, so the child's PID is the real
//! process. [`Lab::enter`] moves only the calling thread into a namespace (setns),
//! for clients written in Rust.
//!
//! Shaped after `shared/netlab/lab.sh` and its NOTES (sysctls set explicitly, because a
//! new namespace inherits IPv4 devconf from the root namespace).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

use super::topology::Topology;
pub use super::topology::{run, Host};

/// A process started in the lab; its stdout+stderr are collected.
pub struct LabProc {
    /// Its PID (the real process: `ip netns exec` execs).
    pub pid: i32,
    log: Arc<Mutex<String>>,
}

impl LabProc {
    /// Everything it printed so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The lab; dropping it tears everything down.
pub struct Lab {
    /// Short unique id, prefix of every namespace name.
    pub id: String,
    /// Temporary directory for configs, keys, logs.
    pub dir: PathBuf,
    children: Vec<Child>,
    /// Declared last: dropped after `Drop::drop` has ended the children.
    topo: Topology,
}

/// Whether this process may create namespaces (root).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

impl Lab {
    /// Builds the bridge and the hosts `(name, last octet)` in 10.99.0.0/24.
    pub fn new(hosts: &[(&str, u8)]) -> Lab {
        assert!(
            is_root(),
            "the failover lab needs root (network namespaces)"
        );
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("fl{}x{n}", std::process::id() % 1_000_000);
        let dir = std::env::temp_dir().join(format!("fulcrum-lab-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("lab dir");
        let spec: Vec<(&str, Ipv4Addr, String)> = hosts
            .iter()
            .map(|(name, last)| {
                (
                    *name,
                    Ipv4Addr::new(10, 99, 0, *last),
                    format!("02:99:00:00:00:{last:02x}"),
                )
            })
            .collect();
        let spec: Vec<(&str, Ipv4Addr, &str)> = spec
            .iter()
            .map(|(n, ip, m)| (*n, *ip, m.as_str()))
            .collect();
        let topo = Topology::new(&id, &spec);
        Lab {
            id,
            dir,
            children: Vec::new(),
            topo,
        }
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> &Host {
        self.topo.host(name)
    }

    /// Namespace of `name`.
    pub fn ns(&self, name: &str) -> String {
        self.host(name).ns.clone()
    }

    /// Runs `prog args` inside host `name` to completion.
    pub fn exec(&self, name: &str, prog: &str, args: &[&str]) -> Output {
        let ns = self.ns(name);
        let mut all = vec!["netns", "exec", ns.as_str(), prog];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Like [`Lab::exec`], but the command must succeed; returns its stdout.
    pub fn must(&self, name: &str, prog: &str, args: &[&str]) -> String {
        let out = self.exec(name, prog, args);
        assert!(
            out.status.success(),
            "[{name}] {prog} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `prog args` inside host `name`, collecting its output; killed at teardown.
    pub fn spawn(
        &mut self,
        name: &str,
        prog: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> LabProc {
        let ns = self.ns(name);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns, prog])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {prog} in {name}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let streams: Vec<Box<dyn Read + Send>> = vec![
            Box::new(child.stderr.take().expect("piped")),
            Box::new(child.stdout.take().expect("piped")),
        ];
        for stream in streams {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let pid = child.id() as i32;
        self.children.push(child);
        LabProc { pid, log }
    }

    /// Sends `sig` to a process this lab started and, for SIGKILL, reaps it.
    pub fn signal(&mut self, p: &LabProc, sig: Signal) {
        let _ = kill(Pid::from_raw(p.pid), sig);
        if sig == Signal::SIGKILL {
            self.reap(p.pid, Duration::from_secs(5));
        }
    }

    /// Waits (bounded) for a process this lab started to exit; true if it did.
    pub fn reap(&mut self, pid: i32, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        if let Some(c) = self.children.iter_mut().find(|c| c.id() as i32 == pid) {
            while Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    return true;
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
        false
    }

    /// Moves the calling thread (only) into host `name`'s network namespace.
    pub fn enter(&self, name: &str) {
        enter_ns(&self.ns(name));
    }

    /// Writes a file in the lab directory and returns its path.
    pub fn write(&self, file: &str, contents: &str) -> PathBuf {
        let p = self.dir.join(file);
        std::fs::write(&p, contents).expect("write lab file");
        // Lab files include secrets, which fulcrum refuses unless private (0600).
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod lab file");
        p
    }

    /// Starts nginx in host `name` on `IP:80`, answering every request with `name\n`.
    pub fn nginx(&mut self, name: &str) -> LabProc {
        let ip = self.host(name).ip;
        let d = self.dir.join(format!("nginx-{name}"));
        std::fs::create_dir_all(&d).expect("nginx dir");
        let dd = d.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {dd}/nginx.pid;\n\
             error_log {dd}/error.log warn;\nevents {{ worker_connections 512; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {dd}/body;\n  proxy_temp_path {dd}/proxy;\n\
             fastcgi_temp_path {dd}/fastcgi;\n  uwsgi_temp_path {dd}/uwsgi;\n  scgi_temp_path {dd}/scgi;\n\
             server {{\n    listen {ip}:80;\n    location / {{ default_type text/plain; return 200 \"{name}\\n\"; }}\n  }}\n}}\n"
        );
        let conf_path = d.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("nginx conf");
        let p = self.spawn(
            name,
            "nginx",
            &[
                "-p",
                &d.display().to_string(),
                "-e",
                &d.join("error.log").display().to_string(),
                "-c",
                &conf_path.display().to_string(),
            ],
            &[],
        );
        let ok = wait_until(Duration::from_secs(5), || {
            !self
                .exec(name, "ss", &["-Hltn", &format!("src {ip}:80")])
                .stdout
                .is_empty()
        });
        assert!(ok, "nginx did not listen in {name}: {}", p.log());
        p
    }

    /// Turns IPv6 on in host `name` with `cidr` (e.g. `fd99::11/64`) on eth0: duplicate
    /// address detection off (`accept_dad=0`, `nodad`) so addresses — and a VIP added
    /// at takeover — are usable at once, router advertisements ignored, forwarding off.
    pub fn enable_ipv6(&self, name: &str, cidr: &str) {
        for kv in super::IPV6_SYSCTLS {
            self.must(name, "sysctl", &["-qw", kv]);
        }
        self.must(name, "ip", &["addr", "add", cidr, "dev", "eth0", "nodad"]);
    }

    /// Whether the IPv6 `addr` is configured on host `name`'s eth0 (and not tentative:
    /// usable).
    pub fn has_addr6(&self, name: &str, addr: &str) -> bool {
        let out = self.exec(name, "ip", &["-6", "-o", "addr", "show", "dev", "eth0"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.contains(&format!(" {addr}/")) && !l.contains("tentative"))
    }

    /// Whether `addr` is configured on host `name`'s eth0.
    pub fn has_addr(&self, name: &str, addr: Ipv4Addr) -> bool {
        let out = self.exec(name, "ip", &["-4", "-o", "addr", "show", "dev", "eth0"]);
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {addr}/"))
    }
}

/// Moves the calling thread into the named network namespace.
pub fn enter_ns(ns: &str) {
    let f = File::open(Path::new("/var/run/netns").join(ns))
        .unwrap_or_else(|e| panic!("open netns {ns}: {e}"));
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
        .unwrap_or_else(|e| panic!("setns {ns}: {e}"));
}

/// Polls `f` every 10 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    f()
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Every process we started, by PID; then `topo` drops: stragglers inside the
        // namespaces, and the namespaces themselves.
        for c in &mut self.children {
            if let Ok(None) = c.try_wait() {
                let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
            }
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
