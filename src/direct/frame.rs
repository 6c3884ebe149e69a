//! The per-frame decision: parse a received Ethernet frame, and either rewrite it for a
//! node, turn it into an ARP reply, or drop it with a reason.
//!
//! [`process`] is a pure function of (frame, [`Aux`], [`Local`], a [`Decide`]r) that
//! works in place on the receive buffer: no allocation, no I/O, no clock. The checks, in
//! order — each failure is a [`Verdict::Drop`] with its [`DropReason`], and no input makes
//! it panic (fuzzed by `fuzz/fuzz_targets/direct_frame.rs`):
//!
//! 1. packet type `OUTGOING` (another socket's transmission, pitfall #7), frames longer than
//!    MTU + 14 (GRO/TSO super-frames cannot be re-sent, pitfall #3), our own source MAC;
//! 2. ARP → [`super::arp`]: reply for an IPv4 VIP, learn node MACs; ICMPv6 neighbour
//!    solicitation/advertisement → [`super::ndp`] (they may come multicast): answer for
//!    an IPv6 VIP, learn node MACs;
//! 3. IPv4 addressed to our MAC (packet type HOST, never matched on the IP alone):
//!    version, header length (options are refused), total length within the frame,
//!    header checksum, not a fragment, destination = a VIP, TCP, a plausible source,
//!    TCP header length, destination port = that VIP's;
//!    IPv6 likewise (RFC 8200 §3): version, payload length within the frame, destination
//!    = a VIP, next header TCP directly — any extension header is dropped and counted
//!    (`ipv6_ext_header`; a fragment header as `fragment`): a client's TCP never needs
//!    one, and walking hop-by-hop/routing/destination options is where evasion and
//!    parser bugs live — a plausible source, TCP header length, port;
//! 4. the decider picks the node and gives its MAC (flow table + scheduler + neighbour
//!    table in production, a stub in tests);
//! 5. rewrite: destination MAC = node, source MAC = ours (pitfall #1: keeping the client's
//!    source MAC makes switches learn the client on our port); when the kernel flagged
//!    the frame `TP_STATUS_CSUMNOTREADY` (veth/virtio checksum offload, pitfall #2), the
//!    TCP checksum field holds only the pseudo-header sum, so it is completed here;
//!    trailing Ethernet padding is cut (the packet is `14 + IPv4 total length`).
//!
//! The IP header and payload are otherwise untouched (the hop limit / TTL too: this is
//! an L2 hop): the node sees the client's packet to the VIP, which it holds on its
//! loopback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use pnet::packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};
use pnet::packet::ip::IpNextHeaderProtocols;
use pnet::packet::ipv4::Ipv4Packet;
use pnet::packet::tcp::{MutableTcpPacket, TcpPacket};
use pnet::util::MacAddr;

use super::arp::{self, ArpRepr};
use super::flow::{FiveTuple, FiveTuple6, FlowKey};
use super::ndp::{self, NdpMessage, NdpRepr};
use super::stats::DropReason;

/// `sll_pkttype` values (linux/if_packet.h).
pub mod pkttype {
    /// To us.
    pub const HOST: u8 = 0;
    /// To all.
    pub const BROADCAST: u8 = 1;
    /// To a group.
    pub const MULTICAST: u8 = 2;
    /// To someone else (promiscuous mode only).
    pub const OTHERHOST: u8 = 3;
    /// Sent by this host (seen by other packet sockets).
    pub const OUTGOING: u8 = 4;
}

/// `tp_status` bit: the checksum is partial, to be completed by hardware (never will be).
pub const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
/// `tp_status` bit: a VLAN tag was stripped into `tp_vlan_tci`.
pub const TP_STATUS_VLAN_VALID: u32 = 1 << 4;

const ETH_HDR: usize = 14;

/// What the socket told us about a frame besides its bytes (`pkttype` values in
/// [`pkttype`]).
pub use crate::sys::packet::Aux;

impl Aux {
    /// Aux data of an ordinary frame to us with a complete checksum, `len` bytes long.
    pub fn host(len: usize) -> Aux {
        Aux {
            pkttype: pkttype::HOST,
            status: 0,
            wire_len: len,
        }
    }

    /// Does the TCP checksum need completing?
    pub fn csum_not_ready(&self) -> bool {
        self.status & TP_STATUS_CSUMNOTREADY != 0
    }
}

