//! Start-up checks of direct mode: refuse to run where forwarding would silently fail.
//!
//! Each check maps to a pitfall reproduced in the lab (numbered in docs/direct-routing.md,
//! "Pitfalls") and fails with one line that says what is wrong and how to fix it (`main`
//! prints it, exit code 1):
//!
//! | check                                       | failure                                  |
//! |---------------------------------------------|------------------------------------------|
//! | `--interface` exists, is up, has a MAC      | error                                    |
//! | no VIP is a local address (pitfall #5)      | error: the kernel would RST every SYN    |
//! | IPv4 (and, with an IPv6 VIP, IPv6) forwarding is off (pitfall #4) | error: the kernel would forward too |
//! | nodes are on the interface's subnets (IPv4 or IPv6) | error: direct routing is L2 only |
//! | nodes listen on one of the VIPs' ports      | error: frames are not rewritten above L2 |
//! | GRO / LRO off on the interface (pitfall #3) | warning: super-frames are dropped        |
//! | CAP_NET_RAW (socket creation)               | error, from [`crate::sys::packet`]       |
//!
//! `ip_forward = 1` is refused rather than warned about: with it the kernel forwards a
//! second copy of every packet to the VIP (or sends ICMP redirects), which breaks
//! connections in ways that look like network faults.

use std::fmt;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use pnet::datalink::{self, NetworkInterface};
use pnet::ipnetwork::IpNetwork;
use pnet::util::MacAddr;

use crate::pool::NodeSpec;
use crate::sys::netdev::{self, mtu};

/// The interface as direct mode uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Name, e.g. `eth0`.
    pub name: String,
    /// Kernel index.
    pub index: u32,
    /// Hardware address.
    pub mac: MacAddr,
    /// MTU (frames up to MTU + 14 are forwarded).
    pub mtu: usize,
    /// The first IPv4 address (source of our ARP requests), if any.
    pub ipv4: Option<Ipv4Addr>,
    /// An IPv6 address to solicit from (link-local preferred, RFC 4861 §7.2.2), if any.
    pub ipv6: Option<Ipv6Addr>,
}

/// Why direct mode refuses to start.
#[derive(Debug)]
pub enum StartupError {
    /// No interface of that name.
    NoInterface(String),
    /// The interface is administratively down.
    InterfaceDown(String),
    /// The interface has no Ethernet address (loopback, tun, …).
    NoMac(String),
    /// The VIP is assigned to a local interface.
    VipIsLocal {
        /// The VIP.
        vip: IpAddr,
        /// Where it is assigned.
        iface: String,
        /// The prefix length it is assigned with (what `ip addr del` needs).
        prefix: u8,
        /// It is the interface's first IPv4 address: likely the host's own address,
        /// which must not be deleted; the VIP must be another address.
        primary: bool,
    },
    /// IP forwarding is on.
    Forwarding {
        /// The sysctl file that reads 1.
        path: String,
    },
    /// `--listen` is empty, or lists more VIP addresses than the socket filter holds.
    ListenCount(String),
    /// An IPv6 VIP that cannot be one (link-local, multicast, unspecified, loopback).
    VipNotUsable(SocketAddr),
    /// A node is outside every subnet of the interface.
    NodeNotOnLink {
        /// The node.
        node: SocketAddr,
        /// The interface.
        iface: String,
    },
    /// A node's port differs from the VIP's.
    NodePort {
        /// The node.
        node: SocketAddr,
        /// The VIP's port.
        port: u16,
    },
    /// The raw socket cannot be opened (privileges, or another error).
    Socket(io::Error),
    /// `--ring xdp` cannot be set up (the message says why).
    Xdp(String),
}

