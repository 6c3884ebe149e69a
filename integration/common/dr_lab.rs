//! A network-namespace lab for the direct-routing tests, after `netlab/lab.sh`:
//!
//! ```text
//!               {p}-br: bridge br0 (stp off, mcast_snooping 0)
//!   {p}-client  {p}-lb1   {p}-lb2   {p}-srv1   {p}-srv2     (eth0 in each)
//!   10.99.0.10  .11       .12       .21        .22    /24, VIP 10.99.0.100
//! ```
//!
//! `{p}` is unique to the test run (process id + a tag), so runs never share
//! namespaces with each other or with anyone else's lab. Every IPv4 sysctl that matters
//! is set explicitly (a new namespace inherits the root's). Nodes hold the VIP on `lo`
//! with `arp_ignore=1`/`arp_announce=2`. Offloads are left as the kernel sets them: the
//! client sends partial checksums, as on a real veth/virtio host.
//!
//! The namespaces themselves are a [`super::topology::Topology`] (shared with the
//! failover lab); this lab adds the VIP on the nodes' `lo` and its helpers. [`Lab`]'s
//! `Drop` ends every process it started by PID (SIGTERM, then SIGKILL); then the
//! topology's drop kills any straggler inside its namespaces (by PID, from `ip netns
//! pids`) and deletes them — also when a test panics. Traffic stays inside these
//! namespaces.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::topology::{self, Topology};
use super::Proc;

/// The VIP.
pub const VIP: &str = "10.99.0.100";
/// The IPv6 VIP (unique-local), held on the nodes' `lo` in an IPv6 lab ([`Lab::up6`]).
pub const VIP6: &str = "fd99::100";
/// Hosts and their addresses.
pub const HOSTS: [(&str, &str, &str); 5] = [
    ("client", "10.99.0.10", "02:99:00:00:00:10"),
    ("lb1", "10.99.0.11", "02:99:00:00:00:11"),
    ("lb2", "10.99.0.12", "02:99:00:00:00:12"),
    ("srv1", "10.99.0.21", "02:99:00:00:00:21"),
    ("srv2", "10.99.0.22", "02:99:00:00:00:22"),
];

/// Address of a lab host.
pub fn ip(host: &str) -> &'static str {
    HOSTS
        .iter()
        .find(|h| h.0 == host)
        .map(|h| h.1)
        .expect("lab host")
}

/// IPv6 address of a lab host in an IPv6 lab: `fd99::` + the last byte of its IPv4 one
/// (client fd99::10, lb1 fd99::11, …, srv1 fd99::21).
pub fn ip6(host: &str) -> String {
    let last = ip(host).rsplit('.').next().expect("dotted quad");
    format!("fd99::{last}")
}

/// MAC of a lab host.
pub fn mac(host: &str) -> &'static str {
    HOSTS
        .iter()
        .find(|h| h.0 == host)
        .map(|h| h.2)
        .expect("lab host")
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A running lab (see the module documentation).
pub struct Lab {
    /// Namespace name prefix.
    pub prefix: String,
    /// Scratch directory (configs, logs).
    pub dir: PathBuf,
    procs: Mutex<Vec<Proc>>,
    /// IPv6 is on ([`Lab::up6`]): servers listen on both families.
    pub ipv6: bool,
    /// Declared last: dropped after `Drop::drop` has ended the processes.
    topo: Topology,
}

fn run(args: &[&str]) -> Output {
    topology::run(args[0], &args[1..])
}

fn must(args: &[&str]) {
    topology::must(args[0], &args[1..]);
}

impl Lab {
    /// Builds the lab. `tag` distinguishes labs of one test process.
    pub fn up(tag: &str) -> Lab {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("fdr{}{}{}", std::process::id(), tag, n);
        let dir = std::env::temp_dir().join(&prefix);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("lab dir");
        let hosts: Vec<(&str, std::net::Ipv4Addr, &str)> = HOSTS
            .iter()
            .map(|(h, addr, mac)| (*h, addr.parse().expect("lab address"), *mac))
            .collect();
        let topo = Topology::new(&prefix, &hosts);
        let lab = Lab {
            prefix,
            dir,
            procs: Mutex::new(Vec::new()),
            ipv6: false,
            topo,
        };
        for h in ["srv1", "srv2"] {
            lab.sysctl(h, "net.ipv4.conf.all.arp_ignore", "1");
            lab.sysctl(h, "net.ipv4.conf.all.arp_announce", "2");
            must(&[
                "ip",
                "-n",
                &lab.ns(h),
                "addr",
                "add",
                &format!("{VIP}/32"),
                "dev",
                "lo",
            ]);
        }
        lab
    }