/// What the distributor is, on this interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    /// Our interface's MAC.
    pub mac: MacAddr,
    /// The virtual IPs and their ports.
    pub vips: Vips,
    /// Largest frame we may send: interface MTU + 14.
    pub max_frame: usize,
    /// Answer ARP / neighbour solicitations for the VIPs (false on a standby
    /// distributor).
    pub answer_arp: bool,
}

/// The `VIP:PORT`s served, split by family so a packet is matched against its own
/// family only (a handful of entries: a linear scan beats any map).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vips {
    v4: Vec<(Ipv4Addr, u16)>,
    v6: Vec<(Ipv6Addr, u16)>,
}

impl Vips {
    /// The set of `listen` addresses (duplicates are kept once).
    pub fn new(listen: &[SocketAddr]) -> Vips {
        let mut v = Vips::default();
        for l in listen {
            match l {
                SocketAddr::V4(a) if !v.v4.contains(&(*a.ip(), a.port())) => {
                    v.v4.push((*a.ip(), a.port()))
                }
                SocketAddr::V6(a) if !v.v6.contains(&(*a.ip(), a.port())) => {
                    v.v6.push((*a.ip(), a.port()))
                }
                _ => {}
            }
        }
        v
    }

    /// Is `ip` one of the IPv4 VIPs (any port)?
    #[inline]
    pub fn has_v4(&self, ip: Ipv4Addr) -> bool {
        self.v4.iter().any(|(a, _)| *a == ip)
    }

    /// Is `ip` one of the IPv6 VIPs (any port)?
    #[inline]
    pub fn has_v6(&self, ip: Ipv6Addr) -> bool {
        self.v6.iter().any(|(a, _)| *a == ip)
    }

    /// Is (`ip`, `port`) served?
    #[inline]
    fn serves_v4(&self, ip: Ipv4Addr, port: u16) -> bool {
        self.v4.contains(&(ip, port))
    }

    #[inline]
    fn serves_v6(&self, ip: Ipv6Addr, port: u16) -> bool {
        self.v6.contains(&(ip, port))
    }

    /// The distinct IPv4 VIP addresses (for gratuitous ARP).
    pub fn v4_addrs(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.v4
            .iter()
            .enumerate()
            .filter(|(i, (a, _))| !self.v4[..*i].iter().any(|(b, _)| b == a))
            .map(|(_, (a, _))| *a)
    }

    /// The distinct IPv6 VIP addresses (for unsolicited neighbour advertisements).
    pub fn v6_addrs(&self) -> impl Iterator<Item = Ipv6Addr> + '_ {
        self.v6
            .iter()
            .enumerate()
            .filter(|(i, (a, _))| !self.v6[..*i].iter().any(|(b, _)| b == a))
            .map(|(_, (a, _))| *a)
    }
}

/// What the decider needs to know about a TCP packet to the VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpMeta {
    /// The flow.
    pub tuple: FlowKey,
    /// TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10, …).
    pub flags: u8,
    /// IP packet length: IPv4 total length, or 40 + IPv6 payload length (bytes
    /// forwarded).
    pub ip_len: u16,
}

/// Where the decider sends a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The node, as the decider numbers them (its position in the pool snapshot).
    pub node: usize,
    /// The node's MAC.
    pub mac: MacAddr,
}

/// The stateful half of the decision, kept out of this module so it stays pure.
pub trait Decide {
    /// Chooses the node for a TCP packet to the VIP (may create or update a flow).
    fn decide(&mut self, pkt: &TcpMeta) -> Result<Target, DropReason>;
    /// An ARP frame (IPv4) or a neighbour advertisement/solicitation (IPv6) says `ip`
    /// is at `mac` (RFC 826 merge, RFC 4861 §7.2.5). Returns whether the information
    /// was used (the IP is a node's).
    fn learn(&mut self, ip: IpAddr, mac: MacAddr) -> bool;
}

/// The outcome for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The frame was rewritten for `node`: send `frame[..len]`.
    Forward {
        /// The decider's node number.
        node: usize,
        /// Bytes to send.
        len: usize,
        /// The TCP checksum was completed in userspace.
        csum_completed: bool,
    },
    /// The frame was turned into an ARP reply for the VIP: send `frame[..len]`.
    ArpReply {
        /// Bytes to send.
        len: usize,
    },
    /// A neighbour solicitation asked for an IPv6 VIP: send the advertisement
    /// [`ndp::emit_answer`] builds (into a buffer of its own: it may be longer than the
    /// solicitation, which sits in the receive buffer).
    NeighbourAdvert(ndp::Answer),
    /// An ARP or ND frame taught us a node's MAC; nothing to send.
    Learned,
    /// Not forwarded.
    Drop(DropReason),
}