impl fmt::Display for StartupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartupError::NoInterface(i) => write!(f, "--interface {i}: no such interface"),
            StartupError::InterfaceDown(i) => {
                write!(f, "--interface {i}: interface is down (ip link set {i} up)")
            }
            StartupError::NoMac(i) => write!(f, "--interface {i}: not an Ethernet interface"),
            StartupError::VipIsLocal {
                vip,
                iface,
                primary: true,
                ..
            } => write!(
                f,
                "direct mode: the VIP {vip} is {iface}'s own (primary) address; the kernel would reset every connection — give --listen an address no local interface has (keep {vip}: the host needs it); fulcrum answers ARP for the VIP"
            ),
            StartupError::VipIsLocal {
                vip,
                iface,
                prefix,
                primary: false,
            } => write!(
                f,
                "direct mode: the VIP {vip} is a local address (on {iface}); the kernel would reset every connection — remove it (ip addr del {vip}/{prefix} dev {iface}); fulcrum answers ARP for it"
            ),
            StartupError::Forwarding { path } if path.contains("ipv6") => write!(
                f,
                "direct mode: IPv6 forwarding is on ({path} = 1); the kernel would forward a second copy of every packet to an IPv6 VIP — set it to 0 (sysctl -w {}=0)",
                path.trim_start_matches("/proc/sys/").replace('/', ".")
            ),
            StartupError::Forwarding { path } => write!(
                f,
                "direct mode: IPv4 forwarding is on ({path} = 1); the kernel would forward a second copy of every packet — set net.ipv4.ip_forward=0 (sysctl -w net.ipv4.ip_forward=0)"
            ),
            StartupError::ListenCount(l) => write!(
                f,
                "--listen {l}: direct mode needs one to {} VIP:PORT per address family (IPv4 or IPv6)",
                super::filter::MAX_VIPS_PER_FAMILY
            ),
            StartupError::VipNotUsable(l) => write!(
                f,
                "--listen {l}: not usable as a direct-mode VIP (link-local, multicast, loopback or unspecified)"
            ),
            StartupError::NodeNotOnLink { node, iface } => write!(
                f,
                "--backend {node}: not on a subnet of {iface}; direct routing needs the nodes on the same L2 segment"
            ),
            StartupError::NodePort { node, port } => write!(
                f,
                "--backend {node}: port must be the VIP's port {port} in direct mode (packets reach the node unchanged; with several --listen, one of their ports)"
            ),
            StartupError::Socket(e) if e.kind() == io::ErrorKind::PermissionDenied => write!(
                f,
                "direct mode: cannot open a raw packet socket ({e}); it needs CAP_NET_RAW: run as root or setcap cap_net_raw+ep on the binary"
            ),
            StartupError::Socket(e) => write!(f, "direct mode: raw packet socket: {e}"),
            StartupError::Xdp(m) => write!(f, "direct mode, --ring xdp: {m}"),
        }
    }
}

impl std::error::Error for StartupError {}

/// Finds and checks the interface.
pub fn interface(name: &str) -> Result<(Interface, Vec<NetworkInterface>), StartupError> {
    let all = datalink::interfaces();
    let ni = all
        .iter()
        .find(|i| i.name == name)
        .ok_or_else(|| StartupError::NoInterface(name.into()))?;
    if !ni.is_up() {
        return Err(StartupError::InterfaceDown(name.into()));
    }
    let mac = ni
        .mac
        .filter(|m| *m != MacAddr::zero())
        .ok_or_else(|| StartupError::NoMac(name.into()))?;
    let ipv4 = ni.ips.iter().find_map(|n| match n.ip() {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    });
    let v6: Vec<Ipv6Addr> = ni
        .ips
        .iter()
        .filter_map(|n| match n.ip() {
            IpAddr::V6(ip) => Some(ip),
            IpAddr::V4(_) => None,
        })
        .collect();
    let ipv6 = v6
        .iter()
        .find(|ip| ip.is_unicast_link_local())
        .or(v6.first())
        .copied();
    let mtu = mtu(name).unwrap_or(1500);
    let iface = Interface {
        name: name.into(),
        index: ni.index,
        mac,
        mtu,
        ipv4,
        ipv6,
    };
    Ok((iface, all))
}