    /// Builds the lab with IPv6 on as well (dual stack): every host gets `fd99::X/64`
    /// ([`ip6`]) on eth0, the nodes hold [`VIP6`] on `lo` too. Duplicate address
    /// detection is off (`accept_dad=0`, `nodad`) so addresses are usable at once; router
    /// advertisements are ignored and IPv6 forwarding is off everywhere. Linux answers a
    /// neighbour solicitation only for addresses of the interface it arrived on, so the
    /// VIP on `lo` is never advertised by a node (the IPv6 `arp_ignore=1`).
    pub fn up6(tag: &str) -> Lab {
        let mut lab = Lab::up(tag);
        lab.ipv6 = true;
        for (h, _, _) in HOSTS {
            for kv in super::IPV6_SYSCTLS {
                let (k, v) = kv.split_once('=').expect("k=v");
                lab.sysctl(h, k, v);
            }
            let a = format!("{}/64", ip6(h));
            must(&[
                "ip",
                "-n",
                &lab.ns(h),
                "addr",
                "add",
                &a,
                "dev",
                "eth0",
                "nodad",
            ]);
        }
        for h in ["srv1", "srv2"] {
            let v = format!("{VIP6}/128");
            must(&["ip", "-n", &lab.ns(h), "addr", "add", &v, "dev", "lo"]);
        }
        lab
    }

    /// The namespace of `host`.
    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// Sets a sysctl inside `host`'s namespace.
    pub fn sysctl(&self, host: &str, key: &str, value: &str) {
        must(&[
            "ip",
            "netns",
            "exec",
            &self.ns(host),
            "sysctl",
            "-qw",
            &format!("{key}={value}"),
        ]);
    }

    /// Runs a command in `host`'s namespace to completion.
    pub fn exec(&self, host: &str, args: &[&str]) -> Output {
        let ns = self.ns(host);
        let mut v = vec!["ip", "netns", "exec", ns.as_str()];
        v.extend_from_slice(args);
        run(&v)
    }

