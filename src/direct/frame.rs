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
//! 2. ARP → [`super::arp`]: reply for the VIP, learn node MACs;
//! 3. IPv4 addressed to our MAC (packet type HOST, never matched on the IP alone):
//!    version, header length (options are refused), total length within the frame,
//!    header checksum, not a fragment, destination = VIP, TCP, a plausible source,
//!    TCP header length, destination port;
//! 4. the decider picks the node and gives its MAC (flow table + scheduler + neighbour
//!    table in production, a stub in tests);
//! 5. rewrite: destination MAC = node, source MAC = ours (pitfall #1: keeping the client's
//!    source MAC makes switches learn the client on our port); when the kernel flagged
//!    the frame `TP_STATUS_CSUMNOTREADY` (veth/virtio checksum offload, pitfall #2), the
//!    TCP checksum field holds only the pseudo-header sum, so it is completed here;
//!    trailing Ethernet padding is cut (the packet is `14 + IPv4 total length`).
//!
//! The IP header and payload are otherwise untouched: the node sees the client's packet
//! to the VIP, which it holds on its loopback.

use std::net::Ipv4Addr;

use pnet::packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};
use pnet::packet::ip::IpNextHeaderProtocols;
use pnet::packet::ipv4::Ipv4Packet;
use pnet::packet::tcp::{MutableTcpPacket, TcpPacket};
use pnet::util::MacAddr;

use super::arp::{self, ArpRepr};
use super::flow::FiveTuple;
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    /// Our interface's MAC.
    pub mac: MacAddr,
    /// The virtual IP.
    pub vip: Ipv4Addr,
    /// The service port on the VIP.
    pub port: u16,
    /// Largest frame we may send: interface MTU + 14.
    pub max_frame: usize,
    /// Answer ARP for the VIP (false on a standby distributor).
    pub answer_arp: bool,
}

/// What the decider needs to know about a TCP packet to the VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpMeta {
    /// The flow.
    pub tuple: FiveTuple,
    /// TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10, …).
    pub flags: u8,
    /// IPv4 total length (bytes forwarded).
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
    /// An ARP frame says `ip` is at `mac` (RFC 826 merge). Returns whether the
    /// information was used (the IP is a node's).
    fn learn(&mut self, ip: Ipv4Addr, mac: MacAddr) -> bool;
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
    /// An ARP frame taught us a node's MAC; nothing to send.
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
    if eth.get_source() == local.mac {
        return Err(DropReason::OwnFrame);
    }
    if aux.status & TP_STATUS_VLAN_VALID != 0 {
        return Err(DropReason::NotIpv4);
    }
    let ethertype = eth.get_ethertype();
    let to_us = eth.get_destination() == local.mac;
    if ethertype == EtherTypes::Arp {
        return handle_arp(frame, local, d);
    }
    if ethertype != EtherTypes::Ipv4 {
        return Err(DropReason::NotIpv4);
    }
    if aux.pkttype != pkttype::HOST || !to_us {
        return Err(DropReason::NotForUs);
    }
    let meta = parse_ipv4_tcp(&frame[ETH_HDR..], local)?;
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
        complete_tcp_checksum(&mut frame[ETH_HDR..], meta.tuple.src, meta.tuple.dst);
    }
    Ok(Verdict::Forward {
        node: target.node,
        len,
        csum_completed,
    })
}

fn handle_arp<D: Decide>(
    frame: &mut [u8],
    local: &Local,
    d: &mut D,
) -> Result<Verdict, DropReason> {
    let req = ArpRepr::parse(&frame[ETH_HDR..])?;
    if req.sender_ip == local.vip && req.sender_mac != local.mac {
        return Err(DropReason::VipConflict);
    }
    let learned = !req.sender_ip.is_unspecified() && d.learn(req.sender_ip, req.sender_mac);
    if local.answer_arp {
        if let Some(len) = arp::answer(frame, &req, local.vip, local.mac) {
            return Ok(Verdict::ArpReply { len });
        }
    }
    if learned {
        Ok(Verdict::Learned)
    } else {
        Err(DropReason::ArpIgnored)
    }
}

/// Validates an IPv4 packet carrying TCP to the VIP and extracts what the decider needs.
/// `ip` is everything after the Ethernet header, padding included.
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
    if dst != local.vip {
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
        || src == local.vip
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
    if dport != local.port {
        return Err(DropReason::WrongPort);
    }
    Ok(TcpMeta {
        tuple: FiveTuple {
            src,
            dst,
            sport: tcp.get_source(),
            dport,
            proto: 6,
        },
        // CWR ECE URG ACK PSH RST SYN FIN.
        flags: tcp.get_flags(),
        // total ≤ ip.len() ≤ a frame length that fits in u16 (checked above).
        ip_len: p.get_total_length(),
    })
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