/// Checks the VIPs, the nodes and the forwarding sysctls against the interfaces.
pub fn check(
    iface: &Interface,
    all: &[NetworkInterface],
    listen: &[SocketAddr],
    nodes: &[NodeSpec],
) -> Result<(), StartupError> {
    check_listen(listen)?;
    for l in listen {
        check_vip_not_local(all, l.ip())?;
    }
    let nets: Vec<IpNetwork> = all
        .iter()
        .find(|i| i.name == iface.name)
        .map(|i| i.ips.clone())
        .unwrap_or_default();
    check_nodes(&iface.name, &nets, listen, nodes)?;
    let mut paths = vec![
        "/proc/sys/net/ipv4/ip_forward".to_string(),
        format!("/proc/sys/net/ipv4/conf/{}/forwarding", iface.name),
    ];
    if listen.iter().any(|l| l.is_ipv6()) {
        paths.push("/proc/sys/net/ipv6/conf/all/forwarding".into());
        paths.push(format!("/proc/sys/net/ipv6/conf/{}/forwarding", iface.name));
    }
    for path in paths {
        if fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1") {
            return Err(StartupError::Forwarding { path });
        }
    }
    Ok(())
}

/// The `--listen` list of direct mode: at least one, at most
/// [`super::filter::MAX_VIPS_PER_FAMILY`] addresses per family, IPv6 ones global or
/// unique-local unicast (a link-local VIP would need a zone; a multicast one is no host's).
pub fn check_listen(listen: &[SocketAddr]) -> Result<(), StartupError> {
    let mut v4: Vec<IpAddr> = listen
        .iter()
        .filter(|l| l.is_ipv4())
        .map(|l| l.ip())
        .collect();
    let mut v6: Vec<IpAddr> = listen
        .iter()
        .filter(|l| l.is_ipv6())
        .map(|l| l.ip())
        .collect();
    v4.sort_unstable();
    v4.dedup();
    v6.sort_unstable();
    v6.dedup();
    let max = super::filter::MAX_VIPS_PER_FAMILY;
    if listen.is_empty() || v4.len() > max || v6.len() > max {
        let l: Vec<String> = listen.iter().map(|l| l.to_string()).collect();
        return Err(StartupError::ListenCount(l.join(" ")));
    }
    for l in listen {
        let bad = match l.ip() {
            IpAddr::V4(ip) => ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast(),
            IpAddr::V6(ip) => {
                ip.is_unspecified()
                    || ip.is_multicast()
                    || ip.is_loopback()
                    || ip.is_unicast_link_local()
                    || ip.to_ipv4_mapped().is_some()
            }
        };
        if bad {
            return Err(StartupError::VipNotUsable(*l));
        }
    }
    Ok(())
}

fn check_vip_not_local(all: &[NetworkInterface], vip: IpAddr) -> Result<(), StartupError> {
    for i in all {
        let mut same = i.ips.iter().filter(|n| n.is_ipv4() == vip.is_ipv4());
        let first = same.clone().next().map(|n| n.ip());
        if let Some(n) = same.find(|n| n.ip() == vip) {
            return Err(StartupError::VipIsLocal {
                vip,
                iface: i.name.clone(),
                prefix: n.prefix(),
                // An IPv6 interface always has its link-local first; only IPv4 has a
                // "primary" address in the sense the message means.
                primary: vip.is_ipv4() && first == Some(vip),
            });
        }
    }
    Ok(())
}

/// Nodes must be on one of the interface's subnets of their family (when it has any)
/// and on one of the VIPs' ports. A node's family says how its MAC is learned (ARP or
/// neighbour discovery); it serves the VIPs of both families at that MAC.
pub fn check_nodes(
    iface: &str,
    nets: &[IpNetwork],
    listen: &[SocketAddr],
    nodes: &[NodeSpec],
) -> Result<(), StartupError> {
    for n in nodes {
        let ip = n.addr.ip();
        if !listen.iter().any(|l| l.port() == n.addr.port()) {
            let port = listen.first().map_or(0, |l| l.port());
            return Err(StartupError::NodePort { node: n.addr, port });
        }
        let same: Vec<&IpNetwork> = nets
            .iter()
            .filter(|net| net.is_ipv4() == ip.is_ipv4())
            .collect();
        // No address of that family: on-link cannot be checked, so it is not (an
        // IPv6 link-local node is on link by definition).
        let link_local = matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local());
        if !same.is_empty() && !link_local && !same.iter().any(|net| net.contains(ip)) {
            return Err(StartupError::NodeNotOnLink {
                node: n.addr,
                iface: iface.into(),
            });
        }
    }
    Ok(())
}