    /// Starts a command in `host`'s namespace; it is killed by PID when the lab drops
    /// (or earlier through the returned index, see [`Lab::kill`]). stdout and stderr go
    /// to its log.
    pub fn spawn(&self, host: &str, args: &[&str], env: &[(&str, &str)]) -> usize {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(host)])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        // `ip netns exec` execs the command: the child's PID is the command's.
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stderr.take().expect("piped")) as Box<dyn Read + Send>,
            Box::new(child.stdout.take().expect("piped")),
        ] {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        procs.push(Proc { child, log });
        procs.len() - 1
    }

    /// The collected output of process `i`.
    pub fn log(&self, i: usize) -> String {
        self.procs.lock().unwrap_or_else(|e| e.into_inner())[i].log()
    }

    /// Sends `sig` to process `i` (by PID).
    pub fn signal(&self, i: usize, sig: nix::sys::signal::Signal) {
        self.procs.lock().unwrap_or_else(|e| e.into_inner())[i].signal(sig);
    }

    /// Waits up to `limit` for process `i` to exit; returns its exit code.
    pub fn wait(&self, i: usize, limit: Duration) -> Option<i32> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            {
                let mut p = self.procs.lock().unwrap_or_else(|e| e.into_inner());
                if let Ok(Some(st)) = p[i].child.try_wait() {
                    return st.code();
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILLs process `i` (a crash) and reaps it.
    pub fn kill(&self, i: usize) {
        let mut p = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        let _ = p[i].child.kill();
        let _ = p[i].child.wait();
    }

    /// Starts nginx on `host` port 80 answering `HOST\n` to every request.
    pub fn nginx(&self, host: &str) -> usize {
        let d = self.dir.join(host);
        std::fs::create_dir_all(&d).expect("nginx dir");
        let d = d.display().to_string();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             server {{ listen 80; {v6} keepalive_timeout 0; location / {{ return 200 \"{host}\\n\"; }} }}\n}}\n",
            v6 = if self.ipv6 { "listen [::]:80;" } else { "" }
        );
        let path = format!("{d}/nginx.conf");
        std::fs::write(&path, conf).expect("nginx conf");
        let i = self.spawn(
            host,
            &["nginx", "-c", &path, "-e", &format!("{d}/error.log")],
            &[],
        );
        let url = format!("http://{}/", ip(host));
        let ok = super::eventually(Duration::from_secs(5), || {
            self.curl("client", &url, None).as_deref() == Some(&format!("{host}\n"))
        });
        assert!(ok, "nginx on {host} did not answer: {}", self.log(i));
        i
    }

    /// Starts the fulcrum binary in `host`'s namespace.
    pub fn fulcrum(&self, host: &str, args: &[&str]) -> usize {
        let mut v = vec![super::bin()];
        v.extend_from_slice(args);
        // FULCRUM_TEST_LOG overrides the log filter (e.g. fulcrum::direct=trace).
        let filter = std::env::var("FULCRUM_TEST_LOG")
            .unwrap_or_else(|_| "info,fulcrum::direct=debug".to_string());
        self.spawn(host, &v, &[("RUST_LOG", filter.as_str())])
    }

    /// `curl` from `host` with a 3 s limit (and a fixed source port if given); the body,
    /// or `None` on failure.
    pub fn curl(&self, host: &str, url: &str, local_port: Option<u16>) -> Option<String> {
        let lp = local_port.map(|p| p.to_string());
        // -g: no URL globbing, so an IPv6 literal's brackets are an address.
        let mut args = vec![
            "curl",
            "-s",
            "-g",
            "--max-time",
            "3",
            "--connect-timeout",
            "3",
        ];
        if let Some(p) = &lp {
            args.extend(["--local-port", p.as_str()]);
        }
        args.push(url);
        let o = self.exec(host, &args);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// Starts tcpdump on `host`'s eth0 with `filter`, waits until it listens.
    pub fn capture(&self, host: &str, filter: &str) -> usize {
        let i = self.spawn(
            host,
            &[
                "tcpdump",
                "-i",
                "eth0",
                "-nn",
                "-e",
                "-l",
                "--immediate-mode",
                filter,
            ],
            &[],
        );
        let ok = super::eventually(Duration::from_secs(5), || {
            self.log(i).contains("listening on")
        });
        assert!(ok, "tcpdump on {host}: {}", self.log(i));
        i
    }

    /// Stops a capture and returns the packet lines it printed.
    pub fn capture_lines(&self, i: usize) -> Vec<String> {
        thread::sleep(Duration::from_millis(200));
        self.signal(i, nix::sys::signal::Signal::SIGINT);
        self.wait(i, Duration::from_secs(5));
        self.log(i)
            .lines()
            .filter(|l| l.contains(" > "))
            .map(str::to_string)
            .collect()
    }

    /// Runs `f` on a thread that has entered `host`'s network namespace (sockets it
    /// creates live there).
    pub fn in_ns<T: Send + 'static>(
        &self,
        host: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.ns(host));
        thread::spawn(move || {
            let fd = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: setns(2) on this thread only, with a namespace descriptor we hold.
            let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
    }
}

/// An echo server running on a thread inside a lab namespace: greets each connection
/// with `NAME\n`, then echoes bytes until EOF. Stops when dropped.
pub struct Echo {
    stop: Arc<AtomicBool>,
    /// Connections accepted.
    pub accepted: Arc<AtomicUsize>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Lab {
    /// Starts an [`Echo`] server on `host`, port `port`, all addresses (so the VIP on lo;
    /// both families in an IPv6 lab).
    pub fn echo(&self, host: &'static str, port: u16) -> Echo {
        let any = if self.ipv6 { "::" } else { "0.0.0.0" };
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (s, a) = (Arc::clone(&stop), Arc::clone(&accepted));
        let (tx, rx) = std::sync::mpsc::channel();
        self.in_ns(host, move || {
            let l = std::net::TcpListener::bind((any, port)).expect("echo bind");
            l.set_nonblocking(true).expect("nonblocking");
            let _ = tx.send(());
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        a.fetch_add(1, Ordering::Relaxed);
                        let _ = c.set_nonblocking(false);
                        thread::spawn(move || {
                            use std::io::Write;
                            let _ = c.write_all(format!("{host}\n").as_bytes());
                            let mut r = match c.try_clone() {
                                Ok(r) => r,
                                Err(_) => return,
                            };
                            let _ = std::io::copy(&mut r, &mut c);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("echo server listening");
        Echo { stop, accepted }
    }

    /// Sends raw Ethernet frames out of `host`'s eth0 (an AF_PACKET socket in its
    /// namespace). Returns how many were sent.
    pub fn send_frames(&self, host: &str, frames: Vec<Vec<u8>>) -> usize {
        self.in_ns(host, move || {
            // SAFETY: plain socket(2); closed at the end of this closure.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
            assert!(
                fd >= 0,
                "packet socket: {}",
                std::io::Error::last_os_error()
            );
            // SAFETY: a NUL-terminated literal.
            let ifindex = unsafe { libc::if_nametoindex(c"eth0".as_ptr()) };
            // SAFETY: zeroed sockaddr_ll is valid; fields set below.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = ifindex as i32;
            sll.sll_halen = 6;
            let mut sent = 0;
            for f in frames {
                // SAFETY: live buffer and sockaddr for the duration of the call.
                let n = unsafe {
                    libc::sendto(
                        fd,
                        f.as_ptr().cast(),
                        f.len(),
                        0,
                        (&sll as *const libc::sockaddr_ll).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                    )
                };
                if n == f.len() as isize {
                    sent += 1;
                }
            }
            // SAFETY: our descriptor.
            unsafe { libc::close(fd) };
            sent
        })
        .join()
        .expect("sender thread")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        for p in procs.iter() {
            p.signal(nix::sys::signal::Signal::SIGTERM);
        }
        let end = Instant::now() + Duration::from_secs(2);
        for p in procs.iter_mut() {
            while Instant::now() < end && matches!(p.child.try_wait(), Ok(None)) {
                thread::sleep(Duration::from_millis(20));
            }
        }
        // Proc's own Drop SIGKILLs and reaps whatever is left; then `topo` drops:
        // stragglers inside the namespaces, and the namespaces themselves.
        procs.clear();
        drop(procs);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
