//! Start-up checks of direct mode: refuse to run where forwarding would silently fail.
//!
//! Each check maps to a pitfall reproduced in the lab (numbered in docs/direct-routing.md,
//! "Pitfalls") and fails with one line that says what is wrong and how to fix it (`main`
//! prints it, exit code 1):
//!
//! | check                                       | failure                                  |
//! |---------------------------------------------|------------------------------------------|
//! | `--interface` exists, is up, has a MAC      | error                                    |
//! | the VIP is not a local address (pitfall #5) | error: the kernel would RST every SYN    |
//! | IPv4 forwarding is off (pitfall #4)         | error: the kernel would forward too      |
//! | nodes are IPv4, on the interface's subnets  | error: direct routing is L2 only         |
//! | nodes listen on the VIP's port              | error: frames are not rewritten above L2 |
//! | GRO / LRO off on the interface (pitfall #3) | warning: super-frames are dropped        |
//! | CAP_NET_RAW (socket creation)               | error, from [`crate::sys::packet`]       |
//!
//! `ip_forward = 1` is refused rather than warned about: with it the kernel forwards a
//! second copy of every packet to the VIP (or sends ICMP redirects), which breaks
//! connections in ways that look like network faults.

use std::fmt;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

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
        vip: Ipv4Addr,
        /// Where it is assigned.
        iface: String,
        /// The prefix length it is assigned with (what `ip addr del` needs).
        prefix: u8,
        /// It is the interface's first IPv4 address: likely the host's own address,
        /// which must not be deleted; the VIP must be another address.
        primary: bool,
    },
    /// IPv4 forwarding is on.
    Forwarding {
        /// The sysctl file that reads 1.
        path: String,
    },
    /// `--listen` is not a single IPv4 address.
    ListenNotIpv4(String),
    /// A node is not IPv4.
    NodeNotIpv4(SocketAddr),
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
            StartupError::Forwarding { path } => write!(
                f,
                "direct mode: IPv4 forwarding is on ({path} = 1); the kernel would forward a second copy of every packet — set net.ipv4.ip_forward=0 (sysctl -w net.ipv4.ip_forward=0)"
            ),
            StartupError::ListenNotIpv4(l) => write!(
                f,
                "--listen {l}: direct mode needs exactly one IPv4 VIP:PORT"
            ),
            StartupError::NodeNotIpv4(n) => {
                write!(f, "--backend {n}: direct mode supports IPv4 nodes only")
            }
            StartupError::NodeNotOnLink { node, iface } => write!(
                f,
                "--backend {node}: not on a subnet of {iface}; direct routing needs the nodes on the same L2 segment"
            ),
            StartupError::NodePort { node, port } => write!(
                f,
                "--backend {node}: port must be the VIP's port {port} in direct mode (packets reach the node unchanged)"
            ),
            StartupError::Socket(e) if e.kind() == io::ErrorKind::PermissionDenied => write!(
                f,
                "direct mode: cannot open a raw packet socket ({e}); it needs CAP_NET_RAW: run as root or setcap cap_net_raw+ep on the binary"
            ),
            StartupError::Socket(e) => write!(f, "direct mode: raw packet socket: {e}"),
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
    let mtu = mtu(name).unwrap_or(1500);
    let iface = Interface {
        name: name.into(),
        index: ni.index,
        mac,
        mtu,
        ipv4,
    };
    Ok((iface, all))
}

/// Checks the VIP, the nodes and the forwarding sysctls against the interfaces.
pub fn check(
    iface: &Interface,
    all: &[NetworkInterface],
    vip: Ipv4Addr,
    port: u16,
    nodes: &[NodeSpec],
) -> Result<(), StartupError> {
    check_vip_not_local(all, vip)?;
    let nets: Vec<IpNetwork> = all
        .iter()
        .find(|i| i.name == iface.name)
        .map(|i| i.ips.clone())
        .unwrap_or_default();
    check_nodes(&iface.name, &nets, port, nodes)?;
    for path in [
        "/proc/sys/net/ipv4/ip_forward".to_string(),
        format!("/proc/sys/net/ipv4/conf/{}/forwarding", iface.name),
    ] {
        if fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1") {
            return Err(StartupError::Forwarding { path });
        }
    }
    Ok(())
}