/// Receive queues of the interface (`/sys/class/net/NAME/queues/rx-*`), 1 if unknown.
pub fn rx_queues(name: &str) -> u32 {
    fs::read_dir(format!("/sys/class/net/{name}/queues"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(1)
        .max(1)
}

/// Is GRO or LRO on for the interface? `None` if the driver does not say.
/// (ETHTOOL_GGRO = 0x2b; ETHTOOL_GFLAGS = 0x25 with ETH_FLAG_LRO = 1 << 15.)
pub fn offloads_merging(name: &str) -> Option<(bool, bool)> {
    let gro = netdev::ethtool_get(name, 0x2b).ok()? != 0;
    let lro = netdev::ethtool_get(name, 0x25).is_ok_and(|f| f & (1 << 15) != 0);
    Some((gro, lro))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> NodeSpec {
        NodeSpec {
            addr: s.parse().unwrap(),
            weight: 1,
            backup: false,
            maxconn: 0,
            agent: false,
        }
    }

    fn l(s: &[&str]) -> Vec<SocketAddr> {
        s.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn nodes_must_be_on_link_same_port() {
        let nets: Vec<IpNetwork> = vec!["10.99.0.11/24".parse().unwrap()];
        let vip = l(&["10.99.0.100:80"]);
        assert!(check_nodes("eth0", &nets, &vip, &[spec("10.99.0.21:80")]).is_ok());
        let e = check_nodes("eth0", &nets, &vip, &[spec("10.98.0.21:80")]).unwrap_err();
        assert!(e.to_string().contains("same L2 segment"), "{e}");
        let e = check_nodes("eth0", &nets, &vip, &[spec("10.99.0.21:8080")]).unwrap_err();
        assert!(
            e.to_string().contains("port must be the VIP's port 80"),
            "{e}"
        );
        // An interface without addresses: on-link cannot be checked, so it is not.
        assert!(check_nodes("eth0", &[], &vip, &[spec("10.98.0.21:80")]).is_ok());
    }

    #[test]
    fn ipv6_nodes_are_checked_against_the_ipv6_subnets() {
        let nets: Vec<IpNetwork> = vec![
            "10.99.0.11/24".parse().unwrap(),
            "fd99::11/64".parse().unwrap(),
            "fe80::1/64".parse().unwrap(),
        ];
        let vips = l(&["[fd99::100]:80", "10.99.0.100:443"]);
        assert!(check_nodes("eth0", &nets, &vips, &[spec("[fd99::21]:80")]).is_ok());
        assert!(check_nodes("eth0", &nets, &vips, &[spec("[fe80::21]:443")]).is_ok());
        let e = check_nodes("eth0", &nets, &vips, &[spec("[fd98::21]:80")]).unwrap_err();
        assert!(e.to_string().contains("same L2 segment"), "{e}");
        let e = check_nodes("eth0", &nets, &vips, &[spec("[fd99::21]:8080")]).unwrap_err();
        assert!(e.to_string().contains("one of their ports"), "{e}");
        // No IPv6 address on the interface: not checked, as for IPv4.
        let v4only: Vec<IpNetwork> = vec!["10.99.0.11/24".parse().unwrap()];
        assert!(check_nodes("eth0", &v4only, &vips, &[spec("[fd98::21]:80")]).is_ok());
    }

    #[test]
    fn listen_lists_are_checked() {
        assert!(check_listen(&l(&["10.0.0.1:80", "[fd99::100]:80", "10.0.0.1:443"])).is_ok());
        assert!(check_listen(&[]).is_err());
        for bad in [
            "[fe80::1]:80",
            "[ff02::1]:80",
            "[::]:80",
            "[::1]:80",
            "0.0.0.0:80",
        ] {
            let e = check_listen(&l(&[bad])).unwrap_err().to_string();
            assert!(e.contains("not usable"), "{bad}: {e}");
            assert!(!e.contains('\n'));
        }
        let many: Vec<SocketAddr> = (0..17u8)
            .map(|i| SocketAddr::from(([10, 0, 0, i], 80)))
            .collect();
        assert!(check_listen(&many).is_err());
        assert!(check_listen(&many[..16]).is_ok());
    }

    #[test]
    fn a_local_ipv6_vip_is_refused() {
        let iface = NetworkInterface {
            name: "eth0".into(),
            description: String::new(),
            index: 2,
            mac: None,
            ips: vec![
                "fe80::1/64".parse().unwrap(),
                "fd99::100/128".parse().unwrap(),
            ],
            flags: 0,
        };
        match check_vip_not_local(&[iface], "fd99::100".parse().unwrap()) {
            Err(
                e @ StartupError::VipIsLocal {
                    primary: false,
                    prefix: 128,
                    ..
                },
            ) => {
                assert!(
                    e.to_string().contains("ip addr del fd99::100/128 dev eth0"),
                    "{e}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_are_one_line_and_name_the_fix() {
        let errs = [
            StartupError::NoInterface("eth9".into()),
            StartupError::InterfaceDown("eth0".into()),
            StartupError::VipIsLocal {
                vip: Ipv4Addr::new(10, 0, 0, 1).into(),
                iface: "eth0".into(),
                prefix: 24,
                primary: false,
            },
            StartupError::Forwarding {
                path: "/proc/sys/net/ipv4/ip_forward".into(),
            },
            StartupError::Forwarding {
                path: "/proc/sys/net/ipv6/conf/all/forwarding".into(),
            },
            StartupError::VipNotUsable("[fe80::1]:80".parse().unwrap()),
            StartupError::Socket(io::Error::from(io::ErrorKind::PermissionDenied)),
        ];
        for e in errs {
            let s = e.to_string();
            assert!(!s.contains('\n'), "{s}");
        }
        assert!(
            StartupError::Socket(io::Error::from_raw_os_error(libc::EPERM))
                .to_string()
                .contains("CAP_NET_RAW")
        );
    }

    #[test]
    fn loopback_is_found_but_not_ethernet() {
        match interface("lo") {
            Err(StartupError::NoMac(_)) | Err(StartupError::InterfaceDown(_)) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            interface("no-such-if0"),
            Err(StartupError::NoInterface(_))
        ));
    }

    #[test]
    fn local_vip_error_gives_its_prefix_and_spares_the_primary_address() {
        let secondary = StartupError::VipIsLocal {
            vip: Ipv4Addr::new(10, 0, 0, 100).into(),
            iface: "eth0".into(),
            prefix: 24,
            primary: false,
        }
        .to_string();
        assert!(
            secondary.contains("ip addr del 10.0.0.100/24 dev eth0"),
            "{secondary}"
        );
        let primary = StartupError::VipIsLocal {
            vip: Ipv4Addr::new(10, 0, 0, 1).into(),
            iface: "eth0".into(),
            prefix: 24,
            primary: true,
        }
        .to_string();
        assert!(!primary.contains("ip addr del"), "{primary}");
        assert!(primary.contains("primary"), "{primary}");
    }

    #[test]
    fn the_first_ipv4_address_counts_as_primary() {
        let iface = |ips: &[&str]| NetworkInterface {
            name: "eth0".into(),
            description: String::new(),
            index: 2,
            mac: None,
            ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            flags: 0,
        };
        match check_vip_not_local(
            &[iface(&["10.0.0.1/24", "10.0.0.100/32"])],
            Ipv4Addr::new(10, 0, 0, 1).into(),
        ) {
            Err(StartupError::VipIsLocal {
                primary: true,
                prefix: 24,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        match check_vip_not_local(
            &[iface(&["10.0.0.1/24", "10.0.0.100/32"])],
            Ipv4Addr::new(10, 0, 0, 100).into(),
        ) {
            Err(StartupError::VipIsLocal {
                primary: false,
                prefix: 32,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(check_vip_not_local(
            &[iface(&["10.0.0.1/24"])],
            Ipv4Addr::new(10, 0, 0, 7).into()
        )
        .is_ok());
    }
}