/// Decides what to do with one received frame (see the module documentation).
/// `frame` holds the bytes received (possibly fewer than `aux.wire_len`).
pub fn process<D: Decide>(frame: &mut [u8], aux: &Aux, local: &Local, d: &mut D) -> Verdict {
    match classify(frame, aux, local, d) {
        Ok(v) => v,
        Err(r) => Verdict::Drop(r),
    }
}

fn classify<D: Decide>(
    frame: &mut [u8],
    aux: &Aux,
    local: &Local,
    d: &mut D,
) -> Result<Verdict, DropReason> {
    if aux.pkttype == pkttype::OUTGOING {
        return Err(DropReason::Outgoing);
    }
    if aux.wire_len > frame.len() || frame.len() > local.max_frame {
        return Err(DropReason::Oversize);
    }
    let eth = EthernetPacket::new(frame).ok_or(DropReason::Truncated)?;
    // Read once: pnet's accessors are out of line across crates, and a second read
    // measurably slowed the IPv4 path.
    let eth_src = eth.get_source();
    if eth_src == local.mac {
        return Err(DropReason::OwnFrame);
    }
    if aux.status & TP_STATUS_VLAN_VALID != 0 {
        return Err(DropReason::NotIpv4);
    }
    let ethertype = eth.get_ethertype();
    let to_us = eth.get_destination() == local.mac;
    let meta = if ethertype == EtherTypes::Ipv4 {
        if aux.pkttype != pkttype::HOST || !to_us {
            return Err(DropReason::NotForUs);
        }
        parse_ipv4_tcp(&frame[ETH_HDR..], local)?
    } else if ethertype == EtherTypes::Arp {
        return handle_arp(frame, local, d);
    } else if ethertype == EtherTypes::Ipv6 {
        // ND comes multicast (to a solicited-node group): look before the HOST check.
        if frame.get(ETH_HDR + 6) == Some(&ndp::NEXT_ICMPV6) {
            return handle_ndp(&frame[ETH_HDR..], eth_src, local, d);
        }
        if aux.pkttype != pkttype::HOST || !to_us {
            return Err(DropReason::NotForUs);
        }
        parse_ipv6_tcp(&frame[ETH_HDR..], local)?
    } else {
        return Err(DropReason::NotIpv4);
    };
    let target = d.decide(&meta)?;
    let len = ETH_HDR + usize::from(meta.ip_len);
    let frame = &mut frame[..len];
    {
        // 14 bytes are present (checked above): cannot fail.
        let mut eth = MutableEthernetPacket::new(frame).ok_or(DropReason::Truncated)?;
        eth.set_destination(target.mac);
        eth.set_source(local.mac);
    }
    let csum_completed = aux.csum_not_ready();
    if csum_completed {
        match meta.tuple {
            FlowKey::V4(t) => complete_tcp_checksum(&mut frame[ETH_HDR..], t.src, t.dst),
            FlowKey::V6(t) => complete_tcp_checksum6(&mut frame[ETH_HDR..], t.src, t.dst),
        }
    }
    Ok(Verdict::Forward {
        node: target.node,
        len,
        csum_completed,
    })
}

// ARP and ND are rare next to TCP: kept out of line so the TCP path stays compact.
#[inline(never)]
fn handle_arp<D: Decide>(
    frame: &mut [u8],
    local: &Local,
    d: &mut D,
) -> Result<Verdict, DropReason> {
    let req = ArpRepr::parse(&frame[ETH_HDR..])?;
    if local.vips.has_v4(req.sender_ip) && req.sender_mac != local.mac {
        return Err(DropReason::VipConflict);
    }
    let learned =
        !req.sender_ip.is_unspecified() && d.learn(IpAddr::V4(req.sender_ip), req.sender_mac);
    if local.answer_arp && local.vips.has_v4(req.target_ip) {
        if let Some(len) = arp::answer(frame, &req, req.target_ip, local.mac) {
            return Ok(Verdict::ArpReply { len });
        }
    }
    if learned {
        Ok(Verdict::Learned)
    } else {
        Err(DropReason::ArpIgnored)
    }
}