fn check_vip_not_local(all: &[NetworkInterface], vip: Ipv4Addr) -> Result<(), StartupError> {
    for i in all {
        let mut v4 = i.ips.iter().filter(|n| n.is_ipv4());
        let first = v4.clone().next().map(|n| n.ip());
        if let Some(n) = v4.find(|n| n.ip() == IpAddr::V4(vip)) {
            return Err(StartupError::VipIsLocal {
                vip,
                iface: i.name.clone(),
                prefix: n.prefix(),
                primary: first == Some(IpAddr::V4(vip)),
            });
        }
    }
    Ok(())
}

/// Nodes must be IPv4, on one of the interface's subnets (when it has any) and on the
/// VIP's port.
pub fn check_nodes(
    iface: &str,
    nets: &[IpNetwork],
    port: u16,
    nodes: &[NodeSpec],
) -> Result<(), StartupError> {
    let v4: Vec<&IpNetwork> = nets.iter().filter(|n| n.is_ipv4()).collect();
    for n in nodes {
        let IpAddr::V4(ip) = n.addr.ip() else {
            return Err(StartupError::NodeNotIpv4(n.addr));
        };
        if n.addr.port() != port {
            return Err(StartupError::NodePort { node: n.addr, port });
        }
        if !v4.is_empty() && !v4.iter().any(|net| net.contains(IpAddr::V4(ip))) {
            return Err(StartupError::NodeNotOnLink {
                node: n.addr,
                iface: iface.into(),
            });
        }
    }
    Ok(())
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

    #[test]
    fn nodes_must_be_on_link_ipv4_same_port() {
        let nets: Vec<IpNetwork> = vec!["10.99.0.11/24".parse().unwrap()];
        assert!(check_nodes("eth0", &nets, 80, &[spec("10.99.0.21:80")]).is_ok());
        let e = check_nodes("eth0", &nets, 80, &[spec("10.98.0.21:80")]).unwrap_err();
        assert!(e.to_string().contains("same L2 segment"), "{e}");
        let e = check_nodes("eth0", &nets, 80, &[spec("10.99.0.21:8080")]).unwrap_err();
        assert!(
            e.to_string().contains("port must be the VIP's port 80"),
            "{e}"
        );
        let e = check_nodes("eth0", &nets, 80, &[spec("[::1]:80")]).unwrap_err();
        assert!(e.to_string().contains("IPv4 nodes only"), "{e}");
        // An interface without addresses: on-link cannot be checked, so it is not.
        assert!(check_nodes("eth0", &[], 80, &[spec("10.98.0.21:80")]).is_ok());
    }

    #[test]
    fn errors_are_one_line_and_name_the_fix() {
        let errs = [
            StartupError::NoInterface("eth9".into()),
            StartupError::InterfaceDown("eth0".into()),
            StartupError::VipIsLocal {
                vip: Ipv4Addr::new(10, 0, 0, 1),
                iface: "eth0".into(),
                prefix: 24,
                primary: false,
            },
            StartupError::Forwarding {
                path: "/proc/sys/net/ipv4/ip_forward".into(),
            },
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
            vip: Ipv4Addr::new(10, 0, 0, 100),
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
            vip: Ipv4Addr::new(10, 0, 0, 1),
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
            Ipv4Addr::new(10, 0, 0, 1),
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
            Ipv4Addr::new(10, 0, 0, 100),
        ) {
            Err(StartupError::VipIsLocal {
                primary: false,
                prefix: 32,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(
            check_vip_not_local(&[iface(&["10.0.0.1/24"])], Ipv4Addr::new(10, 0, 0, 7)).is_ok()
        );
    }
}
