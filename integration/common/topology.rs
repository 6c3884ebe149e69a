//! The network-namespace topology both multi-host labs stand on (needs root).
//!
//! One bridge namespace (`{id}-br`, bridge `br0`: STP off, multicast snooping off,
//! bridge netfilter off) and one namespace per host (`{id}-{name}`), each joined to the
//! bridge by a veth pair with `eth0` inside the host, its MAC and its /24 address set,
//! and every IPv4 sysctl that matters set explicitly (a new namespace inherits the root
//! namespace's). Nothing is created in the root namespace; addresses exist only inside
//! these namespaces.
//!
//! Teardown is a guard: dropping a [`Topology`] — also when a test panics, also halfway
//! through [`Topology::new`] — kills any process still inside its namespaces (by PID,
//! from `ip netns pids`) and deletes the namespaces (their veths, and with them `br0`,
//! go too). The labs end the processes they started themselves first.

use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};

/// One host of the topology.
#[derive(Debug, Clone)]
pub struct Host {
    /// Short name (`lb1`).
    pub name: String,
    /// Namespace name (unique to this topology).
    pub ns: String,
    /// Address on `eth0` (/24).
    pub ip: Ipv4Addr,
    /// MAC of `eth0`.
    pub mac: String,
}

/// The bridge and the hosts; dropping it deletes them.
pub struct Topology {
    /// The bridge's namespace.
    pub br: String,
    /// The hosts, in creation order.
    pub hosts: Vec<Host>,
}

/// Runs a command to completion (bounded by the command itself), returning its output.
pub fn run(prog: &str, args: &[&str]) -> Output {
    Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"))
}

/// Runs a command that must succeed; returns its stdout.
pub fn must(prog: &str, args: &[&str]) -> String {
    let out = run(prog, args);
    assert!(
        out.status.success(),
        "{prog} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Topology {
    /// Builds the bridge and `hosts` as `(name, address, MAC)`, namespaces named
    /// `{id}-…`. Panics (after cleaning up) if a step fails.
    pub fn new(id: &str, hosts: &[(&str, Ipv4Addr, &str)]) -> Topology {
        assert!(
            nix::unistd::geteuid().is_root(),
            "network-namespace labs need root"
        );
        let br = format!("{id}-br");
        let mut t = Topology {
            br: br.clone(),
            hosts: Vec::new(),
        };
        // From here on, a failure panics and Drop cleans up what exists.
        must("ip", &["netns", "add", &br]);
        must("ip", &["-n", &br, "link", "set", "lo", "up"]);
        let bridge = ["-n", &br, "link", "add", "br0", "type", "bridge"];
        let opts = ["stp_state", "0", "mcast_snooping", "0"];
        must("ip", &[&bridge[..], &opts[..]].concat());
        must("ip", &["-n", &br, "link", "set", "br0", "up"]);
        // With br_netfilter loaded the bridge validates IPv4 headers and silently drops
        // bad checksums and lengths: a real switch does not. Off (it may be absent).
        for k in ["iptables", "ip6tables", "arptables"] {
            let kv = format!("net.bridge.bridge-nf-call-{k}=0");
            let _ = run("ip", &["netns", "exec", &br, "sysctl", "-qw", &kv]);
        }
        for (name, ip, mac) in hosts {
            let ns = format!("{id}-{name}");
            t.hosts.push(Host {
                name: name.to_string(),
                ns: ns.clone(),
                ip: *ip,
                mac: mac.to_string(),
            });
            must("ip", &["netns", "add", &ns]);
            for kv in [
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
                "net.ipv4.ip_forward=0",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
                "net.ipv4.conf.all.arp_ignore=0",
                "net.ipv4.conf.all.arp_announce=0",
            ] {
                must("ip", &["netns", "exec", &ns, "sysctl", "-qw", kv]);
            }
            let port = format!("p-{name}");
            let veth = ["-n", &br, "link", "add", &port, "type", "veth"];
            must(
                "ip",
                &[&veth[..], &["peer", "name", "eth0", "netns", &ns]].concat(),
            );
            must("ip", &["-n", &ns, "link", "set", "eth0", "address", mac]);
            must("ip", &["-n", &br, "link", "set", &port, "master", "br0"]);
            must("ip", &["-n", &br, "link", "set", &port, "up"]);
            must("ip", &["-n", &ns, "link", "set", "lo", "up"]);
            must("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
            must(
                "ip",
                &["-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
            );
        }
        t
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in the lab"))
    }

    /// Every namespace, the bridge's first.
    pub fn namespaces(&self) -> Vec<String> {
        std::iter::once(self.br.clone())
            .chain(self.hosts.iter().map(|h| h.ns.clone()))
            .collect()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let all = self.namespaces();
        for ns in &all {
            let out = run("ip", &["netns", "pids", ns]);
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        for ns in &all {
            let _ = run("ip", &["netns", "del", ns]);
        }
    }
}