/// An ICMPv6 packet (`ip`: after the Ethernet header) from `eth_src`: answer a
/// solicitation for a VIP, learn a node's MAC from an advertisement (RFC 4861 §7.2.5) or
/// from a node's own solicitation's source link-layer option (§7.2.3).
#[inline(never)]
fn handle_ndp<D: Decide>(
    ip: &[u8],
    eth_src: MacAddr,
    local: &Local,
    d: &mut D,
) -> Result<Verdict, DropReason> {
    let nd = NdpRepr::parse(ip)?;
    match nd.msg {
        NdpMessage::Solicit { target, source_mac } => {
            let learned = match source_mac {
                Some(m) if !nd.src.is_unspecified() => d.learn(IpAddr::V6(nd.src), m),
                _ => false,
            };
            if local.answer_arp && local.vips.has_v6(target) {
                if let Some(a) = ndp::answer_for(&nd, eth_src, target) {
                    return Ok(Verdict::NeighbourAdvert(a));
                }
            }
            if learned {
                Ok(Verdict::Learned)
            } else {
                Err(DropReason::NdpIgnored)
            }
        }
        NdpMessage::Advert {
            target, target_mac, ..
        } => {
            let mac = target_mac.unwrap_or(eth_src);
            if local.vips.has_v6(target) {
                // Someone else advertises our VIP (our own frames were dropped above).
                return Err(DropReason::VipConflict);
            }
            if d.learn(IpAddr::V6(target), mac) {
                Ok(Verdict::Learned)
            } else {
                Err(DropReason::NdpIgnored)
            }
        }
    }
}

/// Validates an IPv4 packet carrying TCP to the VIP and extracts what the decider needs.
/// `ip` is everything after the Ethernet header, padding included.
///
/// Always inlined: the returned [`TcpMeta`] (with its 40-byte [`FlowKey`]) is then built
/// in the caller's frame; returned through memory, reading it back cost a
/// store-forwarding stall per packet (measured: IPv4 parse 22 → 27 ns).
#[inline(always)]
pub fn parse_ipv4_tcp(ip: &[u8], local: &Local) -> Result<TcpMeta, DropReason> {
    let p = Ipv4Packet::new(ip).ok_or(DropReason::Truncated)?;
    if p.get_version() != 4 {
        return Err(DropReason::BadHeader);
    }
    let ihl = usize::from(p.get_header_length()) * 4;
    if ihl < 20 {
        return Err(DropReason::BadHeader);
    }
    if ihl > 20 {
        return Err(DropReason::IpOptions);
    }
    let total = usize::from(p.get_total_length());
    if total < ihl || total > ip.len() {
        return Err(DropReason::BadLength);
    }
    if pnet::packet::ipv4::checksum(&p) != p.get_checksum() {
        return Err(DropReason::BadChecksum);
    }
    // MF flag (0b001) or a non-zero offset: a fragment (RFC 791 §3.1).
    if p.get_flags() & 0b001 != 0 || p.get_fragment_offset() != 0 {
        return Err(DropReason::Fragment);
    }
    let dst = p.get_destination();
    if !local.vips.has_v4(dst) {
        return Err(DropReason::NotForVip);
    }
    if p.get_next_level_protocol() != IpNextHeaderProtocols::Tcp {
        return Err(DropReason::NotTcp);
    }
    let src = p.get_source();
    if src.is_unspecified()
        || src.is_broadcast()
        || src.is_multicast()
        || src.is_loopback()
        || local.vips.has_v4(src)
    {
        return Err(DropReason::Martian);
    }
    let seg = &ip[ihl..total];
    let tcp = TcpPacket::new(seg).ok_or(DropReason::Truncated)?;
    let off = usize::from(tcp.get_data_offset()) * 4;
    if off < 20 || off > seg.len() {
        return Err(DropReason::BadLength);
    }
    let dport = tcp.get_destination();
    if !local.vips.serves_v4(dst, dport) {
        return Err(DropReason::WrongPort);
    }
    Ok(TcpMeta {
        tuple: FlowKey::V4(FiveTuple {
            src,
            dst,
            sport: tcp.get_source(),
            dport,
            proto: 6,
        }),
        // CWR ECE URG ACK PSH RST SYN FIN.
        flags: tcp.get_flags(),
        // total ≤ ip.len() ≤ a frame length that fits in u16 (checked above).
        ip_len: p.get_total_length(),
    })
}

/// IPv6 next-header values of extension headers (RFC 8200 §4, IANA "IPv6 Extension
/// Header Types"): hop-by-hop, routing, destination options, ESP, AH, mobility, HIP,
/// shim6, and the two experimental values.
const IPV6_EXT_HEADERS: [u8; 10] = [0, 43, 60, 50, 51, 135, 139, 140, 253, 254];
/// The fragment header (RFC 8200 §4.5).
const IPV6_FRAGMENT: u8 = 44;

/// Validates an IPv6 packet carrying TCP to a VIP and extracts what the decider needs.
/// `ip` is everything after the Ethernet header, padding included. Only the fixed
/// header is accepted (see the module documentation). Always inlined, as
/// [`parse_ipv4_tcp`].
#[inline(always)]
pub fn parse_ipv6_tcp(ip: &[u8], local: &Local) -> Result<TcpMeta, DropReason> {
    let h = ip.get(..40).ok_or(DropReason::Truncated)?;
    if h[0] >> 4 != 6 {
        return Err(DropReason::BadHeader);
    }
    // Payload length 0 means a jumbogram (RFC 2675), which needs a hop-by-hop header:
    // refused below anyway; here it is simply an empty packet with no TCP header.
    let total = 40 + usize::from(u16::from_be_bytes([h[4], h[5]]));
    if total > ip.len() {
        return Err(DropReason::BadLength);
    }
    let mut a = [0u8; 16];
    a.copy_from_slice(&h[24..40]);
    let dst = Ipv6Addr::from(a);
    if !local.vips.has_v6(dst) {
        return Err(DropReason::NotForVip);
    }
    match h[6] {
        6 => {}
        IPV6_FRAGMENT => return Err(DropReason::Fragment),
        n if IPV6_EXT_HEADERS.contains(&n) => return Err(DropReason::Ipv6ExtHeader),
        _ => return Err(DropReason::NotTcp),
    }
    a.copy_from_slice(&h[8..24]);
    let src = Ipv6Addr::from(a);
    // Not a client: unspecified, multicast, loopback, a VIP, or an IPv4-mapped address
    // (RFC 4291 §2.5.5.2: never on the wire).
    if src.is_unspecified()
        || src.is_multicast()
        || src.is_loopback()
        || src.to_ipv4_mapped().is_some()
        || local.vips.has_v6(src)
    {
        return Err(DropReason::Martian);
    }
    let seg = &ip[40..total];
    let tcp = TcpPacket::new(seg).ok_or(DropReason::Truncated)?;
    let off = usize::from(tcp.get_data_offset()) * 4;
    if off < 20 || off > seg.len() {
        return Err(DropReason::BadLength);
    }
    let dport = tcp.get_destination();
    if !local.vips.serves_v6(dst, dport) {
        return Err(DropReason::WrongPort);
    }
    Ok(TcpMeta {
        tuple: FlowKey::V6(FiveTuple6 {
            src,
            dst,
            sport: tcp.get_source(),
            dport,
            proto: 6,
        }),
        flags: tcp.get_flags(),
        // A frame longer than 65535 bytes cannot have reached here (max_frame), but
        // say so rather than truncate.
        ip_len: u16::try_from(total).map_err(|_| DropReason::BadLength)?,
    })
}

/// Computes the full TCP checksum of the segment in `ip` (an IPv6 packet without
/// extension headers, cut to its length) and stores it (RFC 8200 §8.1 pseudo-header).
pub fn complete_tcp_checksum6(ip: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) {
    let Some(seg) = ip.get_mut(40..) else {
        return;
    };
    let sum = match TcpPacket::new(seg) {
        Some(t) => pnet::packet::tcp::ipv6_checksum(&t, &src, &dst),
        None => return,
    };
    if let Some(mut t) = MutableTcpPacket::new(seg) {
        t.set_checksum(sum);
    }
}

/// Computes the full TCP checksum of the segment in `ip` (an option-less IPv4 packet cut
/// to its total length) and stores it. With `CHECKSUM_PARTIAL` the field held the
/// pseudo-header sum; the full computation ignores the field, so it is right either way.
pub fn complete_tcp_checksum(ip: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) {
    let Some(seg) = ip.get_mut(20..) else {
        return;
    };
    let sum = match TcpPacket::new(seg) {
        Some(t) => pnet::packet::tcp::ipv4_checksum(&t, &src, &dst),
        None => return,
    };
    if let Some(mut t) = MutableTcpPacket::new(seg) {
        t.set_checksum(sum);
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests6;
